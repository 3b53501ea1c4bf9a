"""Store.import_records: runs, ledgers, checkpoints, batches and memories inserted exactly as
given, in one transaction, with their idempotency keys live."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mcp_checkpoint.core.ledger import request_hash, verify_run
from mcp_checkpoint.core.models import (
    BatchId,
    CheckpointContent,
    CheckpointId,
    MemoryId,
    Run,
    RunId,
    StepAck,
    Tenant,
)
from mcp_checkpoint.core.ports import (
    CommitPlan,
    ImportedRun,
    ImportedStep,
    ImportRecords,
    MemoryStatusChange,
    Store,
)
from mcp_checkpoint.errors import ConflictError, NotFoundError
from mcp_checkpoint.storage.reference.store import ReferenceStore

from .conftest import (
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

R1 = RunId("r1")


async def source_records(clock: Clock) -> ImportRecords:
    """A run with 7 steps (keyed and not) and 2 checkpoints, a committed batch of two
    memories, and a second batch that superseded one of them: built in the reference
    store, then read back."""
    source = ReferenceStore()
    await source.create_run(TENANT_A, make_run("r1"))
    acks: list[StepAck] = []
    hashes: list[str] = []
    drafts = [draft(i, key=f"k{i}" if i % 2 else None) for i in range(7)]
    for i, step in enumerate(drafts):
        acks.append(await append(source, "r1", step, now=clock(), tokens=3 + i))
        hashes.append(request_hash(step))
        if i in (2, 4):
            run = await source.get_run(TENANT_A, R1)
            await source.add_checkpoint(
                TENANT_A, R1, checkpoint_id=CheckpointId(f"cp{i}"),
                parent_id=run.latest_checkpoint_id, through_seq=i if i == 4 else None,
                content=CheckpointContent(progress=[f"did {i}"], state={"i": i}),
                source="model", tokens=9, now=clock(),
            )
    await seed_memories(source, [
        new_memory("m1", "the deploy script needs bash 5"),
        new_memory("m2", "tests run with pytest -x", scope="proj"),
    ], now=clock())
    await source.add_proposal(TENANT_A, make_proposal("b2", ["pytest runs with -q"]))
    await source.commit_proposal(TENANT_A, CommitPlan(
        batch_id=BatchId("b2"), accepted=[0], rejected=[],
        inserts=[new_memory("m3", "tests run with pytest -q", batch_id="b2", scope="proj")],
        status_changes=[MemoryStatusChange(MemoryId("m2"), 1, "superseded", MemoryId("m3"))],
        memory_ids={0: MemoryId("m3")},
    ), now=clock())
    run = await source.get_run(TENANT_A, R1)
    steps = await source.get_steps(TENANT_A, R1, limit=100)
    checkpoints = list(reversed(await source.list_checkpoints(TENANT_A, R1, limit=10, offset=0)))
    return ImportRecords(
        runs=[ImportedRun(
            run,
            [ImportedStep(s, h, a) for s, h, a in zip(steps, hashes, acks, strict=True)],
            checkpoints,
        )],
        proposals=[await source.get_proposal(TENANT_A, BatchId(b)) for b in ("b-seed", "b2")],
        memories=[m for _, m in await source.list_memories(TENANT_A, status=None, limit=10)],
    )


async def test_import_records_keeps_every_field(store: Store, clock: Clock) -> None:
    records = await source_records(clock)
    imported = records.runs[0]

    await store.import_records(TENANT_A, records)

    assert await store.get_run(TENANT_A, R1) == imported.run
    assert await store.get_steps(TENANT_A, R1, limit=100) == [s.step for s in imported.steps]
    assert list(reversed(await store.list_checkpoints(TENANT_A, R1, limit=10, offset=0))) == (
        imported.checkpoints
    )
    assert await store.get_checkpoint_by_number(TENANT_A, R1, 2) == imported.checkpoints[1]
    for proposal in records.proposals:
        assert await store.get_proposal(TENANT_A, proposal.batch_id) == proposal
    stored = await store.get_memories(TENANT_A, [m.memory_id for m in records.memories])
    assert stored == records.memories
    assert (await store.get_memory(TENANT_A, MemoryId("m2"))).superseded_by == "m3"
    assert await verify_run(store, TENANT_A, R1) == 7


async def test_import_records_makes_active_memories_searchable_at_once(
    store: Store, clock: Clock
) -> None:
    await store.import_records(TENANT_A, await source_records(clock))

    hits = await store.search_lexical(TENANT_A, "pytest", limit=10)

    assert [m.memory_id for m, _ in hits] == ["m3"]  # m2 is superseded


async def test_import_records_registers_idempotency_keys_with_their_acks(
    store: Store, clock: Clock
) -> None:
    records = await source_records(clock)
    await store.import_records(TENANT_A, records)
    first = records.runs[0].steps[3]  # key "k3"

    retried = await append(store, "r1", draft(3, key="k3"), now=clock())

    assert retried == first.ack.model_copy(update={"duplicate": True})
    assert (await store.get_run(TENANT_A, R1)).head_seq == 7
    with pytest.raises(ConflictError, match="k3"):
        await append(store, "r1", draft(99, key="k3"), now=clock())


async def test_import_records_continues_the_ledger_and_the_checkpoints(
    store: Store, clock: Clock
) -> None:
    records = await source_records(clock)
    await store.import_records(TENANT_A, records)
    head = records.runs[0].run

    ack = await append(store, "r1", draft(100), now=clock())
    checkpoint = await store.add_checkpoint(
        TENANT_A, R1, checkpoint_id=CheckpointId("cp-next"), parent_id=head.latest_checkpoint_id,
        through_seq=None, content=CheckpointContent(), source="rules", tokens=1, now=clock(),
    )

    assert (ack.seq, ack.episode) == (8, 3)
    steps = await store.get_steps(TENANT_A, R1, after_seq=7, limit=1)
    assert steps[0].prev_hash == head.head_hash
    assert (checkpoint.number, checkpoint.parent_id) == (3, head.latest_checkpoint_id)
    assert await verify_run(store, TENANT_A, R1) == 8


@pytest.mark.parametrize("taken", ["run", "batch", "memory"])
async def test_import_records_refuses_a_taken_id_and_writes_nothing(
    store: Store, clock: Clock, taken: str
) -> None:
    records = await source_records(clock)
    if taken == "run":
        await store.create_run(TENANT_A, make_run("r1"))
    elif taken == "batch":
        await store.add_proposal(TENANT_A, make_proposal("b2", ["something else"]))
    else:
        await seed_memories(store, [new_memory("m3", "another m3")], batch_id="b-other")

    with pytest.raises(ConflictError, match=f"{taken} "):
        await store.import_records(TENANT_A, records)

    if taken == "run":
        assert (await store.get_run(TENANT_A, R1)).head_seq == 0
    else:
        with pytest.raises(NotFoundError):
            await store.get_run(TENANT_A, R1)
    with pytest.raises(NotFoundError):
        await store.get_proposal(TENANT_A, BatchId("b-seed"))
    assert await store.get_memories(TENANT_A, [MemoryId("m1"), MemoryId("m2")]) == []


async def test_import_records_refuses_an_id_given_twice_and_writes_nothing(
    store: Store, clock: Clock
) -> None:
    records = await source_records(clock)
    twice = replace(records, memories=[*records.memories, records.memories[0]])

    with pytest.raises(ConflictError, match="memory m1"):
        await store.import_records(TENANT_A, twice)

    with pytest.raises(NotFoundError):
        await store.get_run(TENANT_A, R1)
    assert await store.get_memories(TENANT_A, [MemoryId("m1")]) == []


async def test_import_records_is_per_tenant(store: Store, clock: Clock) -> None:
    records = await source_records(clock)
    other: Run = make_run("r1").model_copy(update={"objective": "tenant a's own r1"})
    await store.create_run(TENANT_A, other)

    await store.import_records(TENANT_B, records)

    assert await store.get_run(TENANT_A, R1) == other
    assert (await store.get_run(TENANT_B, R1)).head_seq == 7
    assert await store.get_memories(Tenant("tenant-a"), [MemoryId("m1")]) == []
