"""A live server for fuzzing: ``build_server`` on a real SQLite file, reached through the
in-memory MCP client from synchronous (hypothesis) code, and the store's invariants.

Hypothesis drives synchronous test functions, while the client is async: the client lives
in an event loop on a blocking portal's thread for the whole test, and every example calls
through the portal. One server per test keeps each example a single round trip (no
migrations, no handshake), so a few hundred examples per tool stay within seconds.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp_types import CallToolResult, CreateMessageRequestParams, CreateMessageResult, TextContent

from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.ledger import ChainBreak, verify_run
from mcp_checkpoint.core.models import RunId, Tenant
from mcp_checkpoint.core.tokens import HeuristicTokenizer
from mcp_checkpoint.server.app import build_server
from mcp_checkpoint.storage.sqlite import SqliteStore

__all__ = [
    "CLEAN_ERROR",
    "FuzzServer",
    "InvariantError",
    "Seeds",
    "Unsendable",
    "check_store",
    "fuzz_settings",
    "live_server",
    "tenant_snapshot",
]

CLEAN_ERROR = re.compile(r"^(not_found|invalid_argument|conflict|payload_too_large): \S")
"""What a tool error must look like: a stable code, a message. Never ``internal`` (a bug),
never ``backend_unavailable`` (one process on a local file has no outage to report)."""

LOCAL = "local"
INTRUDER = "intruder"


def fuzz_settings(data_dir: Path, tenant: str = LOCAL) -> Settings:
    """Small limits, so that the boundaries are cheap to reach (the checks are the same
    code whatever the numbers)."""
    return Settings.model_validate({
        "data_dir": data_dir,
        "tenant": tenant,
        "log_level": "ERROR",
        "limits": {
            "max_step_bytes": 4096,
            "max_text_chars": 256,
            "max_list_items": 8,
            "max_checkpoint_bytes": 16_384,
            "max_batch_items": 6,
            "max_query_chars": 64,
            "max_search_k": 10,
            "min_budget_tokens": 128,
            "max_budget_tokens": 50_000,
            "max_page_size": 20,
            "max_id_chars": 32,
        },
        "checkpoint": {"trigger_steps": 5},
        "rehydrate": {"default_budget_tokens": 600},
        "embeddings": {"provider": "hashing", "hashing_dimension": 32},
    })


class SamplingModel:
    """The client's model: answers sampling requests with whatever a test sets."""

    def __init__(self) -> None:
        self.answer = "{}"

    async def __call__(
        self, context: ClientRequestContext, params: CreateMessageRequestParams
    ) -> CreateMessageResult:
        return CreateMessageResult(
            role="assistant",
            content=TextContent(type="text", text=self.answer),
            model="fuzz-model",
            stop_reason="endTurn",
        )


class Unsendable(Exception):
    """The MCP client refused to serialize the arguments (nothing was sent)."""


class InvariantError(AssertionError):
    """The store broke one of its invariants."""


@dataclass
class Seeds:
    """Ids that exist when fuzzing starts: the caller's own, and another tenant's."""

    runs: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    memories: list[str] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)
    foreign_runs: list[str] = field(default_factory=list)
    foreign_checkpoints: list[str] = field(default_factory=list)
    foreign_memories: list[str] = field(default_factory=list)
    foreign_batches: list[str] = field(default_factory=list)


