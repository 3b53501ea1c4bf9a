"""What only the SQLite store promises: durability, migrations, several processes."""

from __future__ import annotations

import contextlib
import multiprocessing
import sqlite3
import stat
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from mcp_checkpoint.config import SqliteSettings
from mcp_checkpoint.core.ledger import ChainBreak, verify_chain, verify_run
from mcp_checkpoint.core.models import BatchId, CheckpointContent, CheckpointId, MemoryId, RunId
from mcp_checkpoint.core.ports import StepQuery
from mcp_checkpoint.errors import BackendError
from mcp_checkpoint.storage.sqlite import SqliteStore
from mcp_checkpoint.storage.sqlite._migrations import known_migrations
from tests.contract.conftest import (
    T0,
    TENANT_A,
    Clock,
    append,
    draft,
    make_run,
    new_memory,
    seed_memories,
)

pytestmark = pytest.mark.anyio

R1 = RunId("r1")
WORKERS = 4
APPENDS_PER_WORKER = 50
SHARED_KEYS = 10


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "store.db"


@pytest.fixture
async def sqlite_store(db_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(db_path, SqliteSettings())
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _raw(path: Path) -> contextlib.closing[sqlite3.Connection]:
    """A plain autocommit connection to the file, closed when the block ends."""
    return contextlib.closing(sqlite3.connect(path, isolation_level=None))


async def test_sqlite_open_creates_a_private_directory_and_file(db_path: Path) -> None:
    store = SqliteStore(db_path, SqliteSettings())
    await store.open()
    await store.open()  # idempotent
    await store.close()
    await store.close()

    assert stat.S_IMODE((await anyio.Path(db_path.parent).stat()).st_mode) == 0o700
    assert stat.S_IMODE((await anyio.Path(db_path).stat()).st_mode) == 0o600
    with _raw(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_sqlite_reopen_keeps_everything(db_path: Path, clock: Clock) -> None:
    store = SqliteStore(db_path, SqliteSettings())
    await store.open()
    await store.create_run(TENANT_A, make_run("r1"))
    acks = [await append(store, "r1", draft(i, key=f"k{i}"), now=clock()) for i in range(5)]
    checkpoint = await store.add_checkpoint(
        TENANT_A, R1, checkpoint_id=CheckpointId("c1"), parent_id=None, through_seq=3,
        content=CheckpointContent(progress=["p"], state={"k": [1, 2]}), source="rules",
        tokens=5, now=clock(),
    )
    proposal = await seed_memories(store, [new_memory("m1", "durable memory")])
    run = await store.get_run(TENANT_A, R1)
    steps = await store.get_steps(TENANT_A, R1, limit=100)
    await store.close()

    reopened = SqliteStore(db_path, SqliteSettings())
    await reopened.open()
    try:
        assert await reopened.get_run(TENANT_A, R1) == run
        assert await reopened.get_steps(TENANT_A, R1, limit=100) == steps
        assert await reopened.get_checkpoint(TENANT_A, R1, CheckpointId("c1")) == checkpoint
        assert await reopened.get_proposal(TENANT_A, BatchId("b-seed")) == proposal
        ((memory, _),) = await reopened.search_lexical(TENANT_A, "durable", limit=5)
        assert memory.memory_id == "m1"
        retry = await append(reopened, "r1", draft(2, key="k2"), now=clock())
        assert retry == acks[2].model_copy(update={"duplicate": True})
        assert await verify_run(reopened, TENANT_A, R1) == 5
        assert await reopened.integrity_check() == "ok"
    finally:
        await reopened.close()


async def test_sqlite_migrations_are_recorded_once(db_path: Path) -> None:
    for _ in range(3):
        store = SqliteStore(db_path, SqliteSettings())
        await store.open()
        version = await store.schema_version()
        await store.close()

    migrations = known_migrations()
    assert version == len(migrations) >= 1
    with _raw(db_path) as conn:
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version")
        assert rows.fetchall() == [(m.version, m.name) for m in migrations]


async def test_sqlite_refuses_a_newer_schema(db_path: Path) -> None:
    store = SqliteStore(db_path, SqliteSettings())
    await store.open()
    await store.close()
    with _raw(db_path) as conn:
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'future', ?)",
            (datetime.now(UTC).isoformat(),),
        )

    with pytest.raises(BackendError, match="schema version 9999") as caught:
        await SqliteStore(db_path, SqliteSettings()).open()

    assert "upgrade" in str(caught.value)


