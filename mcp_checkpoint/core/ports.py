"""Ports: what the core needs from the outside world, as async Protocols.

A method's docstring is its specification; ``tests/contract`` checks those sentences against
every backend. Methods take the caller's ``tenant`` first: nothing of one tenant is visible
to another, and a foreign id is simply ``NotFoundError`` (no existence leak).

Ids (run, checkpoint, batch, memory) are unique per tenant. Every write that changes a run
(a step, a checkpoint, a status) also moves its ``updated_at`` (retention's
``prune_run`` is maintenance, not activity: it does not). Pagination treats a negative
offset as 0 and a limit below 1 as an empty page.

Atomicity: each method that writes is one transaction. Identity, ordering and optimistic
concurrency live in the database (unique keys, compare-and-set on versions), so several
processes may share a store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from mcp_checkpoint.core.models import (
    BatchId,
    BatchStatus,
    Checkpoint,
    CheckpointContent,
    CheckpointId,
    CheckpointPatch,
    CheckpointSource,
    Memory,
    MemoryId,
    MemoryKind,
    MemoryStatus,
    NewMemory,
    Proposal,
    Run,
    RunId,
    RunStatus,
    Step,
    StepAck,
    StepDraft,
    StepStatus,
    Tenant,
)

IdKind = Literal["run", "checkpoint", "memory", "batch"]
"""The kinds of id a person may abbreviate to a prefix (``Store.match_ids``)."""

__all__ = [
    "BlobStore",
    "CheckpointRef",
    "CommitPlan",
    "DeletedRun",
    "Distiller",
    "Embedder",
    "EpisodicStore",
    "IdKind",
    "ImportRecords",
    "ImportedRun",
    "ImportedStep",
    "MemoryStatusChange",
    "MemoryStore",
    "MemoryUpdate",
    "PruneResult",
    "StepQuery",
    "StepStat",
    "Store",
    "Tokenizer",
    "VectorIndex",
    "VectorItem",
]


class Tokenizer(Protocol):
    """Counts tokens the way the packing guarantee is stated."""

    name: str

    def count(self, text: str) -> int:
        """Tokens in ``text``; ``count("") == 0``."""
        ...

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of ``text`` with ``count(prefix) <= max_tokens``."""
        ...


@dataclass(frozen=True)
class MemoryUpdate:
    """Replace a memory's content, if its version is still ``expected_version``."""

    memory_id: MemoryId
    expected_version: int
    content: str
    confidence: float
    source_refs: list[str]


@dataclass(frozen=True)
class MemoryStatusChange:
    """Move a memory out of ``active``, if its version is still ``expected_version``."""

    memory_id: MemoryId
    expected_version: int
    status: MemoryStatus
    superseded_by: MemoryId | None = None


@dataclass(frozen=True)
class CommitPlan:
    """Everything one commit_memory writes, applied all-or-nothing."""

    batch_id: BatchId
    accepted: list[int]
    rejected: list[int]
    inserts: list[NewMemory] = field(default_factory=list)
    updates: list[MemoryUpdate] = field(default_factory=list)
    status_changes: list[MemoryStatusChange] = field(default_factory=list)
    memory_ids: dict[int, MemoryId] = field(default_factory=dict)


@dataclass(frozen=True)
class PruneResult:
    """What ``EpisodicStore.prune_run`` removed from one run (or would remove, dry run).

    ``skipped`` says why nothing was considered (``"active"``, ``"recent"``,
    ``"no checkpoint"``); it is None when the run qualified, even if nothing was left to
    remove. ``through_seq`` is the run's ``pruned_seq`` after the call (steps
    ``1..through_seq`` are gone); ``steps_removed`` counts the steps this call removed (or
    would), ``checkpoint_ids`` the checkpoints, oldest first.
    """

    tenant: Tenant
    run_id: RunId
    dry_run: bool
    skipped: str | None = None
    steps_removed: int = 0
    through_seq: int = 0
    checkpoint_ids: list[CheckpointId] = field(default_factory=list)

    @property
    def removed_anything(self) -> bool:
        """True when steps or checkpoints were (or would be) removed."""
        return self.steps_removed > 0 or bool(self.checkpoint_ids)


