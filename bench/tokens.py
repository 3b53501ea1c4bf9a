"""``python -m bench tokens``: the offline token counter against the real o200k_base.

``HeuristicTokenizer`` (``mcp_checkpoint.core.tokens``) estimates OpenAI ``o200k_base``
token counts without a vocabulary and is meant to err on the high side. This benchmark
measures how it does against the real encoding, taken from the ``bpe-openai`` package
(``get_encoding("o200k_base").encode_ordinary``; the vocabulary ships in its wheel, so it
runs offline). ``bpe-openai`` is not a dependency of the product: it comes with the
``bench`` extra (``pip install -e ".[bench]"`` in the checkout).

Corpora (``--data`` is the shared data folder, read in place):

- ``traj_fields``: each non-empty ``thought`` / ``action`` / ``observation`` /
  ``response`` of the steps of ``trajectories/*.traj`` (SWE-agent);
  ``traj_steps``: those fields of one step joined with ``"\\n"``.
- ``locomo_turns``: the text of every turn of ``locomo/locomo-dev.json``;
  ``locomo_sessions``: a session as ``"[dia_id] speaker: text"`` lines.
- ``syn_*``: adversarial texts generated with a fixed seed (hex digests, base64, minified
  and indented JSON, Unicode / CJK / emoji, whitespace runs, numbers, random symbols).

Checks (ratio = heuristic / real):

1. *Per text*, by corpus: mean, median, p1, p99 and min of the ratio (texts whose real
   count is 0 have no ratio), the share of texts undercounted and the largest
   undercount, and the ratio of the corpus totals.
2. *Packed contexts*: runs of 5, 20 and 100 consecutive sections joined with
   ``"\\n\\n"``; the heuristic side is the sum of the sections' counts plus 1 per join
   (how a context is packed), compared with the real count of the joined text.
3. *Concatenation*: ``count(a + sep + b) - count(a) - count(b)`` over adjacent texts for
   four separators, and over random cuts inside texts; an excess above +1 is a violation.
4. *truncate*: for budgets 0, 1, 2, 5, n/3, n/2, n-1 and n, the result must be a prefix
   of the text whose count is within the budget.
5. *Throughput* of ``count()`` (warm and cold piece cache) and of the reference.

``--quick`` runs every check on a seeded sample of each corpus (order kept) with fewer
packs, cuts and truncations; throughput is always measured on the full text. Figures are
reported, never asserted here: the exit code is 0 whatever they say.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bench._stats import emit
from mcp_checkpoint import __version__
from mcp_checkpoint.core import tokens as core_tokens
from mcp_checkpoint.core.tokens import HeuristicTokenizer

__all__ = ["add_arguments", "main"]

INSTALL_HINT = 'pip install -e ".[bench]"'
REFERENCE_ENCODING = "o200k_base"

# Seeds of the study (/work/notes/tokens.md): the same seeds give the same texts, packs
# and cuts, so the full profile reproduces its figures.
SYNTHETIC_SEED = 1234
SYNTHETIC_ROUNDS = 40
CHECK_SEED = 5  # packs first, then the random cuts, from one generator
SAMPLE_SEED = 2024  # --quick only

PACK_SEPARATOR = "\n\n"
PACK_SIZES = (5, 20, 100)
PACKED_CORPORA = (
    "traj_fields",
    "traj_steps",
    "locomo_turns",
    "locomo_sessions",
    "syn_json",
    "syn_hex",
    "syn_base64",
)
JOIN_ALLOWANCE = 1  # tokens charged per join when packing
CONCAT_SEPARATORS = ("", "\n", "\n\n", " ")
THROUGHPUT_CORPORA = ("traj_fields", "locomo_turns")
TRAJECTORY_FIELDS = ("thought", "action", "observation", "response")


@dataclass(frozen=True)
class Profile:
    """How much work a run of the benchmark does."""

    name: Literal["full", "quick"]
    max_texts: int | None  # per corpus (a seeded sample, order kept); None: every text
    packs_per_size: int
    cut_texts: int  # the first N texts of each corpus get random cuts
    cuts_per_text: int
    truncate_texts: int  # the first N texts of each corpus are truncated
    throughput_repeats: int


FULL = Profile("full", None, 30, 200, 5, 100, 3)
QUICK = Profile("quick", 60, 10, 40, 5, 20, 3)


class _DataError(Exception):
    """The shared data is missing or not what the benchmark expects."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bench tokens``."""
    parser.add_argument(
        "--data",
        required=True,
        type=Path,
        help="the shared data folder (trajectories/*.traj and locomo/locomo-dev.json)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a seeded sample of at most {QUICK.max_texts} texts per corpus, "
        f"{QUICK.packs_per_size} packs per size (default: every text, "
        f"{FULL.packs_per_size} packs per size)",
    )


