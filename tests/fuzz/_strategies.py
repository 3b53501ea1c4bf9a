"""Hypothesis strategies for tool arguments: plausible values mixed with hostile ones.

Ids that must exist (or exist for another tenant) are drawn as ``Ref`` placeholders and
resolved against the seeded server at call time, so one strategy serves every server.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.fuzz._harness import FuzzServer

__all__ = [
    "FUZZ", "FUZZ_EXAMPLES", "Ref", "any_text", "id_text", "ints", "json_values", "junk", "mix",
    "resolve", "sane_text", "strings", "text", "tool_args",
]

DEFAULT_EXAMPLES = 120
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0") or 0)
"""Examples per test for a long, exploring run (``FUZZ_EXAMPLES=2000 pytest tests/fuzz``)."""

# The default run is derandomized: the same examples on every run and machine, so a red CI
# build is a real regression that the same command reproduces, never a new random draw on
# an unrelated change. Exploration is the long run's job: FUZZ_EXAMPLES=N draws at random
# (hypothesis prints the seed and a reproduction blob on failure, and keeps failing
# examples in its local database so the next run replays them first).
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES or DEFAULT_EXAMPLES,
    derandomize=not FUZZ_EXAMPLES,
    database=settings.default.database if FUZZ_EXAMPLES else None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one server per test, on purpose
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)


@dataclass(frozen=True)
class Ref:
    """An id chosen at call time: ``kind`` names a pool of the seeded server."""

    kind: str
    index: int = 0


_POOLS = {
    "run": "runs",
    "foreign_run": "foreign_runs",
    "checkpoint": "checkpoints",
    "foreign_checkpoint": "foreign_checkpoints",
    "memory": "memories",
    "foreign_memory": "foreign_memories",
    "batch": "batches",
    "foreign_batch": "foreign_batches",
}


def fresh_batch(fuzz: FuzzServer, variant: int) -> str:
    """A pending batch that adds, updates and retires memories of its own (committed just
    before), so that committing it has real work to do."""
    n = fuzz.calls
    made = fuzz.ok("propose_memory", {"items": [
        {"content": f"Staging host {n} runs Postgres 15"},
        {"content": f"Release train {n} leaves on Tuesdays", "kind": "procedure"},
        {"content": f"Build agent {n} has 4 cores", "scope": "project:web"},
    ]})
    first, second, third = fuzz.ok("commit_memory", {"batch_id": made["batch_id"]})[
        "memory_ids"
    ].values()
    items: list[dict[str, Any]] = [
        {"content": f"Staging host {n} runs Postgres 16", "scope": "project:web"},
        {"op": "update", "target_id": first, "content": f"Staging host {n} moved to NEAR*"},
        {"op": "supersede", "target_id": second, "superseded_by": "#0"},
    ]
    if variant % 2:
        items.append({"op": "deprecate", "target_id": third})
    staged = fuzz.ok("propose_memory", {"items": items, "run_id": fuzz.seeds.runs[0]})
    batch_id: str = staged["batch_id"]
    return batch_id


def resolve(value: Any, fuzz: FuzzServer) -> Any:
    """``value`` with every Ref replaced by an id of the seeded server."""
    if isinstance(value, Ref):
        if value.kind == "fresh_batch":
            return fresh_batch(fuzz, value.index)
        pool: list[str] = getattr(fuzz.seeds, _POOLS[value.kind])
        return pool[value.index % len(pool)]
    if isinstance(value, Deep):
        return value.build()
    if isinstance(value, list):
        return [resolve(v, fuzz) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, fuzz) for k, v in value.items()}
    return value


# -- hostile scalars ----------------------------------------------------------------------

NASTY_TEXT = [
    "", " ", "\t\n", "\x00", "a\x00b", "\\u0000", "\ud800", "x\udfffy", "\udbff\udfff",
    "\u202eevil\u202c", "\u200f\u05e9\u05dc\u05d5\u05dd", "e\u0301\u0301\u0301", "\ufeff",
    "\uffff", "\U0010ffff", "😀", "👩‍👩‍👧", "\u2028\u2029", "\x1b[31m", "Ω≈ç√",
    "中文字符", "ñandú", "İstanbul", "ß", '"', "'", "`", "*", "a*", "*a", "^", "^a", ":",
    "a:b", "content:x", "NEAR", "NEAR(a b)", "NEAR(a b, 2)", "a OR b", "OR", "AND", "NOT",
    "a AND NOT b", '"unterminated', '"a" "b"', "(", ")", "(a", "-", "-a", "+a", "{a b}",
    "a^b", "%", "_", "__", "\\", ";", "' OR 1=1 --", "'; DROP TABLE runs; --",
    "Robert'); DROP TABLE memories;--", "../../etc/passwd", "/abs/path", "C:\\x", "%s%n",
    "{{7*7}}", "${x}", "#0", "#1", "#-1", "#", "#x", "#99999999999999999999", "step:r0:1",
    "checkpoint:cp_x", "r0", "r1", "foreign-0", "local", "intruder", "global",
    "project:web", "run:r0", "null", "None", "NaN", "1e999", "-0", "0x10",
]

NASTY_INTS = [
    -(2**63) - 1, -(2**63), -(10**30), -1, 0, 1, 2, 3, 5, 6, 7, 12, 127, 128, 129, 599, 600,
    49_999, 50_000, 50_001, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30,
]

NASTY_FLOATS = [math.nan, math.inf, -math.inf, -0.0, 0.0, 1e-320, 0.5, 1.0, 1.0000001, 2.5,
                -1.0, 1e308]


def _big(char: str, n: int) -> str:
    return char * n


big_text = st.builds(
    _big,
    st.sampled_from(["x", "é", "😀", " ", "\x00", "ab ", "\u0301", "OR "]),
    st.sampled_from([31, 32, 33, 63, 64, 65, 255, 256, 257, 2000, 4096, 5000, 70_000]),
)
"""Strings at and around every configured limit (ids 32, text 256, query 64, step 4096)."""

text = st.one_of(
    st.sampled_from(NASTY_TEXT),
    st.text(max_size=24),
    st.text(st.characters(exclude_categories=()), max_size=12),  # surrogates included
    st.lists(st.sampled_from(NASTY_TEXT), min_size=2, max_size=5).map(" ".join),
    big_text,
)

ints = st.one_of(st.sampled_from(NASTY_INTS), st.integers(-20, 20), st.integers())
floats = st.one_of(st.sampled_from(NASTY_FLOATS), st.floats())


@dataclass(frozen=True)
class Deep:
    """A value nested ``depth`` levels deep, built at call time (hypothesis could not even
    print it)."""

    depth: int
    as_dict: bool

    def build(self) -> Any:
        value: Any = "leaf"
        for _ in range(self.depth):
            value = {"a": value} if self.as_dict else [value]
        return value


deep = st.builds(Deep, st.sampled_from([30, 100, 190, 250, 5000]), st.booleans())

scalar = st.one_of(st.none(), st.booleans(), ints, floats, text)
junk = st.one_of(
    st.recursive(
        scalar,
        lambda children: st.lists(children, max_size=4)
        | st.dictionaries(text, children, max_size=4),
        max_leaves=12,
    ),
    deep,
)
"""Any JSON value (and the values JSON can hardly carry: NaN, inf, lone surrogates)."""


WORDS = [
    "parser", "login", "test", "flaky", "cache", "deploy", "postgres", "the", "a", "fails",
    "passed", "src/app.py", "retry", "timeout", "ok", "error", "fix", "NEAR", "OR", "run",
]
sane_text = st.lists(st.sampled_from(WORDS), min_size=1, max_size=8).map(" ".join)
"""Ordinary text, so that most calls get past validation and reach the store."""



def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, picked in proportion to its weight (``st.one_of`` does not
    weigh repeated branches); shrinks towards the first."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


def mix(sane: st.SearchStrategy[Any], edge: st.SearchStrategy[Any] | None = None,
        ) -> st.SearchStrategy[Any]:
    """Mostly a sane value (so most calls reach the store), often an edge case of the
    right type, sometimes anything at all."""
    return weighted((7, sane), (2, sane if edge is None else edge), (1, junk))


def tool_args(
    required: dict[str, st.SearchStrategy[Any]],
    optional: dict[str, st.SearchStrategy[Any]],
) -> st.SearchStrategy[dict[str, Any]]:
    """Arguments: required fields nearly always present, optional ones often, each value
    drawn by its own (mixed) strategy, and sometimes an unknown extra field."""
    present = weighted((19, st.just(True)), (1, st.just(False)))
    parts = st.fixed_dictionaries({
        name: st.tuples(present, value) for name, value in required.items()
    })
    chosen = st.builds(
        lambda drawn, rest: {k: v for k, (keep, v) in drawn.items() if keep} | rest,
        parts,
        st.fixed_dictionaries({}, optional=optional),
    )
    extra = weighted(
        (15, st.just({})),
        (1, st.dictionaries(st.sampled_from(["extra", "tenant", "", "run_id ", "__proto__"]),
                            junk, min_size=1, max_size=2)),
    )
    return st.builds(lambda a, b: {**b, **a}, chosen, extra)


def id_text(*refs: str) -> st.SearchStrategy[Any]:
    """An existing id (mostly of the first pool of ``refs``), or an unknown one."""
    own = st.builds(Ref, st.just(refs[0]), st.integers(0, 7))
    others = st.builds(Ref, st.sampled_from(refs), st.integers(0, 7))
    unknown = st.one_of(
        st.sampled_from(["nope", "r9", "cp_missing", "mem_missing", "batch_missing"]),
        st.from_regex(r"\A[a-z][a-z0-9._:-]{0,12}\Z"),
    )
    return weighted((6, own), (2, others), (1, unknown), (1, text))


any_text = weighted((3, sane_text), (1, text))
strings = weighted((3, st.lists(sane_text, max_size=5)), (1, st.lists(text, max_size=10)))
json_values = weighted(
    (1, st.none()), (2, sane_text), (1, st.integers(-1000, 1000)),
    (2, st.dictionaries(st.sampled_from(WORDS), sane_text, max_size=4)),
    (2, junk),
)