async def test_sqlite_busy_store_is_a_backend_error_without_the_path(
    db_path: Path, clock: Clock
) -> None:
    store = SqliteStore(db_path, SqliteSettings(busy_timeout_ms=0))
    await store.open()
    try:
        await store.create_run(TENANT_A, make_run("r1"))
        with _raw(db_path) as holder:
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(BackendError, match="busy") as caught:
                await append(store, "r1", draft(1), now=clock())
            holder.execute("ROLLBACK")
        assert str(db_path.parent) not in str(caught.value)
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        assert (await append(store, "r1", draft(1), now=clock())).seq == 1
    finally:
        await store.close()


async def test_sqlite_closed_store_is_a_backend_error(db_path: Path) -> None:
    store = SqliteStore(db_path, SqliteSettings())

    with pytest.raises(BackendError, match="not open"):
        await store.get_run(TENANT_A, R1)


async def test_sqlite_verify_ledger_detects_an_edited_step(
    sqlite_store: SqliteStore, db_path: Path, clock: Clock
) -> None:
    await sqlite_store.create_run(TENANT_A, make_run("r1"))
    for i in range(1_234):
        await append(sqlite_store, "r1", draft(i), now=clock())
    assert await verify_run(sqlite_store, TENANT_A, R1) == 1_234

    with _raw(db_path) as conn:
        conn.execute("UPDATE steps SET output = '\"forged\"' WHERE seq = 777")

    with pytest.raises(ChainBreak) as caught:
        await verify_run(sqlite_store, TENANT_A, R1)
    assert caught.value.seq == 777


async def test_sqlite_verify_ledger_detects_a_deleted_step(
    sqlite_store: SqliteStore, db_path: Path, clock: Clock
) -> None:
    await sqlite_store.create_run(TENANT_A, make_run("r1"))
    for i in range(5):
        await append(sqlite_store, "r1", draft(i), now=clock())

    with _raw(db_path) as conn:
        conn.execute("DELETE FROM steps WHERE seq = 5")

    with pytest.raises(ChainBreak) as caught:
        await verify_run(sqlite_store, TENANT_A, R1)
    assert caught.value.seq == 5


# -- several processes --------------------------------------------------------------------

Result = tuple[int, str, int, bool]  # worker, idempotency key, seq, duplicate


def _open_worker(path: str, barrier: Barrier, results: Queue[int]) -> None:
    async def main() -> None:
        await anyio.to_thread.run_sync(barrier.wait)
        store = SqliteStore(Path(path), SqliteSettings())
        await store.open()
        results.put(await store.schema_version())
        await store.close()

    anyio.run(main)