# -- corpora -------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _DataError(f"cannot read {path}: {exc}") from exc


def load_trajectories(data: Path) -> dict[str, list[str]]:
    """``traj_fields`` and ``traj_steps`` from ``data/trajectories/*.traj``."""
    paths = sorted((data / "trajectories").glob("*.traj"))
    if not paths:
        raise _DataError(f"no trajectories/*.traj under {data}")
    fields: list[str] = []
    steps: list[str] = []
    for path in paths:
        doc = _read_json(path)
        trajectory = doc.get("trajectory") if isinstance(doc, dict) else None
        if not isinstance(trajectory, list):
            raise _DataError(f"{path} has no 'trajectory' list of steps")
        for step in trajectory:
            if not isinstance(step, dict):
                continue
            parts = [v for k in TRAJECTORY_FIELDS if isinstance(v := step.get(k), str) and v]
            fields.extend(parts)
            if parts:
                steps.append("\n".join(parts))
    return {"traj_fields": fields, "traj_steps": steps}


def load_locomo(data: Path) -> dict[str, list[str]]:
    """``locomo_turns`` and ``locomo_sessions`` from ``data/locomo/locomo-dev.json``."""
    path = data / "locomo" / "locomo-dev.json"
    if not path.is_file():
        raise _DataError(f"no locomo/locomo-dev.json under {data}")
    samples = _read_json(path)
    if not isinstance(samples, list):
        raise _DataError(f"{path} is not a list of LoCoMo samples")
    turns: list[str] = []
    sessions: list[str] = []
    for sample in samples:
        conversation = sample.get("conversation") if isinstance(sample, dict) else None
        if not isinstance(conversation, dict):
            raise _DataError(f"{path}: a sample has no 'conversation'")
        for key, session in conversation.items():
            if not (key.startswith("session_") and isinstance(session, list)):
                continue
            lines = []
            for turn in session:
                text = turn.get("text", "")
                turns.append(text)
                lines.append(f"[{turn.get('dia_id')}] {turn.get('speaker')}: {text}")
            sessions.append("\n".join(lines))
    if not turns:
        raise _DataError(f"{path} holds no session turns")
    return {"locomo_turns": turns, "locomo_sessions": sessions}


_UNICODE_POOL = (
    "日本語のテキストです。中文文本测试，한국어 텍스트 Привет мир Γειά σου κόσμε مرحبا بالعالم "
    "नमस्ते दुनिया สวัสดีชาวโลก 🎉🔥👍🏽👨‍👩‍👧 ∀x∈ℝ: x²≥0 ÀÉÎÕÜ ñ ß ø"
)
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_CONSONANTS = "bcdfghjklmnpqrstvwxz"
_PUNCTUATION = "!@#$%^&*()[]{};:,.<>/?|\\`~-=+_'\""
_SYMBOLS = _LOWER + _LOWER.upper() + "0123456789_-./:{}[]()<>=+*&^%$#@!~`|\\;'\","


