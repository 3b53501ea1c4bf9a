"""The MCP tools' output models: what each tool answers, as structured content with an
output schema. Views of core records; text the caller sent comes back only as a snippet.
"""

# No ``from __future__ import annotations`` in the model modules: pydantic would compile
# every field's annotation text while building the classes, on every start.
from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from mcp_checkpoint.core.models import (
    BatchStatus,
    CheckpointContent,
    CheckpointSource,
    MemoryKind,
    MemoryOp,
    MemoryStatus,
    Proposal,
    ProposalAnalysis,
    Run,
    RunStatus,
    StepStatus,
)

__all__ = [
    "CheckpointResultView",
    "CommitResult",
    "DeleteRunResult",
    "ForgetResult",
    "Hit",
    "MemoryList",
    "MemoryView",
    "ProposalView",
    "ProposedItemView",
    "RunList",
    "RunView",
    "SearchResultView",
    "StepHitView",
    "StepSearchView",
]


class _Out(BaseModel):
    # Built on the first answer that needs it: the listed output schemas are derived
    # ahead of time (server/prebuilt.json).
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class RunView(_Out):
    """A run's state: its objective and where its ledger and checkpoints stand."""

    run_id: str
    objective: str
    acceptance_criteria: list[str]
    constraints: list[str]
    pinned: list[str]
    status: RunStatus
    project: str | None = Field(None, description="The project the run belongs to, if known.")
    budget_tokens: int
    step_count: int
    head_seq: int
    episode: int
    latest_checkpoint_id: str | None
    covered_seq: int
    pruned_seq: int = Field(0, description="Retention removed steps 1..pruned_seq.")
    working_steps: int
    working_tokens: int
    version: int = Field(
        description="Bumped by every change of status or pinned items; pass it to "
        "update_run as expected_version to refuse a change made since you read it."
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, run: Run) -> Self:
        """The view of a stored run."""
        return cls(
            run_id=run.run_id,
            objective=run.objective,
            acceptance_criteria=run.acceptance_criteria,
            constraints=run.constraints,
            pinned=run.pinned,
            status=run.status,
            project=run.project,
            budget_tokens=run.budget_tokens,
            step_count=run.step_count,
            head_seq=run.head_seq,
            pruned_seq=run.pruned_seq,
            episode=run.episode,
            latest_checkpoint_id=run.latest_checkpoint_id,
            covered_seq=run.covered_seq,
            working_steps=run.working_steps,
            working_tokens=run.working_tokens,
            version=run.version,
            created_at=run.created_at,
            updated_at=run.updated_at,
        )


class RunList(_Out):
    """A page of runs, most recently updated first."""

    runs: list[RunView]
    next_offset: int | None


class CheckpointResultView(_Out):
    """A stored checkpoint and the working memory left after it."""

    checkpoint_id: str
    run_id: str
    number: int
    through_seq: int
    source: CheckpointSource
    tokens: int
    working_steps: int
    working_tokens: int
    content: CheckpointContent
    note: str | None = None
    created: bool = Field(
        True,
        description="False when there was nothing new to distil and this is the latest "
        "checkpoint, returned unchanged.",
    )


class ProposedItemView(_Out):
    """One staged item as propose_memory answers it: its text only as a snippet (the caller
    sent it), the analysis in full (which is bounded: a few related memories, snippets)."""

    index: int
    op: MemoryOp
    kind: MemoryKind
    scope: str
    content_snippet: str | None = Field(
        None, description="The start of the item's content (the whole text is staged)."
    )
    target_id: str | None = None
    superseded_by: str | None = None
    target_version: int | None = None
    analysis: ProposalAnalysis | None


class ProposalView(_Out):
    """A staged batch: review each item's analysis, then commit_memory(batch_id)."""

    batch_id: str
    run_id: str | None
    status: BatchStatus
    items: list[ProposedItemView]
    expires_at: datetime

    @classmethod
    def of(cls, proposal: Proposal) -> Self:
        """The bounded view of a stored proposal."""
        # Imported here: the proposal machinery is not needed to start the server.
        from mcp_checkpoint.core.proposals import snippet

        return cls(
            batch_id=proposal.batch_id,
            run_id=proposal.run_id,
            status=proposal.status,
            expires_at=proposal.expires_at,
            items=[
                ProposedItemView(
                    index=i, op=item.op, kind=item.kind, scope=item.scope,
                    content_snippet=None if item.content is None else snippet(item.content),
                    target_id=item.target_id, superseded_by=item.superseded_by,
                    target_version=item.target_version, analysis=item.analysis,
                )
                for i, item in enumerate(proposal.items)
            ],
        )


class CommitResult(_Out):
    """What a commit wrote."""

    batch_id: str
    status: BatchStatus
    accepted: list[int]
    rejected: list[int]
    memory_ids: dict[str, str] = Field(description="New memory id by item index (adds).")


class Hit(_Out):
    """A memory found by search, with its provenance."""

    memory_id: str
    content: str
    score: float
    kind: MemoryKind
    scope: str
    status: MemoryStatus
    confidence: float
    source_refs: list[str]
    batch_id: str | None
    run_id: str | None
    created_at: datetime
    scores: dict[str, Any]


class SearchResultView(_Out):
    """Hits, best first; an empty list says what was searched."""

    hits: list[Hit]
    scope: str
    mode: str
    note: str


class StepHitView(_Out):
    """A step found by search_steps: read it whole at ledger://{run_id}?cursor={seq-1}."""

    run_id: str
    seq: int
    episode: int
    tool: str
    status: StepStatus
    created_at: datetime
    score: float
    snippet: str = Field(description="At most 240 characters of the step around a match.")


class StepSearchView(_Out):
    """Steps, best first."""

    hits: list[StepHitView]
    note: str


class MemoryView(_Out):
    """A long-term memory as listed (any status)."""

    memory_id: str
    content: str
    kind: MemoryKind
    scope: str
    status: MemoryStatus
    confidence: float
    source_refs: list[str]
    batch_id: str | None
    run_id: str | None
    superseded_by: str | None
    created_at: datetime
    updated_at: datetime


class MemoryList(_Out):
    """A page of memories in creation order; pass next_after to read on."""

    memories: list[MemoryView]
    next_after: str | None


class DeleteRunResult(_Out):
    """What delete_run removed."""

    run_id: str
    steps_deleted: int
    checkpoints_deleted: int


class ForgetResult(_Out):
    """The memory that forget_memory deleted."""

    memory_id: str
    forgotten: bool