def _append_worker(path: str, worker: int, barrier: Barrier, results: Queue[list[Result]]) -> None:
    async def main() -> None:
        store = SqliteStore(Path(path), SqliteSettings())
        await store.open()
        await anyio.to_thread.run_sync(barrier.wait)
        acks: list[Result] = []
        for i in range(APPENDS_PER_WORKER):
            key = f"w{worker}-{i}"
            ack = await append(store, "r1", draft(i, key=key), now=datetime.now(UTC))
            acks.append((worker, key, ack.seq, ack.duplicate))
            if i % (APPENDS_PER_WORKER // SHARED_KEYS) == 0:
                # Every worker sends the same request under a shared key: one write in all.
                shared = f"shared-{i}"
                ack = await append(store, "r1", draft(-i, key=shared), now=datetime.now(UTC))
                acks.append((worker, shared, ack.seq, ack.duplicate))
        await store.close()
        results.put(acks)

    anyio.run(main)


async def test_sqlite_several_processes_open_a_new_file_at_once(db_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    results: Queue[int] = ctx.Queue()
    processes = [
        ctx.Process(target=_open_worker, args=(str(db_path), barrier, results))
        for _ in range(WORKERS)
    ]
    for process in processes:
        process.start()
    versions = [await anyio.to_thread.run_sync(results.get, True, 120) for _ in processes]
    for process in processes:
        await anyio.to_thread.run_sync(process.join, 60)

    assert [p.exitcode for p in processes] == [0] * WORKERS
    assert versions == [len(known_migrations())] * WORKERS
    with _raw(db_path) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()
    assert count == len(known_migrations())


async def test_sqlite_several_processes_append_to_one_run_without_gaps(
    sqlite_store: SqliteStore, db_path: Path
) -> None:
    await sqlite_store.create_run(TENANT_A, make_run("r1"))
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    results: Queue[list[Result]] = ctx.Queue()
    processes = [
        ctx.Process(target=_append_worker, args=(str(db_path), worker, barrier, results))
        for worker in range(WORKERS)
    ]
    for process in processes:
        process.start()
    acks = [
        ack
        for _ in processes
        for ack in await anyio.to_thread.run_sync(results.get, True, 300)
    ]
    for process in processes:
        await anyio.to_thread.run_sync(process.join, 60)
    assert [p.exitcode for p in processes] == [0] * WORKERS

    total = WORKERS * APPENDS_PER_WORKER + SHARED_KEYS
    steps = await sqlite_store.get_steps(TENANT_A, R1, limit=10 * total)
    assert [s.seq for s in steps] == list(range(1, total + 1))
    by_key = {s.idempotency_key: s.seq for s in steps}
    assert len(by_key) == total
    # Every acknowledged seq holds the step of that acknowledgement, exactly once.
    assert all(by_key[key] == seq for _, key, seq, _ in acks)
    written = Counter(seq for _, _, seq, duplicate in acks if not duplicate)
    assert sorted(written) == list(range(1, total + 1))
    assert set(written.values()) == {1}
    shared = [(key, duplicate) for _, key, _, duplicate in acks if key.startswith("shared")]
    assert len(shared) == WORKERS * SHARED_KEYS
    assert Counter(key for key, duplicate in shared if not duplicate) == {
        f"shared-{i}": 1 for i in range(0, APPENDS_PER_WORKER, APPENDS_PER_WORKER // SHARED_KEYS)
    }
    verify_chain(R1, steps)
    assert await verify_run(sqlite_store, TENANT_A, R1) == total
    run = await sqlite_store.get_run(TENANT_A, R1)
    assert (run.head_seq, run.step_count, run.head_hash) == (total, total, steps[-1].hash)
    assert await sqlite_store.integrity_check() == "ok"


async def test_sqlite_search_stems_english_words(sqlite_store: SqliteStore) -> None:
    await seed_memories(sqlite_store, [new_memory("m1", "we deployed the service twice")])

    found = await sqlite_store.search_lexical(TENANT_A, "deploying services", limit=5)

    assert [m.memory_id for m, _ in found] == ["m1"]


async def test_sqlite_search_sees_memories_another_connection_committed(
    db_path: Path, sqlite_store: SqliteStore
) -> None:
    # Another process's commit (here: another store on the same file) reaches a search
    # that ran the same words before it.
    await seed_memories(sqlite_store, [new_memory("m1", "the cache lives in redis")])
    assert [m.memory_id for m, _ in await sqlite_store.search_lexical(
        TENANT_A, "redis cache", limit=5)] == ["m1"]

    other = SqliteStore(db_path, SqliteSettings())
    await other.open()
    try:
        await seed_memories(other, [new_memory("m2", "redis also holds the cache locks")],
                            batch_id="b2")
    finally:
        await other.close()

    found = await sqlite_store.search_lexical(TENANT_A, "redis cache", limit=5)
    assert sorted(m.memory_id for m, _ in found) == ["m1", "m2"]


async def test_sqlite_every_change_to_memories_moves_their_version(
    db_path: Path, sqlite_store: SqliteStore
) -> None:
    def version() -> int:
        with _raw(db_path) as conn:
            return int(conn.execute("SELECT version FROM memories_version").fetchone()[0])

    before = version()
    await seed_memories(sqlite_store, [new_memory("m1", "one"), new_memory("m2", "two")])
    after_insert = version()
    with _raw(db_path) as conn:
        conn.execute("UPDATE memories SET scope = 'elsewhere' WHERE memory_id = 'm1'")
    after_update = version()
    with _raw(db_path) as conn:
        conn.execute("DELETE FROM memories WHERE memory_id = 'm2'")

    assert before < after_insert < after_update < version()


async def test_a_file_of_schema_10_gets_a_scoped_step_index_and_memory_tombstones(
    db_path: Path, clock: Clock
) -> None:
    # A store as migration 0010 left it, with steps indexed by 0009's trigger.
    from mcp_checkpoint.core.ledger import append_step, request_hash
    from mcp_checkpoint.core.models import StepAck, StepDraft
    from mcp_checkpoint.storage import _statements as sql
    from mcp_checkpoint.storage._rows import run_row, step_row

    db_path.parent.mkdir(parents=True)
    with _raw(db_path) as conn:
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                      "name TEXT NOT NULL, applied_at TEXT NOT NULL)")
        for migration in known_migrations()[:10]:
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?, 'then')",
                         (migration.version, migration.name))
        for run_id in ("old", "other"):
            run = make_run(run_id, now=clock())
            rows = []
            for i in range(4):
                step_draft = StepDraft(tool="grep" if i % 2 else "bash",
                                       input={"cmd": f"login attempt {i} of {run_id}"},
                                       output="done", status="error" if i == 3 else "ok")
                step, run = append_step(run, step_draft, tokens=5, now=clock())
                ack = StepAck(run_id=run.run_id, seq=step.seq, episode=1, working_steps=0,
                              working_tokens=0, budget_tokens=1000, checkpoint_due=False)
                rows.append(step_row(
                    TENANT_A, step, request_hash(step_draft), ack.model_dump_json()))
            conn.execute(sql.INSERT_RUN, run_row(TENANT_A, run))
            conn.executemany(sql.INSERT_STEP, rows)
        assert conn.execute("SELECT count(*) FROM steps_fts").fetchone() == (8,)

    store = SqliteStore(db_path, SqliteSettings())
    await store.open()
    try:
        hits = await store.search_steps(
            TENANT_A, StepQuery("login", run_id=RunId("old"), tool="grep"), limit=10)
        assert sorted(s.seq for s, _ in hits) == [2, 4]
        errors = await store.search_steps(TENANT_A, StepQuery("login", status="error"),
                                          limit=10, depth=5)
        assert sorted((s.run_id, s.seq) for s, _ in errors) == [("old", 4), ("other", 4)]
        await append(store, "old", draft(9, tool="grep"), now=clock())  # the new trigger
        assert len(await store.search_steps(
            TENANT_A, StepQuery("shell grep", run_id=RunId("old"), tool="grep"),
            limit=10)) == 3
        await store.delete_run(TENANT_A, RunId("old"))
        assert await store.search_steps(TENANT_A, StepQuery("login"), limit=10, depth=50)
        # 0012: forgetting a memory leaves its tombstone.
        await seed_memories(store, [new_memory("m1", "the deploy key rotates")])
        await store.delete_memory(TENANT_A, MemoryId("m1"), now=T0)
        assert await store.forgotten_memories(TENANT_A, [MemoryId("m1")]) == {"m1": T0}
    finally:
        await store.close()
    with _raw(db_path) as conn:
        left = conn.execute("SELECT run_id, count(*) FROM steps_fts GROUP BY run_id")
        assert left.fetchall() == [("other", 4)]


