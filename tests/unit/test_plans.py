"""core.plans: the decisions every store applies, as pure functions of the rows it read.

The contract suite checks the same rules through each backend; these pin the plans
themselves (what is written, and what each write compares-and-sets on)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mcp_checkpoint.core.models import (
    BatchId,
    CheckpointContent,
    CheckpointId,
    Memory,
    MemoryId,
    Run,
)
from mcp_checkpoint.core.plans import (
    CheckpointMark,
    CheckpointPlan,
    check_keep,
    plan_checkpoint,
    plan_commit,
    plan_prune,
    target_ids,
)
from mcp_checkpoint.core.ports import CommitPlan, MemoryStatusChange, MemoryUpdate
from mcp_checkpoint.errors import ConflictError, InvalidArgumentError, NotFoundError
from tests.contract.conftest import T0, TENANT_A, make_proposal, make_run, new_memory

LATER = T0 + timedelta(hours=1)


def _run(**changes: object) -> Run:
    return make_run("r1").model_copy(update=changes)


def _checkpoint(
    run: Run, *, parent: str | None, through: int | None, tokens: int | None
) -> CheckpointPlan:
    return plan_checkpoint(
        run, through_tokens=tokens, checkpoint_id=CheckpointId("cp-new"),
        parent_id=None if parent is None else CheckpointId(parent), through_seq=through,
        content=CheckpointContent(), source="rules", tokens=7, now=LATER,
    )


def test_a_checkpoint_is_numbered_next_and_covers_through_the_head_by_default() -> None:
    run = _run(head_seq=5, head_tokens=50, checkpoint_count=1,
               latest_checkpoint_id=CheckpointId("cp1"), covered_seq=2, covered_tokens=20)

    plan = _checkpoint(run, parent="cp1", through=None, tokens=50)

    assert (plan.checkpoint.number, plan.checkpoint.through_seq, plan.checkpoint.head_seq) == (
        2, 5, 5
    )
    assert plan.checkpoint.parent_id == "cp1"
    assert (plan.run.checkpoint_count, plan.run.latest_checkpoint_id) == (2, "cp-new")
    assert (plan.run.covered_seq, plan.run.covered_tokens, plan.run.updated_at) == (
        5, 50, LATER
    )


def test_a_checkpoint_at_the_covered_seq_keeps_the_covered_tokens_of_a_pruned_step() -> None:
    run = _run(head_seq=5, covered_seq=3, covered_tokens=30, pruned_seq=3,
               checkpoint_count=1, latest_checkpoint_id=CheckpointId("cp1"))

    plan = _checkpoint(run, parent="cp1", through=3, tokens=None)

    assert plan.run.covered_tokens == 30


def test_a_checkpoint_on_a_stale_parent_or_outside_the_range_is_refused() -> None:
    run = _run(head_seq=5, covered_seq=2, checkpoint_count=1,
               latest_checkpoint_id=CheckpointId("cp1"))

    with pytest.raises(ConflictError, match="newer checkpoint"):
        _checkpoint(run, parent=None, through=None, tokens=50)
    for through in (1, 6):
        with pytest.raises(InvalidArgumentError, match="through_seq"):
            _checkpoint(run, parent="cp1", through=through, tokens=10)


def _marks(*throughs: int) -> list[CheckpointMark]:
    return [
        CheckpointMark(CheckpointId(f"cp{n}"), n, seq, f"hash-{seq}", seq * 10)
        for n, seq in enumerate(throughs, start=1)
    ]


def test_prune_keeps_the_newest_checkpoints_and_the_steps_after_the_oldest_kept() -> None:
    run = _run(status="completed", head_seq=9, checkpoint_count=3, version=4)

    plan = plan_prune(TENANT_A, run, _marks(2, 5, 8), keep_checkpoints=2,
                      finished_before=LATER, dry_run=False)

    assert (plan.result.steps_removed, plan.result.through_seq) == (5, 5)
    assert plan.result.checkpoint_ids == ["cp1"]
    assert (plan.steps_through, plan.checkpoints_below, plan.expected_version) == (5, 2, 4)
    assert [(t.checkpoint_id, t.number, t.through_seq, t.pruned) for t in plan.tombstones] == [
        ("cp1", 1, 2, True)
    ]
    assert plan.run is not None
    assert (plan.run.pruned_seq, plan.run.pruned_hash, plan.run.pruned_tokens) == (
        5, "hash-5", 50
    )
    assert (plan.run.pruned_checkpoints, plan.run.version, plan.run.updated_at) == (
        1, 5, run.updated_at
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"status": "active", "checkpoint_count": 1}, "active"),
        ({"status": "completed", "checkpoint_count": 1, "updated_at": LATER}, "recent"),
        ({"status": "failed"}, "no checkpoint"),
    ],
)
def test_prune_skips_active_recent_and_uncheckpointed_runs(
    changes: dict[str, object], reason: str
) -> None:
    plan = plan_prune(TENANT_A, _run(**changes), _marks(1), keep_checkpoints=1,
                      finished_before=LATER, dry_run=False)

    assert (plan.result.skipped, plan.run, plan.tombstones) == (reason, None, [])


def test_a_dry_run_or_a_second_prune_writes_nothing() -> None:
    run = _run(status="completed", head_seq=9, checkpoint_count=3)
    dry = plan_prune(TENANT_A, run, _marks(2, 5, 8), keep_checkpoints=1,
                     finished_before=LATER, dry_run=True)
    pruned = run.model_copy(update={"pruned_seq": 8, "pruned_checkpoints": 2})
    again = plan_prune(TENANT_A, pruned, _marks(2, 5, 8)[2:], keep_checkpoints=1,
                       finished_before=LATER, dry_run=False)

    assert (dry.result.steps_removed, dry.result.checkpoint_ids, dry.run) == (
        8, ["cp1", "cp2"], None
    )
    assert (again.result.removed_anything, again.run) == (False, None)


def test_prune_needs_at_least_one_checkpoint_kept() -> None:
    with pytest.raises(InvalidArgumentError, match="keep_checkpoints"):
        check_keep(0)


def _memory(memory_id: str, *, version: int = 1, status: str = "active") -> Memory:
    new = new_memory(memory_id, f"content of {memory_id}")
    return Memory(**new.model_dump(), created_at=T0, updated_at=T0).model_copy(
        update={"version": version, "status": status}
    )


def _plan(**fields: object) -> CommitPlan:
    return CommitPlan(batch_id=BatchId("b1"), **fields)  # type: ignore[arg-type]


def test_a_commit_writes_inserts_and_chains_the_versions_of_a_memory_targeted_twice() -> None:
    plan = _plan(
        accepted=[0, 1, 2], rejected=[],
        inserts=[new_memory("m-new", "fresh")],
        updates=[MemoryUpdate(MemoryId("m1"), 3, "revised", 0.9, ["step:r1#2"])],
        status_changes=[MemoryStatusChange(MemoryId("m1"), 3, "superseded", MemoryId("m-new"))],
        memory_ids={0: MemoryId("m-new")},
    )

    writes = plan_commit(make_proposal("b1", ["a", "b", "c"]), plan,
                         {MemoryId("m1"): _memory("m1", version=3)}, now=LATER)

    assert writes.proposal.status == "committed"
    assert (writes.proposal.committed_at, writes.proposal.memory_ids) == (LATER, {0: "m-new"})
    assert [(m.memory_id, m.version, m.created_at) for m in writes.inserts] == [
        ("m-new", 1, LATER)
    ]
    assert [(w.expected_version, w.memory.version) for w in writes.writes] == [(3, 4), (4, 5)]
    final = writes.writes[-1].memory
    assert (final.content, final.batch_id, final.status, final.superseded_by) == (
        "revised", "b1", "superseded", "m-new"
    )


def test_a_commit_that_accepts_nothing_rejects_the_batch() -> None:
    writes = plan_commit(make_proposal("b1", ["a"]), _plan(accepted=[], rejected=[0]), {},
                         now=LATER)

    assert (writes.proposal.status, writes.inserts, writes.writes) == ("rejected", [], [])


def test_a_commit_is_refused_before_anything_is_written() -> None:
    stale = _plan(accepted=[0], rejected=[],
                  updates=[MemoryUpdate(MemoryId("m1"), 1, "x", 0.5, [])])

    committed = make_proposal("b1", ["a"]).model_copy(update={"status": "committed"})
    with pytest.raises(ConflictError, match="already committed"):
        plan_commit(committed, stale, {MemoryId("m1"): _memory("m1")}, now=LATER)
    with pytest.raises(NotFoundError, match="m1"):
        plan_commit(make_proposal("b1", ["a"]), stale, {}, now=LATER)
    for memory in (_memory("m1", version=2), _memory("m1", status="deprecated")):
        with pytest.raises(ConflictError, match="changed since it was proposed"):
            plan_commit(make_proposal("b1", ["a"]), stale, {MemoryId("m1"): memory}, now=LATER)


def test_target_ids_names_each_targeted_memory_once_in_id_order() -> None:
    plan = _plan(
        accepted=[], rejected=[],
        updates=[MemoryUpdate(MemoryId("m2"), 1, "x", 0.5, [])],
        status_changes=[MemoryStatusChange(MemoryId("m1"), 1, "deprecated"),
                        MemoryStatusChange(MemoryId("m2"), 1, "deprecated")],
    )

    assert target_ids(plan) == ["m1", "m2"]
