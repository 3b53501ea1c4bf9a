"""EpisodicStore: append_step (seq, hash chain, idempotency) and get_steps."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mcp_checkpoint.core.ledger import genesis_hash, request_hash, step_hash, verify_chain
from mcp_checkpoint.core.models import CheckpointContent, CheckpointId, Run, RunId, Step, StepAck
from mcp_checkpoint.core.ports import Store
from mcp_checkpoint.errors import ConflictError, NotFoundError

from .conftest import TENANT_A, TENANT_B, Clock, append, draft, make_ack, make_run

pytestmark = pytest.mark.anyio

R1 = RunId("r1")


async def _steps(store: Store, run_id: RunId = R1) -> list[Step]:
    return await store.get_steps(TENANT_A, run_id, limit=10_000)


async def test_append_step_gives_gap_free_increasing_seq(store: Store, clock: Clock) -> None:
    await store.create_run(TENANT_A, make_run("r1"))

    acks = [await append(store, "r1", draft(i), now=clock()) for i in range(5)]

    assert [a.seq for a in acks] == [1, 2, 3, 4, 5]
    assert [s.seq for s in await _steps(store)] == [1, 2, 3, 4, 5]


async def test_append_step_chains_hashes_and_advances_the_head(
    store: Store, clock: Clock
) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    first_now, second_now = clock(), clock()

    await append(store, "r1", draft(1), now=first_now, tokens=7)
    await append(store, "r1", draft(2), now=second_now, tokens=5)

    first, second = await _steps(store)
    assert first.prev_hash == genesis_hash(R1)
    assert first.hash == step_hash(genesis_hash(R1), R1, 1, draft(1), first_now)
    assert second.prev_hash == first.hash
    assert second.hash == step_hash(first.hash, R1, 2, draft(2), second_now)
    assert (first.cum_tokens, second.cum_tokens) == (7, 12)
    run = await store.get_run(TENANT_A, R1)
    assert (run.head_seq, run.step_count, run.head_hash, run.head_tokens) == (
        2, 2, second.hash, 12
    )


async def test_append_step_hash_chain_verifies_over_many_steps(
    store: Store, clock: Clock
) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    for i in range(150):
        await append(store, "r1", draft(i, key=f"k{i}" if i % 2 else None), now=clock())

    steps = await _steps(store)

    assert len(steps) == 150
    assert verify_chain(R1, steps) == (await store.get_run(TENANT_A, R1)).head_hash


async def test_append_step_stores_content_and_time_exactly(store: Store) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    # Another offset and microseconds: the hash covers created_at.isoformat().
    now = datetime(2025, 6, 1, 9, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    step_draft = draft(3).model_copy(update={
        "output": {"text": "naïve – ✓ 🚀", "big": 2**53 + 1, "pi": 3.141592653589793},
        "reasoning": "why not",
        "status": "error",
    })

    await append(store, "r1", step_draft, now=now, tokens=4)

    (step,) = await _steps(store)
    assert (step.tool, step.input, step.output, step.reasoning, step.status) == (
        step_draft.tool, step_draft.input, step_draft.output, "why not", "error"
    )
    assert step.created_at == now
    assert step.created_at.isoformat() == now.isoformat()
    verify_chain(R1, [step])


async def test_append_step_ack_is_made_from_the_run_after_the_append(
    store: Store, clock: Clock
) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    seen: list[tuple[Run, Step]] = []

    def spy(run: Run, step: Step) -> StepAck:
        seen.append((run, step))
        return make_ack(run, step)

    ack = await store.append_step(
        TENANT_A, R1, draft(1), tokens=9, request_hash=request_hash(draft(1)), now=clock(),
        make_ack=spy,
    )

    ((run_after, step),) = seen
    assert (run_after.head_seq, run_after.head_tokens, run_after.head_hash) == (1, 9, step.hash)
    assert ack == make_ack(run_after, step)
    assert (ack.seq, ack.episode, ack.working_steps, ack.working_tokens) == (1, 1, 1, 9)
    assert ack.duplicate is False


async def test_append_step_retry_returns_the_stored_ack_and_writes_nothing(
    store: Store, clock: Clock
) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    first = await append(store, "r1", draft(1, key="once"), now=clock())
    await append(store, "r1", draft(2), now=clock())
    await append(store, "r1", draft(3), now=clock())
    before = await store.get_run(TENANT_A, R1)

    retry = await append(store, "r1", draft(1, key="once"), now=clock())

    assert retry == first.model_copy(update={"duplicate": True})
    assert await store.get_run(TENANT_A, R1) == before
    assert [s.seq for s in await _steps(store)] == [1, 2, 3]


async def test_append_step_idempotency_key_with_another_request_conflicts(
    store: Store, clock: Clock
) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    await append(store, "r1", draft(1, key="once"), now=clock())
    before = await store.get_run(TENANT_A, R1)

    with pytest.raises(ConflictError):
        await append(store, "r1", draft(2, key="once"), now=clock())

    assert await store.get_run(TENANT_A, R1) == before
    assert len(await _steps(store)) == 1


async def test_append_step_idempotency_key_is_per_run(store: Store, clock: Clock) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    await store.create_run(TENANT_A, make_run("r2"))
    await append(store, "r1", draft(1, key="k"), now=clock())

    ack = await append(store, "r2", draft(1, key="k"), now=clock())

    assert (ack.seq, ack.duplicate) == (1, False)
    assert len(await _steps(store, RunId("r2"))) == 1


async def test_append_step_episode_follows_the_checkpoint_count(
    store: Store, clock: Clock
) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    await append(store, "r1", draft(1), now=clock())
    await store.add_checkpoint(
        TENANT_A, R1, checkpoint_id=CheckpointId("c1"), parent_id=None, through_seq=None,
        content=CheckpointContent(), source="rules", tokens=1, now=clock(),
    )

    ack = await append(store, "r1", draft(2), now=clock())

    assert ack.episode == 2
    assert [s.episode for s in await _steps(store)] == [1, 2]


async def test_append_step_unknown_run_is_not_found(store: Store, clock: Clock) -> None:
    with pytest.raises(NotFoundError):
        await append(store, "nope", draft(1), now=clock())


async def test_append_step_to_another_tenants_run_is_not_found_and_writes_nothing(
    store: Store, clock: Clock
) -> None:
    await store.create_run(TENANT_A, make_run("r1"))

    with pytest.raises(NotFoundError):
        await append(store, "r1", draft(1), now=clock(), tenant=TENANT_B)

    assert (await store.get_run(TENANT_A, R1)).head_seq == 0
    assert await _steps(store) == []


@pytest.mark.parametrize(
    ("after_seq", "until_seq", "limit", "newest_first", "expected"),
    [
        pytest.param(0, None, 100, False, list(range(1, 11)), id="all"),
        pytest.param(0, None, 3, False, [1, 2, 3], id="oldest-page"),
        pytest.param(0, None, 3, True, [10, 9, 8], id="newest-page"),
        pytest.param(4, None, 3, False, [5, 6, 7], id="after"),
        pytest.param(4, 6, 100, False, [5, 6], id="after-until"),
        pytest.param(2, 8, 2, True, [8, 7], id="until-newest"),
        pytest.param(0, 5, 100, True, [5, 4, 3, 2, 1], id="until-newest-all"),
        pytest.param(10, None, 5, False, [], id="after-head"),
        pytest.param(5, 5, 5, False, [], id="empty-range"),
        pytest.param(0, 0, 5, True, [], id="until-zero"),
        pytest.param(0, 50, 100, False, list(range(1, 11)), id="until-beyond-head"),
        pytest.param(0, None, 0, False, [], id="limit-zero"),
    ],
)
async def test_get_steps_returns_the_range_in_order(
    store: Store,
    clock: Clock,
    after_seq: int,
    until_seq: int | None,
    limit: int,
    newest_first: bool,
    expected: list[int],
) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    for i in range(10):
        await append(store, "r1", draft(i), now=clock())

    steps = await store.get_steps(
        TENANT_A, R1, after_seq=after_seq, until_seq=until_seq, limit=limit,
        newest_first=newest_first,
    )

    assert [s.seq for s in steps] == expected


async def test_get_steps_unknown_run_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        await store.get_steps(TENANT_A, RunId("nope"), limit=10)


async def test_get_steps_of_another_tenants_run_is_not_found(
    store: Store, clock: Clock
) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    await append(store, "r1", draft(1), now=clock())

    with pytest.raises(NotFoundError):
        await store.get_steps(TENANT_B, R1, limit=10)


async def test_get_steps_keeps_runs_apart(store: Store, clock: Clock) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    await store.create_run(TENANT_A, make_run("r2"))
    await append(store, "r1", draft(1), now=clock())
    await append(store, "r2", draft(2), now=clock())
    await append(store, "r1", draft(3), now=clock())

    assert [s.output for s in await _steps(store)] == ["out 1", "out 3"]
    assert [s.output for s in await _steps(store, RunId("r2"))] == ["out 2"]
