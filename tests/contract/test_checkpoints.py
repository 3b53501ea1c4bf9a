"""EpisodicStore: add_checkpoint, get_checkpoint, get_checkpoint_by_number, list_checkpoints."""

from __future__ import annotations

from datetime import datetime

import pytest

from mcp_checkpoint.core.models import (
    Checkpoint,
    CheckpointContent,
    CheckpointId,
    RunId,
    Tenant,
)
from mcp_checkpoint.core.ports import Store
from mcp_checkpoint.errors import ConflictError, InvalidArgumentError, NotFoundError

from .conftest import TENANT_A, TENANT_B, Clock, append, draft, make_run

pytestmark = pytest.mark.anyio

R1 = RunId("r1")
CONTENT = CheckpointContent(
    progress=["read the spec", "wrote the store"],
    state={"branch": "main", "files": ["a.py", "b.py"], "nested": {"ok": True, "n": 1.25}},
    decisions=["SQLite first: no server needed"],
    next_actions=["run the tests"],
    open_questions=["which tokenizer?"],
    errors=["flaky test once"],
    artifacts=["store.py"],
)


async def _run_with_steps(store: Store, clock: Clock, count: int, *, tokens: int = 10) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    for i in range(count):
        await append(store, "r1", draft(i), now=clock(), tokens=tokens + i)


async def _checkpoint(
    store: Store,
    checkpoint_id: str,
    parent_id: str | None,
    through_seq: int | None,
    now: datetime,
    *,
    run_id: RunId = R1,
    tenant: Tenant = TENANT_A,
) -> Checkpoint:
    return await store.add_checkpoint(
        tenant,
        run_id,
        checkpoint_id=CheckpointId(checkpoint_id),
        parent_id=None if parent_id is None else CheckpointId(parent_id),
        through_seq=through_seq,
        content=CONTENT,
        source="model",
        tokens=42,
        now=now,
    )


async def test_add_checkpoint_inserts_the_first_and_makes_it_latest(
    store: Store, clock: Clock
) -> None:
    await _run_with_steps(store, clock, 5)
    now = clock()

    checkpoint = await _checkpoint(store, "c1", None, 3, now)

    assert checkpoint == Checkpoint(
        checkpoint_id=CheckpointId("c1"), run_id=R1, number=1, parent_id=None, through_seq=3,
        head_seq=5, content=CONTENT, source="model", tokens=42, created_at=now,
    )
    run = await store.get_run(TENANT_A, R1)
    assert (run.latest_checkpoint_id, run.checkpoint_count, run.covered_seq) == ("c1", 1, 3)


async def test_add_checkpoint_covered_tokens_are_cumulative_up_to_through_seq(
    store: Store, clock: Clock
) -> None:
    await _run_with_steps(store, clock, 5)  # tokens 10, 11, 12, 13, 14

    await _checkpoint(store, "c1", None, 3, clock())

    run = await store.get_run(TENANT_A, R1)
    assert run.covered_tokens == 33
    assert (run.working_steps, run.working_tokens) == (2, 27)


async def test_add_checkpoint_through_seq_none_means_the_head(
    store: Store, clock: Clock
) -> None:
    await _run_with_steps(store, clock, 4)

    checkpoint = await _checkpoint(store, "c1", None, None, clock())

    assert (checkpoint.through_seq, checkpoint.head_seq) == (4, 4)
    run = await store.get_run(TENANT_A, R1)
    assert (run.covered_seq, run.covered_tokens, run.working_steps) == (4, 46, 0)


async def test_add_checkpoint_on_a_run_without_steps_covers_nothing(
    store: Store, clock: Clock
) -> None:
    await _run_with_steps(store, clock, 0)

    checkpoint = await _checkpoint(store, "c1", None, None, clock())

    assert checkpoint.through_seq == 0
    run = await store.get_run(TENANT_A, R1)
    assert (run.covered_seq, run.covered_tokens, run.checkpoint_count) == (0, 0, 1)


