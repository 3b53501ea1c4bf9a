"""Several real `mcp-checkpoint serve` processes on one store: no lost or doubled writes.

Every test runs once per entry of ``STORE_SPECS``. Each worker is its own server process
(stdio), so identity, ordering and races are decided by the store, never by one process's
memory. Each test is bounded (``anyio.fail_after``) and takes seconds.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp_types import CallToolResult, TextContent

from tests._postgres import create_database, database_url, drop_database, require_postgres
from tests.e2e.conftest import SERVER, run_cli, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

WORKERS = 4
LIMIT_SECONDS = 90


@dataclass(frozen=True)
class StoreSpec:
    """A store that several server processes share: ``open(tmp_path)`` is a context
    manager yielding the environment that points a server at it (set up on enter, torn
    down on exit)."""

    name: str
    open: Callable[[Path], AbstractContextManager[dict[str, str]]]


@contextmanager
def _sqlite(tmp_path: Path) -> Iterator[dict[str, str]]:
    yield {"MCP_CHECKPOINT_STORE_URL": f"sqlite:///{tmp_path / 'shared' / 'store.db'}"}


@contextmanager
def _postgres(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL database for this test (dropped after it); unreachable
    PostgreSQL skips the test, or fails it in CI (``tests._postgres.require_postgres``)."""
    require_postgres()
    name = create_database("mcpck_mp")
    try:
        yield {"MCP_CHECKPOINT_STORE_URL": database_url(name)}
    finally:
        drop_database(name)


# The stores these tests run on: every test runs on each.
STORE_SPECS = [
    pytest.param(StoreSpec("sqlite", _sqlite), id="sqlite"),
    pytest.param(StoreSpec("postgres", _postgres), id="postgres"),
]