@dataclass(frozen=True)
class DeletedRun:
    """What ``EpisodicStore.delete_run`` removed."""

    run_id: RunId
    steps: int
    checkpoints: int


@dataclass(frozen=True)
class StepStat:
    """How many stored steps of a run share a tool and a status, and their tokens."""

    tool: str
    status: str
    steps: int
    tokens: int


@dataclass(frozen=True)
class StepQuery:
    """A search of the step ledger: the words of ``text``, and exact filters (None: any).
    ``since``/``until`` bound the step's ``created_at``: ``since <= created_at < until``."""

    text: str
    run_id: RunId | None = None
    tool: str | None = None
    status: StepStatus | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class CheckpointRef:
    """Where a checkpoint id points: its run, number and range, and whether retention
    removed it (``pruned``: its content is gone, its identity is kept)."""

    checkpoint_id: CheckpointId
    run_id: RunId
    number: int
    through_seq: int
    pruned: bool


@dataclass(frozen=True)
class ImportedStep:
    """A step exactly as it was stored elsewhere, with what ``append_step`` keeps beside it:
    the ``request_hash`` of its request and the acknowledgement a retry gets back."""

    step: Step
    request_hash: str
    ack: StepAck


@dataclass(frozen=True)
class ImportedRun:
    """A run record with its whole ledger (``seq`` 1..head_seq, in order) and its
    checkpoints (``number`` 1..checkpoint_count, in order)."""

    run: Run
    steps: list[ImportedStep]
    checkpoints: list[Checkpoint]


@dataclass(frozen=True)
class ImportRecords:
    """Everything one import writes (see ``Store.import_records``)."""

    runs: list[ImportedRun] = field(default_factory=list)
    proposals: list[Proposal] = field(default_factory=list)
    memories: list[Memory] = field(default_factory=list)


