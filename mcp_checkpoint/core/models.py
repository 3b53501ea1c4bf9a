"""Domain models: what the core reads and writes. Frozen pydantic models, ids as NewTypes.

These are the persisted artifacts; ``resources/schemas/*.json`` are generated from them
(``tests/unit/test_schemas.py`` keeps the two in step).
"""

# No ``from __future__ import annotations`` in the model modules: pydantic would compile
# every field's annotation text while building the classes, on every start.
from datetime import datetime
from typing import Any, Literal, NewType

from pydantic import BaseModel, ConfigDict, Field, JsonValue

__all__ = [
    "Artifact",
    "ArtifactKind",
    "BatchId",
    "BatchStatus",
    "Checkpoint",
    "CheckpointContent",
    "CheckpointId",
    "CheckpointPatch",
    "CheckpointSource",
    "Context",
    "DroppedSection",
    "Memory",
    "MemoryHit",
    "MemoryId",
    "MemoryKind",
    "MemoryOp",
    "MemoryStatus",
    "NewMemory",
    "Proposal",
    "ProposalAnalysis",
    "ProposalItem",
    "RelatedMemory",
    "Run",
    "RunId",
    "RunStatus",
    "SnapshotEntry",
    "SnapshotRef",
    "Step",
    "StepAck",
    "StepDraft",
    "StepStatus",
    "Tenant",
]

RunId = NewType("RunId", str)
CheckpointId = NewType("CheckpointId", str)
BatchId = NewType("BatchId", str)
MemoryId = NewType("MemoryId", str)
Tenant = NewType("Tenant", str)

RunStatus = Literal["active", "completed", "failed", "abandoned"]
StepStatus = Literal["ok", "error"]
CheckpointSource = Literal["model", "sampling", "rules"]
ArtifactKind = Literal["file", "commit", "url", "test", "ticket", "identifier"]
MemoryKind = Literal["fact", "preference", "procedure", "lesson", "decision", "other"]
MemoryOp = Literal["add", "update", "supersede", "deprecate"]
MemoryStatus = Literal["active", "superseded", "deprecated"]
BatchStatus = Literal["pending", "committed", "rejected", "expired"]


class _Frozen(BaseModel):
    # pydantic builds a model's validator when the first one is made or read, not while
    # the server starts: the tools' listed schemas are derived ahead of time
    # (server/prebuilt.json), and the store's records are not listed at all. (Once,
    # under pydantic's lock, when the store's threads make the first ones together.)
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Run(_Frozen):
    """A task an agent works on: its objective, and where its ledger stands."""

    run_id: RunId
    objective: str
    acceptance_criteria: list[str] = []
    constraints: list[str] = []
    pinned: list[str] = []
    status: RunStatus = "active"
    project: str | None = Field(
        None,
        description=(
            "The project the run belongs to (a client adapter sets its working directory); "
            "None when unknown."
        ),
    )
    budget_tokens: int = Field(description="Context budget that rehydrate and triggers use.")
    created_at: datetime
    updated_at: datetime
    head_seq: int = Field(0, description="seq of the newest step; 0 when none.")
    step_count: int = 0
    head_hash: str = Field(description="Hash of the newest step (the genesis hash when none).")
    head_tokens: int = Field(0, description="Cumulative tokens of all steps up to head_seq.")
    checkpoint_count: int = 0
    latest_checkpoint_id: CheckpointId | None = None
    covered_seq: int = Field(0, description="through_seq of the latest checkpoint.")
    covered_tokens: int = Field(0, description="Cumulative tokens up to covered_seq.")
    version: int = 1
    pruned_seq: int = Field(
        0, description="Retention removed steps 1..pruned_seq (0: none removed)."
    )
    error_seq: int = Field(
        0, description="seq of the newest step recorded with status error (0: none)."
    )
    pruned_hash: str | None = Field(
        None,
        description="Hash of step pruned_seq: the anchor the remaining ledger chains from.",
    )
    pruned_tokens: int = Field(0, description="Cumulative tokens up to pruned_seq.")
    pruned_checkpoints: int = Field(
        0, description="Retention removed checkpoints numbered 1..pruned_checkpoints."
    )

    @property
    def episode(self) -> int:
        """1 before the first checkpoint; each checkpoint starts the next episode."""
        return self.checkpoint_count + 1

    @property
    def working_steps(self) -> int:
        """Steps recorded since the latest checkpoint (still in working memory)."""
        return self.head_seq - self.covered_seq

    @property
    def working_tokens(self) -> int:
        """Tokens of the steps in working memory."""
        return self.head_tokens - self.covered_tokens