@pytest.fixture(params=STORE_SPECS)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of every server process of a test: one shared store."""
    spec: StoreSpec = request.param
    with spec.open(tmp_path) as extra:
        yield server_env(tmp_path / "data", **extra)


def params(env: dict[str, str]) -> StdioServerParameters:
    return StdioServerParameters(command=str(SERVER), args=["serve"], env=env)


def text_of(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


async def call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content


async def read_json(client: Client, uri: str) -> Any:
    content = (await client.read_resource(uri)).contents[0]
    return json.loads(content.text)  # type: ignore[union-attr]


async def ledger(client: Client, run_id: str) -> list[dict[str, Any]]:
    """Every step of the run, oldest first (paging through ledger://)."""
    steps: list[dict[str, Any]] = []
    cursor = "0"
    while cursor is not None:
        page = await read_json(client, f"ledger://{run_id}?cursor={cursor}&limit=500")
        steps += page["steps"]
        cursor = page["next_cursor"]
    return steps


async def in_parallel(
    workers: int,
    body: Callable[[int, Client], Awaitable[None]],
    env: dict[str, str],
    ready: anyio.Event | None = None,
) -> None:
    """Start ``workers`` server processes, wait until every one is initialised (then set
    ``ready``), then run ``body(worker, client)`` in all of them at once."""
    ready = ready or anyio.Event()
    started = 0

    async def worker(index: int) -> None:
        nonlocal started
        async with Client(params(env)) as client:
            started += 1
            if started == workers:
                ready.set()
            await ready.wait()
            await body(index, client)

    with anyio.fail_after(LIMIT_SECONDS):
        async with anyio.create_task_group() as tg:
            for index in range(workers):
                tg.start_soon(worker, index)


async def verify_cli(env: dict[str, str], run_id: str) -> str:
    code, out, err = await run_cli("runs", "verify", run_id, env=env)
    assert code == 0, out + err
    return out


async def test_record_step_from_four_processes_loses_and_doubles_nothing(
    env: dict[str, str],
) -> None:
    per_worker = 25
    acked: dict[str, int] = {}

    async def record(worker: int, client: Client) -> None:
        last = 0
        for i in range(per_worker):
            key = f"w{worker}-{i}"
            args = {"run_id": "shared", "tool": "t", "input": key, "idempotency_key": key}
            ack = await call(client, "record_step", args)
            assert ack["seq"] > last  # each process sees its own steps in order
            last = acked[key] = ack["seq"]
            if i % 10 == 0:  # a retry from the same process must not write again
                again = await call(client, "record_step", args)
                assert (again["duplicate"], again["seq"]) == (True, ack["seq"])

    async with Client(params(env)) as main:
        await call(main, "start_run", {"objective": "share", "run_id": "shared"})
        await in_parallel(WORKERS, record, env)
        steps = await ledger(main, "shared")
        run = await read_json(main, "run://shared")

    total = WORKERS * per_worker
    assert sorted(acked.values()) == list(range(1, total + 1))
    assert [s["seq"] for s in steps] == list(range(1, total + 1))  # strictly increasing
    # Every acknowledged step is stored exactly once, at the seq its ack gave.
    assert {s["input"]: s["seq"] for s in steps} == acked
    assert run["step_count"] == run["head_seq"] == total
    assert f"ok — {total} steps" in await verify_cli(env, "shared")


async def test_the_same_batch_committed_from_two_processes_is_written_once(
    env: dict[str, str],
) -> None:
    rounds = 5
    outcomes: dict[str, list[CallToolResult]] = {}

    async def commit(worker: int, client: Client) -> None:
        for batch_id in outcomes:
            outcomes[batch_id].append(
                await client.call_tool("commit_memory", {"batch_id": batch_id})
            )

    async with Client(params(env)) as main:
        for r in range(rounds):
            batch = await call(main, "propose_memory", {
                "items": [{"content": f"Deploys go through staging, variant {r}"}],
            })
            outcomes[batch["batch_id"]] = []
        await in_parallel(2, commit, env)
        stored: dict[str, Any] = {}
        for batch_id, results in outcomes.items():
            wins = [r.structured_content for r in results if not r.is_error]
            losses = [text_of(r) for r in results if r.is_error]
            assert len(wins) == 1 and len(losses) == 1, results
            assert losses[0].startswith("conflict:"), losses[0]
            assert wins[0] is not None and wins[0]["status"] == "committed"
            memory_id = wins[0]["memory_ids"]["0"]
            stored[batch_id] = await read_json(main, f"memory://{memory_id}")
        hits = await call(main, "search_memory", {"query": "deploys staging", "k": 50})

    assert {batch_id: m["batch_id"] for batch_id, m in stored.items()} == {
        b: b for b in outcomes
    }
    # One memory per batch: the losing commit wrote nothing.
    assert len(hits["hits"]) == rounds


async def test_the_same_idempotency_key_from_two_processes_records_one_step(
    env: dict[str, str],
) -> None:
    keys = 15
    acks: dict[str, list[dict[str, Any]]] = {f"k{i}": [] for i in range(keys)}

    async def record(worker: int, client: Client) -> None:
        for key in acks:
            args = {"run_id": "r", "tool": "t", "input": key, "idempotency_key": key}
            acks[key].append(await call(client, "record_step", args))

    async with Client(params(env)) as main:
        await call(main, "start_run", {"objective": "retry", "run_id": "r"})
        await in_parallel(2, record, env)
        steps = await ledger(main, "r")

    for key, pair in acks.items():
        assert len(pair) == 2
        assert pair[0]["seq"] == pair[1]["seq"], key  # both got the same step
        assert sorted(a["duplicate"] for a in pair) == [False, True], key
    assert sorted(s["input"] for s in steps) == sorted(acks)
    assert [s["seq"] for s in steps] == list(range(1, keys + 1))
    assert f"ok — {keys} steps" in await verify_cli(env, "r")


async def test_a_checkpoint_racing_with_record_step_leaves_later_steps_in_working_memory(
    env: dict[str, str],
) -> None:
    steps_per_writer, checkpoints, tail = 30, 6, 3
    acked: list[int] = []
    taken: list[dict[str, Any]] = []
    # Checkpoint n is taken once 8 * (n + 1) steps are acknowledged, while the writers go
    # on; each writer holds its last `tail` steps until every checkpoint is in, so steps
    # are recorded both during and after the checkpoints.
    reached = [anyio.Event() for _ in range(checkpoints)]
    checkpoints_done = anyio.Event()

    async def work(worker: int, client: Client) -> None:
        if worker == 0:  # the checkpointer: through the head it saw, while steps land
            for n in range(checkpoints):
                await reached[n].wait()
                run = await read_json(client, "run://race")
                taken.append(await call(client, "checkpoint", {
                    "run_id": "race", "through_seq": run["head_seq"],
                    "progress": [f"checkpoint {n} through {run['head_seq']}"],
                }))
            checkpoints_done.set()
            return
        for i in range(steps_per_writer):
            if i == steps_per_writer - tail:
                await checkpoints_done.wait()
            ack = await call(client, "record_step", {
                "run_id": "race", "tool": "t", "input": f"w{worker}-{i}",
            })
            acked.append(ack["seq"])
            for n, event in enumerate(reached):
                if len(acked) >= 8 * (n + 1):
                    event.set()

    async with Client(params(env)) as main:
        await call(main, "start_run", {
            "objective": "race", "run_id": "race", "budget_tokens": 200_000,
        })
        await in_parallel(3, work, env)
        run = await read_json(main, "run://race")
        latest = await read_json(main, "checkpoint://race/latest")
        context = await call(main, "rehydrate", {"run_id": "race", "budget_tokens": 200_000})
        steps = await ledger(main, "race")

    head = 2 * steps_per_writer
    assert sorted(acked) == list(range(1, head + 1))
    assert len(taken) == checkpoints
    through = latest["through_seq"]
    assert latest["checkpoint_id"] == taken[-1]["checkpoint_id"]
    assert run["head_seq"] == head and run["covered_seq"] == through
    # Nothing recorded after through_seq was swallowed by the checkpoint.
    assert run["working_steps"] == head - through >= 2 * tail
    assert context["through_seq"] == through
    assert context["steps_included"] == list(range(through + 1, head + 1))
    assert [s["seq"] for s in steps] == list(range(1, head + 1))
    # Every checkpoint's progress survived the merges.
    for n in range(checkpoints):
        assert any(p.startswith(f"checkpoint {n} ") for p in latest["content"]["progress"])


async def test_runs_prune_beside_writing_servers_touches_only_the_finished_run(
    env: dict[str, str],
) -> None:
    per_worker = 40

    async def record(worker: int, client: Client) -> None:
        for i in range(per_worker):
            await call(client, "record_step", {"run_id": "live", "tool": "t", "input": i})

    async def prune() -> tuple[int, str, str]:
        return await run_cli("runs", "prune", "--older-than", "0s", "--apply", "--json",
                             env=env)

    async with Client(params(env)) as main:
        await call(main, "start_run", {"objective": "finished", "run_id": "done"})
        for i in range(30):
            await call(main, "record_step", {"run_id": "done", "tool": "t", "input": i})
            if i % 10 == 9:
                await call(main, "checkpoint", {"run_id": "done", "progress": [f"step {i}"]})
        await call(main, "update_run", {"run_id": "done", "status": "completed"})
        await call(main, "start_run", {"objective": "live", "run_id": "live"})
        with anyio.fail_after(LIMIT_SECONDS):
            async with anyio.create_task_group() as tg:
                writing = anyio.Event()
                tg.start_soon(in_parallel, 2, record, env, writing)
                await writing.wait()  # prune while both servers are recording
                code, out, err = await prune()
        live = await read_json(main, "run://live")
        done = await read_json(main, "run://done")
        context = await call(main, "rehydrate", {"run_id": "done"})

    assert code == 0, err
    report = json.loads(out)
    assert [(r["run_id"], r["steps_removed"]) for r in report["runs"]] == [("done", 30)]
    assert (done["pruned_seq"], done["head_seq"], done["status"]) == (30, 30, "completed")
    assert "step 9" in context["context"]  # the kept checkpoint still carries it
    assert live["head_seq"] == 2 * per_worker and live["pruned_seq"] == 0
    assert "ok — 0 steps (1–30 pruned)" in await verify_cli(env, "done")
    assert f"ok — {2 * per_worker} steps" in await verify_cli(env, "live")


async def test_update_run_with_a_stale_expected_version_from_another_process_conflicts(
    env: dict[str, str],
) -> None:
    """Two agents read the run at one version; the first update wins, the second is refused
    with the current version named, and the run keeps the first one's change."""
    read_at: dict[int, int] = {}
    answers: dict[int, CallToolResult] = {}
    first_done = anyio.Event()

    async def update(worker: int, client: Client) -> None:
        read_at[worker] = (await read_json(client, "run://shared"))["version"]
        if worker == 1:
            await first_done.wait()  # worker 1 read before worker 0 wrote
        answers[worker] = await client.call_tool("update_run", {
            "run_id": "shared", "pinned": [f"from worker {worker}"],
            "expected_version": read_at[worker],
        })
        if worker == 0:
            first_done.set()

    async with Client(params(env)) as main:
        await call(main, "start_run", {"objective": "share", "run_id": "shared"})
        await in_parallel(2, update, env)
        run = await read_json(main, "run://shared")

    assert read_at == {0: 1, 1: 1}
    assert not answers[0].is_error and answers[0].structured_content is not None
    assert answers[0].structured_content["version"] == 2
    assert answers[1].is_error
    assert text_of(answers[1]).startswith("conflict: run shared is at version 2, not")
    assert (run["version"], run["pinned"]) == (2, ["from worker 0"])