@runtime_checkable
class EpisodicStore(Protocol):
    """Runs, their step ledgers, and their checkpoints."""

    async def open(self) -> None:
        """Connect and migrate; idempotent. Must be called before any other method."""
        ...

    async def close(self) -> None:
        """Release connections; idempotent."""
        ...

    async def create_run(self, tenant: Tenant, run: Run) -> Run:
        """Insert ``run`` as given. ConflictError if the tenant already has that run_id."""
        ...

    async def get_run(self, tenant: Tenant, run_id: RunId) -> Run:
        """The run. NotFoundError if the tenant has no such run."""
        ...

    async def list_runs(
        self,
        tenant: Tenant,
        *,
        status: RunStatus | None,
        limit: int,
        offset: int,
        project: str | None = None,
        text: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Run]:
        """The tenant's runs, newest ``updated_at`` first (ties: run_id descending),
        paginated. ``status`` and ``project`` filter exactly when given; ``text`` keeps
        the runs whose objective contains it ignoring case (both lower-cased, as
        ``str.lower`` does); ``since``/``until`` bound ``updated_at``
        (``since <= updated_at < until``). The database filters (and pages) the runs."""
        ...

    async def update_run(
        self,
        tenant: Tenant,
        run_id: RunId,
        *,
        expected_version: int,
        status: RunStatus | None = None,
        pinned: list[str] | None = None,
        now: datetime,
    ) -> Run:
        """Change status and/or pinned items, bumping ``version``.

        ConflictError if the stored version is not ``expected_version``; NotFoundError if
        there is no such run.
        """
        ...

    async def append_step(
        self,
        tenant: Tenant,
        run_id: RunId,
        draft: StepDraft,
        *,
        tokens: int,
        request_hash: str,
        now: datetime,
        make_ack: Callable[[Run, Step], StepAck],
    ) -> StepAck:
        """Append a step durably and return its acknowledgement.

        In one transaction: if ``draft.idempotency_key`` was already used on this run, return
        the stored acknowledgement of that first call with ``duplicate=True`` and write
        nothing (ConflictError if that call's ``request_hash`` differs). Otherwise give the
        step ``seq = head_seq + 1`` (gap-free and strictly increasing per run, also across
        processes), ``episode = checkpoint_count + 1``, ``prev_hash`` = the run's
        ``head_hash`` and ``hash`` = ``ledger.step_hash(...)``, ``cum_tokens`` = previous
        ``head_tokens + tokens``; advance the run's head; store the acknowledgement
        ``make_ack(run_after, step)`` with the step and return it. NotFoundError if there is
        no such run. Returns only once the write is durable.
        """
        ...

    async def get_steps(
        self,
        tenant: Tenant,
        run_id: RunId,
        *,
        after_seq: int = 0,
        until_seq: int | None = None,
        limit: int,
        newest_first: bool = False,
    ) -> list[Step]:
        """Steps with ``after_seq < seq <= until_seq`` (no upper bound when None), at most
        ``limit``, in seq order (descending when ``newest_first``). Costs O(limit), whatever
        the length of the run. NotFoundError if there is no such run.
        """
        ...

    async def add_checkpoint(
        self,
        tenant: Tenant,
        run_id: RunId,
        *,
        checkpoint_id: CheckpointId,
        parent_id: CheckpointId | None,
        through_seq: int | None,
        content: CheckpointContent,
        source: CheckpointSource,
        tokens: int,
        now: datetime,
    ) -> Checkpoint:
        """Insert the run's next checkpoint and make it the latest.

        In one transaction: ConflictError if the run's latest checkpoint is not
        ``parent_id`` (another checkpoint won the race); ``through_seq`` None means the
        run's current ``head_seq``; InvalidArgumentError unless ``covered_seq <=
        through_seq <= head_seq``. Steps after ``through_seq`` stay in working memory.
        The run's ``covered_seq``/``covered_tokens``, ``checkpoint_count`` and
        ``latest_checkpoint_id`` advance. ConflictError if ``checkpoint_id`` exists.
        Works on a pruned run too (reactivated after ``prune_run``): ``through_seq ==
        covered_seq`` keeps the run's ``covered_tokens`` (that step itself may be gone).
        """
        ...

    async def get_checkpoint(
        self, tenant: Tenant, run_id: RunId, checkpoint_id: CheckpointId
    ) -> Checkpoint:
        """A checkpoint of this run. NotFoundError if the run has no such checkpoint."""
        ...

    async def get_checkpoint_by_number(
        self, tenant: Tenant, run_id: RunId, number: int
    ) -> Checkpoint | None:
        """The run's ``number``-th checkpoint (1-based), or None if it has fewer.
        NotFoundError if there is no such run."""
        ...

    async def list_checkpoints(
        self, tenant: Tenant, run_id: RunId, *, limit: int, offset: int
    ) -> list[Checkpoint]:
        """The run's checkpoints, newest first, paginated. NotFoundError if there is no
        such run."""
        ...

    # -- retention (see core/retention.py) -------------------------------------------------

    async def list_prunable_runs(
        self,
        tenant: Tenant | None,
        *,
        finished_before: datetime,
        after: tuple[Tenant, RunId] | None = None,
        limit: int,
    ) -> list[tuple[Tenant, Run]]:
        """Runs that are finished (status not ``active``) with ``updated_at <
        finished_before``, ordered by (tenant, run_id), strictly after the ``after`` key, at
        most ``limit``: one tenant's, or every tenant's when ``tenant`` is None. Runs that
        were already pruned are listed too (pruning again is a no-op)."""
        ...

    async def prune_run(
        self,
        tenant: Tenant,
        run_id: RunId,
        *,
        keep_checkpoints: int,
        finished_before: datetime,
        dry_run: bool = False,
        now: datetime,
    ) -> PruneResult:
        """Remove a finished run's old checkpoints and the steps they cover, in one
        transaction (all or nothing).

        The run is checked inside the transaction: if its status is ``active`` (skipped
        ``"active"``) or its ``updated_at`` is not before ``finished_before`` (``"recent"``:
        it moved on since it was listed), or it has no checkpoint (``"no checkpoint"``: its
        steps are its only record), nothing is written. Otherwise the ``keep_checkpoints``
        newest checkpoints are kept (all of them when it has fewer) and, with ``B`` the
        ``through_seq`` of the oldest kept checkpoint:

        - steps with ``seq <= B`` are deleted (with them their idempotency keys: a retry
          of such a step would record a new one); steps after ``B`` are kept;
        - checkpoints numbered below the oldest kept one are deleted; each leaves a
          tombstone, so ``find_checkpoint`` still answers for it with ``pruned=True``;
        - the run records the range: ``pruned_seq = B``, ``pruned_hash`` = the deleted
          step B's ``hash`` (the anchor that the next step's ``prev_hash`` chains to),
          ``pruned_tokens`` = its ``cum_tokens``, ``pruned_checkpoints`` = the number of
          the newest deleted checkpoint, and ``version`` + 1. ``updated_at``, the head,
          ``step_count``, ``checkpoint_count``, ``covered_*`` and
          ``latest_checkpoint_id`` do not change (pruning is not activity).

        Kept checkpoints need nothing that is deleted: a checkpoint's content is the merge
        of all its ancestors, made when it was written. Pruning again with the same
        arguments removes nothing more. With ``dry_run`` the result is what would be
        removed and nothing is written. InvalidArgumentError if ``keep_checkpoints < 1``;
        NotFoundError if there is no such run.
        """
        ...

    async def find_checkpoint(
        self, tenant: Tenant, checkpoint_id: CheckpointId
    ) -> CheckpointRef | None:
        """Where the tenant's ``checkpoint_id`` points, whatever its run: ``pruned=False``
        for a stored checkpoint, ``pruned=True`` for one that ``prune_run`` removed, None
        if the tenant never had it."""
        ...

    # -- curation (people look, search and delete) --------------------------------------

    async def step_stats(self, tenant: Tenant, run_id: RunId) -> list[StepStat]:
        """Counts and tokens of the run's stored steps by (tool, status), most steps first
        (ties by tool, then status). NotFoundError if there is no such run."""
        ...

    async def delete_run(self, tenant: Tenant, run_id: RunId) -> DeletedRun:
        """Remove the run with its whole ledger (steps, their idempotency keys and their
        search index), its checkpoints and the tombstones of pruned ones, in one
        transaction; afterwards the run, its steps and its checkpoints are NotFoundError
        and ``find_checkpoint`` answers None. Batches and memories the run wrote stay
        (they are curated on their own). NotFoundError if there is no such run.
        """
        ...

    async def search_steps(
        self, tenant: Tenant, query: StepQuery, *, limit: int, depth: int | None = None
    ) -> list[tuple[Step, float]]:
        """The tenant's steps whose tool, reasoning, input or output hold words of
        ``query.text``, best first with a relevance score (higher is better), at most
        ``limit``; the filters of ``query`` apply exactly. Any text is a valid query
        (operators are not interpreted); a query with no searchable word returns [].
        Steps removed by ``prune_run`` or ``delete_run`` are never found.

        With ``depth``, only the newest ``depth`` steps that match (and pass the
        filters) are ranked: with a run, its highest ``seq``; across runs, the most
        recently stored (``created_at`` where the store keeps no storage order). A
        search then costs what ``depth`` steps cost, however many match. None ranks
        every match.
        """
        ...

    async def step_points(
        self, tenant: Tenant, run_id: RunId, seqs: Sequence[int]
    ) -> list[tuple[int, int, int]]:
        """``(seq, episode, cum_tokens)`` of the run's steps among ``seqs`` that exist, in
        seq order: one read however many (a plot samples a long run with it).
        NotFoundError if there is no such run."""
        ...

    async def match_ids(
        self, tenant: Tenant, kind: IdKind, prefix: str, *, limit: int
    ) -> list[str]:
        """The tenant's ids of ``kind`` (runs, stored checkpoints, memories of any status,
        batches) that start with ``prefix`` (case-sensitive), in id order, at most
        ``limit``. An empty prefix matches every id."""
        ...


