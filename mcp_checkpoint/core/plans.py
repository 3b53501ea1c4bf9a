"""The decisions a store applies: what a new checkpoint is, what pruning a run removes, what
committing a batch writes. Like ``ledger.append_step``, each is a pure function of rows the
store read inside its transaction; the store writes the result in that same transaction,
comparing-and-setting on what the decision was made from, and decides nothing itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from mcp_checkpoint.core.models import (
    Checkpoint,
    CheckpointContent,
    CheckpointId,
    CheckpointSource,
    Memory,
    MemoryId,
    Proposal,
    Run,
    Tenant,
)
from mcp_checkpoint.core.ports import (
    CheckpointRef,
    CommitPlan,
    MemoryStatusChange,
    MemoryUpdate,
    PruneResult,
)
from mcp_checkpoint.errors import (
    BackendError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
)

__all__ = [
    "CheckpointMark",
    "CheckpointPlan",
    "CommitWrites",
    "MemoryWrite",
    "PrunePlan",
    "check_keep",
    "plan_checkpoint",
    "plan_commit",
    "plan_prune",
    "target_ids",
]


# -- checkpoints --------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointPlan:
    """A new checkpoint and the run after it. The store inserts ``checkpoint`` and writes
    the run's ``checkpoint_count``, ``latest_checkpoint_id``, ``covered_seq``,
    ``covered_tokens`` and ``updated_at`` from ``run``, only if the run's latest checkpoint
    is still ``checkpoint.parent_id`` (compare-and-set)."""

    checkpoint: Checkpoint
    run: Run


def plan_checkpoint(
    run: Run,
    *,
    through_tokens: int | None,
    checkpoint_id: CheckpointId,
    parent_id: CheckpointId | None,
    through_seq: int | None,
    content: CheckpointContent,
    source: CheckpointSource,
    tokens: int,
    now: datetime,
) -> CheckpointPlan:
    """The run's next checkpoint, as ``EpisodicStore.add_checkpoint`` specifies it.

    ``through_tokens`` is the ``cum_tokens`` of step ``through_seq`` (``head_seq`` when
    None) as stored, None when that step is not stored (pruned, or there is none).
    ConflictError if ``parent_id`` is not the run's latest checkpoint; InvalidArgumentError
    unless ``covered_seq <= through_seq <= head_seq``.
    """
    if run.latest_checkpoint_id != parent_id:
        raise ConflictError(f"run {run.run_id} has a newer checkpoint than {parent_id}")
    through = run.head_seq if through_seq is None else through_seq
    if not run.covered_seq <= through <= run.head_seq:
        raise InvalidArgumentError(
            f"through_seq is {through}; it must lie between {run.covered_seq} and "
            f"{run.head_seq}"
        )
    if through == run.covered_seq:  # that step may have been pruned
        covered_tokens = run.covered_tokens
    elif through_tokens is None:  # pragma: no cover - seq is gap-free up to head_seq
        raise BackendError(f"step {through} of run {run.run_id} is missing")
    else:
        covered_tokens = through_tokens
    checkpoint = Checkpoint(
        checkpoint_id=checkpoint_id,
        run_id=run.run_id,
        number=run.checkpoint_count + 1,
        parent_id=parent_id,
        through_seq=through,
        head_seq=run.head_seq,
        content=content,
        source=source,
        tokens=tokens,
        created_at=now,
    )
    after = run.model_copy(update={
        "checkpoint_count": checkpoint.number,
        "latest_checkpoint_id": checkpoint_id,
        "covered_seq": through,
        "covered_tokens": covered_tokens,
        "updated_at": now,
    })
    return CheckpointPlan(checkpoint, after)


# -- retention ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointMark:
    """A stored checkpoint of a run, with the ``hash`` and ``cum_tokens`` of the step its
    range ends at (None when that step is not stored)."""

    checkpoint_id: CheckpointId
    number: int
    through_seq: int
    step_hash: str | None
    step_tokens: int | None


@dataclass(frozen=True)
class PrunePlan:
    """What pruning one run removes. With ``run`` None nothing is written (skipped, a dry
    run, or nothing left to remove). Otherwise, in one transaction: delete the run's steps
    with ``seq <= steps_through``, record ``tombstones`` and delete the checkpoints they
    name (numbered below ``checkpoints_below``), and write the run's ``pruned_*`` fields
    and ``version`` from ``run``, only if its version is still ``expected_version``."""

    result: PruneResult
    run: Run | None = None
    expected_version: int = 0
    steps_through: int = 0
    checkpoints_below: int = 0
    tombstones: list[CheckpointRef] = field(default_factory=list)


def check_keep(keep_checkpoints: int) -> None:
    """InvalidArgumentError if ``keep_checkpoints < 1`` (before anything is read)."""
    if keep_checkpoints < 1:
        raise InvalidArgumentError("keep_checkpoints must be at least 1")


def plan_prune(
    tenant: Tenant,
    run: Run,
    marks: Sequence[CheckpointMark],
    *,
    keep_checkpoints: int,
    finished_before: datetime,
    dry_run: bool,
) -> PrunePlan:
    """What ``EpisodicStore.prune_run`` removes from ``run``, whose stored checkpoints are
    ``marks`` (oldest first), as the port specifies it."""
    check_keep(keep_checkpoints)
    skipped = (
        "active" if run.status == "active"
        else "recent" if run.updated_at >= finished_before
        else "no checkpoint" if run.checkpoint_count == 0
        else None
    )
    if skipped is not None:
        return PrunePlan(PruneResult(tenant, run.run_id, dry_run, skipped,
                                     through_seq=run.pruned_seq))
    oldest_kept = max(run.checkpoint_count - keep_checkpoints + 1, 1)
    kept = next((m for m in marks if m.number == oldest_kept), None)
    if kept is None:  # pragma: no cover - numbers are gap-free above the pruned
        raise BackendError(f"checkpoint {oldest_kept} of run {run.run_id} is missing")
    dropped = [m for m in marks if m.number < oldest_kept]
    boundary = max(kept.through_seq, run.pruned_seq)
    result = PruneResult(
        tenant, run.run_id, dry_run,
        steps_removed=boundary - run.pruned_seq,
        through_seq=boundary,
        checkpoint_ids=[m.checkpoint_id for m in dropped],
    )
    if dry_run or not result.removed_anything:
        return PrunePlan(result)
    changes: dict[str, object] = {"version": run.version + 1}
    if boundary > run.pruned_seq:
        if kept.step_hash is None or kept.step_tokens is None:  # pragma: no cover
            raise BackendError(f"step {boundary} of run {run.run_id} is missing")
        changes.update(
            pruned_seq=boundary, pruned_hash=kept.step_hash, pruned_tokens=kept.step_tokens
        )
    if dropped:
        changes["pruned_checkpoints"] = dropped[-1].number
    return PrunePlan(
        result,
        run=run.model_copy(update=changes),
        expected_version=run.version,
        steps_through=boundary if boundary > run.pruned_seq else 0,
        checkpoints_below=oldest_kept if dropped else 0,
        tombstones=[
            CheckpointRef(m.checkpoint_id, run.run_id, m.number, m.through_seq, pruned=True)
            for m in dropped
        ],
    )


# -- memory commits -----------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryWrite:
    """A targeted memory as the commit leaves it, written only if its stored version is
    still ``expected_version`` (compare-and-set)."""

    expected_version: int
    memory: Memory


@dataclass(frozen=True)
class CommitWrites:
    """What one ``commit_proposal`` writes, in order: the batch (only if it is still
    ``pending``), the new memories (their ids must not exist), then the targeted ones."""

    proposal: Proposal
    inserts: list[Memory]
    writes: list[MemoryWrite]


def plan_commit(
    proposal: Proposal,
    plan: CommitPlan,
    targets: Mapping[MemoryId, Memory],
    *,
    now: datetime,
) -> CommitWrites:
    """The writes of ``plan`` on ``proposal``, given the stored ``targets`` (the memories the
    plan updates or retires that exist). ConflictError if the batch is no longer pending or
    a target's version moved on or it is no longer active; NotFoundError if a target does
    not exist. Everything is checked before anything is written."""
    if proposal.status != "pending":
        raise ConflictError(f"batch {plan.batch_id} is already {proposal.status}")
    changes: list[MemoryUpdate | MemoryStatusChange] = [*plan.updates, *plan.status_changes]
    for change in changes:
        memory = targets.get(change.memory_id)
        if memory is None:
            raise NotFoundError(f"memory {change.memory_id}")
        if memory.version != change.expected_version or memory.status != "active":
            raise ConflictError(f"memory {change.memory_id} changed since it was proposed")
    current = dict(targets)
    writes: list[MemoryWrite] = []
    for change in changes:
        old = current[change.memory_id]
        update: dict[str, object] = {"version": old.version + 1, "updated_at": now}
        if isinstance(change, MemoryUpdate):
            update.update(
                content=change.content, confidence=change.confidence,
                source_refs=change.source_refs, batch_id=plan.batch_id,
            )
        else:
            update.update(status=change.status, superseded_by=change.superseded_by)
        current[change.memory_id] = new = old.model_copy(update=update)
        writes.append(MemoryWrite(old.version, new))
    committed = proposal.model_copy(update={
        "status": "committed" if plan.accepted else "rejected",
        "committed_at": now,
        "accepted": plan.accepted,
        "rejected": plan.rejected,
        "memory_ids": plan.memory_ids,
    })
    inserts = [Memory(**new.model_dump(), created_at=now, updated_at=now) for new in plan.inserts]
    return CommitWrites(committed, inserts, writes)


def target_ids(plan: CommitPlan) -> list[MemoryId]:
    """The memories ``plan`` updates or retires, each once, in memory_id order (the order a
    store locks them in)."""
    changes: list[MemoryUpdate | MemoryStatusChange] = [*plan.updates, *plan.status_changes]
    return sorted({change.memory_id for change in changes})

