"""Semantic memory: two-phase propose -> commit, and search.

``propose`` stores a durable staged batch and analyses each item against what is stored
(near duplicates, likely conflicts, a suggested op); nothing reaches memory until
``commit`` applies the accepted items atomically. ``search`` is lexical (BM25) in this
version; the ports already carry an Embedder and a VectorIndex for hybrid retrieval.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from mcp_checkpoint.config import Settings
from mcp_checkpoint.core._ids import Clock, new_id, utc_now
from mcp_checkpoint.core._limits import Limits
from mcp_checkpoint.core.episodes import MemorySearch
from mcp_checkpoint.core.models import (
    BatchId,
    Memory,
    MemoryHit,
    MemoryId,
    MemoryKind,
    NewMemory,
    Proposal,
    ProposalAnalysis,
    ProposalItem,
    RelatedMemory,
    RunId,
    Tenant,
)
from mcp_checkpoint.core.ports import CommitPlan, MemoryStatusChange, MemoryUpdate, Store
from mcp_checkpoint.errors import ConflictError, InvalidArgumentError, PayloadTooLargeError

__all__ = ["MemoryService", "SearchResult", "similarity"]

_WORD = re.compile(r"\w+", re.UNICODE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_NEGATION = {"not", "no", "never", "dont", "don't", "doesn't", "isn't", "without", "cannot"}
_RELATED = 0.35
_CANDIDATES = 8


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of the two texts' word sets, in [0, 1]."""
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / len(wa | wb)


def _contradicts(a: str, b: str) -> bool:
    """Related texts that differ in their numbers or in negation likely conflict."""
    na, nb = set(_NUMBER.findall(a)), set(_NUMBER.findall(b))
    if (na or nb) and na != nb:
        return True
    return bool(_words(a) & _NEGATION) != bool(_words(b) & _NEGATION)


@dataclass(frozen=True)
class SearchResult:
    """Hits plus what was searched, so an empty result is never silent."""

    hits: list[MemoryHit]
    scope: str
    kind: MemoryKind | None
    mode: str
    note: str


class MemoryService(MemorySearch):
    """Propose, commit and search long-term memories in one store."""

    def __init__(self, store: Store, settings: Settings, *, clock: Clock = utc_now) -> None:
        self._store = store
        self._settings = settings
        self._limits = Limits(settings.limits)
        self._clock = clock

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

    async def _analyse(
        self, tenant: Tenant, items: Sequence[ProposalItem]
    ) -> list[ProposalItem]:
        threshold = self._settings.memory.duplicate_threshold
        analysed: list[ProposalItem] = []
        for i, item in enumerate(items):
            if item.op in ("supersede", "deprecate"):
                analysed.append(item.model_copy(
                    update={"analysis": ProposalAnalysis(suggested_op=item.op)}
                ))
                continue
            text = item.content or ""
            related: list[RelatedMemory] = []
            for memory, _score in await self._store.search_lexical(
                tenant, text, limit=_CANDIDATES
            ):
                if memory.memory_id == item.target_id:
                    continue
                sim = similarity(text, memory.content)
                if sim >= _RELATED:
                    related.append(RelatedMemory(
                        memory_id=memory.memory_id, similarity=round(sim, 4), content=memory.content
                    ))
            for j, other in enumerate(items):
                if j != i and other.content:
                    sim = similarity(text, other.content)
                    if sim >= _RELATED:
                        related.append(RelatedMemory(
                            item_index=j, similarity=round(sim, 4), content=other.content
                        ))
            related.sort(key=lambda r: -r.similarity)
            duplicates = [r for r in related if r.similarity >= threshold]
            conflicts = [
                r for r in related if r.similarity < threshold and _contradicts(text, r.content)
            ]
            suggested: str = item.op
            note = ""
            stored_dup = next((d for d in duplicates if d.memory_id is not None), None)
            batch_dup = next(
                (d for d in duplicates if d.item_index is not None and d.item_index < i), None
            )
            if item.op == "add" and stored_dup is not None:
                suggested, note = "skip", f"near duplicate of {stored_dup.memory_id}"
            elif item.op == "add" and batch_dup is not None:
                suggested, note = "skip", f"near duplicate of item #{batch_dup.item_index}"
            elif item.op == "add" and conflicts and conflicts[0].memory_id is not None:
                suggested = "supersede"
                note = f"may contradict {conflicts[0].memory_id}; supersede it if this replaces it"
            analysed.append(item.model_copy(update={"analysis": ProposalAnalysis(
                duplicates=duplicates[:5], conflicts=conflicts[:5],
                suggested_op=suggested,  # type: ignore[arg-type]
                note=note,
            )}))
        return analysed

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
        for i, item in enumerate(checked):
            if item.target_id is not None:
                target = await self._store.get_memory(tenant, item.target_id)
                if target.status != "active":
                    raise ConflictError(
                        f"items[{i}].target_id {item.target_id} is {target.status}, not active"
                    )
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
        rejected or expired is a conflict, not a second write.
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
        return await self._store.commit_proposal(tenant, plan, now=now)

    # -- search -------------------------------------------------------------------------

    async def get_memory(self, tenant: Tenant, memory_id: str) -> Memory:
        """A memory, whatever its status (NotFoundError if unknown)."""
        return await self._store.get_memory(tenant, MemoryId(memory_id))

    async def search(
        self,
        tenant: Tenant,
        query: str,
        *,
        scope: str | None = None,
        kind: MemoryKind | None = None,
        k: int = 5,
    ) -> SearchResult:
        """Active memories relevant to ``query``, best first (lexical BM25 for now)."""
        lim = self._settings.limits
        self._limits.text("query", query, required=True)
        if len(query) > lim.max_query_chars:
            self._limits.size("query", len(query), lim.max_query_chars, "limits.max_query_chars")
        if not 1 <= k <= lim.max_search_k:
            raise InvalidArgumentError(f"k is {k}; it must lie in 1..{lim.max_search_k}")
        if scope is not None:
            self._limits.ident("scope", scope)
        found = await self._store.search_lexical(tenant, query, limit=k, scope=scope, kind=kind)
        hits = [
            MemoryHit(memory=m, score=round(score, 6), scores={"lexical": round(score, 6),
                                                               "lexical_rank": r})
            for r, (m, score) in enumerate(found, 1)
        ]
        where = scope or "all scopes"
        note = (
            f"{len(hits)} active memories matched in {where}"
            if hits
            else f"no active memory in {where}"
            + (f" of kind '{kind}'" if kind else "")
            + " matched the query's words (lexical search; install the embeddings extra for "
            "semantic search)"
        )
        return SearchResult(hits=hits, scope=where, kind=kind, mode="lexical", note=note)

    async def relevant(self, tenant: Tenant, query: str, k: int) -> list[Memory]:
        """Up to ``k`` active memories for a rehydrated context (empty query: none)."""
        if not query.strip():
            return []
        found = await self._store.search_lexical(tenant, query, limit=k)
        return [memory for memory, _ in found]