@runtime_checkable
class MemoryStore(Protocol):
    """Staged proposals and long-term memories, with lexical search."""

    async def add_proposal(self, tenant: Tenant, proposal: Proposal) -> Proposal:
        """Insert a pending batch durably. ConflictError if its batch_id exists."""
        ...

    async def get_proposal(self, tenant: Tenant, batch_id: BatchId) -> Proposal:
        """The batch. NotFoundError if the tenant has no such batch."""
        ...

    async def commit_proposal(self, tenant: Tenant, plan: CommitPlan, *, now: datetime) -> Proposal:
        """Apply ``plan`` atomically and mark the batch committed (or rejected when nothing
        was accepted).

        ConflictError, with nothing written, if the batch is no longer ``pending`` (a second
        commit, also from another process), a targeted memory's version moved on or it is no
        longer ``active``, or an inserted memory_id exists.
        NotFoundError if the batch or a targeted memory does not exist.
        """
        ...

    async def expire_proposal(self, tenant: Tenant, batch_id: BatchId, *, now: datetime) -> None:
        """Mark a pending batch ``expired``; no-op if it is no longer pending.
        NotFoundError if the tenant has no such batch."""
        ...

    async def get_memory(self, tenant: Tenant, memory_id: MemoryId) -> Memory:
        """The memory, whatever its status. NotFoundError if there is none."""
        ...

    async def get_memories(self, tenant: Tenant, memory_ids: Sequence[MemoryId]) -> list[Memory]:
        """The memories that exist among ``memory_ids``, in the order asked."""
        ...

    async def list_memories(
        self,
        tenant: Tenant | None,
        *,
        status: MemoryStatus | None = "active",
        after: tuple[Tenant, MemoryId] | None = None,
        limit: int,
    ) -> list[tuple[Tenant, Memory]]:
        """Memories ordered by (tenant, memory_id), after the ``after`` key, at most
        ``limit``: one tenant's, or every tenant's when ``tenant`` is None (reindexing).
        Only ``status`` memories unless it is None."""
        ...

    async def delete_memory(self, tenant: Tenant, memory_id: MemoryId, *, now: datetime
                            ) -> None:
        """Remove the memory for good, whatever its status, in one transaction: it is no
        longer found, listed or searched. Memories that name it in ``superseded_by`` and
        batches that name it keep the id; a tombstone keeps the id and ``now`` (see
        ``forgotten_memories``). NotFoundError if there is no such memory. Its vector is
        the vector index's business."""
        ...

    async def forgotten_memories(
        self, tenant: Tenant, memory_ids: Sequence[MemoryId]
    ) -> dict[MemoryId, datetime]:
        """When each of ``memory_ids`` that ``delete_memory`` removed was forgotten (ids
        never forgotten are left out)."""
        ...

    async def list_proposals(
        self, tenant: Tenant, *, status: BatchStatus | None, limit: int, offset: int
    ) -> list[Proposal]:
        """The tenant's batches, newest ``created_at`` first (ties: batch_id descending),
        only ``status`` ones unless it is None, paginated."""
        ...

    async def search_lexical(
        self,
        tenant: Tenant,
        query: str,
        *,
        limit: int,
        scope: str | None = None,
        kind: MemoryKind | None = None,
        status: MemoryStatus = "active",
    ) -> list[tuple[Memory, float]]:
        """Memories matching the words of ``query``, best first, with a relevance score
        (higher is better; BM25-like). Only ``status`` memories; ``scope``/``kind`` filter
        exactly when given. A word weighs by how rare it is among the memories searched
        (the tenant's, after the filters): other tenants' and other scopes' memories do not
        change the ranking. Any text is a valid query (operators are not interpreted); a
        query with no searchable word returns [].
        """
        ...

    async def word_counts(
        self, tenant: Tenant, words: Sequence[str], *, cap: int
    ) -> dict[str, int]:
        """For each of ``words``, how many memories hold it (a word matches as it does in
        ``search_lexical``), counted no further than ``cap``: every word asked is a key,
        its value at most ``cap`` and at least ``min(n, cap)`` for the ``n`` active
        memories of the tenant holding it. A store whose lexical index is shared may count
        every memory it indexes (other tenants', other statuses): the count measures what
        looking the word up costs. The cost grows with ``cap`` and the number of words,
        not with how many memories hold a word."""
        ...

    async def sharing_words(
        self, tenant: Tenant, words: Sequence[str], *, per_word: int, limit: int
    ) -> list[Memory]:
        """At most ``limit`` of the tenant's active memories holding any of ``words`` (a
        word matches as it does in ``search_lexical``), those holding the most of them
        first, then the most recently stored. Each word is looked up among the
        ``per_word`` most recently stored active memories holding it and no further: the
        cost grows with ``len(words) * per_word``, not with the store."""
        ...

    async def holding_all(
        self, tenant: Tenant, words: Sequence[str], *, limit: int
    ) -> list[Memory]:
        """The ``limit`` most recently stored of the tenant's active memories that hold
        every one of ``words`` (a word matches as it does in ``search_lexical``), newest
        first; [] for no words."""
        ...