async def test_add_checkpoint_keeps_later_steps_in_working_memory(
    store: Store, clock: Clock
) -> None:
    await _run_with_steps(store, clock, 3)
    await _checkpoint(store, "c1", None, 2, clock())

    await append(store, "r1", draft(9), now=clock(), tokens=100)

    run = await store.get_run(TENANT_A, R1)
    assert (run.head_seq, run.covered_seq, run.working_steps, run.working_tokens) == (
        4, 2, 2, 112
    )
    steps = await store.get_steps(TENANT_A, R1, after_seq=run.covered_seq, limit=10)
    assert [s.seq for s in steps] == [3, 4]


async def test_add_checkpoint_chains_to_its_parent(store: Store, clock: Clock) -> None:
    await _run_with_steps(store, clock, 4)
    await _checkpoint(store, "c1", None, 2, clock())

    second = await _checkpoint(store, "c2", "c1", 4, clock())

    assert (second.number, second.parent_id, second.through_seq) == (2, "c1", 4)
    run = await store.get_run(TENANT_A, R1)
    assert (run.latest_checkpoint_id, run.checkpoint_count, run.covered_seq) == ("c2", 2, 4)


async def test_add_checkpoint_with_a_stale_parent_conflicts_and_writes_nothing(
    store: Store, clock: Clock
) -> None:
    await _run_with_steps(store, clock, 4)
    await _checkpoint(store, "c1", None, 2, clock())  # won the race
    before = await store.get_run(TENANT_A, R1)

    with pytest.raises(ConflictError):
        await _checkpoint(store, "c1-loser", None, 3, clock())

    assert await store.get_run(TENANT_A, R1) == before
    with pytest.raises(NotFoundError):
        await store.get_checkpoint(TENANT_A, R1, CheckpointId("c1-loser"))


async def test_add_checkpoint_with_an_unknown_parent_conflicts(
    store: Store, clock: Clock
) -> None:
    await _run_with_steps(store, clock, 2)

    with pytest.raises(ConflictError):
        await _checkpoint(store, "c1", "c0", None, clock())


@pytest.mark.parametrize(
    ("through_seq", "ok"),
    [
        pytest.param(1, False, id="below-covered"),
        pytest.param(2, True, id="equal-covered"),
        pytest.param(5, True, id="equal-head"),
        pytest.param(6, False, id="beyond-head"),
        pytest.param(-1, False, id="negative"),
    ],
)
async def test_add_checkpoint_through_seq_must_lie_between_covered_and_head(
    store: Store, clock: Clock, through_seq: int, ok: bool
) -> None:
    await _run_with_steps(store, clock, 5)
    await _checkpoint(store, "c1", None, 2, clock())
    before = await store.get_run(TENANT_A, R1)

    if ok:
        checkpoint = await _checkpoint(store, "c2", "c1", through_seq, clock())
        assert checkpoint.through_seq == through_seq
        assert (await store.get_run(TENANT_A, R1)).covered_seq == through_seq
    else:
        with pytest.raises(InvalidArgumentError):
            await _checkpoint(store, "c2", "c1", through_seq, clock())
        assert await store.get_run(TENANT_A, R1) == before


async def test_add_checkpoint_unknown_run_is_not_found(store: Store, clock: Clock) -> None:
    with pytest.raises(NotFoundError):
        await _checkpoint(store, "c1", None, None, clock(), run_id=RunId("nope"))


async def test_add_checkpoint_on_another_tenants_run_is_not_found_and_writes_nothing(
    store: Store, clock: Clock
) -> None:
    await _run_with_steps(store, clock, 2)

    with pytest.raises(NotFoundError):
        await _checkpoint(store, "c1", None, None, clock(), tenant=TENANT_B)

    assert (await store.get_run(TENANT_A, R1)).checkpoint_count == 0


async def test_get_checkpoint_reads_back_what_was_added(store: Store, clock: Clock) -> None:
    await _run_with_steps(store, clock, 2)
    added = await _checkpoint(store, "c1", None, None, clock())

    assert await store.get_checkpoint(TENANT_A, R1, CheckpointId("c1")) == added