def synthetic(seed: int = SYNTHETIC_SEED, rounds: int = SYNTHETIC_ROUNDS) -> dict[str, list[str]]:
    """Adversarial texts, ``rounds`` of each kind per corpus, from one seeded generator.

    The order of the generator's draws is the study's: changing it changes every text.
    """
    rng = random.Random(seed)
    hexes: list[str] = []
    b64s: list[str] = []
    jsons: list[str] = []
    uni: list[str] = []
    spaces: list[str] = []
    nums: list[str] = []
    mixed: list[str] = []
    for i in range(rounds):
        k = rng.randint(1, 30)
        hexes.append(
            " ".join(
                hashlib.sha256(f"{i}-{j}".encode()).hexdigest()[: rng.choice([7, 12, 40, 64])]
                for j in range(k)
            )
        )
        sha1 = hashlib.sha1(str(i).encode(), usedforsecurity=False).hexdigest()
        hexes.append(f"commit {sha1}\nAuthor: x")
        raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(3, 3000)))
        b64s.append(base64.b64encode(raw).decode())
        b64s.append(base64.urlsafe_b64encode(raw).decode().rstrip("="))
        b64s.append("data:image/png;base64," + base64.b64encode(raw[:600]).decode())
        # Key before value, the list's draws left to right: the comprehension's order.
        obj = {
            f"k{j}_{rng.randint(0, 999)}": rng.choice(
                [
                    rng.random(),
                    rng.randint(-(10**9), 10**9),
                    "value " * rng.randint(0, 3),
                    None,
                    True,
                    [1, 2, 3],
                    {"a": "b"},
                ]
            )
            for j in range(rng.randint(1, 60))
        }
        jsons.append(json.dumps(obj, separators=(",", ":")))
        jsons.append(json.dumps(obj, indent=2))
        jsons.append(json.dumps({"text": "naïve café — 日本語 🎉" * rng.randint(1, 5)}))
        uni.append("".join(rng.choice(_UNICODE_POOL) for _ in range(rng.randint(1, 400))))
        uni.append(_UNICODE_POOL[rng.randint(0, 40) :][: rng.randint(5, 200)])
        uni.append("".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(rng.randint(1, 300))))
        uni.append("".join(chr(rng.randint(0x1F300, 0x1FAFF)) for _ in range(rng.randint(1, 100))))
        uni.append("".join(chr(rng.randint(0xA0, 0x2FFF)) for _ in range(rng.randint(1, 200))))
        spaces.append("x" + " " * rng.randint(1, 500) + "y")
        spaces.append(
            "\n" * rng.randint(1, 50) + "\t" * rng.randint(0, 20) + " " * rng.randint(0, 90) + "z"
        )
        spaces.append(
            "".join(rng.choice([" ", "\t", "\n", "\r\n", "  "]) for _ in range(rng.randint(1, 300)))
        )
        nums.append(
            " ".join(
                str(rng.randint(0, 10 ** rng.randint(1, 20))) for _ in range(rng.randint(1, 50))
            )
        )
        nums.append(
            ",".join(
                f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 12)}f}"
                for _ in range(rng.randint(1, 50))
            )
        )
        nums.append(str(rng.getrandbits(rng.randint(8, 2000))))
        mixed.append("".join(rng.choice(_SYMBOLS) for _ in range(rng.randint(1, 2000))))
        mixed.append("".join(rng.choice(_LOWER) for _ in range(rng.randint(1, 200))))
        mixed.append("".join(rng.choice(_CONSONANTS) for _ in range(rng.randint(1, 100))))
        mixed.append(
            " ".join(
                "".join(rng.choice(_LOWER) for _ in range(rng.randint(1, 12)))
                for _ in range(rng.randint(1, 80))
            )
        )
        mixed.append("".join(rng.choice(_PUNCTUATION) for _ in range(rng.randint(1, 300))))
        mixed.append("x" * rng.randint(1, 3000))
    return {
        "syn_hex": hexes,
        "syn_base64": b64s,
        "syn_json": jsons,
        "syn_unicode": uni,
        "syn_whitespace": spaces,
        "syn_numbers": nums,
        "syn_random": mixed,
    }


def load_corpora(data: Path) -> dict[str, list[str]]:
    """Every corpus, by name, in the report's order."""
    if not data.is_dir():
        raise _DataError(f"--data {data} is not a folder")
    return load_trajectories(data) | load_locomo(data) | synthetic()


def _sample(corpora: dict[str, list[str]], limit: int | None) -> dict[str, list[str]]:
    """At most ``limit`` texts per corpus, drawn with a fixed seed, in their order."""
    if limit is None:
        return corpora
    rng = random.Random(SAMPLE_SEED)
    out: dict[str, list[str]] = {}
    for name, texts in corpora.items():
        if len(texts) <= limit:
            out[name] = texts
        else:
            out[name] = [texts[i] for i in sorted(rng.sample(range(len(texts)), limit))]
    return out


# -- counting ------------------------------------------------------------------------------


class _Counts:
    """Both counts of a text, memoized (the checks count the same texts many times)."""

    def __init__(self, tok: HeuristicTokenizer, real: Callable[[str], int]) -> None:
        self.tok = tok
        self._real = real
        self._h: dict[str, int] = {}
        self._r: dict[str, int] = {}

    def heuristic(self, text: str) -> int:
        """``HeuristicTokenizer.count``."""
        if (n := self._h.get(text)) is None:
            n = self._h[text] = self.tok.count(text)
        return n

    def real(self, text: str) -> int:
        """The reference count."""
        if (n := self._r.get(text)) is None:
            n = self._r[text] = self._real(text)
        return n