@runtime_checkable
class BlobStore(Protocol):
    """Content-addressed bytes (workspace snapshot files and their manifests), per tenant:
    a blob's name is the SHA-256 of its bytes, so writing one twice stores it once."""

    async def put_blobs(self, tenant: Tenant, blobs: Mapping[str, bytes], *, now: datetime) -> int:
        """Store every ``sha256 -> bytes`` pair the tenant does not hold yet, in one
        transaction; pairs already held are left as they are. The caller computed each
        name from its bytes. Returns how many were new."""
        ...

    async def missing_blobs(self, tenant: Tenant, names: Sequence[str]) -> set[str]:
        """Those of ``names`` the tenant does not hold."""
        ...

    async def get_blobs(self, tenant: Tenant, names: Sequence[str]) -> dict[str, bytes]:
        """The bytes of those of ``names`` the tenant holds (the others are absent)."""
        ...

    async def list_blobs(self, tenant: Tenant) -> set[str]:
        """The names of every blob the tenant holds."""
        ...

    async def snapshot_manifests(self, tenant: Tenant) -> set[str]:
        """The manifest names (``content.snapshot.manifest``) of every stored checkpoint
        of the tenant that has a snapshot."""
        ...

    async def delete_blobs(self, tenant: Tenant, names: Sequence[str]) -> int:
        """Remove these blobs of the tenant (unknown names are ignored); how many went."""
        ...