# -- the step search index is filled in batches (migration 0013) ----------------------------


def _search_rows(path: Path) -> tuple[int, int, int]:
    """(steps, their search rows, the batch mark) as the file holds them."""
    with _raw(path) as conn:
        steps = conn.execute("SELECT count(*) FROM steps").fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM steps_fts").fetchone()[0]
        mark = conn.execute("SELECT through_rowid FROM step_search_progress").fetchone()[0]
    return steps, rows, mark


async def _seqs(store: SqliteStore, text: str, run_id: str | None = None) -> list[int]:
    query = StepQuery(text, run_id=RunId(run_id) if run_id else None)
    return sorted(s.seq for s, _ in await store.search_steps(TENANT_A, query, limit=1000))


async def test_sqlite_steps_are_indexed_in_batches_and_a_search_sees_every_step(
    db_path: Path, sqlite_store: SqliteStore, clock: Clock
) -> None:
    await sqlite_store.create_run(TENANT_A, make_run("r1"))
    for n in range(10):
        await append(sqlite_store, "r1", draft(n), now=clock())
    assert _search_rows(db_path) == (10, 0, 0)  # a step's own transaction writes no row

    # Another connection to the file (another process) searches first: it indexes.
    other = SqliteStore(db_path, SqliteSettings())
    await other.open()
    try:
        assert await _seqs(other, "echo", "r1") == list(range(1, 11))
    finally:
        await other.close()
    assert _search_rows(db_path) == (10, 10, 10)

    # The backlog is indexed once it holds a batch, in the step's own transaction.
    for n in range(10, 300):
        await append(sqlite_store, "r1", draft(n), now=clock())
    steps, rows, mark = _search_rows(db_path)
    assert (steps, rows, mark) == (300, 256, 256)
    assert await _seqs(sqlite_store, "299", "r1") == [300]
    assert _search_rows(db_path) == (300, 300, 300)


