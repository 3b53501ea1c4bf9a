"""What only the PostgreSQL store promises: migrations safe under concurrent start-up, a
newer schema refused, outages answered promptly with backend_unavailable (nothing
half-written) and recovered from by the same store object, no password in messages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import anyio
import psycopg
import pytest

from mcp_checkpoint.config import PostgresSettings, Settings
from mcp_checkpoint.core.ledger import verify_run
from mcp_checkpoint.core.models import BatchId, CheckpointContent, CheckpointId, MemoryId, RunId
from mcp_checkpoint.core.ports import CheckpointRef, CommitPlan
from mcp_checkpoint.errors import BackendError, ConflictError
from mcp_checkpoint.storage import make_store
from mcp_checkpoint.storage.postgres import PostgresStore, mask_url
from mcp_checkpoint.storage.postgres import store as postgres_store_module
from mcp_checkpoint.storage.postgres._migrations import known_migrations
from tests._postgres import create_database, database_url, drop_database, require_postgres
from tests._tcp_proxy import TcpProxy
from tests.contract.conftest import (
    T0,
    TENANT_A,
    Clock,
    append,
    draft,
    make_proposal,
    make_run,
    new_memory,
    seed_memories,
)

pytestmark = pytest.mark.anyio

LATEST = known_migrations()[-1].version
# Small bounds, so that an outage is reported within seconds (the defaults are larger).
OUTAGE_SETTINGS = PostgresSettings(
    pool_min_size=1,
    pool_max_size=4,
    connect_timeout_s=1,
    pool_timeout_s=1,
    operation_timeout_s=2,
    statement_timeout_ms=2_000,
)
# How long a test waits before it calls a call hung (far above every bound above).
HANG = 30


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """The URL of a new, empty database of its own (dropped after the test)."""
    require_postgres()
    name = create_database("mcpck_test_fresh")
    try:
        yield database_url(name)
    finally:
        drop_database(name)


async def test_stores_starting_at_once_on_a_new_database_migrate_it_exactly_once(
    fresh_database: str,
) -> None:
    stores = [PostgresStore(fresh_database, PostgresSettings()) for _ in range(8)]
    try:
        async with anyio.create_task_group() as group:
            for store in stores:
                group.start_soon(store.open)
        versions = [await store.schema_version() for store in stores]
        await stores[0].create_run(TENANT_A, make_run("r1"))
        assert (await stores[-1].get_run(TENANT_A, RunId("r1"))).run_id == "r1"
    finally:
        for store in stores:
            await store.close()

    assert versions == [LATEST] * len(stores)
    async with await psycopg.AsyncConnection.connect(fresh_database) as conn:
        cursor = await conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        assert [row[0] for row in await cursor.fetchall()] == list(range(1, LATEST + 1))


async def test_open_is_idempotent_and_close_too(postgres_url: str) -> None:
    store = PostgresStore(postgres_url, PostgresSettings())
    await store.open()
    await store.open()
    assert await store.schema_version() == LATEST
    await store.close()
    await store.close()
    with pytest.raises(BackendError, match="not open"):
        await store.get_run(TENANT_A, RunId("r1"))


async def test_a_database_of_a_newer_schema_is_refused(fresh_database: str) -> None:
    store = PostgresStore(fresh_database, PostgresSettings())
    await store.open()
    await store.close()
    async with await psycopg.AsyncConnection.connect(fresh_database, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) "
            "VALUES (%s, 'future', 'now')",
            (LATEST + 1,),
        )

    with pytest.raises(BackendError, match="upgrade mcp-checkpoint"):
        await store.open()


async def test_an_unreachable_server_is_backend_unavailable_and_hides_the_password() -> None:
    # Port 1 on loopback refuses at once.
    store = PostgresStore(
        "postgresql://agent:s3cret-pw@127.0.0.1:1/db", OUTAGE_SETTINGS
    )

    with anyio.fail_after(HANG), pytest.raises(BackendError) as caught:
        await store.open()

    assert "s3cret-pw" not in str(caught.value)
    assert caught.value.code == "backend_unavailable"


def test_mask_url_hides_only_the_password() -> None:
    assert mask_url("postgresql://agent:pw@db.example:5433/mem?sslmode=require") == (
        "postgresql://agent:***@db.example:5433/mem?sslmode=require"
    )
    assert mask_url("postgresql://agent@db/mem") == "postgresql://agent@db/mem"
    assert mask_url("postgresql:///mem") == "postgresql:///mem"


def test_a_postgresql_store_url_selects_the_postgres_store() -> None:
    settings = Settings(
        store_url="postgresql://u@127.0.0.1/db",
        postgres=PostgresSettings(pool_max_size=3),
    )
    store = make_store(settings)
    assert isinstance(store, PostgresStore)
    assert store.settings.pool_max_size == 3
    assert isinstance(make_store(Settings(store_url="postgres://u@h/db")), PostgresStore)
    with pytest.raises(ValueError, match="pool_min_size"):
        PostgresSettings(pool_min_size=5, pool_max_size=2)
    with pytest.raises(ValueError, match="store_url"):
        Settings(store_url="mysql://u@h/db")


# -- outages ------------------------------------------------------------------------------


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    """A proxy to the test server that the test can cut."""
    require_postgres()
    target = urlsplit(database_url("x"))
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


def _through(proxy: TcpProxy, url: str) -> str:
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}"))


async def _until_recovered(store: PostgresStore) -> None:
    """Call the store until it answers again (each call is itself bounded)."""
    with anyio.fail_after(HANG):
        while True:
            try:
                await store.get_run(TENANT_A, RunId("r1"))
                return
            except BackendError:
                await anyio.sleep(0.1)


async def test_a_lost_server_is_backend_unavailable_and_the_same_store_recovers(
    postgres_url: str, proxy: TcpProxy, clock: Clock
) -> None:
    store = PostgresStore(_through(proxy, postgres_url), OUTAGE_SETTINGS)
    await store.open()
    try:
        await store.create_run(TENANT_A, make_run("r1"))
        for n in range(3):
            await append(store, "r1", draft(n, key=f"k{n}"), now=clock())

        proxy.cut()
        for call in (
            lambda: append(store, "r1", draft(3, key="k3"), now=clock()),
            lambda: store.get_run(TENANT_A, RunId("r1")),
            lambda: store.create_run(TENANT_A, make_run("r2")),
        ):
            with anyio.fail_after(HANG), pytest.raises(BackendError) as caught:
                await call()
            assert caught.value.code == "backend_unavailable"
            assert str(proxy.port) not in str(caught.value)

        proxy.restore()
        await _until_recovered(store)
        retried = await append(store, "r1", draft(3, key="k3"), now=clock())
        run = await store.get_run(TENANT_A, RunId("r1"))
    finally:
        await store.close()

    # Nothing of the failed calls was written; the ledger goes on without a gap.
    assert (retried.seq, retried.duplicate) == (4, False)
    assert (run.head_seq, run.step_count) == (4, 4)
    verifier = PostgresStore(postgres_url, PostgresSettings())
    await verifier.open()
    try:
        assert await verify_run(verifier, TENANT_A, RunId("r1")) == 4
        with pytest.raises(Exception, match="run r2"):
            await verifier.get_run(TENANT_A, RunId("r2"))
    finally:
        await verifier.close()


async def test_a_silent_network_is_backend_unavailable_within_the_operation_timeout(
    postgres_url: str, proxy: TcpProxy, clock: Clock
) -> None:
    store = PostgresStore(_through(proxy, postgres_url), OUTAGE_SETTINGS)
    await store.open()
    try:
        await store.create_run(TENANT_A, make_run("r1"))
        await append(store, "r1", draft(0), now=clock())

        proxy.freeze()
        with anyio.fail_after(HANG), pytest.raises(BackendError, match="in time") as caught:
            await append(store, "r1", draft(1, key="frozen"), now=clock())
        assert caught.value.code == "backend_unavailable"

        proxy.restore()
        await _until_recovered(store)
        # The frozen call may or may not have committed before the network went silent;
        # its retry with the same key answers either way, and the ledger has no gap.
        retried = await append(store, "r1", draft(1, key="frozen"), now=clock())
        run = await store.get_run(TENANT_A, RunId("r1"))
        verified = await verify_run(store, TENANT_A, RunId("r1"))
    finally:
        await store.close()

    assert retried.seq == 2
    assert (run.head_seq, verified) == (2, 2)


async def test_a_store_that_opens_during_an_outage_fails_promptly_then_opens_later(
    postgres_url: str, proxy: TcpProxy
) -> None:
    store = PostgresStore(_through(proxy, postgres_url), OUTAGE_SETTINGS)
    proxy.cut()
    with anyio.fail_after(HANG), pytest.raises(BackendError):
        await store.open()

    proxy.restore()
    await store.open()
    try:
        await store.create_run(TENANT_A, make_run("r1"))
        assert (await store.get_run(TENANT_A, RunId("r1"))).head_seq == 0
    finally:
        await store.close()


# -- several processes (stores with pools of their own) on one database ------------------


@pytest.mark.parametrize("optimistic", [2, 1, 0], ids=["default", "one-try", "locked-only"])
async def test_concurrent_appends_from_several_stores_keep_seq_gap_free_and_keys_once(
    postgres_url: str, clock: Clock, monkeypatch: pytest.MonkeyPatch, optimistic: int
) -> None:
    # Appends race lock-free first and queue on the run's row lock after `optimistic`
    # lost races; every mix of the two paths must keep the ledger exact.
    monkeypatch.setattr(postgres_store_module, "_OPTIMISTIC_APPENDS", optimistic)
    stores = [PostgresStore(postgres_url, PostgresSettings(pool_max_size=3)) for _ in range(4)]
    for store in stores:
        await store.open()
    acks: dict[str, list[int]] = {}
    try:
        await stores[0].create_run(TENANT_A, make_run("r1"))

        async def worker(w: int, store: PostgresStore) -> None:
            for n in range(15):
                # Every worker also sends the shared keys: each must be recorded once.
                key = f"shared-{n}" if n % 3 == 0 else f"w{w}-{n}"
                step = draft(n, key=key) if key.startswith("shared") else draft(100 * w + n,
                                                                                key=key)
                ack = await append(store, "r1", step, now=clock())
                acks.setdefault(key, []).append(ack.seq)

        async with anyio.create_task_group() as group:
            for w, store in enumerate(stores):
                for _ in range(2):  # two concurrent callers per store too
                    group.start_soon(worker, w, store)
        run = await stores[1].get_run(TENANT_A, RunId("r1"))
        verified = await verify_run(stores[2], TENANT_A, RunId("r1"))
        steps = await stores[3].get_steps(TENANT_A, RunId("r1"), limit=1000)
    finally:
        for store in stores:
            await store.close()

    distinct = {key: set(seqs) for key, seqs in acks.items()}
    # Each key, however often it was sent, names one step; every call got that step's seq.
    assert all(len(seqs) == 1 for seqs in distinct.values())
    assert [s.seq for s in steps] == list(range(1, len(distinct) + 1))
    assert sorted(s.idempotency_key or "" for s in steps) == sorted(distinct)
    assert run.head_seq == verified == len(distinct)


async def test_an_append_from_a_stale_known_head_rereads_and_chains_correctly(
    postgres_url: str, clock: Clock
) -> None:
    # Store A remembers the head it left; B (another process) then appends and A
    # checkpoints. A's next appends must notice both, not write from what it remembers.
    a, b = (PostgresStore(postgres_url, PostgresSettings(pool_max_size=2)) for _ in range(2))
    await a.open()
    await b.open()
    try:
        await a.create_run(TENANT_A, make_run("r1"))
        first = await append(a, "r1", draft(1, key="k1"), now=clock())
        by_b = await append(b, "r1", draft(2, key="k2"), now=clock())
        after_b = await append(a, "r1", draft(3, key="k3"), now=clock())
        await a.add_checkpoint(
            TENANT_A, RunId("r1"), checkpoint_id=CheckpointId("ck1"), parent_id=None,
            through_seq=3, content=CheckpointContent(progress=["3 done"]), source="model",
            tokens=5, now=clock(),
        )
        after_checkpoint = await append(a, "r1", draft(4, key="k4"), now=clock())
        retried = await append(a, "r1", draft(4, key="k4"), now=clock())
        by_b_again = await append(b, "r1", draft(5), now=clock())
        last = await append(a, "r1", draft(6), now=clock())
        verified = await verify_run(b, TENANT_A, RunId("r1"))
        steps = await b.get_steps(TENANT_A, RunId("r1"), limit=100)
    finally:
        await a.close()
        await b.close()
    assert [first.seq, by_b.seq, after_b.seq, after_checkpoint.seq] == [1, 2, 3, 4]
    assert (by_b_again.seq, last.seq) == (5, 6)
    assert retried.duplicate and retried.seq == 4 and not after_checkpoint.duplicate
    assert [s.episode for s in steps] == [1, 1, 1, 2, 2, 2]
    assert [s.prev_hash for s in steps[1:]] == [s.hash for s in steps[:-1]]
    assert verified == 6


async def test_one_batch_committed_by_two_stores_at_once_is_applied_once(
    postgres_url: str, clock: Clock
) -> None:
    first = PostgresStore(postgres_url, PostgresSettings())
    second = PostgresStore(postgres_url, PostgresSettings())
    await first.open()
    await second.open()
    try:
        await first.add_proposal(TENANT_A, make_proposal("b1", ["alpha", "beta"]))
        plan = CommitPlan(
            batch_id=BatchId("b1"), accepted=[0, 1], rejected=[],
            inserts=[new_memory("m1", "alpha", batch_id="b1"),
                     new_memory("m2", "beta", batch_id="b1")],
            memory_ids={0: MemoryId("m1"), 1: MemoryId("m2")},
        )
        outcomes: list[str] = []

        async def commit(store: PostgresStore) -> None:
            try:
                await store.commit_proposal(TENANT_A, plan, now=clock())
                outcomes.append("committed")
            except ConflictError:
                outcomes.append("conflict")

        async with anyio.create_task_group() as group:
            for store in (first, second, first, second):
                group.start_soon(commit, store)
        memories = await first.list_memories(TENANT_A, limit=10)
        proposal = await second.get_proposal(TENANT_A, BatchId("b1"))
    finally:
        await first.close()
        await second.close()

    assert sorted(outcomes) == ["committed", "conflict", "conflict", "conflict"]
    assert [m.memory_id for _, m in memories] == ["m1", "m2"]
    assert proposal.status == "committed"


async def test_a_database_of_schema_1_is_migrated_with_its_runs_kept_and_prunable(
    fresh_database: str, clock: Clock
) -> None:
    first = known_migrations()[0]
    async with await psycopg.AsyncConnection.connect(fresh_database, autocommit=True) as conn:
        await conn.execute(first.script.encode("utf-8"))
        await conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at TEXT NOT NULL)"
        )
        await conn.execute(
            "INSERT INTO schema_migrations VALUES (1, %s, 'then')", (first.name,)
        )
        # A run as version 1 stored it (no retention columns).
        await conn.execute(
            "INSERT INTO runs (tenant, run_id, objective, acceptance_criteria, constraints, "
            "pinned, status, budget_tokens, created_at, updated_at, updated_us, head_seq, "
            "step_count, head_hash, head_tokens, checkpoint_count, latest_checkpoint_id, "
            "covered_seq, covered_tokens, version) VALUES (%s, 'old', 'o', '[]', '[]', '[]', "
            "'active', 1000, %s, %s, 0, 0, 0, %s, 0, 0, NULL, 0, 0, 1)",
            (TENANT_A, clock().isoformat(), clock().isoformat(), "0" * 64),
        )

    store = PostgresStore(fresh_database, PostgresSettings())
    await store.open()
    try:
        assert await store.schema_version() == LATEST
        run = await store.get_run(TENANT_A, RunId("old"))
        assert (run.pruned_seq, run.pruned_hash, run.pruned_tokens, run.pruned_checkpoints) == (
            0, None, 0, 0
        )
        assert await store.find_checkpoint(TENANT_A, CheckpointId("nope")) is None
        # The old run goes on, is finished and pruned like any other.
        for i in range(1, 5):
            await append(store, "old", draft(i), now=clock())
            if i % 2 == 0:
                await store.add_checkpoint(
                    TENANT_A, RunId("old"), checkpoint_id=CheckpointId(f"c{i}"),
                    parent_id=None if i == 2 else CheckpointId("c2"), through_seq=i,
                    content=CheckpointContent(progress=[f"{i} done"]), source="model",
                    tokens=5, now=clock(),
                )
        run = await store.get_run(TENANT_A, RunId("old"))
        await store.update_run(
            TENANT_A, RunId("old"), expected_version=run.version, status="completed",
            now=clock(),
        )
        result = await store.prune_run(
            TENANT_A, RunId("old"), keep_checkpoints=1, finished_before=clock(), now=clock()
        )
        assert (result.steps_removed, result.checkpoint_ids) == (4, ["c2"])
        assert await store.find_checkpoint(TENANT_A, CheckpointId("c2")) == CheckpointRef(
            CheckpointId("c2"), RunId("old"), 1, 2, pruned=True
        )
        pruned = await store.get_run(TENANT_A, RunId("old"))
        assert (pruned.pruned_seq, pruned.pruned_checkpoints) == (4, 1)
    finally:
        await store.close()


async def test_prune_waits_for_the_run_lock_and_rechecks_the_run_under_it(
    postgres_url: str, clock: Clock
) -> None:
    """A finished run is reopened by another process while ``prune_run`` is about to
    start: the prune waits for that transaction's row lock, then sees the run active and
    removes nothing (it never acts on what it read before the lock)."""
    store = PostgresStore(postgres_url, PostgresSettings())
    await store.open()
    try:
        await store.create_run(TENANT_A, make_run("r1", now=clock()))
        for i in range(1, 5):
            await append(store, "r1", draft(i), now=clock())
        await store.add_checkpoint(
            TENANT_A, RunId("r1"), checkpoint_id=CheckpointId("c1"), parent_id=None,
            through_seq=4, content=CheckpointContent(progress=["4 done"]), source="model",
            tokens=5, now=clock(),
        )
        run = await store.get_run(TENANT_A, RunId("r1"))
        await store.update_run(
            TENANT_A, RunId("r1"), expected_version=run.version, status="completed",
            now=clock(),
        )
        cutoff = clock()
        results = []
        async with await psycopg.AsyncConnection.connect(postgres_url) as other:
            # Another process holds the row lock and reopens the run (not yet committed).
            await other.execute(
                "SELECT 1 FROM runs WHERE tenant = %s AND run_id = 'r1' FOR UPDATE", (TENANT_A,)
            )
            await other.execute(
                "UPDATE runs SET status = 'active' WHERE tenant = %s AND run_id = 'r1'",
                (TENANT_A,),
            )

            async def prune() -> None:
                results.append(await store.prune_run(
                    TENANT_A, RunId("r1"), keep_checkpoints=1, finished_before=cutoff,
                    now=clock(),
                ))

            async with anyio.create_task_group() as group:
                group.start_soon(prune)
                with anyio.fail_after(HANG):  # until the prune waits for the lock
                    while True:
                        cursor = await other.execute(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND wait_event_type = 'Lock'"
                        )
                        row = await cursor.fetchone()
                        if row is not None and row[0] > 0:
                            break
                        await anyio.sleep(0.02)
                assert results == []  # still waiting
                await other.commit()
        after = await store.get_run(TENANT_A, RunId("r1"))
        steps = await store.get_steps(TENANT_A, RunId("r1"), limit=10)
    finally:
        await store.close()

    assert results[0].skipped == "active" and not results[0].removed_anything
    assert after.status == "active" and after.pruned_seq == 0 and len(steps) == 4


async def test_a_database_of_schema_7_gets_step_search_indexes_and_memory_tombstones(
    fresh_database: str, clock: Clock
) -> None:
    from mcp_checkpoint.core.ports import StepQuery

    store = PostgresStore(fresh_database, PostgresSettings())
    await store.open()  # the latest schema, then back to 7 below, with steps in it
    try:
        await store.create_run(TENANT_A, make_run("old"))
        for i in range(1, 6):
            await append(store, "old", draft(i, tool="grep" if i % 2 else "bash"), now=clock())
    finally:
        await store.close()
    async with await psycopg.AsyncConnection.connect(fresh_database, autocommit=True) as conn:
        await conn.execute("ALTER INDEX steps_fts RESET (gin_pending_list_limit)")
        await conn.execute("DROP INDEX steps_by_created")
        await conn.execute("DROP TABLE forgotten_memories")
        await conn.execute("DELETE FROM schema_migrations WHERE version > 7")

    store = PostgresStore(fresh_database, PostgresSettings())
    await store.open()
    try:
        assert await store.schema_version() == LATEST
        hits = await store.search_steps(
            TENANT_A, StepQuery("echo", run_id=RunId("old"), tool="grep"), limit=2, depth=2)
        assert sorted(s.seq for s, _ in hits) == [3, 5]
        await seed_memories(store, [new_memory("m1", "the deploy key rotates")])
        await store.delete_memory(TENANT_A, MemoryId("m1"), now=T0)
        assert await store.forgotten_memories(TENANT_A, [MemoryId("m1")]) == {"m1": T0}
    finally:
        await store.close()
    async with await psycopg.AsyncConnection.connect(fresh_database, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT reloptions FROM pg_class WHERE relname = 'steps_fts'")
        assert (await cursor.fetchone()) == (["gin_pending_list_limit=256"],)
        cursor = await conn.execute("SELECT to_regclass('steps_by_created') IS NOT NULL")
        assert (await cursor.fetchone()) == (True,)