class Store(EpisodicStore, MemoryStore, BlobStore, Protocol):
    """A backend that keeps both episodic and semantic state (one transaction domain)."""

    async def import_records(self, tenant: Tenant, records: ImportRecords) -> None:
        """Insert ``records`` for ``tenant`` exactly as given, in one transaction.

        Runs, steps, checkpoints, proposals and memories keep every field they carry (ids,
        ``seq``, ``episode``, hashes, token totals, numbers, parents, statuses, versions,
        ``superseded_by``, timestamps); nothing is re-derived or checked for consistency
        (``packs`` verified the records before). A step's ``idempotency_key`` is
        registered with its ``request_hash`` and ``ack``: a later ``append_step`` with that
        key behaves as if the step had been appended here. Imported memories are searchable
        by ``search_lexical`` at once (vectors are the vector index's business).
        ConflictError, with nothing written, if the tenant already has one of the run_ids,
        batch_ids or memory_ids. The store is unchanged when anything fails.
        """
        ...


class Distiller(Protocol):
    """Turns covered steps into checkpoint content."""

    name: str

    async def distill(
        self,
        run: Run,
        previous: CheckpointContent | None,
        steps: Sequence[Step],
        omitted_steps: int,
    ) -> CheckpointPatch:
        """A patch for a new checkpoint covering ``steps`` (the newest of the covered
        range; ``omitted_steps`` older ones were not shown), given the previous content.
        The caller merges it with ``previous``.
        """
        ...


