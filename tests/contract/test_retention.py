"""EpisodicStore retention: list_prunable_runs, prune_run, find_checkpoint — and what core
builds on them (verify_run from the anchor, rehydrate and provenance after a prune)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.episodes import Episodes
from mcp_checkpoint.core.ledger import ChainBreak, verify_run
from mcp_checkpoint.core.models import (
    CheckpointContent,
    CheckpointId,
    CheckpointPatch,
    RunId,
    StepDraft,
    Tenant,
)
from mcp_checkpoint.core.ports import CheckpointRef, PruneResult, Store
from mcp_checkpoint.core.retention import RetentionPolicy, parse_duration, prune_runs, resolve_refs
from mcp_checkpoint.core.tokens import HeuristicTokenizer
from mcp_checkpoint.errors import InvalidArgumentError, NotFoundError

from .conftest import TENANT_A, TENANT_B, Clock, append, draft, make_run

pytestmark = pytest.mark.anyio

R1 = RunId("r1")
FAR_FUTURE = datetime(2100, 1, 1).astimezone()


async def _checkpoint(
    store: Store, run_id: RunId, cp: str, parent: str | None, through: int, now: datetime,
    *, tenant: Tenant = TENANT_A,
) -> None:
    await store.add_checkpoint(
        tenant, run_id, checkpoint_id=CheckpointId(cp),
        parent_id=None if parent is None else CheckpointId(parent), through_seq=through,
        content=CheckpointContent(progress=[f"{cp} done"]), source="model", tokens=5, now=now,
    )


async def _finished_run(
    store: Store, clock: Clock, run_id: str = "r1", *, tenant: Tenant = TENANT_A,
    status: str = "completed",
) -> None:
    """12 steps; checkpoints c1 (through 4), c2 (8), c3 (10); steps 11-12 after; finished."""
    rid = RunId(run_id)
    await store.create_run(tenant, make_run(run_id, now=clock()))
    for i in range(1, 13):
        await append(store, run_id, draft(i, key=f"k{i}"), now=clock(), tokens=10, tenant=tenant)
        if i in (4, 8, 10):
            n = (4, 8, 10).index(i) + 1
            await _checkpoint(
                store, rid, f"{run_id}-c{n}", None if n == 1 else f"{run_id}-c{n - 1}", i,
                clock(), tenant=tenant,
            )
    run = await store.get_run(tenant, rid)
    await store.update_run(
        tenant, rid, expected_version=run.version, status=status,  # type: ignore[arg-type]
        now=clock(),
    )


async def _prune(
    store: Store, clock: Clock, *, keep: int = 2, dry_run: bool = False,
    finished_before: datetime = FAR_FUTURE, run_id: RunId = R1,
) -> PruneResult:
    return await store.prune_run(
        TENANT_A, run_id, keep_checkpoints=keep, finished_before=finished_before,
        dry_run=dry_run, now=clock(),
    )


async def test_prune_run_removes_old_checkpoints_and_the_steps_they_cover(
    store: Store, clock: Clock
) -> None:
    await _finished_run(store, clock)
    before = await store.get_run(TENANT_A, R1)
    step8 = (await store.get_steps(TENANT_A, R1, after_seq=7, until_seq=8, limit=1))[0]

    result = await _prune(store, clock, keep=2)

    assert result == PruneResult(
        TENANT_A, R1, dry_run=False, steps_removed=8, through_seq=8,
        checkpoint_ids=[CheckpointId("r1-c1")],
    )
    remaining = await store.get_steps(TENANT_A, R1, limit=100)
    assert [s.seq for s in remaining] == [9, 10, 11, 12]
    assert remaining[0].prev_hash == step8.hash
    run = await store.get_run(TENANT_A, R1)
    assert (run.pruned_seq, run.pruned_hash, run.pruned_tokens, run.pruned_checkpoints) == (
        8, step8.hash, step8.cum_tokens, 1
    )
    # Pruning is maintenance: only the version and the pruned range move.
    assert run.model_copy(update={
        "pruned_seq": 0, "pruned_hash": None, "pruned_tokens": 0, "pruned_checkpoints": 0,
        "version": before.version,
    }) == before
    assert run.version == before.version + 1
    with pytest.raises(NotFoundError):
        await store.get_checkpoint(TENANT_A, R1, CheckpointId("r1-c1"))
    assert await store.get_checkpoint_by_number(TENANT_A, R1, 1) is None
    kept = await store.get_checkpoint_by_number(TENANT_A, R1, 2)
    assert kept is not None and kept.checkpoint_id == "r1-c2" and kept.parent_id == "r1-c1"
    listed = await store.list_checkpoints(TENANT_A, R1, limit=10, offset=0)
    assert [c.number for c in listed] == [3, 2]


async def test_prune_run_keeps_the_chain_verifiable_from_the_anchor(
    store: Store, clock: Clock
) -> None:
    await _finished_run(store, clock)
    assert await verify_run(store, TENANT_A, R1) == 12

    await _prune(store, clock, keep=1)  # boundary: c3's through_seq, 10

    assert await verify_run(store, TENANT_A, R1) == 2
    run = await store.get_run(TENANT_A, R1)
    assert (run.pruned_seq, run.pruned_checkpoints, run.head_seq) == (10, 2, 12)


async def test_prune_run_tombstones_answer_find_checkpoint(store: Store, clock: Clock) -> None:
    await _finished_run(store, clock)
    await _prune(store, clock, keep=1)

    assert await store.find_checkpoint(TENANT_A, CheckpointId("r1-c1")) == CheckpointRef(
        CheckpointId("r1-c1"), R1, 1, 4, pruned=True
    )
    assert await store.find_checkpoint(TENANT_A, CheckpointId("r1-c2")) == CheckpointRef(
        CheckpointId("r1-c2"), R1, 2, 8, pruned=True
    )
    assert await store.find_checkpoint(TENANT_A, CheckpointId("r1-c3")) == CheckpointRef(
        CheckpointId("r1-c3"), R1, 3, 10, pruned=False
    )
    assert await store.find_checkpoint(TENANT_A, CheckpointId("nope")) is None
    assert await store.find_checkpoint(TENANT_B, CheckpointId("r1-c1")) is None


async def test_prune_run_never_touches_active_recent_or_uncheckpointed_runs(
    store: Store, clock: Clock
) -> None:
    await store.create_run(TENANT_A, make_run("active", now=clock()))
    for i in range(3):
        await append(store, "active", draft(i), now=clock())
    await _checkpoint(store, RunId("active"), "a-c1", None, 2, clock())
    await _finished_run(store, clock)
    await store.create_run(TENANT_A, make_run("bare", now=clock()))
    await append(store, "bare", draft(1), now=clock())
    bare = await store.get_run(TENANT_A, RunId("bare"))
    await store.update_run(TENANT_A, RunId("bare"), expected_version=bare.version,
                           status="abandoned", now=clock())
    finished_at = (await store.get_run(TENANT_A, R1)).updated_at
    snapshot = {
        r: await store.get_run(TENANT_A, RunId(r)) for r in ("active", "r1", "bare")
    }

    assert (await _prune(store, clock, run_id=RunId("active"))).skipped == "active"
    assert (await _prune(store, clock, finished_before=finished_at)).skipped == "recent"
    assert (await _prune(store, clock, run_id=RunId("bare"))).skipped == "no checkpoint"

    for run_id, run in snapshot.items():
        assert await store.get_run(TENANT_A, RunId(run_id)) == run
    assert len(await store.get_steps(TENANT_A, RunId("active"), limit=100)) == 3
    assert len(await store.get_steps(TENANT_A, R1, limit=100)) == 12


async def test_prune_run_dry_run_reports_the_same_and_writes_nothing(
    store: Store, clock: Clock
) -> None:
    await _finished_run(store, clock)
    before = await store.get_run(TENANT_A, R1)

    dry = await _prune(store, clock, keep=2, dry_run=True)

    assert await store.get_run(TENANT_A, R1) == before
    assert len(await store.get_steps(TENANT_A, R1, limit=100)) == 12
    real = await _prune(store, clock, keep=2)
    assert (dry.steps_removed, dry.through_seq, dry.checkpoint_ids, dry.dry_run) == (
        real.steps_removed, real.through_seq, real.checkpoint_ids, True
    )


async def test_prune_run_again_removes_nothing_more(store: Store, clock: Clock) -> None:
    await _finished_run(store, clock)
    await _prune(store, clock, keep=2)
    after_first = await store.get_run(TENANT_A, R1)

    again = await _prune(store, clock, keep=2)

    assert (again.skipped, again.removed_anything, again.through_seq) == (None, False, 8)
    assert await store.get_run(TENANT_A, R1) == after_first
    # Keeping fewer later prunes further, from where the first prune stopped.
    further = await _prune(store, clock, keep=1)
    assert (further.steps_removed, further.through_seq, further.checkpoint_ids) == (
        2, 10, [CheckpointId("r1-c2")]
    )
    assert await verify_run(store, TENANT_A, R1) == 2


async def test_prune_run_keeping_more_checkpoints_than_exist_prunes_to_the_first(
    store: Store, clock: Clock
) -> None:
    await _finished_run(store, clock)

    result = await _prune(store, clock, keep=10)

    assert (result.steps_removed, result.through_seq, result.checkpoint_ids) == (4, 4, [])
    assert len(await store.list_checkpoints(TENANT_A, R1, limit=10, offset=0)) == 3


async def test_prune_run_rejects_bad_arguments(store: Store, clock: Clock) -> None:
    await _finished_run(store, clock)
    with pytest.raises(InvalidArgumentError, match="keep_checkpoints"):
        await _prune(store, clock, keep=0)
    with pytest.raises(NotFoundError):
        await _prune(store, clock, run_id=RunId("nope"))
    with pytest.raises(NotFoundError):
        await store.prune_run(TENANT_B, R1, keep_checkpoints=1, finished_before=FAR_FUTURE,
                              now=clock())


async def test_prune_run_forgets_the_idempotency_keys_of_removed_steps(
    store: Store, clock: Clock
) -> None:
    await _finished_run(store, clock)
    await _prune(store, clock, keep=1)  # steps 1..10 go

    kept = await append(store, "r1", draft(11, key="k11"), now=clock())
    assert (kept.seq, kept.duplicate) == (11, True)
    fresh = await append(store, "r1", draft(1, key="k1"), now=clock())
    assert (fresh.seq, fresh.duplicate) == (13, False)
    assert await verify_run(store, TENANT_A, R1) == 3


async def test_a_pruned_run_reopened_takes_steps_and_checkpoints(
    store: Store, clock: Clock
) -> None:
    await _finished_run(store, clock)
    await _prune(store, clock, keep=1)  # steps 1..10 and c1, c2 go; covered_seq stays 10
    run = await store.get_run(TENANT_A, R1)
    run = await store.update_run(TENANT_A, R1, expected_version=run.version, status="active",
                                 now=clock())
    covered_tokens = run.covered_tokens

    # A checkpoint through covered_seq, whose step was pruned, keeps the run's total.
    await _checkpoint(store, R1, "r1-c4", "r1-c3", 10, clock())
    assert (await store.get_run(TENANT_A, R1)).covered_tokens == covered_tokens
    await append(store, "r1", draft(13), now=clock())
    await _checkpoint(store, R1, "r1-c5", "r1-c4", 13, clock())

    run = await store.get_run(TENANT_A, R1)
    assert (run.head_seq, run.covered_seq, run.checkpoint_count) == (13, 13, 5)
    assert run.covered_tokens == run.head_tokens == 130
    assert await verify_run(store, TENANT_A, R1) == 3


async def test_list_prunable_runs_lists_finished_runs_by_tenant_and_id(
    store: Store, clock: Clock
) -> None:
    await _finished_run(store, clock, "r2")
    await _finished_run(store, clock, "r1", status="failed")
    await _finished_run(store, clock, "r3", tenant=TENANT_B, status="abandoned")
    await store.create_run(TENANT_A, make_run("r0-active", now=clock()))
    late = clock()
    await _finished_run(store, clock, "r9-late")

    mine = await store.list_prunable_runs(TENANT_A, finished_before=late, limit=10)
    assert [(t, r.run_id) for t, r in mine] == [(TENANT_A, "r1"), (TENANT_A, "r2")]
    everyone = await store.list_prunable_runs(None, finished_before=late, limit=10)
    assert [(t, r.run_id) for t, r in everyone] == [
        (TENANT_A, "r1"), (TENANT_A, "r2"), (TENANT_B, "r3")
    ]
    page = await store.list_prunable_runs(
        None, finished_before=late, after=(TENANT_A, RunId("r2")), limit=10
    )
    assert [r.run_id for _, r in page] == ["r3"]
    assert len(await store.list_prunable_runs(None, finished_before=late, limit=1)) == 1
    assert await store.list_prunable_runs(None, finished_before=late, limit=0) == []


# -- core over the store: the policy, rehydrate and provenance after a prune -----------------


async def test_prune_runs_applies_the_policy_to_every_finished_run(
    store: Store, clock: Clock
) -> None:
    await _finished_run(store, clock, "r1")
    await _finished_run(store, clock, "r2")
    await store.create_run(TENANT_A, make_run("r3-active", now=clock()))
    now = clock() + timedelta(days=31)
    policy = RetentionPolicy(older_than=parse_duration("30d"), keep_checkpoints=1)

    dry = await prune_runs(store, policy, tenant=TENANT_A, now=now, dry_run=True)
    assert [(r.run_id, r.steps_removed, r.dry_run) for r in dry] == [
        ("r1", 10, True), ("r2", 10, True)
    ]
    assert (await store.get_run(TENANT_A, R1)).pruned_seq == 0

    done = await prune_runs(store, policy, tenant=TENANT_A, now=now, dry_run=False)
    assert [(r.run_id, r.steps_removed) for r in done] == [("r1", 10), ("r2", 10)]
    named = await prune_runs(
        store, policy, tenant=TENANT_A, now=now, dry_run=True, run_ids=[RunId("r3-active")]
    )
    assert [(r.run_id, r.skipped) for r in named] == [("r3-active", "active")]
    with pytest.raises(InvalidArgumentError, match="tenant"):
        await prune_runs(store, policy, tenant=None, now=now, dry_run=True, run_ids=[R1])
    too_soon = await prune_runs(
        store, RetentionPolicy(older_than=timedelta(days=90)), tenant=TENANT_A, now=now,
        dry_run=False,
    )
    assert too_soon == []


async def test_rehydrate_and_provenance_after_a_prune(store: Store, clock: Clock) -> None:
    settings = Settings(checkpoint={"trigger_steps": 1000})
    episodes = Episodes(store, HeuristicTokenizer(), settings, clock=clock)
    await episodes.start_run(TENANT_A, "Port the parser", run_id="r1")
    checkpoint_ids: list[str] = []
    for i in range(1, 41):
        await episodes.record_step(
            TENANT_A, "r1",
            StepDraft(tool="edit", input={"file": f"src/mod_{i}.py"}, output="x " * 40),
        )
        if i % 10 == 0:
            result = await episodes.checkpoint(
                TENANT_A, "r1", CheckpointPatch(progress=[f"milestone {i}"])
            )
            checkpoint_ids.append(result.checkpoint.checkpoint_id)
    await episodes.record_step(TENANT_A, "r1", StepDraft(tool="edit", input="last"))
    await episodes.set_run(TENANT_A, "r1", status="completed")
    before = await episodes.rehydrate(TENANT_A, "r1")

    results = await prune_runs(
        store, RetentionPolicy(older_than=timedelta(0), keep_checkpoints=2), tenant=TENANT_A,
        now=clock(), dry_run=False,
    )
    assert [(r.steps_removed, r.through_seq) for r in results] == [(30, 30)]

    after = await episodes.rehydrate(TENANT_A, "r1")
    # The latest checkpoint still carries the merged progress of the pruned ones.
    assert "milestone 10" in after.context and "milestone 40" in after.context
    assert after.checkpoint_id == before.checkpoint_id == checkpoint_ids[-1]
    assert after.steps_included == before.steps_included == [41]
    assert after.tokens <= after.budget_tokens
    # Time travel to the oldest kept checkpoint, on a budget too small for its steps:
    # the dropped tokens are counted from the anchor the prune kept.
    travel = await episodes.rehydrate(
        TENANT_A, "r1", checkpoint_id=checkpoint_ids[2], budget_tokens=256
    )
    assert travel.through_seq == 30 and travel.tokens <= 256
    assert all(30 < seq <= 40 for seq in travel.steps_included)
    dropped = {d.section: d for d in travel.dropped}
    assert dropped["steps"].items == 10 - len(travel.steps_included) > 0
    assert dropped["steps"].tokens > 0
    with pytest.raises(NotFoundError, match="removed by retention"):
        await episodes.rehydrate(TENANT_A, "r1", checkpoint_id=checkpoint_ids[0])
    with pytest.raises(NotFoundError, match="checkpoint cp-none of run r1$"):
        await episodes.get_checkpoint(TENANT_A, "r1", "cp-none")

    refs = [
        "step:r1:5", "step:r1#35", "step:r1:99", "step:nope:1",
        f"checkpoint:{checkpoint_ids[0]}", f"checkpoint:{checkpoint_ids[3]}", "checkpoint:x",
        "https://example.org/doc",
    ]
    resolved = await resolve_refs(store, TENANT_A, refs)
    assert [(r.kind, r.found, r.pruned) for r in resolved] == [
        ("step", False, True),
        ("step", True, False),
        ("step", False, False),
        ("step", False, False),
        ("checkpoint", False, True),
        ("checkpoint", True, False),
        ("checkpoint", False, False),
        ("other", False, False),
    ]
    assert resolved[4].run_id == "r1"


def test_parse_duration_reads_units_and_rejects_the_rest() -> None:
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration(" 2w ") == timedelta(weeks=2)
    assert parse_duration("90m") == timedelta(minutes=90)
    for bad in ("30", "d", "-1d", "1.5d", "30 days"):
        with pytest.raises(InvalidArgumentError, match="duration"):
            parse_duration(bad)


async def test_verify_run_detects_a_wrong_anchor(
    store: Store, clock: Clock
) -> None:
    await _finished_run(store, clock)
    await _prune(store, clock, keep=1)
    run = await store.get_run(TENANT_A, R1)
    assert run.pruned_hash is not None

    class Tampered:
        """The store as seen through a run whose anchor was altered."""

        async def get_run(self, tenant: Tenant, run_id: RunId):  # type: ignore[no-untyped-def]
            return run.model_copy(update={"pruned_hash": "0" * 64})

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(store, name)

    with pytest.raises(ChainBreak, match="seq 11"):
        await verify_run(Tampered(), TENANT_A, R1)  # type: ignore[arg-type]


async def test_list_prunable_runs_orders_ids_bytewise_and_pages_on_the_after_key(
    store: Store, clock: Clock
) -> None:
    ids = ["a", "_x", "Z", "B-2", "B-10"]
    for run_id in ids:
        await _finished_run(store, clock, run_id)
    late = clock()

    seen: list[str] = []
    after: tuple[Tenant, RunId] | None = None
    while page := await store.list_prunable_runs(
        TENANT_A, finished_before=late, after=after, limit=2
    ):
        seen += [run.run_id for _, run in page]
        after = (page[-1][0], page[-1][1].run_id)

    assert seen == sorted(ids, key=lambda run_id: run_id.encode("utf-8"))
    assert seen == ["B-10", "B-2", "Z", "_x", "a"]


async def test_prune_removes_the_snapshot_blobs_only_removed_checkpoints_kept(
    store: Store, clock: Clock
) -> None:
    settings = Settings(checkpoint={"trigger_steps": 1000})
    episodes = Episodes(store, HeuristicTokenizer(), settings, clock=clock)
    await episodes.start_run(TENANT_A, "Keep the workspace", run_id="r1")
    for version in ("v1", "v2", "v3"):
        await episodes.record_step(TENANT_A, "r1", StepDraft(tool="edit", input=version))
        await episodes.checkpoint(
            TENANT_A, "r1", CheckpointPatch(progress=[version]),
            files=[("shared.txt", b"the same in every snapshot"),
                   ("app.py", f"version = {version!r}\n".encode())],
        )
    await episodes.set_run(TENANT_A, "r1", status="completed")
    before = await store.list_blobs(TENANT_A)
    assert len(before) == 1 + 3 + 3  # one shared file, three app.py versions, three manifests

    await prune_runs(store, RetentionPolicy(older_than=timedelta(0), keep_checkpoints=1),
                     tenant=TENANT_A, now=clock(), dry_run=False)

    after = await store.list_blobs(TENANT_A)
    assert len(after) == 1 + 1 + 1  # what the kept checkpoint's snapshot needs
    _, files = await episodes.snapshot(TENANT_A, "r1")
    data = await episodes.snapshot_files(TENANT_A, files)
    assert data == {"app.py": b"version = 'v3'\n", "shared.txt": b"the same in every snapshot"}