class FuzzServer:
    """A connected client of a server on ``data_dir`` (tenant ``local``), callable from
    synchronous code."""

    def __init__(self, portal: BlockingPortal, client: Client, model: SamplingModel,
                 data_dir: Path) -> None:
        self.portal = portal
        self.client = client
        self.model = model
        self.data_dir = data_dir
        self.db_path = data_dir / "mcp-checkpoint.db"
        self.schemas: dict[str, dict[str, Any]] = {}
        self.seeds = Seeds()
        self.calls = 0
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.messages: Counter[tuple[str, str]] = Counter()

    def call(self, tool: str, arguments: Any) -> CallToolResult:
        """Call a tool with whatever arguments; the raw result. Unsendable when the client
        itself cannot put the arguments on the wire (lone surrogates, nesting deeper than
        its serializer allows): no transport can carry them to a server."""
        self.calls += 1
        try:
            return self.portal.call(self.client.call_tool, tool, arguments)
        except UnicodeEncodeError as exc:
            raise Unsendable(str(exc)) from exc
        except ValueError as exc:
            if "serialization depth" not in str(exc):
                raise
            raise Unsendable(str(exc)) from exc

    def checked(self, tool: str, arguments: Any) -> dict[str, Any] | None:
        """Call a tool and check its answer is clean: a coded error (None) or a result
        that matches the tool's output schema (its structured content)."""
        result = self.call(tool, arguments)
        return self.judge(tool, result)

    def judge(self, tool: str, result: CallToolResult) -> dict[str, Any] | None:
        """None for a clean error, the structured content for a valid result; raises
        AssertionError for anything else."""
        if result.is_error:
            assert len(result.content) == 1, result.content
            block = result.content[0]
            assert isinstance(block, TextContent), block
            assert CLEAN_ERROR.match(block.text), f"{tool}: unclean error {block.text!r}"
            self.outcomes[tool, block.text.split(":", 1)[0]] += 1
            self.messages[tool, block.text[:70]] += 1
            return None
        structured = result.structured_content
        assert structured is not None, f"{tool}: no structured content"
        jsonschema.Draft202012Validator(self.schemas[tool]).validate(structured)
        self.outcomes[tool, "ok"] += 1
        return structured

    def ok(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Call a tool that must succeed."""
        result = self.call(tool, arguments)
        assert not result.is_error, result.content
        assert result.structured_content is not None
        return result.structured_content


def _seed(portal: BlockingPortal, settings: Settings, seeds: Seeds, *, own: bool) -> None:
    """Give the tenant of ``settings`` two runs (steps, checkpoints), memories and a pending
    batch, through its own server on the shared file."""
    prefix = "r" if own else "x"

    async def seed() -> None:
        async with Client(build_server(settings)) as client:
            async def ok(tool: str, args: dict[str, Any]) -> dict[str, Any]:
                result = await client.call_tool(tool, args)
                assert not result.is_error, result.content
                assert result.structured_content is not None
                return result.structured_content

            runs = seeds.runs if own else seeds.foreign_runs
            cps = seeds.checkpoints if own else seeds.foreign_checkpoints
            mems = seeds.memories if own else seeds.foreign_memories
            batches = seeds.batches if own else seeds.foreign_batches
            for r in range(2):
                run_id = f"{prefix}{r}" if own else f"foreign-{r}"
                await ok("start_run", {"objective": f"fix bug {r} in the parser",
                                       "run_id": run_id, "pinned": ["use python 3.11"]})
                runs.append(run_id)
                for i in range(6):
                    await ok("record_step", {
                        "run_id": run_id, "tool": "bash", "input": {"cmd": f"pytest -k {i}"},
                        "output": f"{i} passed", "idempotency_key": f"k{i}",
                    })
                    if i in (2, 4):
                        cp = await ok("checkpoint", {"run_id": run_id,
                                                     "progress": [f"ran {i} tests"]})
                        cps.append(cp["checkpoint_id"])
            proposal = await ok("propose_memory", {"run_id": runs[0], "items": [
                {"content": "The parser fails on NEAR and OR keywords", "scope": "global"},
                {"content": "Deploys need a green CI run", "kind": "procedure",
                 "scope": "project:web"},
                {"content": "Caches expire after 30 minutes", "kind": "fact"},
            ]})
            done = await ok("commit_memory", {"batch_id": proposal["batch_id"]})
            mems.extend(done["memory_ids"].values())
            for _ in range(3):
                pending = await ok("propose_memory", {"items": [
                    {"content": "The login test is flaky under load"},
                    {"op": "deprecate", "target_id": mems[-1]},
                ]})
                batches.append(pending["batch_id"])

    portal.call(seed)


@contextmanager
def live_server(data_dir: Path) -> Iterator[FuzzServer]:
    """A fuzzable server on a fresh SQLite file in ``data_dir``, seeded for its tenant and
    for an intruder tenant; the store's invariants are checked when the block ends."""
    with ExitStack() as stack:
        portal = stack.enter_context(start_blocking_portal())
        settings = fuzz_settings(data_dir)
        seeds, model = Seeds(), SamplingModel()
        _seed(portal, fuzz_settings(data_dir, INTRUDER), seeds, own=False)
        _seed(portal, settings, seeds, own=True)
        intruder = tenant_snapshot(data_dir / "mcp-checkpoint.db", INTRUDER)
        client = Client(build_server(settings), sampling_callback=model)
        connected = stack.enter_context(portal.wrap_async_context_manager(client))
        fuzz = FuzzServer(portal, connected, model, data_dir)
        fuzz.seeds = seeds
        listed = portal.call(fuzz.client.list_tools)
        fuzz.schemas = {t.name: t.output_schema or {} for t in listed.tools}
        yield fuzz
        check_store(portal, data_dir, fuzz)
        after = tenant_snapshot(fuzz.db_path, INTRUDER)
        if after != intruder:
            raise InvariantError(f"another tenant's data changed: {intruder} -> {after}")
        if os.environ.get("FUZZ_STATS"):
            report = ", ".join(f"{t}/{o}={n}" for (t, o), n in sorted(fuzz.outcomes.items()))
            print(f"\nfuzz outcomes ({fuzz.calls} calls): {report}", file=sys.stderr)
            if os.environ["FUZZ_STATS"] == "2":
                for (tool, text), n in fuzz.messages.most_common(12):
                    print(f"  {n:4d} {tool}: {text!r}", file=sys.stderr)


def _rows(
    conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()
) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in conn.execute(sql, params).fetchall()]


