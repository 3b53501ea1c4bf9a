"""SQLite group commit: steps recorded together share one transaction, and each caller still
gets its own outcome (its step durable, or its own error) only after that COMMIT."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_checkpoint.config import SqliteSettings
from mcp_checkpoint.core.ledger import verify_run
from mcp_checkpoint.core.models import RunId, StepAck
from mcp_checkpoint.errors import BackendError, ConflictError, NotFoundError
from mcp_checkpoint.storage.sqlite import SqliteStore
from mcp_checkpoint.storage.sqlite._db import ALONE
from tests.contract.conftest import TENANT_A, Clock, append, draft, make_run

pytestmark = pytest.mark.anyio

RUNS = 4
STEPS_PER_RUN = 8


def _commits(store: SqliteStore) -> list[str]:
    """Start recording the COMMITs the store's connection runs."""
    seen: list[str] = []
    conn = store._conn
    assert conn is not None

    def trace(sql: str) -> None:
        if sql.strip().upper() == "COMMIT":
            seen.append(sql)

    conn.set_trace_callback(trace)
    return seen


async def _open(path: Path, **settings: Any) -> SqliteStore:
    store = SqliteStore(path, SqliteSettings(**settings))
    await store.open()
    return store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = await _open(tmp_path / "store.db")
    try:
        yield store
    finally:
        await store.close()


@pytest.mark.parametrize("group_commit", [True, False])
async def test_steps_recorded_together_are_stored_in_order_with_valid_chains(
    tmp_path: Path, clock: Clock, group_commit: bool
) -> None:
    store = await _open(tmp_path / "store.db", group_commit=group_commit)
    try:
        for r in range(RUNS):
            await store.create_run(TENANT_A, make_run(f"r{r}"))
        commits = _commits(store)
        acks: list[tuple[int, int, StepAck]] = []

        async def record(r: int, n: int) -> None:
            acks.append((r, n, await append(store, f"r{r}", draft(n), now=clock())))

        async with anyio.create_task_group() as group:
            for n in range(STEPS_PER_RUN):
                for r in range(RUNS):
                    group.start_soon(record, r, n)

        total = RUNS * STEPS_PER_RUN
        assert len(acks) == total
        if group_commit:
            assert len(commits) < total  # 32 steps arrived together: far fewer fsyncs
        else:
            assert len(commits) == total
        for r in range(RUNS):
            run_id = RunId(f"r{r}")
            steps = await store.get_steps(TENANT_A, run_id, limit=100)
            assert [s.seq for s in steps] == list(range(1, STEPS_PER_RUN + 1))
            # Each acknowledgement names the seq that holds its own step.
            by_seq = {s.seq: s for s in steps}
            for ack_run, n, ack in acks:
                if ack_run == r:
                    assert by_seq[ack.seq].output == f"out {n}"
            assert await verify_run(store, TENANT_A, run_id) == STEPS_PER_RUN
        assert await store.integrity_check() == "ok"
    finally:
        await store.close()


async def test_one_failing_step_in_a_group_does_not_fail_the_others(
    store: SqliteStore, clock: Clock
) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    await append(store, "r1", draft(0, key="used"), now=clock())
    commits = _commits(store)
    outcomes: dict[str, object] = {}

    async def record(name: str, run_id: str, n: int, key: str | None = None) -> None:
        try:
            outcomes[name] = await append(store, run_id, draft(n, key=key), now=clock())
        except Exception as exc:  # the outcome is what the test checks
            outcomes[name] = exc

    async with anyio.create_task_group() as group:
        group.start_soon(record, "first", "r1", 1)
        group.start_soon(record, "missing run", "nope", 2)
        group.start_soon(record, "reused key", "r1", 3, "used")  # same key, other request
        group.start_soon(record, "last", "r1", 4)

    assert isinstance(outcomes["missing run"], NotFoundError)
    assert isinstance(outcomes["reused key"], ConflictError)
    first, last = outcomes["first"], outcomes["last"]
    assert isinstance(first, StepAck) and isinstance(last, StepAck)
    assert (first.seq, last.seq) == (2, 3)  # the failed ones took no seq
    assert len(commits) == 1
    steps = await store.get_steps(TENANT_A, RunId("r1"), limit=10)
    assert [s.output for s in steps] == ["out 0", "out 1", "out 4"]
    assert await verify_run(store, TENANT_A, RunId("r1")) == 3


async def test_a_step_cancelled_before_its_group_commits_is_not_stored(
    store: SqliteStore, clock: Clock
) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    cancelled = asyncio.ensure_future(append(store, "r1", draft(1), now=clock()))
    kept = asyncio.ensure_future(append(store, "r1", draft(2), now=clock()))
    await asyncio.sleep(0)  # both are now waiting for their group's commit
    assert not cancelled.done()
    cancelled.cancel()

    ack = await kept
    with pytest.raises(asyncio.CancelledError):
        await cancelled

    assert ack.seq == 1
    steps = await store.get_steps(TENANT_A, RunId("r1"), limit=10)
    assert [s.output for s in steps] == ["out 2"]