class StepDraft(_Frozen):
    """What a client records; the store adds seq, hashes and token totals."""

    tool: str
    input: JsonValue = None
    output: JsonValue = None
    reasoning: str | None = None
    status: StepStatus = "ok"
    idempotency_key: str | None = None


class Step(_Frozen):
    """One recorded step of a run's ledger."""

    run_id: RunId
    seq: int
    episode: int
    tool: str
    input: JsonValue = None
    output: JsonValue = None
    reasoning: str | None = None
    status: StepStatus = "ok"
    idempotency_key: str | None = None
    tokens: int
    cum_tokens: int = Field(description="Tokens of every step up to and including this one.")
    created_at: datetime
    prev_hash: str
    hash: str


class StepAck(_Frozen):
    """The answer to record_step; a retry with the same idempotency key gets it again."""

    run_id: RunId
    seq: int
    episode: int
    working_steps: int
    working_tokens: int
    budget_tokens: int
    checkpoint_due: bool
    due_reason: Literal["steps", "tokens", "error", "trigger"] | None = None
    duplicate: bool = Field(False, description="True when this answers a retried call.")


class Artifact(_Frozen):
    """Something the server found in the covered steps (not written by a model)."""

    kind: ArtifactKind = Field(
        description="file (a path), commit (a hash), url (whole), test (a test id), "
        "ticket (ABC-123, #123) or identifier (a code name)."
    )
    value: str


class SnapshotEntry(_Frozen):
    """One file of a workspace snapshot: where it goes and what it holds."""

    path: str = Field(description="Relative POSIX path inside the workspace.")
    sha256: str = Field(description="SHA-256 of the file's bytes (hex): its blob's name.")
    size: int = Field(ge=0, description="Bytes.")


class SnapshotRef(_Frozen):
    """The workspace files kept with a checkpoint: the blob that lists them (a JSON list of
    SnapshotEntry, content-addressed like every file), and totals."""

    manifest: str = Field(description="SHA-256 of the manifest blob.")
    files: int = Field(ge=0)
    bytes: int = Field(ge=0)
    new_blobs: int = Field(0, ge=0, description="Blobs this checkpoint stored for the first "
                           "time (the rest were kept already).")


class CheckpointContent(_Frozen):
    """A distilled state of a run. Every field is optional when a client writes it.

    ``artifacts`` are what a model wrote (the agent itself, or the client's model through
    sampling); ``auto_artifacts`` are what the server extracted from the steps by rules. A
    context shows both, and trims the extracted ones first.
    """

    progress: list[str] = Field(default=[], description="What has been done, oldest first.")
    state: dict[str, JsonValue] = Field(default={}, description="Current facts, by key.")
    decisions: list[str] = Field(default=[], description="Choices made, with their reason.")
    next_actions: list[str] = Field(default=[], description="What to do next, in order.")
    open_questions: list[str] = Field(default=[], description="What is still unknown.")
    errors: list[str] = Field(default=[], description="Errors still relevant.")
    artifacts: list[str] = Field(
        default=[], description="Files, ids, URLs that matter, as a model wrote them."
    )
    auto_artifacts: list[Artifact] = Field(
        default=[],
        description="Files, commits, URLs, test ids, tickets and identifiers the server "
        "extracted from the covered steps, best first (trimmed before the model's own).",
    )
    name: str | None = Field(None, description="This checkpoint's name (not inherited).")
    stage: str | None = Field(None, description="The stage of the work it marks.")
    notes: str | None = Field(None, description="Notes for a person reading it later.")
    snapshot: SnapshotRef | None = Field(
        None, description="Workspace files kept with this checkpoint (not inherited)."
    )


class CheckpointPatch(_Frozen):
    """New checkpoint content as a model (or a distiller) writes it; merged with the previous.

    ``None`` leaves a field as the previous checkpoint had it. progress, decisions and
    artifacts accumulate; state keys update (a ``null`` value deletes the key); next_actions,
    open_questions and errors replace the previous lists. ``auto_artifacts`` is the server's
    own extraction (never taken from a client): it is merged with the previous one by kind.
    """

    progress: list[str] | None = None
    state: dict[str, JsonValue] | None = None
    decisions: list[str] | None = None
    next_actions: list[str] | None = None
    open_questions: list[str] | None = None
    errors: list[str] | None = None
    artifacts: list[str] | None = None
    auto_artifacts: list[Artifact] | None = None
    name: str | None = None
    stage: str | None = None
    notes: str | None = None

    def is_empty(self) -> bool:
        """True when no model-written content was given (``auto_artifacts`` is the server's;
        a name, stage or notes label a checkpoint, they are not a distillation)."""
        return all(
            getattr(self, name) is None
            for name in type(self).model_fields
            if name not in ("auto_artifacts", "name", "stage", "notes")
        )


