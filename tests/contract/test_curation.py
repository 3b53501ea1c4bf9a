"""Contract: deleting runs and memories, searching the step ledger, listing batches and
matching id prefixes (the sentences of their docstrings in ``core/ports.py``)."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from mcp_checkpoint.core.models import (
    CheckpointContent,
    CheckpointId,
    MemoryId,
    RunId,
    StepDraft,
    Tenant,
)
from mcp_checkpoint.core.ports import StepQuery, Store
from mcp_checkpoint.errors import NotFoundError
from tests.contract.conftest import (
    T0,
    TENANT_A,
    TENANT_B,
    Clock,
    append,
    draft,
    make_proposal,
    make_run,
    new_memory,
    seed_memories,
)

pytestmark = pytest.mark.anyio


async def _checkpoint(store: Store, tenant: Tenant, run_id: str, cp: str, parent: str | None,
                      clock: Clock) -> None:
    await store.add_checkpoint(
        tenant, RunId(run_id), checkpoint_id=CheckpointId(cp),
        parent_id=None if parent is None else CheckpointId(parent), through_seq=None,
        content=CheckpointContent(progress=[cp]), source="model", tokens=5, now=clock(),
    )


async def _step(store: Store, run_id: str, tool: str, text: str, clock: Clock, *,
                status: str = "ok", tenant: Tenant = TENANT_A) -> None:
    await append(store, run_id, StepDraft(tool=tool, input={"cmd": text}, output="done",
                                          status=status, idempotency_key=f"k-{text}"),  # type: ignore[arg-type]
                 now=clock(), tenant=tenant)


async def test_delete_run_removes_the_ledger_checkpoints_and_tombstones(
    store: Store, clock: Clock
) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    await store.create_run(TENANT_A, make_run("keep"))
    for i in range(6):
        await append(store, "r1", draft(i, key=f"k{i}"), now=clock())
        await append(store, "keep", draft(i), now=clock())
        if i in (1, 3):
            await _checkpoint(store, TENANT_A, "r1", f"c{i}", None if i == 1 else "c1", clock)
    await store.update_run(TENANT_A, RunId("r1"), expected_version=1, status="completed",
                           now=clock())
    pruned = await store.prune_run(TENANT_A, RunId("r1"), keep_checkpoints=1,
                                   finished_before=clock() + timedelta(days=1), now=clock())
    assert pruned.checkpoint_ids == [CheckpointId("c1")]  # c1 is now a tombstone

    deleted = await store.delete_run(TENANT_A, RunId("r1"))

    assert deleted.run_id == "r1"
    assert deleted.steps == 6 - pruned.steps_removed
    assert deleted.checkpoints == 1
    with pytest.raises(NotFoundError):
        await store.get_run(TENANT_A, RunId("r1"))
    with pytest.raises(NotFoundError):
        await store.get_steps(TENANT_A, RunId("r1"), limit=10)
    with pytest.raises(NotFoundError):
        await store.list_checkpoints(TENANT_A, RunId("r1"), limit=10, offset=0)
    assert await store.find_checkpoint(TENANT_A, CheckpointId("c1")) is None
    assert await store.find_checkpoint(TENANT_A, CheckpointId("c3")) is None
    assert await store.match_ids(TENANT_A, "run", "", limit=10) == ["keep"]
    assert len(await store.get_steps(TENANT_A, RunId("keep"), limit=10)) == 6
    # The id and its idempotency keys are free again: a new run starts from nothing.
    await store.create_run(TENANT_A, make_run("r1"))
    ack = await append(store, "r1", draft(0, key="k0"), now=clock())
    assert (ack.seq, ack.duplicate) == (1, False)
    with pytest.raises(NotFoundError):
        await store.delete_run(TENANT_A, RunId("nope"))


async def test_delete_run_of_another_tenant_is_not_found(store: Store, clock: Clock) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    await append(store, "r1", draft(1), now=clock())
    with pytest.raises(NotFoundError):
        await store.delete_run(TENANT_B, RunId("r1"))
    assert (await store.get_run(TENANT_A, RunId("r1"))).step_count == 1


async def test_search_steps_finds_words_with_filters_best_first(
    store: Store, clock: Clock
) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    await store.create_run(TENANT_A, make_run("r2"))
    await store.create_run(TENANT_B, make_run("r1"))
    await _step(store, "r1", "bash", "pytest login timeout", clock)
    await _step(store, "r1", "edit", "fix login form", clock, status="error")
    middle = clock()
    await _step(store, "r2", "bash", "deploy the database", clock)
    await _step(store, "r2", "bash", "login login login retry", clock)
    await _step(store, "r1", "bash", "secret login of b", clock, tenant=TENANT_B)

    hits = await store.search_steps(TENANT_A, StepQuery("login"), limit=10)
    assert {(s.run_id, s.seq) for s, _ in hits} == {("r1", 1), ("r1", 2), ("r2", 2)}
    assert hits[0][0].run_id == "r2"  # the step saying it three times ranks first
    assert all(a[1] >= b[1] for a, b in itertools.pairwise(hits))
    by_run = await store.search_steps(TENANT_A, StepQuery("login", run_id=RunId("r1")), limit=10)
    assert {s.seq for s, _ in by_run} == {1, 2}
    errors = await store.search_steps(TENANT_A, StepQuery("login", status="error"), limit=10)
    assert [(s.run_id, s.seq, s.tool) for s, _ in errors] == [("r1", 2, "edit")]
    tools = await store.search_steps(TENANT_A, StepQuery("login", tool="edit"), limit=10)
    assert [s.seq for s, _ in tools] == [2]
    later = await store.search_steps(TENANT_A, StepQuery("login", since=middle), limit=10)
    assert [(s.run_id, s.seq) for s, _ in later] == [("r2", 2)]
    earlier = await store.search_steps(TENANT_A, StepQuery("login", until=middle), limit=10)
    assert {(s.run_id, s.seq) for s, _ in earlier} == {("r1", 1), ("r1", 2)}
    assert len(await store.search_steps(TENANT_A, StepQuery("login"), limit=1)) == 1
    assert await store.search_steps(TENANT_A, StepQuery('" OR * NEAR( -'), limit=10) == []
    assert await store.search_steps(TENANT_A, StepQuery("nothing matches"), limit=10) == []
    assert [s.seq for s, _ in await store.search_steps(
        TENANT_A, StepQuery("database"), limit=10)] == [1]


async def test_search_steps_with_a_depth_ranks_only_the_newest_matches(
    store: Store, clock: Clock
) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    await store.create_run(TENANT_A, make_run("r2"))
    await _step(store, "r1", "bash", "login login login login", clock)
    for i in range(4):
        await _step(store, "r1", "bash", f"login number {i}", clock)
    await _step(store, "r2", "bash", "login login login elsewhere", clock)
    await _step(store, "r1", "bash", "nothing to see", clock)

    every = await store.search_steps(TENANT_A, StepQuery("login", run_id=RunId("r1")),
                                     limit=10)
    assert every[0][0].seq == 1 and len(every) == 5
    newest = await store.search_steps(TENANT_A, StepQuery("login", run_id=RunId("r1")),
                                      limit=2, depth=2)
    assert {s.seq for s, _ in newest} == {4, 5}
    assert (await store.search_steps(TENANT_A, StepQuery("login", run_id=RunId("r1")),
                                     limit=2))[0][0].seq == 1
    # Never fewer candidates than hits asked for.
    assert len(await store.search_steps(TENANT_A, StepQuery("login", run_id=RunId("r1")),
                                        limit=3, depth=1)) == 3
    # Across runs, the most recently recorded.
    across = await store.search_steps(TENANT_A, StepQuery("login"), limit=2, depth=2)
    assert {(s.run_id, s.seq) for s, _ in across} == {("r2", 1), ("r1", 5)}
    assert across[0][0].run_id == "r2"
    filtered = await store.search_steps(
        TENANT_A, StepQuery("login", run_id=RunId("r1"), tool="bash", status="ok"),
        limit=3, depth=3)
    assert {s.seq for s, _ in filtered} == {3, 4, 5}


async def test_search_steps_never_finds_deleted_or_pruned_steps(
    store: Store, clock: Clock
) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    await store.create_run(TENANT_A, make_run("r2"))
    for i in range(4):
        await _step(store, "r1", "bash", f"needle {i}", clock)
    await _step(store, "r2", "bash", "needle in r2", clock)
    await _checkpoint(store, TENANT_A, "r1", "c1", None, clock)
    await _step(store, "r1", "bash", "needle after", clock)
    await store.update_run(TENANT_A, RunId("r1"), expected_version=1, status="completed",
                           now=clock())
    await store.prune_run(TENANT_A, RunId("r1"), keep_checkpoints=1,
                          finished_before=clock() + timedelta(days=1), now=clock())
    left = await store.search_steps(TENANT_A, StepQuery("needle"), limit=10)
    assert {(s.run_id, s.seq) for s, _ in left} == {("r1", 5), ("r2", 1)}
    await store.delete_run(TENANT_A, RunId("r2"))
    left = await store.search_steps(TENANT_A, StepQuery("needle"), limit=10)
    assert {(s.run_id, s.seq) for s, _ in left} == {("r1", 5)}


async def test_delete_memory_removes_it_from_reads_lists_and_search(store: Store) -> None:
    await seed_memories(store, [new_memory("m1", "the deploy key rotates monthly"),
                                new_memory("m2", "the deploy script lives in ops")])
    forgotten_at = T0 + timedelta(days=3, microseconds=7)
    await store.delete_memory(TENANT_A, MemoryId("m1"), now=forgotten_at)
    with pytest.raises(NotFoundError):
        await store.get_memory(TENANT_A, MemoryId("m1"))
    # The tombstone says when; another tenant's view of the id says nothing.
    assert await store.forgotten_memories(
        TENANT_A, [MemoryId("m1"), MemoryId("m2"), MemoryId("nope")]
    ) == {"m1": forgotten_at}
    assert await store.forgotten_memories(TENANT_B, [MemoryId("m1")]) == {}
    assert await store.forgotten_memories(TENANT_A, []) == {}
    assert [m.memory_id for _, m in await store.list_memories(TENANT_A, status=None, limit=10)
            ] == ["m2"]
    assert [m.memory_id for m, _ in await store.search_lexical(TENANT_A, "deploy", limit=10)
            ] == ["m2"]
    assert await store.get_memories(TENANT_A, [MemoryId("m1"), MemoryId("m2")]) != []
    with pytest.raises(NotFoundError):
        await store.delete_memory(TENANT_A, MemoryId("m1"), now=forgotten_at)
    with pytest.raises(NotFoundError):
        await store.delete_memory(TENANT_B, MemoryId("m2"), now=forgotten_at)
    batch = await store.get_proposal(TENANT_A, "b-seed")  # type: ignore[arg-type]
    assert batch.memory_ids[0] == "m1"  # provenance keeps the id


async def test_list_proposals_newest_first_by_status(store: Store) -> None:
    for i in range(4):
        await store.add_proposal(TENANT_A, make_proposal(f"b{i}", [f"fact {i}"],
                                                         now=T0 + timedelta(minutes=i)))
    await store.add_proposal(TENANT_B, make_proposal("b9", ["other"], now=T0))
    await store.expire_proposal(TENANT_A, "b2", now=T0)  # type: ignore[arg-type]
    listed = await store.list_proposals(TENANT_A, status=None, limit=10, offset=0)
    assert [p.batch_id for p in listed] == ["b3", "b2", "b1", "b0"]
    pending = await store.list_proposals(TENANT_A, status="pending", limit=2, offset=1)
    assert [p.batch_id for p in pending] == ["b1", "b0"]
    assert await store.list_proposals(TENANT_A, status="pending", limit=0, offset=0) == []


async def test_match_ids_by_prefix_per_kind_and_tenant(store: Store, clock: Clock) -> None:
    for rid in ("run_aa1", "run_aa2", "run_ab1", "zz"):
        await store.create_run(TENANT_A, make_run(rid))
    await store.create_run(TENANT_B, make_run("run_aa3"))
    await append(store, "run_aa1", draft(1), now=clock())
    await _checkpoint(store, TENANT_A, "run_aa1", "cp_x1", None, clock)
    await seed_memories(store, [new_memory("mem_1", "a"), new_memory("mem_2", "b")])
    assert await store.match_ids(TENANT_A, "run", "run_aa", limit=10) == ["run_aa1", "run_aa2"]
    assert await store.match_ids(TENANT_A, "run", "run_a", limit=2) == ["run_aa1", "run_aa2"]
    assert await store.match_ids(TENANT_A, "run", "run_aa1", limit=10) == ["run_aa1"]
    assert await store.match_ids(TENANT_A, "run", "", limit=10) == [
        "run_aa1", "run_aa2", "run_ab1", "zz"]
    assert await store.match_ids(TENANT_B, "run", "run_", limit=10) == ["run_aa3"]
    assert await store.match_ids(TENANT_A, "checkpoint", "cp_", limit=10) == ["cp_x1"]
    assert await store.match_ids(TENANT_A, "memory", "mem_", limit=10) == ["mem_1", "mem_2"]
    assert await store.match_ids(TENANT_A, "batch", "b-", limit=10) == ["b-seed"]
    assert await store.match_ids(TENANT_A, "run", "nope", limit=10) == []
    assert await store.match_ids(TENANT_B, "memory", "mem_", limit=10) == []


async def test_step_points_reads_the_asked_steps_in_one_go(store: Store, clock: Clock) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    for i in range(6):
        await append(store, "r1", draft(i), now=clock(), tokens=10 + i)
        if i == 2:
            await _checkpoint(store, TENANT_A, "r1", "c1", None, clock)
    points = await store.step_points(TENANT_A, RunId("r1"), [6, 1, 4, 99, 4])
    assert points == [(1, 1, 10), (4, 2, 10 + 11 + 12 + 13), (6, 2, 75)]
    assert await store.step_points(TENANT_A, RunId("r1"), []) == []
    with pytest.raises(NotFoundError):
        await store.step_points(TENANT_B, RunId("r1"), [1])


async def test_step_stats_count_steps_and_tokens_by_tool_and_status(
    store: Store, clock: Clock
) -> None:
    from mcp_checkpoint.config import Settings
    from mcp_checkpoint.core.episodes import Episodes
    from mcp_checkpoint.core.models import StepDraft
    from mcp_checkpoint.core.tokens import HeuristicTokenizer

    episodes = Episodes(store, HeuristicTokenizer(), Settings(), clock=clock)
    await episodes.start_run(TENANT_A, "stats", run_id="r1")
    acks = []
    for tool, status in [("bash", "ok"), ("bash", "error"), ("edit", "ok"), ("bash", "ok")]:
        acks.append(await episodes.record_step(
            TENANT_A, "r1", StepDraft(tool=tool, status=status, output=f"{tool} {status}")))
    stats = await store.step_stats(TENANT_A, RunId("r1"))
    assert [(s.tool, s.status, s.steps) for s in stats] == [
        ("bash", "ok", 2), ("bash", "error", 1), ("edit", "ok", 1)
    ]
    run = await store.get_run(TENANT_A, RunId("r1"))
    assert sum(s.tokens for s in stats) == run.head_tokens
    with pytest.raises(NotFoundError):
        await store.step_stats(TENANT_B, RunId("r1"))
    await store.create_run(TENANT_A, make_run("empty"))
    assert await store.step_stats(TENANT_A, RunId("empty")) == []
