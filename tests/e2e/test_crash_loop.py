"""Crash loop: ``mcp-checkpoint serve`` is SIGKILLed at random moments, over and over, while
clients record steps, checkpoint and commit memories. After every restart, every write
that was acknowledged is there, the file is sound, the ledger's hash chain verifies and
rehydrate stays within its budget.

The kill moments come from a seeded generator (``CRASH_LOOP_SEED`` picks another
sequence), so a failure replays with the same seed; what is in flight at each kill still
varies with scheduling, which is the point.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_types import CallToolResult, TextResourceContents

from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.ledger import verify_run
from mcp_checkpoint.core.models import RunId, Tenant
from mcp_checkpoint.core.tokens import HeuristicTokenizer
from mcp_checkpoint.storage.sqlite import SqliteStore
from tests.e2e.conftest import StdioServer, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.slow]

KILLS = 20
SEED = int(os.environ.get("CRASH_LOOP_SEED", "20261202"))
RUN = "crashloop"
BUDGET = 400


@dataclass
class Acked:
    """Everything the server acknowledged, across all its lives."""

    steps: dict[str, int] = field(default_factory=dict)  # idempotency key -> seq
    checkpoints: list[str] = field(default_factory=list)
    memories: dict[str, str] = field(default_factory=dict)  # memory id -> content
    in_flight: list[int] = field(default_factory=list)  # step numbers sent, unanswered
    next_step: int = 0
    kills: int = 0


def step_args(i: int) -> dict[str, Any]:
    """The i-th step; a retry sends exactly the same arguments."""
    return {
        "run_id": RUN,
        "tool": "edit_file",
        "input": {"path": f"src/mod_{i % 17}.py", "change": i},
        "output": f"edited line {i}",
        "status": "error" if i % 23 == 0 else "ok",
        "idempotency_key": f"step-{i}",
    }


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def read_json(client: Client, uri: str) -> dict[str, Any]:
    content = (await client.read_resource(uri)).contents[0]
    assert isinstance(content, TextResourceContents)
    data: dict[str, Any] = json.loads(content.text)
    return data


async def ledger(client: Client) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    cursor = 0
    while True:
        page = await read_json(client, f"ledger://{RUN}?cursor={cursor}&limit=500")
        steps += page["steps"]
        if page["next_cursor"] is None:
            return steps
        cursor = int(page["next_cursor"])


async def verify_restarted(client: Client, acked: Acked, data_dir: Path) -> None:
    """What must hold after a restart (before any new write)."""
    steps = await ledger(client)
    seqs = [step["seq"] for step in steps]
    assert seqs == list(range(1, len(steps) + 1)), "the ledger has a gap"
    by_key = {step["idempotency_key"]: step["seq"] for step in steps}
    assert len(by_key) == len(steps), "a step was recorded twice"
    lost = {key: seq for key, seq in acked.steps.items() if by_key.get(key) != seq}
    assert not lost, f"acknowledged steps lost or moved after kill {acked.kills}: {lost}"
    run = await read_json(client, f"run://{RUN}")
    assert run["head_seq"] == run["step_count"] == len(steps)

    for checkpoint_id in acked.checkpoints:
        found = await read_json(client, f"checkpoint://{RUN}/{checkpoint_id}")
        assert found["checkpoint_id"] == checkpoint_id
    if acked.checkpoints:
        assert run["latest_checkpoint_id"] is not None
    for memory_id, content in acked.memories.items():
        found = await read_json(client, f"memory://{memory_id}")
        assert found["content"] == content

    tokenizer = HeuristicTokenizer()
    for budget in (None, 128):
        args: dict[str, Any] = {"run_id": RUN}
        if budget is not None:
            args["budget_tokens"] = budget
        context = structured(await client.call_tool("rehydrate", args))
        limit = budget or BUDGET
        assert context["tokens"] <= limit
        assert tokenizer.count(context["context"]) <= limit

    # The file itself, read by this process while the server has it open (WAL).
    db = sqlite3.connect(data_dir / "mcp-checkpoint.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        db.execute("INSERT INTO memories_fts (memories_fts, rank) VALUES ('integrity-check', 1)")
    finally:
        db.close()
    store = SqliteStore(data_dir / "mcp-checkpoint.db", Settings(data_dir=data_dir).sqlite)
    await store.open()
    try:
        assert await verify_run(store, Tenant("local"), RunId(RUN)) == len(steps)
    finally:
        await store.close()

    # Calls cut by the kill: a retry answers from the ledger or records the step now, once.
    for i in acked.in_flight:
        ack = structured(await client.call_tool("record_step", step_args(i)))
        key = f"step-{i}"
        if key in by_key:
            assert ack["duplicate"] is True and ack["seq"] == by_key[key]
        else:
            assert ack["duplicate"] is False
        acked.steps[key] = ack["seq"]
    acked.in_flight.clear()


async def load(client: Client, acked: Acked, killed: anyio.Event, rng: random.Random) -> None:
    """Writers until the kill: two step recorders, a checkpointer, a memory committer."""

    async def guarded(call: Any) -> Any:
        try:
            result = await call
        except Exception:
            if not killed.is_set():
                raise
            return None
        if result.is_error:
            assert killed.is_set(), result.content  # before the kill, an error is a bug
            return None
        return result

    async def recorder() -> None:
        while not killed.is_set():
            i = acked.next_step
            acked.next_step += 1
            acked.in_flight.append(i)
            result = await guarded(client.call_tool("record_step", step_args(i)))
            if result is None:
                return
            acked.in_flight.remove(i)
            acked.steps[f"step-{i}"] = structured(result)["seq"]

    async def checkpointer() -> None:
        n = 0
        while not killed.is_set():
            await anyio.sleep(rng.uniform(0.005, 0.03))
            n += 1
            args = {"run_id": RUN, "progress": [f"kill {acked.kills}: pass {n}"],
                    "state": {"kills": acked.kills, "pass": n}}
            result = await guarded(client.call_tool("checkpoint", args))
            if result is None:
                return
            acked.checkpoints.append(structured(result)["checkpoint_id"])

    async def memorizer() -> None:
        n = 0
        while not killed.is_set():
            n += 1
            content = f"Crash {acked.kills} lesson {n}: retry writes with their key"
            proposed = await guarded(client.call_tool(
                "propose_memory", {"items": [{"content": content, "kind": "lesson"}]}
            ))
            if proposed is None:
                return
            batch_id = structured(proposed)["batch_id"]
            committed = await guarded(client.call_tool("commit_memory", {"batch_id": batch_id}))
            if committed is None:
                return
            for memory_id in structured(committed)["memory_ids"].values():
                acked.memories[memory_id] = content

    async with anyio.create_task_group() as tg:
        for worker in (recorder, recorder, checkpointer, memorizer):
            tg.start_soon(worker)


async def test_sigkill_at_random_moments_loses_no_acknowledged_write(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    data_dir = tmp_path / "data"
    env = server_env(data_dir, MCP_CHECKPOINT_LOG_LEVEL="WARNING")
    acked = Acked()

    with anyio.fail_after(150):
        async with Client(StdioServer(env, tmp_path / "stderr-0.log")) as client:
            structured(await client.call_tool(
                "start_run",
                {"objective": "survive the crash loop", "run_id": RUN, "budget_tokens": BUDGET},
            ))
        for life in range(1, KILLS + 1):
            transport = StdioServer(env, tmp_path / f"stderr-{life}.log")
            async with Client(transport) as client:
                await verify_restarted(client, acked, data_dir)
                killed = anyio.Event()
                delay = rng.uniform(0.02, 0.4)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(load, client, acked, killed, rng)
                    await anyio.sleep(delay)
                    killed.set()
                    transport.process.kill()  # SIGKILL, calls in flight
            assert transport.process.returncode == -9, transport.stderr_tail()
            acked.kills += 1
        async with Client(StdioServer(env, tmp_path / "stderr-last.log")) as client:
            await verify_restarted(client, acked, data_dir)

    assert acked.kills == KILLS
    # The loop did real work in between the kills.
    assert len(acked.steps) >= 5 * KILLS
    assert len(acked.checkpoints) >= KILLS // 2
    assert len(acked.memories) >= KILLS // 2