async def test_sqlite_a_checkpoint_indexes_its_steps(
    db_path: Path, sqlite_store: SqliteStore, clock: Clock
) -> None:
    await sqlite_store.create_run(TENANT_A, make_run("r1"))
    for n in range(3):
        await append(sqlite_store, "r1", draft(n), now=clock())
    await sqlite_store.add_checkpoint(
        TENANT_A, R1, checkpoint_id=CheckpointId("c1"), parent_id=None, through_seq=None,
        content=CheckpointContent(progress=["three steps"]), source="model", tokens=5,
        now=clock(),
    )
    assert _search_rows(db_path) == (3, 3, 3)


async def test_sqlite_steps_stored_after_the_newest_run_was_deleted_are_found(
    db_path: Path, sqlite_store: SqliteStore, clock: Clock
) -> None:
    # SQLite gives a new row the highest rowid plus one: deleting the newest steps frees
    # rowids that are given again, and those steps must still be indexed.
    for run_id in ("old", "new"):
        await sqlite_store.create_run(TENANT_A, make_run(run_id))
        for n in range(4):
            await append(sqlite_store, run_id, draft(n), now=clock())
    assert await _seqs(sqlite_store, "echo") == [1, 1, 2, 2, 3, 3, 4, 4]
    await sqlite_store.delete_run(TENANT_A, RunId("new"))
    assert _search_rows(db_path) == (4, 4, 4)

    await sqlite_store.create_run(TENANT_A, make_run("again"))
    for n in range(4):
        await append(sqlite_store, "again", draft(n + 100), now=clock())
    assert await _seqs(sqlite_store, "102", "again") == [3]
    assert await _seqs(sqlite_store, "echo") == [1, 1, 2, 2, 3, 3, 4, 4]
    assert _search_rows(db_path) == (8, 8, 8)