def tenant_snapshot(db_path: Path, tenant: str) -> list[tuple[Any, ...]]:
    """Everything a tenant owns, in a comparable form (nothing of it may change while
    another tenant's client does anything at all)."""
    conn = sqlite3.connect(db_path)
    try:
        return [
            *_rows(conn, "SELECT * FROM runs WHERE tenant = ? ORDER BY run_id", (tenant,)),
            *_rows(conn, "SELECT run_id, seq, hash FROM steps WHERE tenant = ? "
                         "ORDER BY run_id, seq", (tenant,)),
            *_rows(conn, "SELECT checkpoint_id, content FROM checkpoints WHERE tenant = ? "
                         "ORDER BY checkpoint_id", (tenant,)),
            *_rows(conn, "SELECT batch_id, status FROM proposals WHERE tenant = ? "
                         "ORDER BY batch_id", (tenant,)),
            *_rows(conn, "SELECT memory_id, content, status, version FROM memories "
                         "WHERE tenant = ? ORDER BY memory_id", (tenant,)),
        ]
    finally:
        conn.close()


def check_db(db_path: Path) -> None:
    """The invariants of the SQLite file itself (raises InvariantError)."""
    conn = sqlite3.connect(db_path)
    try:
        problems: list[str] = []

        def expect_none(what: str, sql: str) -> None:
            found = _rows(conn, sql)
            if found:
                problems.append(f"{what}: {found[:5]}")

        integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        if integrity != ["ok"]:
            problems.append(f"integrity_check: {integrity[:5]}")
        expect_none("foreign key violations", "PRAGMA foreign_key_check")
        try:  # FTS5 checks its index against the memories table (external content)
            conn.execute("INSERT INTO memories_fts (memories_fts, rank) "
                         "VALUES ('integrity-check', 1)")
        except sqlite3.DatabaseError as exc:
            problems.append(f"memories_fts integrity-check: {exc}")
        expect_none("steps without a run",
                    "SELECT tenant, run_id, seq FROM steps s WHERE NOT EXISTS "
                    "(SELECT 1 FROM runs r WHERE r.tenant = s.tenant AND r.run_id = s.run_id)")
        expect_none("checkpoints without a run",
                    "SELECT tenant, run_id, checkpoint_id FROM checkpoints c WHERE NOT EXISTS "
                    "(SELECT 1 FROM runs r WHERE r.tenant = c.tenant AND r.run_id = c.run_id)")
        expect_none("proposals of an unknown run",
                    "SELECT tenant, batch_id FROM proposals p WHERE run_id IS NOT NULL AND "
                    "NOT EXISTS (SELECT 1 FROM runs r WHERE r.tenant = p.tenant "
                    "AND r.run_id = p.run_id)")
        expect_none("vectors without a memory",
                    "SELECT tenant, memory_id FROM vectors v WHERE NOT EXISTS "
                    "(SELECT 1 FROM memories m WHERE m.tenant = v.tenant "
                    "AND m.memory_id = v.memory_id)")
        expect_none("memories of an uncommitted batch",
                    "SELECT tenant, memory_id FROM memories m WHERE batch_id IS NOT NULL AND "
                    "NOT EXISTS (SELECT 1 FROM proposals p WHERE p.tenant = m.tenant AND "
                    "p.batch_id = m.batch_id AND p.status = 'committed')")
        expect_none("superseded by an unknown memory",
                    "SELECT tenant, memory_id FROM memories m WHERE superseded_by IS NOT NULL "
                    "AND NOT EXISTS (SELECT 1 FROM memories o WHERE o.tenant = m.tenant AND "
                    "o.memory_id = m.superseded_by)")
        expect_none("FTS rows without a memory",
                    "SELECT rowid FROM memories_fts_docsize d WHERE NOT EXISTS "
                    "(SELECT 1 FROM memories m WHERE m.id = d.id)")
        expect_none("memories missing from FTS",
                    "SELECT id FROM memories m WHERE NOT EXISTS "
                    "(SELECT 1 FROM memories_fts_docsize d WHERE d.id = m.id)")
        # Ledgers: seq 1..head_seq without a gap, and the run's counters agree.
        expect_none("ledger not contiguous",
                    "SELECT r.tenant, r.run_id, r.head_seq, count(s.seq), min(s.seq), "
                    "max(s.seq) FROM runs r LEFT JOIN steps s ON s.tenant = r.tenant AND "
                    "s.run_id = r.run_id GROUP BY r.tenant, r.run_id HAVING "
                    "count(s.seq) != r.head_seq OR r.step_count != r.head_seq OR "
                    "(r.head_seq > 0 AND (min(s.seq) != 1 OR max(s.seq) != r.head_seq))")
        expect_none("cumulative tokens out of step",
                    "SELECT s.tenant, s.run_id, s.seq FROM steps s JOIN steps p ON "
                    "p.tenant = s.tenant AND p.run_id = s.run_id AND p.seq = s.seq - 1 "
                    "WHERE s.cum_tokens != p.cum_tokens + s.tokens OR s.prev_hash != p.hash")
        expect_none("duplicate idempotency keys",
                    "SELECT tenant, run_id, idempotency_key FROM steps WHERE idempotency_key "
                    "IS NOT NULL GROUP BY tenant, run_id, idempotency_key HAVING count(*) > 1")
        # Checkpoints: numbered 1..checkpoint_count, the latest is the run's, and coverage
        # never moves backwards nor past the head.
        expect_none("checkpoints not numbered 1..checkpoint_count",
                    "SELECT r.tenant, r.run_id FROM runs r LEFT JOIN checkpoints c ON "
                    "c.tenant = r.tenant AND c.run_id = r.run_id GROUP BY r.tenant, r.run_id "
                    "HAVING count(c.number) != r.checkpoint_count OR "
                    "coalesce(max(c.number), 0) != r.checkpoint_count")
        expect_none("latest checkpoint mismatch",
                    "SELECT r.tenant, r.run_id FROM runs r LEFT JOIN checkpoints c ON "
                    "c.tenant = r.tenant AND c.run_id = r.run_id AND "
                    "c.checkpoint_id = r.latest_checkpoint_id WHERE "
                    "(r.latest_checkpoint_id IS NULL) != (r.checkpoint_count = 0) OR "
                    "(r.latest_checkpoint_id IS NOT NULL AND (c.number IS NOT r.checkpoint_count"
                    " OR c.through_seq IS NOT r.covered_seq))")
        expect_none("coverage out of range",
                    "SELECT c.tenant, c.run_id, c.number FROM checkpoints c JOIN runs r ON "
                    "r.tenant = c.tenant AND r.run_id = c.run_id WHERE c.through_seq < 0 OR "
                    "c.through_seq > c.head_seq OR c.head_seq > r.head_seq")
        expect_none("coverage moved backwards",
                    "SELECT c.tenant, c.run_id, c.number FROM checkpoints c JOIN checkpoints p "
                    "ON p.tenant = c.tenant AND p.run_id = c.run_id AND p.number = c.number - 1 "
                    "WHERE c.through_seq < p.through_seq OR c.parent_id IS NOT p.checkpoint_id")
        expect_none("covered tokens mismatch",
                    "SELECT r.tenant, r.run_id FROM runs r WHERE r.covered_tokens != "
                    "coalesce((SELECT cum_tokens FROM steps s WHERE s.tenant = r.tenant AND "
                    "s.run_id = r.run_id AND s.seq = r.covered_seq), 0)")
        expect_none("proposals whose memories are missing",
                    "SELECT p.tenant, p.batch_id, j.value FROM proposals p, "
                    "json_each(p.memory_ids) j WHERE NOT EXISTS (SELECT 1 FROM memories m "
                    "WHERE m.tenant = p.tenant AND m.memory_id = j.value)")
        expect_none("invalid JSON columns",
                    "SELECT 'step', tenant, run_id, seq FROM steps WHERE NOT json_valid(input) "
                    "OR NOT json_valid(output) OR NOT json_valid(ack) UNION ALL "
                    "SELECT 'checkpoint', tenant, run_id, number FROM checkpoints WHERE NOT "
                    "json_valid(content) UNION ALL SELECT 'proposal', tenant, batch_id, 0 FROM "
                    "proposals WHERE NOT json_valid(items)")
        if problems:
            raise InvariantError("; ".join(problems))
    finally:
        conn.close()


