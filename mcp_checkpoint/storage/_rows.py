"""Rows of the SQL stores (SQLite, PostgreSQL) to and from the core's models.

Both stores keep the same columns in the same text forms (ISO timestamps that round-trip
exactly, compact JSON), so one set of conversions serves both; only their placeholders
and drivers differ.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import TypeAdapter

from mcp_checkpoint.core.models import (
    Checkpoint,
    CheckpointContent,
    Memory,
    MemoryId,
    Proposal,
    ProposalItem,
    Run,
    Step,
    Tenant,
)
from mcp_checkpoint.core.plans import CheckpointMark, CheckpointPlan, MemoryWrite, PrunePlan
from mcp_checkpoint.core.ports import CheckpointRef

__all__ = [
    "CHECKPOINT_COLUMNS",
    "ITEMS",
    "MEMORY_COLUMNS",
    "MEMORY_IDS",
    "PROPOSAL_COLUMNS",
    "RUN_COLUMNS",
    "STEP_COLUMNS",
    "STRINGS",
    "TOMBSTONE_COLUMNS",
    "Row",
    "checkpoint_row",
    "covered_params",
    "from_iso",
    "iso",
    "memory_row",
    "memory_write_params",
    "micros",
    "proposal_row",
    "pruned_params",
    "run_row",
    "step_row",
    "to_checkpoint",
    "to_json",
    "to_mark",
    "to_memory",
    "to_proposal",
    "to_run",
    "to_step",
    "tombstone_row",
]


class Row(Protocol):
    """A result row, read by column name (``sqlite3.Row``, psycopg's ``dict_row``)."""

    def __getitem__(self, key: str, /) -> Any: ...


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
ITEMS = TypeAdapter(list[ProposalItem])
MEMORY_IDS = TypeAdapter(dict[int, MemoryId])
STRINGS = TypeAdapter(list[str])


def iso(moment: datetime) -> str:
    # isoformat() keeps the offset and every microsecond, and fromisoformat() reads it back
    # to a datetime with the same isoformat(): the ledger hash depends on that.
    return moment.isoformat()


def from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def micros(moment: datetime) -> int:
    """Epoch microseconds: orders instants correctly whatever their offsets."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (aware - EPOCH) // MICROSECOND


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def run_row(tenant: Tenant, run: Run) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "run_id": run.run_id,
        "objective": run.objective,
        "acceptance_criteria": to_json(run.acceptance_criteria),
        "constraints": to_json(run.constraints),
        "pinned": to_json(run.pinned),
        "status": run.status,
        "project": run.project,
        "budget_tokens": run.budget_tokens,
        "created_at": iso(run.created_at),
        "updated_at": iso(run.updated_at),
        "updated_us": micros(run.updated_at),
        "head_seq": run.head_seq,
        "step_count": run.step_count,
        "head_hash": run.head_hash,
        "head_tokens": run.head_tokens,
        "checkpoint_count": run.checkpoint_count,
        "latest_checkpoint_id": run.latest_checkpoint_id,
        "covered_seq": run.covered_seq,
        "covered_tokens": run.covered_tokens,
        "version": run.version,
        "pruned_seq": run.pruned_seq,
        "pruned_hash": run.pruned_hash,
        "pruned_tokens": run.pruned_tokens,
        "pruned_checkpoints": run.pruned_checkpoints,
        "error_seq": run.error_seq,
    }


RUN_COLUMNS = (
    "tenant", "run_id", "objective", "acceptance_criteria", "constraints", "pinned", "status",
    "budget_tokens", "created_at", "updated_at", "updated_us", "head_seq", "step_count",
    "head_hash", "head_tokens", "checkpoint_count", "latest_checkpoint_id", "covered_seq",
    "covered_tokens", "version", "pruned_seq", "pruned_hash", "pruned_tokens",
    "pruned_checkpoints", "project", "error_seq",
)


STEP_COLUMNS = (
    "tenant", "run_id", "seq", "episode", "tool", "input", "output", "reasoning", "status",
    "idempotency_key", "tokens", "cum_tokens", "created_at", "prev_hash", "hash",
    "request_hash", "ack",
)


def step_row(tenant: Tenant, step: Step, request_hash: str, ack: str) -> dict[str, Any]:
    """A step's columns, with the ``request_hash`` and acknowledgement (JSON) kept beside
    it for retries."""
    return {
        "tenant": tenant,
        "run_id": step.run_id,
        "seq": step.seq,
        "episode": step.episode,
        "tool": step.tool,
        "input": to_json(step.input),
        "output": to_json(step.output),
        "reasoning": step.reasoning,
        "status": step.status,
        "idempotency_key": step.idempotency_key,
        "tokens": step.tokens,
        "cum_tokens": step.cum_tokens,
        "created_at": iso(step.created_at),
        "prev_hash": step.prev_hash,
        "hash": step.hash,
        "request_hash": request_hash,
        "ack": ack,
    }


CHECKPOINT_COLUMNS = (
    "tenant", "run_id", "checkpoint_id", "number", "parent_id", "through_seq", "head_seq",
    "content", "source", "tokens", "created_at",
)


def checkpoint_row(tenant: Tenant, checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "run_id": checkpoint.run_id,
        "checkpoint_id": checkpoint.checkpoint_id,
        "number": checkpoint.number,
        "parent_id": checkpoint.parent_id,
        "through_seq": checkpoint.through_seq,
        "head_seq": checkpoint.head_seq,
        "content": checkpoint.content.model_dump_json(),
        "source": checkpoint.source,
        "tokens": checkpoint.tokens,
        "created_at": iso(checkpoint.created_at),
    }


TOMBSTONE_COLUMNS = ("tenant", "checkpoint_id", "run_id", "number", "through_seq", "pruned_at")


def tombstone_row(tenant: Tenant, ref: CheckpointRef, pruned_at: datetime) -> dict[str, Any]:
    """What a pruned checkpoint leaves behind (``find_checkpoint`` answers from it)."""
    return {
        "tenant": tenant,
        "checkpoint_id": ref.checkpoint_id,
        "run_id": ref.run_id,
        "number": ref.number,
        "through_seq": ref.through_seq,
        "pruned_at": iso(pruned_at),
    }


PROPOSAL_COLUMNS = (
    "tenant", "batch_id", "run_id", "status", "items", "created_at", "expires_at",
    "committed_at", "accepted", "rejected", "memory_ids",
)


def proposal_row(tenant: Tenant, proposal: Proposal) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "batch_id": proposal.batch_id,
        "run_id": proposal.run_id,
        "status": proposal.status,
        "items": ITEMS.dump_json(proposal.items).decode("utf-8"),
        "created_at": iso(proposal.created_at),
        "expires_at": iso(proposal.expires_at),
        "committed_at": None if proposal.committed_at is None else iso(proposal.committed_at),
        "accepted": to_json(proposal.accepted),
        "rejected": to_json(proposal.rejected),
        "memory_ids": MEMORY_IDS.dump_json(proposal.memory_ids).decode("utf-8"),
    }


MEMORY_COLUMNS = (
    "tenant", "memory_id", "content", "kind", "scope", "status", "confidence", "source_refs",
    "batch_id", "run_id", "superseded_by", "created_at", "updated_at", "version",
)


def memory_row(tenant: Tenant, memory: Memory) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "memory_id": memory.memory_id,
        "content": memory.content,
        "kind": memory.kind,
        "scope": memory.scope,
        "status": memory.status,
        "confidence": memory.confidence,
        "source_refs": to_json(memory.source_refs),
        "batch_id": memory.batch_id,
        "run_id": memory.run_id,
        "superseded_by": memory.superseded_by,
        "created_at": iso(memory.created_at),
        "updated_at": iso(memory.updated_at),
        "version": memory.version,
    }


def to_run(row: Row) -> Run:
    return Run(
        run_id=row["run_id"],
        objective=row["objective"],
        acceptance_criteria=STRINGS.validate_json(row["acceptance_criteria"]),
        constraints=STRINGS.validate_json(row["constraints"]),
        pinned=STRINGS.validate_json(row["pinned"]),
        status=row["status"],
        project=row["project"],
        budget_tokens=row["budget_tokens"],
        created_at=from_iso(row["created_at"]),
        updated_at=from_iso(row["updated_at"]),
        head_seq=row["head_seq"],
        step_count=row["step_count"],
        head_hash=row["head_hash"],
        head_tokens=row["head_tokens"],
        checkpoint_count=row["checkpoint_count"],
        latest_checkpoint_id=row["latest_checkpoint_id"],
        covered_seq=row["covered_seq"],
        covered_tokens=row["covered_tokens"],
        version=row["version"],
        pruned_seq=row["pruned_seq"],
        pruned_hash=row["pruned_hash"],
        pruned_tokens=row["pruned_tokens"],
        pruned_checkpoints=row["pruned_checkpoints"],
        error_seq=row["error_seq"],
    )


def to_step(row: Row) -> Step:
    return Step(
        run_id=row["run_id"],
        seq=row["seq"],
        episode=row["episode"],
        tool=row["tool"],
        input=json.loads(row["input"]),
        output=json.loads(row["output"]),
        reasoning=row["reasoning"],
        status=row["status"],
        idempotency_key=row["idempotency_key"],
        tokens=row["tokens"],
        cum_tokens=row["cum_tokens"],
        created_at=from_iso(row["created_at"]),
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


def to_checkpoint(row: Row) -> Checkpoint:
    return Checkpoint(
        checkpoint_id=row["checkpoint_id"],
        run_id=row["run_id"],
        number=row["number"],
        parent_id=row["parent_id"],
        through_seq=row["through_seq"],
        head_seq=row["head_seq"],
        content=CheckpointContent.model_validate_json(row["content"]),
        source=row["source"],
        tokens=row["tokens"],
        created_at=from_iso(row["created_at"]),
    )


def to_proposal(row: Row) -> Proposal:
    committed_at = row["committed_at"]
    return Proposal(
        batch_id=row["batch_id"],
        run_id=row["run_id"],
        status=row["status"],
        items=ITEMS.validate_json(row["items"]),
        created_at=from_iso(row["created_at"]),
        expires_at=from_iso(row["expires_at"]),
        committed_at=None if committed_at is None else from_iso(committed_at),
        accepted=json.loads(row["accepted"]),
        rejected=json.loads(row["rejected"]),
        memory_ids=MEMORY_IDS.validate_json(row["memory_ids"]),
    )


def to_memory(row: Row) -> Memory:
    return Memory(
        memory_id=row["memory_id"],
        content=row["content"],
        kind=row["kind"],
        scope=row["scope"],
        status=row["status"],
        confidence=row["confidence"],
        source_refs=STRINGS.validate_json(row["source_refs"]),
        batch_id=row["batch_id"],
        run_id=row["run_id"],
        superseded_by=row["superseded_by"],
        created_at=from_iso(row["created_at"]),
        updated_at=from_iso(row["updated_at"]),
        version=row["version"],
    )


# -- the parameters of the statements that apply core's plans ------------------------------


def covered_params(tenant: Tenant, plan: CheckpointPlan) -> dict[str, Any]:
    """``_statements.MOVE_COVERED`` for ``plan``."""
    run = plan.run
    return {
        "tenant": tenant,
        "run_id": run.run_id,
        "checkpoint_count": run.checkpoint_count,
        "latest_checkpoint_id": run.latest_checkpoint_id,
        "covered_seq": run.covered_seq,
        "covered_tokens": run.covered_tokens,
        "updated_at": iso(run.updated_at),
        "updated_us": micros(run.updated_at),
        "expected_count": plan.checkpoint.number - 1,
    }


def to_mark(row: Row) -> CheckpointMark:
    """A row of ``_statements.CHECKPOINT_MARKS``."""
    return CheckpointMark(
        row["checkpoint_id"], int(row["number"]), int(row["through_seq"]), row["step_hash"],
        None if row["step_tokens"] is None else int(row["step_tokens"]),
    )


def pruned_params(tenant: Tenant, plan: PrunePlan, run: Run) -> dict[str, Any]:
    """``_statements.RECORD_PRUNED`` for ``plan`` (``run``: the run after it)."""
    return {
        "tenant": tenant,
        "run_id": run.run_id,
        "version": run.version,
        "pruned_seq": run.pruned_seq,
        "pruned_hash": run.pruned_hash,
        "pruned_tokens": run.pruned_tokens,
        "pruned_checkpoints": run.pruned_checkpoints,
        "expected_version": plan.expected_version,
    }


def memory_write_params(tenant: Tenant, write: MemoryWrite) -> dict[str, Any]:
    """``_statements.UPDATE_MEMORY`` for ``write``."""
    return {**memory_row(tenant, write.memory), "expected_version": write.expected_version}


def prefix_range(prefix: str) -> tuple[str, str | None]:
    """The ids that start with ``prefix`` are those in ``[low, high)`` in code-point
    (binary) order, ``high`` None meaning no upper bound: a range scan of an id index."""
    if not prefix:
        return "", None
    last = ord(prefix[-1])
    if last == 0x10FFFF:  # pragma: no cover - no id ends in the last code point
        return prefix, None
    return prefix, prefix[:-1] + chr(last + 1)


ID_TABLES = {
    "run": ("runs", "run_id"),
    "checkpoint": ("checkpoints", "checkpoint_id"),
    "memory": ("memories", "memory_id"),
    "batch": ("proposals", "batch_id"),
}
"""Where each kind of id lives (``Store.match_ids``): its table and column."""