async def test_a_failed_commit_fails_every_step_of_the_group(
    store: SqliteStore, clock: Clock
) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    conn = store._conn
    assert conn is not None

    refused: list[str] = []

    def refuse_commit(action: int, arg1: str | None, *_: object) -> int:
        # Only the group's COMMIT fails: a step that ran again alone would succeed.
        is_commit = action == sqlite3.SQLITE_TRANSACTION and (arg1 or "").upper() == "COMMIT"
        if is_commit and not refused:
            refused.append("COMMIT")
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    conn.set_authorizer(refuse_commit)
    results = await asyncio.gather(
        *(append(store, "r1", draft(n), now=clock()) for n in range(3)),
        return_exceptions=True,
    )
    conn.set_authorizer(None)

    assert refused == ["COMMIT"]
    assert all(isinstance(result, BackendError) for result in results), results
    assert all("SQLite store failed" in str(result) for result in results)
    assert await store.get_steps(TENANT_A, RunId("r1"), limit=10) == []
    assert (await store.get_run(TENANT_A, RunId("r1"))).head_seq == 0
    assert (await append(store, "r1", draft(9), now=clock())).seq == 1


async def test_a_group_waits_on_a_thread_while_another_process_writes(
    store: SqliteStore, tmp_path: Path, clock: Clock
) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    commits = _commits(store)
    holder = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        pending = asyncio.gather(*(append(store, "r1", draft(n), now=clock()) for n in range(3)))
        await asyncio.sleep(0.2)  # the group found the write lock taken and waits for it
        assert not pending.done()
        holder.execute("ROLLBACK")
        acks = await pending
    finally:
        holder.close()

    assert sorted(ack.seq for ack in acks) == [1, 2, 3]
    assert len(commits) == 1  # it waited as a group
    assert await verify_run(store, TENANT_A, RunId("r1")) == 3
    assert (await append(store, "r1", draft(4), now=clock())).seq == 4  # inline again


async def test_a_group_waits_on_a_thread_while_a_worker_thread_holds_the_connection(
    store: SqliteStore, clock: Clock
) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    commits = _commits(store)
    store._lock.acquire()  # as a call running on a worker thread holds it
    try:
        pending = asyncio.gather(*(append(store, "r1", draft(n), now=clock()) for n in range(3)))
        await asyncio.sleep(0.2)
        assert not pending.done()
    finally:
        store._lock.release()
    acks = await pending

    assert sorted(ack.seq for ack in acks) == [1, 2, 3]
    assert len(commits) == 1
    assert await verify_run(store, TENANT_A, RunId("r1")) == 3


async def test_a_group_that_waits_too_long_is_busy_for_every_caller(
    tmp_path: Path, clock: Clock
) -> None:
    store = await _open(tmp_path / "store.db", busy_timeout_ms=50)
    try:
        await store.create_run(TENANT_A, make_run("r1"))
        with contextlib.closing(
            sqlite3.connect(tmp_path / "store.db", isolation_level=None)
        ) as holder:
            holder.execute("BEGIN IMMEDIATE")
            results = await asyncio.gather(
                *(append(store, "r1", draft(n), now=clock()) for n in range(3)),
                return_exceptions=True,
            )
            holder.execute("ROLLBACK")
        for result in results:
            assert isinstance(result, BackendError) and "busy" in str(result), result
            assert isinstance(result.__cause__, sqlite3.OperationalError)
        assert (await append(store, "r1", draft(9), now=clock())).seq == 1
    finally:
        await store.close()


def test_when_sqlite_ends_the_transaction_the_earlier_writes_run_again_alone(
    tmp_path: Path,
) -> None:
    conn = sqlite3.connect(tmp_path / "raw.db", isolation_level=None)
    conn.execute("CREATE TABLE t (v INTEGER)")

    def insert(value: int) -> Callable[[sqlite3.Connection], int]:
        def write(c: sqlite3.Connection) -> int:
            c.execute("INSERT INTO t VALUES (?)", (value,))
            return value

        return write

    def ends_the_transaction(c: sqlite3.Connection) -> int:
        c.execute("ROLLBACK")  # as SQLite does itself on a full disk or an I/O error
        raise sqlite3.OperationalError("database or disk is full")

    outcomes = SqliteStore._run_group(conn, [insert(1), ends_the_transaction, insert(3)])

    assert outcomes[0] is ALONE and outcomes[2] is ALONE
    assert isinstance(outcomes[1], BackendError)
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0
    assert not conn.in_transaction
    conn.close()


def test_a_group_of_one_needs_no_savepoint_and_a_failure_leaves_nothing(
    tmp_path: Path,
) -> None:
    conn = sqlite3.connect(tmp_path / "raw.db", isolation_level=None)
    conn.execute("CREATE TABLE t (v INTEGER)")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)

    def insert(c: sqlite3.Connection) -> int:
        c.execute("INSERT INTO t VALUES (1)")
        return 1

    def fails(c: sqlite3.Connection) -> int:
        c.execute("INSERT INTO t VALUES (2)")
        raise ValueError("refused")

    assert SqliteStore._run_group(conn, [insert]) == [1]
    assert statements == ["BEGIN IMMEDIATE", "INSERT INTO t VALUES (1)", "COMMIT"]
    [outcome] = SqliteStore._run_group(conn, [fails])
    assert isinstance(outcome, ValueError)
    assert conn.execute("SELECT v FROM t").fetchall() == [(1,)]
    assert not conn.in_transaction
    conn.close()


async def test_a_step_recorded_on_a_closed_store_is_a_backend_error(
    tmp_path: Path, clock: Clock
) -> None:
    store = await _open(tmp_path / "store.db")
    await store.create_run(TENANT_A, make_run("r1"))
    await store.close()

    results = await asyncio.gather(
        *(append(store, "r1", draft(n), now=clock()) for n in range(2)), return_exceptions=True
    )

    assert all(isinstance(r, BackendError) and "not open" in str(r) for r in results), results