async def verify_chains(db_path: Path, data_dir: Path) -> list[tuple[str, str, int]]:
    """Verify the hash chain of every run of every tenant through the store (raises
    InvariantError); (tenant, run_id, steps) of each."""
    conn = sqlite3.connect(db_path)
    try:
        runs = _rows(conn, "SELECT tenant, run_id FROM runs ORDER BY tenant, run_id")
    finally:
        conn.close()
    store = SqliteStore(db_path, fuzz_settings(data_dir).sqlite)
    await store.open()
    verified: list[tuple[str, str, int]] = []
    try:
        for tenant, run_id in runs:
            try:
                steps = await verify_run(store, Tenant(tenant), RunId(run_id))
            except ChainBreak as exc:
                raise InvariantError(f"run {tenant}/{run_id}: {exc}") from exc
            verified.append((tenant, run_id, steps))
    finally:
        await store.close()
    return verified


def check_rehydrate(fuzz: FuzzServer) -> None:
    """Every run of the caller rehydrates within its budget (and a tight one)."""
    conn = sqlite3.connect(fuzz.db_path)
    try:
        runs = _rows(conn, "SELECT run_id, budget_tokens FROM runs WHERE tenant = ?", (LOCAL,))
    finally:
        conn.close()
    tokenizer = HeuristicTokenizer()
    for run_id, budget in runs:
        for asked in (None, 128):
            args: dict[str, Any] = {"run_id": run_id}
            if asked is not None:
                args["budget_tokens"] = asked
            context = fuzz.ok("rehydrate", args)
            limit = budget if asked is None else asked
            if context["budget_tokens"] != limit or context["tokens"] > limit:
                raise InvariantError(f"rehydrate {run_id}: {context['tokens']} > {limit}")
            if tokenizer.count(context["context"]) > limit:
                raise InvariantError(f"rehydrate {run_id}: its text is over {limit} tokens")


def check_store(portal: BlockingPortal, data_dir: Path, fuzz: FuzzServer | None = None) -> None:
    """Every invariant: the file, the hash chains, and (with a client) rehydrate."""
    db_path = data_dir / "mcp-checkpoint.db"
    check_db(db_path)
    portal.call(verify_chains, db_path, data_dir)
    if fuzz is not None:
        check_rehydrate(fuzz)


def dump(value: Any) -> str:
    """A short printable form of a value for failure messages."""
    try:
        text = json.dumps(value, default=repr, ensure_ascii=True)
    except (RecursionError, ValueError):
        return "<nested too deep to print>"
    return text if len(text) < 400 else text[:400] + "..."
