"""``python -m bench loop``: the checkpoint loop, measured through a real stdio client.

One SQLite file in a fresh temporary data directory, one server subprocess
(``python -m bench._server``: ``mcp-checkpoint serve`` plus the benchmark's ``noop`` tool),
one stdio MCP client. In order:

1. *Seeding* (before the server starts): two long runs are written straight into the same
   SQLite file through the store API (``make_store`` + ``Episodes.record_step``, the server's
   tokenizer), reusing the trajectories' steps cyclically and checkpointing whenever
   ``record_step`` says one is due, as the protocol asks an agent to do.
2. *Replay*: every ``*.traj`` (SWE-agent) becomes a run: ``start_run`` (objective: the
   problem statement of the file, else the first thought), ``record_step`` per step,
   ``checkpoint`` with no content whenever one is due (the server distils by its rules:
   this client offers no sampling), ``rehydrate`` after each checkpoint and at the end.
   Each ``record_step`` is paired with a ``noop`` call carrying the same payload, in
   alternating order, so both see the same conditions.
3. *Latency*: more paired ``record_step`` / ``noop`` calls on one more run, cycling through
   the trajectories' steps (checkpointing and rehydrating when due), for stable p99s.
4. *Scale*: ``rehydrate`` of the short and the long seeded run, interleaved, through the
   client.

Every context is checked against its budget (as reported, and recounted with the server's
tokenizer) and measured for compression and for how many of the paths and identifiers of
the steps it stands for it still names (extracted with this module's own regexes, not the
product's).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio

from bench._client import BenchError, TimedClient, spawn_server
from bench._stats import emit, percentile, ratio, summary
from mcp_checkpoint import __version__
from mcp_checkpoint.config import Settings, SqliteSettings
from mcp_checkpoint.core.episodes import Episodes
from mcp_checkpoint.core.models import CheckpointPatch, RunId, StepDraft, Tenant
from mcp_checkpoint.core.redact import Redactor
from mcp_checkpoint.core.render import step_tokens
from mcp_checkpoint.core.tokens import HeuristicTokenizer
from mcp_checkpoint.errors import CheckpointError
from mcp_checkpoint.storage import make_store
from mcp_checkpoint.storage._urls import mask_url

__all__ = ["add_arguments", "main"]

TENANT = Tenant("bench")
# Targets (DESIGN.md / the benchmark's brief). Reported, never asserted.
TARGET_RECORD_VS_NOOP_P50 = 1.5
TARGET_SCALE_RATIO = 1.5
TARGET_COMPRESSION = 10.0
TARGET_VIOLATIONS = 0
# Runs at least this long are where compression is judged (shorter ones may fit whole).
COMPRESSION_MIN_STEPS = 1000

_MAX_OBJECTIVE_CHARS = 4000  # well under the server's default limits.max_text_chars
_MAX_TOOL_CHARS = 64
_WARMUP_PAIRS = 10
_SCALE_WARMUP_CALLS = 2


@dataclass(frozen=True)
class Profile:
    """How much work a run of the benchmark does."""

    name: Literal["full", "quick"]
    latency_pairs: int
    scale_small: int
    scale_large: int
    scale_calls: int


FULL = Profile("full", latency_pairs=1000, scale_small=1_000, scale_large=100_000, scale_calls=30)
QUICK = Profile("quick", latency_pairs=150, scale_small=1_000, scale_large=10_000, scale_calls=20)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bench loop``."""
    parser.add_argument("--data", required=True, type=Path, help="folder of SWE-agent *.traj files")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke-test scale: {QUICK.scale_small:,} vs {QUICK.scale_large:,} steps, "
        f"{QUICK.latency_pairs} extra latency pairs (default: {FULL.scale_small:,} vs "
        f"{FULL.scale_large:,}, {FULL.latency_pairs})",
    )
    parser.add_argument(
        "--budget",
        type=int,
        help="budget_tokens of every run (default: the server's rehydrate.default_budget_tokens)",
    )
    parser.add_argument(
        "--store-url",
        metavar="URL",
        help="the store to use instead of a fresh temporary SQLite file, e.g. "
        "postgresql://user@host/db (the benchmark writes under a new tenant of its own)",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment of the server process (repeatable), e.g. "
        "MCP_CHECKPOINT_SQLITE__SYNCHRONOUS=NORMAL; nothing else is inherited",
    )


# -- data ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrajStep:
    """One SWE-agent step, as record_step arguments."""

    tool: str
    action: str
    observation: str
    thought: str

    def arguments(self) -> dict[str, Any]:
        """record_step's arguments (without run_id)."""
        return {
            "tool": self.tool,
            "input": self.action,
            "output": self.observation,
            "reasoning": self.thought,
        }

    def draft(self) -> StepDraft:
        """The same step as the core sees it."""
        return StepDraft(
            tool=self.tool, input=self.action, output=self.observation, reasoning=self.thought
        )


@dataclass(frozen=True)
class Trajectory:
    """A trajectory file: its objective and steps."""

    name: str
    objective: str
    objective_source: Literal["problem statement", "first thought"]
    steps: list[TrajStep]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # chat content as a list of {type, text} parts
        return "\n".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in value)
    return str(value)