class Checkpoint(_Frozen):
    """A checkpoint: content that stands in for steps 1..through_seq."""

    checkpoint_id: CheckpointId
    run_id: RunId
    number: int = Field(description="1 for the first checkpoint of the run, then 2, 3...")
    parent_id: CheckpointId | None
    through_seq: int
    head_seq: int = Field(description="The run's head_seq when the checkpoint was taken.")
    content: CheckpointContent
    source: CheckpointSource
    tokens: int
    created_at: datetime


class DroppedSection(_Frozen):
    """What rehydrate left out of a context to stay within its budget."""

    section: str
    items: int
    tokens: int
    reason: str


class Context(_Frozen):
    """A packed context: never more than ``budget_tokens`` tokens."""

    run_id: RunId
    context: str
    tokens: int
    budget_tokens: int
    checkpoint_id: CheckpointId | None
    through_seq: int
    steps_included: list[int] = Field(
        description="seq of the steps after the checkpoint that are shown, oldest first."
    )
    covered_steps_included: list[int] = Field(
        default=[],
        description="seq of steps the checkpoint covers, shown with budget to spare.",
    )
    memories_included: list[MemoryId] = []
    dropped: list[DroppedSection] = []
    tokenizer: str


class RelatedMemory(_Frozen):
    """A stored memory (or another item of the batch) that a proposal resembles."""

    memory_id: MemoryId | None = Field(None, description="A stored memory, or None.")
    item_index: int | None = Field(None, description="Another item of the same batch, or None.")
    similarity: float
    content: str


class ProposalAnalysis(_Frozen):
    """How a proposed item relates to what is already stored."""

    duplicates: list[RelatedMemory] = []
    conflicts: list[RelatedMemory] = []
    suggested_op: MemoryOp | Literal["skip"]
    note: str = ""


class ProposalItem(_Frozen):
    """One proposed change to semantic memory."""

    op: MemoryOp = "add"
    content: str | None = None
    kind: MemoryKind = "fact"
    scope: str = "global"
    confidence: float = Field(0.8, ge=0, le=1)
    rationale: str | None = None
    source_refs: list[str] = []
    target_id: MemoryId | None = None
    superseded_by: str | None = Field(
        None, description="supersede only: a memory id, or '#N' for item N of this batch."
    )
    target_version: int | None = Field(
        None,
        description=(
            "The target's version when the batch was proposed (set by the server): a commit "
            "after the target changed is a conflict."
        ),
    )
    analysis: ProposalAnalysis | None = None


class Proposal(_Frozen):
    """A durable staged batch of memory changes."""

    batch_id: BatchId
    run_id: RunId | None
    status: BatchStatus
    items: list[ProposalItem]
    created_at: datetime
    expires_at: datetime
    committed_at: datetime | None = None
    accepted: list[int] = []
    rejected: list[int] = []
    memory_ids: dict[int, MemoryId] = Field(
        default={}, description="Memory written for each accepted item, by item index."
    )


class NewMemory(_Frozen):
    """A memory to insert (built by core from an accepted ``add`` item)."""

    memory_id: MemoryId
    content: str
    kind: MemoryKind
    scope: str
    confidence: float
    source_refs: list[str]
    batch_id: BatchId | None
    run_id: RunId | None


class Memory(_Frozen):
    """A long-term memory."""

    memory_id: MemoryId
    content: str
    kind: MemoryKind
    scope: str
    status: MemoryStatus = "active"
    confidence: float
    source_refs: list[str] = []
    batch_id: BatchId | None = None
    run_id: RunId | None = None
    superseded_by: MemoryId | None = None
    created_at: datetime
    updated_at: datetime
    version: int = 1


class MemoryHit(_Frozen):
    """A memory found by search, with how it scored."""

    memory: Memory
    score: float
    scores: dict[str, Any] = Field(default={}, description="Per-retriever scores and ranks.")