def _reference(bpe_openai: Any) -> Callable[[str], int]:
    """The real o200k_base count of a text, with no length limit."""
    encoding = bpe_openai.get_encoding(REFERENCE_ENCODING)
    too_long = bpe_openai.TokenLimitError

    def count(text: str) -> int:
        try:
            return len(encoding.encode_ordinary(text))
        except too_long as exc:  # past its chunk limit it still reports the count it found
            return int(exc.token_count)

    return count


def _round(value: float) -> float:
    # Six places: the tables print three, and rounding twice could move the third.
    return round(value, 6)


def _nearest_rank(values: Sequence[float], q: float) -> float:
    """The study's percentile: ``sorted(values)[floor(q / 100 * n)]`` (capped at the last).

    Kept instead of ``_stats.percentile`` (interpolated) so that the figures compare one
    to one with the study's tables; on a corpus of 80 texts the two p99s can differ a lot.
    """
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


# -- checks --------------------------------------------------------------------------------


def corpus_figures(texts: Sequence[str], counts: _Counts) -> dict[str, Any]:
    """Per-text ratios and totals of one corpus."""
    ratios: list[float] = []
    under = worst = worst_of = total_h = total_r = 0
    for text in texts:
        h, r = counts.heuristic(text), counts.real(text)
        total_h += h
        total_r += r
        if r:
            ratios.append(h / r)
        if h < r:
            under += 1
            if r - h > worst:
                worst, worst_of = r - h, r
    stats: dict[str, float | None] = dict.fromkeys(("mean", "median", "p1", "p99", "min"))
    if ratios:
        stats = {
            "mean": _round(statistics.fmean(ratios)),
            "median": _round(statistics.median(ratios)),
            "p1": _round(_nearest_rank(ratios, 1)),
            "p99": _round(_nearest_rank(ratios, 99)),
            "min": _round(min(ratios)),
        }
    return {
        "texts": len(texts),
        "ratio": stats,
        "under": under,
        "under_share": _round(under / len(texts)) if texts else None,
        "worst_under": {"tokens": worst, "of": worst_of} if worst else None,
        "heuristic_tokens": total_h,
        "real_tokens": total_r,
        "total_ratio": _round(total_h / total_r) if total_r else None,
    }


def packed_figures(
    texts: Sequence[str], counts: _Counts, rng: random.Random, per_size: int
) -> dict[str, Any]:
    """Runs of consecutive sections: sum of their counts + 1 per join vs the real count of
    the joined text."""
    packs = under = 0
    min_ratio: float | None = None
    for size in PACK_SIZES:
        for _ in range(per_size):
            k = min(size, len(texts))
            start = rng.randrange(0, len(texts) - k + 1)
            sections = texts[start : start + k]
            estimate = sum(map(counts.heuristic, sections)) + JOIN_ALLOWANCE * (k - 1)
            real = counts.real(PACK_SEPARATOR.join(sections))
            packs += 1
            under += estimate < real
            if real:
                ratio = estimate / real
                min_ratio = ratio if min_ratio is None else min(min_ratio, ratio)
    return {
        "packs": packs,
        "under": under,
        "min_ratio": None if min_ratio is None else _round(min_ratio),
    }


def _excess(d: list[int]) -> dict[str, Any]:
    return {
        "pairs": len(d),
        "violations": sum(x > JOIN_ALLOWANCE for x in d),
        "max_excess": max(d, default=None),
    }


def concatenation_figures(
    corpora: dict[str, list[str]], counts: _Counts, rng: random.Random, profile: Profile
) -> dict[str, Any]:
    """How far a count exceeds the sum of its parts' counts."""
    count = counts.heuristic
    by_separator = []
    for sep in CONCAT_SEPARATORS:
        excess = [
            count(a + sep + b) - count(a) - count(b)
            for texts in corpora.values()
            for a, b in itertools.pairwise(texts)
        ]
        by_separator.append({"separator": sep, **_excess(excess)})
    cuts: list[int] = []
    for texts in corpora.values():
        for text in texts[: profile.cut_texts]:
            if len(text) < 2:
                continue
            for _ in range(profile.cuts_per_text):
                at = rng.randrange(1, len(text))
                cuts.append(count(text) - count(text[:at]) - count(text[at:]))
    return {
        "allowance": JOIN_ALLOWANCE,
        "adjacent_pairs": by_separator,
        "random_cuts": _excess(cuts),
    }