class Embedder(Protocol):
    """Turns texts into vectors. Loading a model can take seconds, so it happens in the
    background: nothing but ``embed`` ever waits for it."""

    model_id: str
    """Stable id of the embedding space (model and weights), known before loading."""
    dimension: int

    def start(self) -> None:
        """Begin loading in the background and return at once; idempotent."""
        ...

    @property
    def ready(self) -> bool:
        """True once the model is loaded (``embed`` will not wait)."""
        ...

    @property
    def failure(self) -> str | None:
        """Why loading failed (a message safe to show), or None."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector of ``dimension`` floats per text, in order; waits for the
        model if needed. BackendError if it cannot be loaded.

        An embedder that computes on another thread hands the work to it before its first
        suspension once the model is ready, so a caller that starts ``embed`` in a task and
        yields once can do other work on the event loop meanwhile."""
        ...


@dataclass(frozen=True)
class VectorItem:
    """A memory's vector and the fields searches filter on."""

    memory_id: MemoryId
    vector: list[float]
    scope: str
    kind: MemoryKind


@runtime_checkable
class VectorIndex(Protocol):
    """Nearest-neighbour search over the vectors of active memories, in ONE embedding
    space (model id + dimension) for the whole index."""

    async def open(self) -> None:
        """Connect; idempotent."""
        ...

    async def close(self) -> None:
        """Release resources; idempotent."""
        ...

    async def space(self) -> tuple[str, int] | None:
        """The (model_id, dimension) of the stored vectors, or None when there are none."""
        ...

    async def upsert(self, tenant: Tenant, model_id: str, items: Sequence[VectorItem]) -> None:
        """Store or replace vectors, atomically. InvalidArgumentError, with nothing written,
        if ``model_id`` or a vector's length differs from the space the index holds (mixing
        spaces is refused: ``reset`` first, then re-embed everything)."""
        ...

    async def query(
        self,
        tenant: Tenant,
        model_id: str,
        vector: Sequence[float],
        *,
        limit: int,
        scope: str | None = None,
        kind: MemoryKind | None = None,
    ) -> list[tuple[MemoryId, float]]:
        """The ``limit`` nearest of the tenant's vectors by cosine similarity, best first
        (ties by memory_id), filtered exactly by ``scope``/``kind`` when given.
        InvalidArgumentError if ``model_id`` or the dimension is not the index's space; []
        when the index is empty."""
        ...

    async def similarities(
        self, tenant: Tenant, model_id: str, vector: Sequence[float], memory_ids: Sequence[MemoryId]
    ) -> dict[MemoryId, float]:
        """Cosine similarity of ``vector`` to each of ``memory_ids`` that has a vector of the
        tenant (ids without one are absent from the result). InvalidArgumentError if
        ``model_id`` or the dimension is not the index's space; {} when the index is empty."""
        ...

    async def delete(self, tenant: Tenant, memory_ids: Sequence[MemoryId]) -> None:
        """Remove vectors; unknown ids are ignored."""
        ...

    async def indexed(
        self, tenant: Tenant, model_id: str, memory_ids: Sequence[MemoryId]
    ) -> set[MemoryId]:
        """Which of ``memory_ids`` have a vector of ``model_id``."""
        ...

    async def reset(self) -> None:
        """Remove every vector of every tenant (before re-embedding into another space)."""
        ...
