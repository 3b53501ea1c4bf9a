"""Every tool, fed random and hostile arguments through the in-memory MCP client, against a
real SQLite store: each answer is a clean coded error or a result matching the tool's
output schema (never ``internal``), and the store's invariants hold after every example
(integrity, no orphan rows, gap-free ledgers, checkpoints, FTS) and at the end (hash
chains of every run of every tenant, rehydrate within budget).

Examples per tool: 120, derandomized (see ``tests.fuzz._strategies.FUZZ``); a long run
explores at random: ``FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/fuzz``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, reject
from hypothesis import strategies as st
from mcp.shared.exceptions import MCPError

from tests.fuzz._harness import FuzzServer, Unsendable, check_db, dump, live_server
from tests.fuzz._strategies import (
    FUZZ,
    Ref,
    any_text,
    id_text,
    ints,
    json_values,
    junk,
    mix,
    resolve,
    sane_text,
    strings,
    text,
    tool_args,
    weighted,
)

pytestmark = pytest.mark.slow

STATUSES = st.sampled_from(["active", "completed", "failed", "abandoned"])
BAD_STATUSES = st.sampled_from(["paused", "", "ACTIVE", "active "])
KINDS = st.sampled_from(["fact", "preference", "procedure", "lesson", "decision", "other"])
BAD_KINDS = st.sampled_from(["rule", "", "FACT"])
OPS = st.sampled_from(["add", "add", "update", "supersede", "deprecate"])
SCOPES = st.sampled_from(["global", "project:web", "user", "run:r0", "project:api"])
BAD_SCOPES = st.one_of(st.sampled_from(["a b", "", ":x", "-x", "x" * 33]), text)
BUDGETS = st.sampled_from([128, 200, 600, 5000, 50_000])
BAD_BUDGETS = st.one_of(st.sampled_from([127, 129, 0, -1, 50_001]), ints)
KEYS = st.sampled_from([f"k{i}" for i in range(7)] + ["fz0", "fz1", "fz2"])
SMALL = st.integers(0, 20)
RUN = id_text("run", "foreign_run")


@pytest.fixture
def fuzz(tmp_path: Path) -> Iterator[FuzzServer]:
    with live_server(tmp_path / "data") as server:
        yield server


def exercise(
    fuzz: FuzzServer, tool: str, args: dict[str, Any], *, resolved: bool = False
) -> dict[str, Any] | None:
    """Call ``tool`` with ``args`` (Refs resolved unless ``resolved``): the answer must be
    clean and the store sound afterwards."""
    if not resolved:
        args = resolve(args, fuzz)
    try:
        out = fuzz.checked(tool, args)
    except Unsendable:
        reject()  # the client cannot send it, so no server can receive it
    except AssertionError as exc:
        raise AssertionError(f"{tool}({dump(args)}): {exc}") from exc
    check_db(fuzz.db_path)
    return out


# -- one test per tool ----------------------------------------------------------------------


@FUZZ
@given(args=tool_args(
    {"objective": mix(sane_text, text)},
    {
        "acceptance_criteria": mix(strings),
        "constraints": mix(strings),
        "pinned": mix(strings),
        "run_id": mix(st.from_regex(r"\Anew-[0-9]{1,6}\Z"), RUN),
        "budget_tokens": mix(BUDGETS, BAD_BUDGETS),
    },
))
def test_fuzz_start_run(fuzz: FuzzServer, args: dict[str, Any]) -> None:
    out = exercise(fuzz, "start_run", args)
    if out is not None:
        assert out["head_seq"] == out["step_count"] == 0
        assert 128 <= out["budget_tokens"] <= 50_000


@FUZZ
@given(args=tool_args(
    {"run_id": mix(RUN), "tool": mix(sane_text, text)},
    {
        "input": json_values,
        "output": json_values,
        "reasoning": mix(st.none() | sane_text, text),
        "status": mix(st.sampled_from(["ok", "error"]), st.sampled_from(["failed", "OK", ""])),
        "idempotency_key": mix(st.none() | KEYS, text),
    },
), repeat=st.booleans())
def test_fuzz_record_step(fuzz: FuzzServer, args: dict[str, Any], repeat: bool) -> None:
    out = exercise(fuzz, "record_step", args)
    if out is not None and repeat and args.get("idempotency_key") is not None:
        again = exercise(fuzz, "record_step", args)
        assert again is not None and again["duplicate"] is True
        assert again["seq"] == out["seq"]


SAMPLED = st.one_of(
    st.sampled_from([
        "{}", "[]", "null", '{"progress": ["did it"], "state": {"k": null}}',
        '```json\n{"next_actions": ["go"]}\n```', '{"progress": "not a list"}',
        '{"state": {"": 1}}', '{"progress": ["\\u0000"]}', '{"errors": [' + '1,' * 300 + "1]}",
        '{"progress": [' + '"x",' * 300 + '"x"]}', "{" * 3000, '{"unknown": 1}',
        '{"state": {"a": ' + "[" * 150 + "]" * 150 + "}}",
        '{"progress": ["' + "y" * 300 + '"]}', '{"state": {"n": NaN, "i": Infinity}}',
    ]),
    text,
    junk.map(lambda v: dump(v)),
)


@FUZZ
@given(args=tool_args(
    {"run_id": mix(RUN)},
    {
        "through_seq": mix(st.integers(-1, 14), ints),
        "progress": mix(strings),
        "state": mix(st.dictionaries(any_text, json_values, max_size=5)),
        "decisions": mix(strings),
        "next_actions": mix(strings),
        "open_questions": mix(strings),
        "errors": mix(strings),
        "artifacts": mix(strings),
    },
), sampled=SAMPLED, grow=st.integers(0, 2))
def test_fuzz_checkpoint(fuzz: FuzzServer, args: dict[str, Any], sampled: str, grow: int) -> None:
    fuzz.model.answer = sampled  # the client's model, when the server asks it to distil
    for i in range(grow):  # keep something to cover
        fuzz.ok("record_step", {"run_id": fuzz.seeds.runs[0], "tool": "t", "input": i})
    out = exercise(fuzz, "checkpoint", args)
    if out is not None:
        assert out["working_steps"] >= 0 and out["working_tokens"] >= 0


@FUZZ
@given(args=tool_args(
    {"run_id": mix(RUN)},
    {
        "checkpoint_id": mix(st.none() | id_text("checkpoint", "foreign_checkpoint")),
        "budget_tokens": mix(BUDGETS, BAD_BUDGETS),
        "query": mix(st.none() | sane_text, text),
    },
))
def test_fuzz_rehydrate(fuzz: FuzzServer, args: dict[str, Any]) -> None:
    out = exercise(fuzz, "rehydrate", args)
    if out is not None:
        assert out["tokens"] <= out["budget_tokens"]


@FUZZ
@given(args=tool_args({}, {
    "status": mix(STATUSES, BAD_STATUSES),
    "limit": mix(st.integers(1, 20), ints),
    "offset": mix(SMALL, ints),
}))
def test_fuzz_list_runs(fuzz: FuzzServer, args: dict[str, Any]) -> None:
    out = exercise(fuzz, "list_runs", args)
    if out is not None:
        assert len(out["runs"]) <= 20


@FUZZ
@given(args=tool_args(
    {"run_id": mix(RUN)},
    {"status": mix(STATUSES, BAD_STATUSES), "pinned": mix(strings)},
))
def test_fuzz_update_run(fuzz: FuzzServer, args: dict[str, Any]) -> None:
    exercise(fuzz, "update_run", args)


def _item(op: str, content: Any, target: Any, by: Any) -> dict[str, Any]:
    """A mostly coherent item for ``op`` (the fields each op needs)."""
    item: dict[str, Any] = {"op": op}
    if op in ("add", "update"):
        item["content"] = content
    if op != "add":
        item["target_id"] = target
    if op == "supersede":
        item["superseded_by"] = by
    return item


BY = st.one_of(st.sampled_from(["#0", "#1", "#2", "#9", "#-1", "#x", "#"]),
               id_text("memory", "foreign_memory"))
COHERENT_ITEM = st.builds(
    lambda base, extra: base | extra,
    st.builds(_item, OPS, mix(sane_text, text), id_text("memory", "foreign_memory"), BY),
    st.fixed_dictionaries({}, optional={
        "kind": mix(KINDS, BAD_KINDS),
        "scope": mix(SCOPES, BAD_SCOPES),
        "confidence": mix(st.floats(0, 1), st.sampled_from([-0.1, 1.1, float("nan")])),
        "rationale": mix(st.none() | sane_text, text),
        "source_refs": mix(st.lists(st.sampled_from(["step:r0:1", "checkpoint:x", "url"]))),
    }),
)
ANY_ITEM = st.fixed_dictionaries({}, optional={
    "op": mix(OPS, st.sampled_from(["delete", "ADD"])),
    "content": mix(st.none() | sane_text, text),
    "kind": mix(KINDS, BAD_KINDS),
    "scope": mix(SCOPES, BAD_SCOPES),
    "target_id": mix(st.none() | id_text("memory", "foreign_memory")),
    "superseded_by": mix(st.none() | BY),
})


@FUZZ
@given(args=tool_args(
    {"items": mix(st.lists(weighted((5, COHERENT_ITEM), (1, ANY_ITEM)), max_size=7))},
    {"run_id": mix(st.none() | RUN)},
))
def test_fuzz_propose_memory(fuzz: FuzzServer, args: dict[str, Any]) -> None:
    out = exercise(fuzz, "propose_memory", args)
    if out is not None:
        assert out["status"] == "pending"
        assert all(item["analysis"] is not None for item in out["items"])


INDEXES = st.lists(st.integers(-1, 4), max_size=4)


@FUZZ
@given(args=tool_args(
    {"batch_id": mix(
        st.builds(Ref, st.just("fresh_batch"), st.integers(0, 1)),
        id_text("batch", "foreign_batch"),
    )},
    {"accept": mix(st.none() | INDEXES, st.lists(ints)), "reject": mix(st.none() | INDEXES)},
), twice=st.booleans())
def test_fuzz_commit_memory(fuzz: FuzzServer, args: dict[str, Any], twice: bool) -> None:
    resolved = resolve(args, fuzz)
    out = exercise(fuzz, "commit_memory", resolved, resolved=True)
    if out is not None and twice:
        again = fuzz.call("commit_memory", resolved)  # sendable: it was sent once
        assert again.is_error, "a second commit of one batch must be a conflict"
        assert fuzz.judge("commit_memory", again) is None


QUERIES = st.one_of(
    sane_text,
    st.lists(st.sampled_from([
        '"', "*", "NEAR", "NEAR(", "OR", "AND", "NOT", ":", "^", "(", ")", "-", "+", "{", "}",
        "content:", "parser", "cache*", '"deploy', "postgres", "'", ";", "\\", "_", "%",
    ]), min_size=1, max_size=8).map(" ".join),
    st.lists(st.sampled_from(["NEAR", "OR", "*", "^", ":", '"', "parser", "-"]), min_size=1,
             max_size=8).map("".join),
)


@FUZZ
@given(args=tool_args(
    {"query": mix(QUERIES, text)},
    {
        "scope": mix(st.none() | SCOPES, BAD_SCOPES),
        "kind": mix(st.none() | KINDS, BAD_KINDS),
        "k": mix(st.integers(1, 10), ints),
    },
))
def test_fuzz_search_memory(fuzz: FuzzServer, args: dict[str, Any]) -> None:
    out = exercise(fuzz, "search_memory", args)
    if out is not None:
        k = args.get("k", 5)
        assert len(out["hits"]) <= k
        foreign = set(fuzz.seeds.foreign_memories)
        assert not foreign & {hit["memory_id"] for hit in out["hits"]}


@FUZZ
@given(tool=st.sampled_from(["start_run", "record_step", "nope", "", "search_memory"]),
       args=junk)
def test_fuzz_arguments_of_any_shape(fuzz: FuzzServer, tool: str, args: Any) -> None:
    """Arguments that are not an object at all, or a tool that does not exist."""
    args = resolve(args, fuzz)
    try:
        result = fuzz.call(tool, args if isinstance(args, dict) else {"value": args})
    except Unsendable:
        reject()
    except MCPError as exc:
        # An unknown tool is a protocol error (-32602) with a coded message, as the spec asks.
        assert tool not in fuzz.schemas, exc
        assert exc.error.code == -32602
        assert exc.error.message.startswith(f"not_found: tool {tool!r} does not exist")
    else:
        assert tool in fuzz.schemas, result
        fuzz.judge(tool, result)
    check_db(fuzz.db_path)