async def test_get_checkpoint_unknown_is_not_found(store: Store, clock: Clock) -> None:
    await _run_with_steps(store, clock, 1)

    with pytest.raises(NotFoundError):
        await store.get_checkpoint(TENANT_A, R1, CheckpointId("nope"))
    with pytest.raises(NotFoundError):
        await store.get_checkpoint(TENANT_A, RunId("nope"), CheckpointId("nope"))


async def test_get_checkpoint_of_another_run_or_tenant_is_not_found(
    store: Store, clock: Clock
) -> None:
    await _run_with_steps(store, clock, 1)
    await store.create_run(TENANT_A, make_run("r2"))
    await _checkpoint(store, "c1", None, None, clock())

    with pytest.raises(NotFoundError):
        await store.get_checkpoint(TENANT_A, RunId("r2"), CheckpointId("c1"))
    with pytest.raises(NotFoundError):
        await store.get_checkpoint(TENANT_B, R1, CheckpointId("c1"))


async def test_get_checkpoint_by_number_is_one_based_or_none(
    store: Store, clock: Clock
) -> None:
    await _run_with_steps(store, clock, 3)
    first = await _checkpoint(store, "c1", None, 1, clock())
    second = await _checkpoint(store, "c2", "c1", 3, clock())

    found = [await store.get_checkpoint_by_number(TENANT_A, R1, n) for n in (0, 1, 2, 3)]

    assert found == [None, first, second, None]


async def test_get_checkpoint_by_number_of_another_tenant_is_hidden(
    store: Store, clock: Clock
) -> None:
    await _run_with_steps(store, clock, 1)
    await _checkpoint(store, "c1", None, None, clock())
    await store.create_run(TENANT_B, make_run("r1"))

    assert await store.get_checkpoint_by_number(TENANT_B, R1, 1) is None


async def test_list_checkpoints_newest_first_paginated(store: Store, clock: Clock) -> None:
    await _run_with_steps(store, clock, 5)
    parent: str | None = None
    for n in range(1, 6):
        await _checkpoint(store, f"c{n}", parent, n, clock())
        parent = f"c{n}"

    pages = [
        await store.list_checkpoints(TENANT_A, R1, limit=2, offset=offset)
        for offset in (0, 2, 4, 6)
    ]

    assert [[c.checkpoint_id for c in page] for page in pages] == [
        ["c5", "c4"], ["c3", "c2"], ["c1"], []
    ]


async def test_list_checkpoints_of_another_tenant_shows_nothing(
    store: Store, clock: Clock
) -> None:
    await _run_with_steps(store, clock, 1)
    await _checkpoint(store, "c1", None, None, clock())
    await store.create_run(TENANT_B, make_run("r1"))

    assert await store.list_checkpoints(TENANT_B, R1, limit=10, offset=0) == []


async def test_add_checkpoint_with_an_existing_id_conflicts_and_writes_nothing(
    store: Store, clock: Clock
) -> None:
    await _run_with_steps(store, clock, 4)
    await _checkpoint(store, "c1", None, 2, clock())

    with pytest.raises(ConflictError):
        await _checkpoint(store, "c1", "c1", 4, clock())

    run = await store.get_run(TENANT_A, R1)
    assert (run.checkpoint_count, run.covered_seq) == (1, 2)


async def test_list_checkpoints_negative_offset_and_empty_limit(
    store: Store, clock: Clock
) -> None:
    await _run_with_steps(store, clock, 2)
    await _checkpoint(store, "c1", None, 1, clock())
    await _checkpoint(store, "c2", "c1", 2, clock())

    assert [c.checkpoint_id for c in await store.list_checkpoints(
        TENANT_A, R1, limit=5, offset=-3
    )] == ["c2", "c1"]
    assert await store.list_checkpoints(TENANT_A, R1, limit=0, offset=0) == []