def truncate_figures(
    corpora: dict[str, list[str]], tok: HeuristicTokenizer, profile: Profile
) -> dict[str, int]:
    """``truncate(text, m)`` must be a prefix of ``text`` counting at most ``m``."""
    checks = violations = 0
    for texts in corpora.values():
        for text in texts[: profile.truncate_texts]:
            n = tok.count(text)
            for budget in sorted({0, 1, 2, 5, n // 3, n // 2, n - 1, n}):
                prefix = tok.truncate(text, budget)
                checks += 1
                violations += not text.startswith(prefix) or tok.count(prefix) > max(budget, 0)
    return {"checks": checks, "violations": violations}


def throughput_figures(
    corpora: dict[str, list[str]], real: Callable[[str], int], repeats: int
) -> dict[str, float]:
    """MB/s of ``count()`` with a warm and a cold piece cache, and of the reference."""
    blob = "\n".join(t for name in THROUGHPUT_CORPORA for t in corpora[name])
    mb = len(blob.encode("utf-8")) / 1e6
    tok = HeuristicTokenizer()
    tok.count(blob)  # warm the piece cache: the timed passes measure the warm path alone

    def timed(fn: Callable[[str], int], n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            fn(blob)
        return (time.perf_counter() - start) / n

    warm = timed(tok.count, repeats)
    reference = timed(real, repeats)
    # The piece cache is module-level (core.tokens._piece_cost); only clearing it gives a
    # cold figure. It refills on use, so nothing after this is affected but its speed.
    core_tokens._piece_cost.cache_clear()
    cold = timed(tok.count, 1)
    return {
        "mb": round(mb, 3),
        "heuristic_warm_mb_s": round(mb / warm, 2),
        "heuristic_cold_mb_s": round(mb / cold, 2),
        "reference_mb_s": round(mb / reference, 2),
    }


def _bench(args: argparse.Namespace, profile: Profile, bpe_openai: Any) -> dict[str, Any]:
    started = time.perf_counter()
    everything = load_corpora(args.data)
    corpora = _sample(everything, profile.max_texts)
    real = _reference(bpe_openai)
    tok = HeuristicTokenizer()
    counts = _Counts(tok, real)
    rng = random.Random(CHECK_SEED)

    per_corpus = {
        name: corpus_figures(texts, counts) | {"available": len(everything[name])}
        for name, texts in corpora.items()
    }
    packed = {
        name: packed_figures(corpora[name], counts, rng, profile.packs_per_size)
        for name in PACKED_CORPORA
    }
    concatenation = concatenation_figures(corpora, counts, rng, profile)
    truncation = truncate_figures(corpora, tok, profile)
    throughput = throughput_figures(everything, real, profile.throughput_repeats)
    seconds = time.perf_counter() - started
    return {
        "benchmark": "tokens",
        "version": __version__,
        "profile": profile.name,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "data": str(args.data),
        "seconds": round(seconds, 1),
        "tokenizer": tok.name,
        "reference": {
            "package": "bpe-openai",
            "version": getattr(bpe_openai, "__version__", None),
            "encoding": REFERENCE_ENCODING,
            "method": "encode_ordinary",
        },
        "seeds": {"synthetic": SYNTHETIC_SEED, "checks": CHECK_SEED, "sample": SAMPLE_SEED},
        "corpora": per_corpus,
        "packed": {
            "separator": PACK_SEPARATOR,
            "sizes": list(PACK_SIZES),
            "per_size": profile.packs_per_size,
            "join_allowance": JOIN_ALLOWANCE,
            "corpora": packed,
        },
        "concatenation": concatenation,
        "truncate": truncation,
        "throughput": throughput,
    }


# -- output --------------------------------------------------------------------------------


def _f(value: float | None, width: int) -> str:
    return f"{'n/a':>{width}}" if value is None else f"{value:{width}.3f}"


def render(report: dict[str, Any]) -> str:
    """The human-readable tables of a report."""
    lines: list[str] = []
    add = lines.append
    ref = report["reference"]
    add(
        f"mcp-checkpoint {report['version']} bench tokens ({report['profile']}) — "
        f"{report['tokenizer']} vs {ref['encoding']} ({ref['package']} {ref['version']}, "
        f"{ref['method']}), {report['seconds']} s"
    )
    add(f"data: {report['data']}; synthetic seed {report['seeds']['synthetic']}")
    add("")
    add("ratio = heuristic / real, per text")
    header = (
        f"| {'corpus':<15} | {'texts':>5} | {'mean':>5} | {'median':>6} | {'p1':>5} | "
        f"{'p99':>5} | {'min':>5} | {'under%':>6} | {'worst under':>16} | {'total h/r':>9} |"
    )
    add(header)
    add("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")
    for name, c in report["corpora"].items():
        r, w = c["ratio"], c["worst_under"]
        worst = f"{w['tokens']} (of {w['of']})" if w else "0"
        texts = f"{c['texts']}" if c["texts"] == c["available"] else f"{c['texts']}*"
        share = "n/a" if c["under_share"] is None else f"{c['under_share'] * 100:.2f}"
        add(
            f"| {name:<15} | {texts:>5} | {_f(r['mean'], 5)} | {_f(r['median'], 6)} | "
            f"{_f(r['p1'], 5)} | {_f(r['p99'], 5)} | {_f(r['min'], 5)} | {share:>6} | "
            f"{worst:>16} | {_f(c['total_ratio'], 9)} |"
        )
    if any(c["texts"] != c["available"] for c in report["corpora"].values()):
        add("* a seeded sample of the corpus (--quick)")
    add("")
    pk = report["packed"]
    sizes = ", ".join(map(str, pk["sizes"]))
    add(
        f"packed contexts: runs of {sizes} consecutive sections joined with "
        f"{pk['separator']!r}, {pk['per_size']} of each size; heuristic = sum of section "
        f"counts + {pk['join_allowance']} per join"
    )
    add(f"| {'corpus':<15} | {'packs':>5} | {'under':>5} | {'min h/r':>7} |")
    add(f"|{'-' * 17}|{'-' * 7}|{'-' * 7}|{'-' * 9}|")
    for name, p in pk["corpora"].items():
        add(f"| {name:<15} | {p['packs']:>5} | {p['under']:>5} | {_f(p['min_ratio'], 7)} |")
    add("")
    cc = report["concatenation"]
    add(
        f"concatenation: count(a + sep + b) - count(a) - count(b); "
        f"violation = excess > +{cc['allowance']}"
    )
    add(f"| {'case':<22} | {'pairs':>6} | {'violations':>10} | {'max excess':>10} |")
    add(f"|{'-' * 24}|{'-' * 8}|{'-' * 12}|{'-' * 12}|")
    rows = [(f"adjacent, sep={e['separator']!r}", e) for e in cc["adjacent_pairs"]]
    rows.append(("random mid-text cuts", cc["random_cuts"]))
    for label, e in rows:
        mx = "n/a" if e["max_excess"] is None else f"{e['max_excess']:+d}"
        add(f"| {label:<22} | {e['pairs']:>6} | {e['violations']:>10} | {mx:>10} |")
    add("")
    tr = report["truncate"]
    add(
        f"truncate: {tr['checks']} checks (budgets 0, 1, 2, 5, n/3, n/2, n-1, n), "
        f"{tr['violations']} violations (not a prefix, or count > budget)"
    )
    tp = report["throughput"]
    add(
        f"throughput of count() on {tp['mb']:.2f} MB: {tp['heuristic_warm_mb_s']:.2f} MB/s "
        f"warm piece cache, {tp['heuristic_cold_mb_s']:.2f} MB/s cold; "
        f"reference {tp['reference_mb_s']:.2f} MB/s"
    )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run the benchmark: print the tables (and write JSON with ``--json``). Exit code 0
    whatever the figures say; 1 when the data cannot be read; 2 when the reference
    tokenizer is not installed."""
    try:
        import bpe_openai
    except ImportError:
        sys.stderr.write(
            "mcp-checkpoint bench tokens: the reference tokenizer (the bpe-openai package) "
            f"is not installed; install it with: {INSTALL_HINT}\n"
        )
        return 2
    profile = QUICK if args.quick else FULL
    try:
        report = _bench(args, profile, bpe_openai)
    except _DataError as exc:
        sys.stderr.write(f"mcp-checkpoint bench tokens: {exc}\n")
        return 1
    emit(render(report), report, args.json)
    return 0