def _problem_statement(doc: dict[str, Any]) -> str | None:
    """The task of a SWE-agent trajectory: an explicit ``problem_statement`` field if the
    file has one, else the first user message of ``history`` up to its INSTRUCTIONS."""
    for holder in (doc, doc.get("info") or {}, doc.get("environment") or {}):
        if isinstance(holder, dict) and isinstance(holder.get("problem_statement"), str):
            return holder["problem_statement"].strip() or None
    for message in doc.get("history") or []:
        if isinstance(message, dict) and message.get("role") == "user":
            text = _text(message.get("content"))
            text = re.split(r"\n\s*INSTRUCTIONS:", text, maxsplit=1)[0].strip()
            return text or None
    return None


def _tool_of(action: str) -> str:
    words = action.split()
    return words[0][:_MAX_TOOL_CHARS] if words else "(empty)"


def load_trajectories(folder: Path) -> list[Trajectory]:
    """Every ``*.traj`` file in ``folder``, by name. BenchError when there is none or a
    file is not a trajectory."""
    if not folder.is_dir():
        raise BenchError(f"--data {folder} is not a folder")
    found: list[Trajectory] = []
    for path in sorted(folder.glob("*.traj")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BenchError(f"cannot read {path}: {exc}") from exc
        raw = doc.get("trajectory") if isinstance(doc, dict) else None
        if not isinstance(raw, list) or not raw:
            raise BenchError(f"{path} has no 'trajectory' list of steps")
        steps = [
            TrajStep(
                tool=_tool_of(_text(s.get("action"))),
                action=_text(s.get("action")),
                observation=_text(s.get("observation")),
                thought=_text(s.get("thought")),
            )
            for s in raw
            if isinstance(s, dict)
        ]
        statement = _problem_statement(doc)
        source: Literal["problem statement", "first thought"] = "problem statement"
        if statement is None:
            statement, source = steps[0].thought.strip() or path.stem, "first thought"
        found.append(Trajectory(path.stem, statement[:_MAX_OBJECTIVE_CHARS], source, steps))
    if not found:
        raise BenchError(f"no *.traj files in {folder}")
    return found


# -- our own extraction of paths and identifiers (independent of core/distill.py) ---------

_EXTENSIONS = (
    "py|pyc|ipynb|c|h|cc|cpp|hpp|rs|go|js|mjs|ts|tsx|jsx|java|kt|rb|php|pl|sh|bash|zsh|"
    "txt|md|rst|json|jsonl|yaml|yml|toml|ini|cfg|conf|xml|html|htm|css|csv|tsv|log|out|"
    "enc|bin|elf|so|o|a|exe|dll|zip|tar|gz|tgz|bz2|xz|7z|pcap|pcapng|png|jpg|jpeg|gif|"
    "bmp|pdf|mp3|mp4|mpeg|m4v|avi|wav|db|sqlite|sql|pem|key|crt|der|pub|asm|s|patch|diff|"
    "lock|traj"
)
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()\[\]{}`]+")
_SLASHED = re.compile(
    r"(?<![\w.~/-])(?:~|\.{1,2})?/?[\w.+@-]+(?:/[\w.+@-]+)+/?"  # a/b, /a/b, ./a, ~/a
    r"|(?<![\w.~/-])/[\w.+@-]+"  # /a (kept only with a file extension)
)
_FILE = re.compile(
    rf"(?<![\w./-])[\w+-]+(?:\.[\w+-]+)*\.(?:{_EXTENSIONS})(?![\w/-])", re.IGNORECASE
)
_HAS_EXT = re.compile(rf"\.(?:{_EXTENSIONS})$", re.IGNORECASE)
_SNAKE = re.compile(r"(?<!\w)[A-Za-z_][A-Za-z0-9]*_[A-Za-z0-9_]*(?!\w)")
_CAMEL = re.compile(r"(?<!\w)[a-z][a-z0-9]*(?:[A-Z][a-z0-9]+)+(?!\w)")
_PASCAL = re.compile(r"(?<!\w)[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]+)+(?!\w)")
_CALL = re.compile(r"(?<!\w)([A-Za-z_]\w{2,})\(")
_TRAILING = ".,;:!?'\")]}"
_MAX_ITEM_CHARS = 100


def _keep_path(candidate: str) -> bool:
    """Slash-separated words are a path when absolute (or ./, ../, ~/) with two segments,
    or with a file extension, or with at least three segments ('n/a', 'and/or', '1/2' and
    HTML closing tags are not paths)."""
    if not re.search(r"[A-Za-z]", candidate):
        return False
    segments = [s for s in candidate.strip("/").split("/") if s not in ("", ".", "..", "~")]
    if _HAS_EXT.search(candidate):
        return True
    rooted = candidate.startswith(("/", "./", "../", "~/"))
    return len(segments) >= 3 or (rooted and len(segments) >= 2)


def extract(text: str) -> tuple[set[str], set[str]]:
    """(paths, identifiers) named in ``text``. Paths: URLs, slashed paths, file names with
    a known extension. Identifiers: snake_case, camelCase, PascalCase with two humps, and
    names called as ``name(``; at least 3 characters, outside the paths found."""
    paths: set[str] = set()
    rest = text
    for pattern in (_URL, _SLASHED, _FILE):
        found: list[str] = []
        for match in pattern.finditer(rest):
            item = match.group(0).rstrip(_TRAILING)
            if pattern is _URL or pattern is _FILE or _keep_path(item):
                found.append(item.rstrip("/") if len(item) > 1 else item)
        paths.update(p for p in found if 3 <= len(p) <= _MAX_ITEM_CHARS)
        rest = pattern.sub(" ", rest)
    names: set[str] = set()
    for pattern in (_SNAKE, _CAMEL, _PASCAL, _CALL):
        for match in pattern.finditer(rest):
            name = match.group(1) if pattern is _CALL else match.group(0)
            if 3 <= len(name) <= _MAX_ITEM_CHARS and re.search(r"[A-Za-z]", name):
                names.add(name)
    return paths, names


def _occurs(item: str, text: str) -> bool:
    """``item`` appears in ``text`` as a whole token (not inside a longer word)."""
    start = text.find(item)
    while start != -1:
        end = start + len(item)
        before = text[start - 1] if start > 0 else " "
        after = text[end] if end < len(text) else " "
        if not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_"):
            return True
        start = text.find(item, start + 1)
    return False


def _kept(items: Iterable[str], text: str) -> set[str]:
    return {item for item in items if _occurs(item, text)}


# -- records -------------------------------------------------------------------------------


@dataclass
class Latencies:
    """Milliseconds per call, by tool, as the client saw them."""

    record_step: list[float] = field(default_factory=list)
    noop: list[float] = field(default_factory=list)
    checkpoint: list[float] = field(default_factory=list)
    rehydrate: list[float] = field(default_factory=list)


@dataclass
class Rehydration:
    """One rehydrate: its size against the budget and the raw steps it stands for."""

    group: str
    run_id: str
    head_seq: int
    raw_tokens: int
    tokens: int
    recount: int
    budget_tokens: int
    ms: float
    paths_seen: int = 0
    paths_kept: int = 0
    ids_seen: int = 0
    ids_kept: int = 0


@dataclass
class RunReport:
    """One replayed trajectory."""

    name: str
    run_id: str
    objective_source: str
    steps: int
    checkpoints: int = 0
    raw_tokens: int = 0
    final_tokens: int = 0
    peak_tokens: int = 0
    paths: int = 0
    paths_final: int = 0
    paths_outside_objective: int = 0
    paths_outside_objective_final: int = 0
    ids: int = 0
    ids_final: int = 0
    ids_outside_objective: int = 0
    ids_outside_objective_final: int = 0


@dataclass
class Tally:
    """What the whole benchmark observed."""

    lat: Latencies = field(default_factory=Latencies)
    rehydrations: list[Rehydration] = field(default_factory=list)
    runs: list[RunReport] = field(default_factory=list)
    checkpoint_sources: Counter[str] = field(default_factory=Counter)
    checkpoint_notes: Counter[str] = field(default_factory=Counter)
    due_reasons: Counter[str] = field(default_factory=Counter)
    ack_mismatches: int = 0


@dataclass
class LoopRun:
    """A run driven through the client: its raw tokens by seq and what is covered."""

    run_id: str
    group: str
    cum_tokens: list[int] = field(default_factory=lambda: [0])
    covered_seq: int = 0
    checkpoints: int = 0
    paths_seen: set[str] = field(default_factory=set)
    ids_seen: set[str] = field(default_factory=set)
    track_names: bool = False

    @property
    def head_seq(self) -> int:
        return len(self.cum_tokens) - 1


# -- the loop through the client ----------------------------------------------------------


class Driver:
    """Drives runs through the client and records what it sees."""

    def __init__(self, client: TimedClient, tally: Tally, budget: int | None) -> None:
        self.client = client
        self.tally = tally
        self.budget = budget
        self.tok = HeuristicTokenizer()
        self.redactor = Redactor()  # the server's default: it counts the step it stores
        self._pairs = 0

    async def start(self, run_id: str, objective: str, group: str, *, names: bool) -> LoopRun:
        """start_run."""
        args: dict[str, Any] = {"objective": objective, "run_id": run_id}
        if self.budget is not None:
            args["budget_tokens"] = self.budget
        await self.client.call("start_run", args)
        return LoopRun(run_id=run_id, group=group, track_names=names)

    async def step(self, run: LoopRun, step: TrajStep, *, timed: bool = True) -> None:
        """record_step paired with a noop of the same payload (alternating which goes
        first), then checkpoint + rehydrate if one is due."""
        payload = step.arguments()
        record_args = {"run_id": run.run_id, **payload}
        noop_first = self._pairs % 2 == 0
        self._pairs += 1
        if noop_first:
            _, noop_ms = await self.client.call("noop", {"payload": payload})
        ack, record_ms = await self.client.call("record_step", record_args)
        if not noop_first:
            _, noop_ms = await self.client.call("noop", {"payload": payload})
        if timed:
            self.tally.lat.record_step.append(record_ms)
            self.tally.lat.noop.append(noop_ms)
        draft = step.draft()
        red = self.redactor
        stored = draft.model_copy(update={
            "input": red.json(draft.input), "output": red.json(draft.output),
            "reasoning": red.text(draft.reasoning) if draft.reasoning else draft.reasoning,
        })
        run.cum_tokens.append(run.cum_tokens[-1] + step_tokens(stored, self.tok))
        if ack["seq"] != run.head_seq:
            raise BenchError(f"{run.run_id}: expected seq {run.head_seq}, got {ack['seq']}")
        # The server's working memory must be exactly our raw count since the checkpoint.
        if ack["working_tokens"] != run.cum_tokens[-1] - run.cum_tokens[run.covered_seq]:
            self.tally.ack_mismatches += 1
        if run.track_names:
            paths, names = extract(step.action + "\n" + step.observation)
            run.paths_seen |= paths
            run.ids_seen |= names
        if ack["checkpoint_due"]:
            self.tally.due_reasons[str(ack["due_reason"])] += 1
            await self.checkpoint(run, timed=timed)
            await self.rehydrate(run, timed=timed)

    async def checkpoint(self, run: LoopRun, *, timed: bool = True) -> None:
        """checkpoint with no content: the server distils."""
        result, ms = await self.client.call("checkpoint", {"run_id": run.run_id})
        if timed:
            self.tally.lat.checkpoint.append(ms)
            self.tally.checkpoint_sources[str(result["source"])] += 1
            self.tally.checkpoint_notes[str(result.get("note"))] += 1
        run.covered_seq = int(result["through_seq"])
        run.checkpoints += 1

    async def rehydrate(self, run: LoopRun, *, timed: bool = True) -> str:
        """rehydrate; records size, budget, compression and survival. Returns the text."""
        ctx, ms = await self.client.call("rehydrate", {"run_id": run.run_id})
        text = str(ctx["context"])
        record = Rehydration(
            group=run.group,
            run_id=run.run_id,
            head_seq=run.head_seq,
            raw_tokens=run.cum_tokens[-1],
            tokens=int(ctx["tokens"]),
            recount=self.tok.count(text),
            budget_tokens=int(ctx["budget_tokens"]),
            ms=ms,
        )
        if run.track_names:
            record.paths_seen = len(run.paths_seen)
            record.paths_kept = len(_kept(run.paths_seen, text))
            record.ids_seen = len(run.ids_seen)
            record.ids_kept = len(_kept(run.ids_seen, text))
        if timed:
            self.tally.lat.rehydrate.append(ms)
            self.tally.rehydrations.append(record)
        return text


async def _replay(driver: Driver, trajectories: Sequence[Trajectory]) -> None:
    for index, traj in enumerate(trajectories):
        run_id = f"traj-{index:02d}-{re.sub(r'[^A-Za-z0-9_.-]', '-', traj.name)}"[:100]
        run = await driver.start(run_id, traj.objective, "replay", names=True)
        for step in traj.steps:
            await driver.step(run, step)
        final = await driver.rehydrate(run)
        report = RunReport(
            name=traj.name,
            run_id=run_id,
            objective_source=traj.objective_source,
            steps=run.head_seq,
            checkpoints=run.checkpoints,
            raw_tokens=run.cum_tokens[-1],
            final_tokens=driver.tally.rehydrations[-1].tokens,
            peak_tokens=max(r.tokens for r in driver.tally.rehydrations if r.run_id == run_id),
        )
        outside_paths = {p for p in run.paths_seen if not _occurs(p, traj.objective)}
        outside_ids = {n for n in run.ids_seen if not _occurs(n, traj.objective)}
        report.paths = len(run.paths_seen)
        report.paths_final = len(_kept(run.paths_seen, final))
        report.paths_outside_objective = len(outside_paths)
        report.paths_outside_objective_final = len(_kept(outside_paths, final))
        report.ids = len(run.ids_seen)
        report.ids_final = len(_kept(run.ids_seen, final))
        report.ids_outside_objective = len(outside_ids)
        report.ids_outside_objective_final = len(_kept(outside_ids, final))
        driver.tally.runs.append(report)


def _cycle(trajectories: Sequence[Trajectory]) -> list[TrajStep]:
    return [step for traj in trajectories for step in traj.steps]


async def _latency(driver: Driver, steps: Sequence[TrajStep], pairs: int) -> LoopRun:
    run = await driver.start(
        "bench-latency",
        "Latency: replay the SWE-agent trajectories' steps cyclically.",
        "latency",
        names=False,
    )
    for i in range(pairs):
        await driver.step(run, steps[i % len(steps)])
    await driver.rehydrate(run)
    return run


async def _warm_up(driver: Driver, steps: Sequence[TrajStep]) -> None:
    """Untimed calls first: imports, caches and the SQLite page cache warm up."""
    run = await driver.start("bench-warmup", "Warm-up (not measured).", "warmup", names=False)
    for i in range(_WARMUP_PAIRS):
        await driver.step(run, steps[i % len(steps)], timed=False)
    await driver.rehydrate(run, timed=False)


# -- seeding (straight into the SQLite file, before the server starts) -------------------


@dataclass(frozen=True)
class Seeded:
    """A long run written through the store API."""

    run_id: str
    steps: int
    checkpoints: int
    head_tokens: int
    seconds: float


async def _seed(
    settings: Settings, run_id: str, steps: Sequence[TrajStep], count: int, budget: int | None
) -> Seeded:
    store = make_store(settings)
    await store.open()
    try:
        tenant = Tenant(settings.tenant)
        episodes = Episodes(store, HeuristicTokenizer(), settings)
        await episodes.start_run(
            tenant,
            f"Scale: {count:,} SWE-agent steps replayed cyclically (seeded).",
            run_id=run_id,
            budget_tokens=budget,
        )
        drafts = [s.draft() for s in steps]
        checkpoints = 0
        start = time.perf_counter()
        for i in range(count):
            ack = await episodes.record_step(tenant, run_id, drafts[i % len(drafts)])
            if ack.checkpoint_due:
                await episodes.checkpoint(tenant, run_id, CheckpointPatch())
                checkpoints += 1
            if (i + 1) % 10_000 == 0:
                _progress(f"seeded {i + 1:,}/{count:,} steps of {run_id}")
        seconds = time.perf_counter() - start
        run = await store.get_run(tenant, RunId(run_id))
        return Seeded(run_id, run.step_count, checkpoints, run.head_tokens, seconds)
    finally:
        await store.close()


async def _scale(
    driver: Driver, seeded: Sequence[Seeded], calls: int
) -> dict[str, list[Rehydration]]:
    """Interleaved rehydrates of the seeded runs (order alternating per round)."""
    out: dict[str, list[Rehydration]] = {s.run_id: [] for s in seeded}
    for i in range(_SCALE_WARMUP_CALLS + calls):
        order = list(seeded) if i % 2 == 0 else list(reversed(seeded))
        for s in order:
            ctx, ms = await driver.client.call("rehydrate", {"run_id": s.run_id})
            text = str(ctx["context"])
            if i >= _SCALE_WARMUP_CALLS:
                out[s.run_id].append(
                    Rehydration(
                        group=f"scale-{s.steps}",
                        run_id=s.run_id,
                        head_seq=s.steps,
                        raw_tokens=s.head_tokens,
                        tokens=int(ctx["tokens"]),
                        recount=driver.tok.count(text),
                        budget_tokens=int(ctx["budget_tokens"]),
                        ms=ms,
                    )
                )
    return out


# -- orchestration -------------------------------------------------------------------------


def _progress(message: str) -> None:
    sys.stderr.write(f"bench loop: {message}\n")
    sys.stderr.flush()


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or ``exc`` itself."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _server_env(
    store_url: str, tenant: Tenant, data_dir: Path, extra: Sequence[str]
) -> dict[str, str]:
    env = {
        "MCP_CHECKPOINT_DATA_DIR": str(data_dir),
        "MCP_CHECKPOINT_STORE_URL": store_url,
        "MCP_CHECKPOINT_TENANT": tenant,
        "MCP_CHECKPOINT_LOG_LEVEL": "WARNING",
    }
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BenchError(f"--server-env wants KEY=VALUE, got {item!r}")
        env[key] = value
    return env


async def _verify_store(settings: Settings) -> dict[str, Any]:
    """After the server exits: the store holds what the benchmark wrote."""
    store = make_store(settings)
    await store.open()
    try:
        runs = await store.list_runs(
            Tenant(settings.tenant), status=None, limit=10_000, offset=0
        )
        return {"runs": len(runs), "steps": sum(r.step_count for r in runs)}
    finally:
        await store.close()


async def _bench(args: argparse.Namespace, profile: Profile) -> dict[str, Any]:
    started = time.perf_counter()
    trajectories = load_trajectories(args.data)
    steps = _cycle(trajectories)
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="mcp-checkpoint-bench-") as tmp:
        data_dir = Path(tmp)
        db = data_dir / "bench.db"
        store_url = args.store_url or f"sqlite:///{db}"
        # A given store may hold earlier benchmarks' runs: this one writes a tenant of its own.
        tenant = Tenant(f"{TENANT}-{uuid.uuid4().hex[:8]}") if args.store_url else TENANT
        env = _server_env(store_url, tenant, data_dir, args.server_env)
        # Seeding needs no per-commit fsync; the server keeps its own (default) setting.
        seed_settings = Settings(
            data_dir=data_dir,
            store_url=store_url,
            tenant=tenant,
            sqlite=SqliteSettings(synchronous="NORMAL"),
        )
        seeded: list[Seeded] = []
        for count in (profile.scale_small, profile.scale_large):
            _progress(f"seeding a {count:,}-step run into {mask_url(store_url)}")
            seeded.append(await _seed(seed_settings, f"scale-{count}", steps, count, args.budget))
        errlog_path = data_dir / "server-stderr.log"
        try:
            with errlog_path.open("w", encoding="utf-8") as errlog:
                async with spawn_server(env, errlog, noop=True) as client:
                    driver = Driver(client, tally, args.budget)
                    _progress("server up; warming up")
                    await _warm_up(driver, steps)
                    _progress(f"replaying {len(trajectories)} trajectories")
                    await _replay(driver, trajectories)
                    _progress(f"{profile.latency_pairs} more record_step/noop pairs")
                    latency_run = await _latency(driver, steps, profile.latency_pairs)
                    _progress(f"rehydrate at scale ({profile.scale_calls} calls each)")
                    scale = await _scale(driver, seeded, profile.scale_calls)
        except Exception as exc:
            # The client's task groups wrap what went wrong: our own BenchError (a tool
            # error) passes as it is; anything else (the server died, the transport broke)
            # is reported with the end of the server's stderr.
            leaves = _leaves(exc)
            own = [e for e in leaves if isinstance(e, BenchError)]
            if own:
                raise own[0] from exc
            tail = errlog_path.read_text(encoding="utf-8")[-2000:] if errlog_path.exists() else ""
            what = "; ".join(repr(e) for e in leaves)
            raise BenchError(f"the server failed ({what}); its stderr ends with:\n{tail}") from exc
        stored = await _verify_store(seed_settings)
        if args.store_url:
            stored |= {"url": mask_url(store_url), "tenant": tenant}
        else:
            stored |= {"url": "sqlite:///<tmp>/bench.db", "file_bytes": db.stat().st_size}
    return _report(
        args,
        profile,
        trajectories,
        tally,
        seeded,
        scale,
        latency_run,
        stored,
        env,
        time.perf_counter() - started,
    )


# -- the report ----------------------------------------------------------------------------


def _share(kept: int, total: int) -> float | None:
    return round(kept / total, 4) if total else None


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _compression(records: Sequence[Rehydration]) -> dict[str, Any]:
    """Raw tokens of the steps the run holds at its last rehydrate vs its peak context."""
    last = max(records, key=lambda r: r.head_seq)
    peak = max(r.tokens for r in records)
    return {
        "steps": last.head_seq,
        "raw_tokens": last.raw_tokens,
        "peak_context_tokens": peak,
        "ratio": ratio(last.raw_tokens, peak),
    }


def _report(
    args: argparse.Namespace,
    profile: Profile,
    trajectories: Sequence[Trajectory],
    tally: Tally,
    seeded: Sequence[Seeded],
    scale: dict[str, list[Rehydration]],
    latency_run: LoopRun,
    stored: dict[str, Any],
    env: dict[str, str],
    seconds: float,
) -> dict[str, Any]:
    lat = tally.lat
    record, noop = summary(lat.record_step), summary(lat.noop)
    small, large = seeded
    small_ms = [r.ms for r in scale[small.run_id]]
    large_ms = [r.ms for r in scale[large.run_id]]
    scale_ratio = ratio(percentile(large_ms, 50), percentile(small_ms, 50))

    all_rehydrations = tally.rehydrations + [r for rs in scale.values() for r in rs]
    violations = sum(1 for r in all_rehydrations if r.tokens > r.budget_tokens)
    recount_violations = sum(1 for r in all_rehydrations if r.recount > r.budget_tokens)
    mismatched_counts = sum(1 for r in all_rehydrations if r.recount != r.tokens)

    replay = [r for r in tally.rehydrations if r.group == "replay"]
    per_run_ratios = [ratio(r.raw_tokens, r.final_tokens) or 0.0 for r in tally.runs]
    long_runs: dict[str, dict[str, Any]] = {}
    latency_records = [r for r in tally.rehydrations if r.run_id == latency_run.run_id]
    for name, records in (
        ("latency_run", latency_records),
        (f"scale_{small.steps}", scale[small.run_id]),
        (f"scale_{large.steps}", scale[large.run_id]),
    ):
        long_runs[name] = _compression(records)
    judged = [v for v in long_runs.values() if v["steps"] >= COMPRESSION_MIN_STEPS]
    worst_long = min((v["ratio"] for v in judged if v["ratio"] is not None), default=None)

    def survival(kind: Literal["paths", "ids"]) -> dict[str, Any]:
        total = sum(getattr(r, kind) for r in tally.runs)
        final = sum(getattr(r, f"{kind}_final") for r in tally.runs)
        outside = sum(getattr(r, f"{kind}_outside_objective") for r in tally.runs)
        outside_final = sum(getattr(r, f"{kind}_outside_objective_final") for r in tally.runs)
        seen = [
            getattr(r, f"{kind}_kept") / getattr(r, f"{kind}_seen")
            for r in replay
            if getattr(r, f"{kind}_seen")
        ]
        return {
            "distinct": total,
            "final_share": _share(final, total),
            "final_share_outside_objective": _share(outside_final, outside),
            "outside_objective": outside,
            "mean_share_over_rehydrates": _mean(seen),
            "rehydrates": len(seen),
        }

    distilled = dict(tally.checkpoint_sources)
    targets = [
        _target(
            "record_step p50 / noop p50",
            "<= 1.5x",
            ratio(record["p50"], noop["p50"]),
            lambda v: v <= TARGET_RECORD_VS_NOOP_P50,
        ),
        _target(
            f"rehydrate median {large.steps:,} / {small.steps:,} steps",
            "<= 1.5x",
            scale_ratio,
            lambda v: v <= TARGET_SCALE_RATIO,
        ),
        _target(
            f"compression raw / peak context (runs >= {COMPRESSION_MIN_STEPS:,} steps)",
            ">= 10x",
            worst_long,
            lambda v: v >= TARGET_COMPRESSION,
        ),
        _target(
            "contexts over budget",
            "== 0",
            violations + recount_violations,
            lambda v: v == TARGET_VIOLATIONS,
        ),
    ]
    return {
        "benchmark": "loop",
        "version": __version__,
        "profile": profile.name,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "data": str(args.data),
        "seconds": round(seconds, 1),
        "server": {
            "command": f"{Path(sys.executable).name} -m mcp_checkpoint serve",
            "transport": "stdio",
            "store": stored,
            "env": {
                k: ("<tmp>" if k == "MCP_CHECKPOINT_DATA_DIR" else v)
                for k, v in env.items()
                if k != "MCP_CHECKPOINT_STORE_URL"
            },
        },
        "replay": {
            "trajectories": len(trajectories),
            "steps": sum(len(t.steps) for t in trajectories),
            "objectives": dict(Counter(t.objective_source for t in trajectories)),
            "checkpoints": sum(r.checkpoints for r in tally.runs),
            "rehydrates": len(replay),
        },
        "distillation": {
            "how": "checkpoint called with no content; the client offers no sampling, so the "
            "server distils by its deterministic rules",
            "sources": distilled,
            "notes": dict(tally.checkpoint_notes),
            "due_reasons": dict(tally.due_reasons),
        },
        "latency_ms": {
            "record_step": record,
            "noop": noop,
            "checkpoint": summary(lat.checkpoint),
            "rehydrate": summary(lat.rehydrate),
            "pairing": "each record_step is paired with a noop carrying the same payload, "
            "alternating which goes first",
        },
        "record_vs_noop": {
            "p50_ratio": ratio(record["p50"], noop["p50"]),
            "p99_ratio": ratio(record["p99"], noop["p99"]),
        },
        "scale": {
            "budget_tokens": scale[large.run_id][0].budget_tokens,
            "calls_each": profile.scale_calls,
            "seeding": "through the store API into the same store (SQLite: synchronous=NORMAL) "
            "before the server started; checkpoints taken whenever due",
            "runs": [
                {
                    "steps": s.steps,
                    "checkpoints": s.checkpoints,
                    "head_tokens": s.head_tokens,
                    "seed_seconds": round(s.seconds, 1),
                    "rehydrate_ms": summary([r.ms for r in scale[s.run_id]]),
                    "context_tokens": scale[s.run_id][-1].tokens,
                }
                for s in seeded
            ],
            "median_ratio": scale_ratio,
        },
        "compression": {
            "replay_runs": {
                "raw_tokens_total": sum(r.raw_tokens for r in tally.runs),
                "peak_context_tokens": max((r.peak_tokens for r in tally.runs), default=0),
                "final_ratio_median": round(percentile(per_run_ratios, 50), 3),
                "final_ratio_min": round(min(per_run_ratios), 3),
                "final_ratio_max": round(max(per_run_ratios), 3),
                "note": "short trajectories whose raw steps fit within the budget are kept "
                "almost whole; compression only shows once a run outgrows its budget",
            },
            "long_runs": long_runs,
        },
        "budget": {
            "rehydrates": len(all_rehydrations),
            "violations": violations,
            "recount_violations": recount_violations,
            "recount_differs": mismatched_counts,
            "working_tokens_mismatches": tally.ack_mismatches,
        },
        "survival": {
            "extractor": "the benchmark's own regexes over each step's action + observation",
            "paths": survival("paths"),
            "identifiers": survival("ids"),
        },
        "runs": [vars(r) for r in tally.runs],
        "targets": targets,
    }


def _target(name: str, goal: str, value: float | None, ok: Any) -> dict[str, Any]:
    return {
        "name": name,
        "target": goal,
        "value": value,
        "pass": bool(value is not None and ok(value)),
    }


def _pct(value: float | None) -> str:
    return "  n/a" if value is None else f"{value * 100:5.1f}%"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def render(report: dict[str, Any]) -> str:
    """The human-readable table of a report."""
    lines: list[str] = []
    add = lines.append
    rp, lat, srv = report["replay"], report["latency_ms"], report["server"]
    add(
        f"mcp-checkpoint {report['version']} bench loop ({report['profile']}) — "
        f"{rp['trajectories']} trajectories, {rp['steps']} steps, {report['seconds']} s"
    )
    sync = srv["env"].get("MCP_CHECKPOINT_SQLITE__SYNCHRONOUS", "FULL (default)")
    url = srv["store"]["url"]
    kind = f"SQLite store (synchronous={sync})" if url.startswith("sqlite") else f"store {url}"
    add(
        f"server: {srv['command']} over stdio; {kind}, "
        f"{srv['store']['runs']} runs / {srv['store']['steps']:,} steps in it afterwards"
    )
    dist = report["distillation"]
    add(f"objectives: {', '.join(f'{v} from the {k}' for k, v in rp['objectives'].items())}")
    add(
        f"checkpoints: called with NO content; the server distilled them by its rules "
        f"(sources {dist['sources']}; due: {dist['due_reasons']})"
    )
    add("")
    add(f"{'latency (ms, client-side)':<34}{'n':>6}{'p50':>9}{'p99':>9}")
    for name, label in (
        ("record_step", "record_step"),
        ("noop", "noop (same payload)"),
        ("checkpoint", "checkpoint (rules)"),
        ("rehydrate", "rehydrate"),
    ):
        s = lat[name]
        p50 = "n/a" if s["p50"] is None else f"{s['p50']:.2f}"
        p99 = "n/a" if s["p99"] is None else f"{s['p99']:.2f}"
        add(f"  {label:<32}{s['n']:>6}{p50:>9}{p99:>9}")
    rv = report["record_vs_noop"]
    add(f"  {'record_step / noop':<32}{'':>6}{_x(rv['p50_ratio']):>9}{_x(rv['p99_ratio']):>9}")
    add("")
    sc = report["scale"]
    add(
        f"rehydrate at scale (budget {sc['budget_tokens']}, {sc['calls_each']} calls each, "
        f"interleaved; seeded through the store API)"
    )
    for run in sc["runs"]:
        ms = run["rehydrate_ms"]
        add(
            f"  {run['steps']:>8,} steps {run['checkpoints']:>6,} cps  median {ms['p50']:7.2f} ms"
            f"  p99 {ms['p99']:7.2f} ms  context {run['context_tokens']:,} tokens "
            f"(raw {run['head_tokens']:,})"
        )
    add(f"  ratio of medians {_x(sc['median_ratio'])}")
    add("")
    comp = report["compression"]
    rr = comp["replay_runs"]
    add("compression (raw tokens of steps 1..head / peak context tokens)")
    add(
        f"  replayed trajectories: final ratio median {_x(rr['final_ratio_median'])} "
        f"(min {_x(rr['final_ratio_min'])}, max {_x(rr['final_ratio_max'])}); "
        f"raw {rr['raw_tokens_total']:,} tokens in all, peak context {rr['peak_context_tokens']:,}"
    )
    for name, c in comp["long_runs"].items():
        add(
            f"  {name:<22}{c['steps']:>8,} steps  raw {c['raw_tokens']:>12,}  "
            f"peak context {c['peak_context_tokens']:>6,}  {_x(c['ratio'])}"
        )
    b = report["budget"]
    add(
        f"budget: {b['rehydrates']} contexts, {b['violations']} over budget as reported, "
        f"{b['recount_violations']} over on an independent recount; "
        f"working_tokens mismatches {b['working_tokens_mismatches']}"
    )
    add("")
    add("identifier survival (own regexes over actions + observations of the replayed steps)")
    add(
        f"  {'':<13}{'distinct':>9}{'in final':>10}{'(not in objective)':>20}"
        f"{'avg seen-so-far':>17}"
    )
    for key in ("paths", "identifiers"):
        s = report["survival"][key]
        add(
            f"  {key:<13}{s['distinct']:>9}{_pct(s['final_share']):>10}"
            f"{_pct(s['final_share_outside_objective']):>20}"
            f"{_pct(s['mean_share_over_rehydrates']):>17}"
        )
    add("")
    add(f"  {'trajectory':<30}{'steps':>6}{'cps':>4}{'raw':>8}{'ctx':>7}{'paths':>10}{'ids':>10}")
    for r in report["runs"]:
        add(
            f"  {r['name'][:30]:<30}{r['steps']:>6}{r['checkpoints']:>4}{r['raw_tokens']:>8,}"
            f"{r['final_tokens']:>7,}{r['paths_final']:>5}/{r['paths']:<4}"
            f"{r['ids_final']:>5}/{r['ids']:<4}"
        )
    add("")
    add("targets")
    for t in report["targets"]:
        value = t["value"]
        shown = "n/a" if value is None else (f"{value}" if isinstance(value, int) else _x(value))
        add(f"  {t['name']:<58}{t['target']:>9}{shown:>10}  {'PASS' if t['pass'] else 'FAIL'}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run the benchmark: print the table (and write JSON with ``--json``). Exit code 0
    whatever the targets say; 1 when the benchmark itself could not run."""
    profile = QUICK if args.quick else FULL
    try:
        report = anyio.run(_bench, args, profile)
    except (BenchError, CheckpointError) as exc:
        sys.stderr.write(f"mcp-checkpoint bench loop: {exc}\n")
        return 1
    emit(render(report), report, args.json)
    return 0
