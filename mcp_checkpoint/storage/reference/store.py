"""The in-memory reference store: the contract's executable specification.

Nothing is persisted. Every method runs without awaiting, so each is atomic on the event
loop. Used by unit tests, by ``store_url = "memory://"``, and as the reference every other
backend is compared with in ``tests/contract``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Container, Mapping, Sequence
from datetime import datetime

from mcp_checkpoint.core.ledger import append_step
from mcp_checkpoint.core.lexical import bm25_idf, bm25_weight, query_terms
from mcp_checkpoint.core.models import (
    BatchId,
    Checkpoint,
    CheckpointContent,
    CheckpointId,
    CheckpointSource,
    Memory,
    MemoryId,
    MemoryKind,
    MemoryStatus,
    Proposal,
    Run,
    RunId,
    RunStatus,
    Step,
    StepAck,
    StepDraft,
    Tenant,
)
from mcp_checkpoint.core.ports import (
    CheckpointRef,
    CommitPlan,
    ImportRecords,
    MemoryStatusChange,
    MemoryUpdate,
    PruneResult,
)
from mcp_checkpoint.errors import ConflictError, InvalidArgumentError, NotFoundError

__all__ = ["ReferenceStore", "bm25_rank"]

_WORD = re.compile(r"\w+", re.UNICODE)


def bm25_rank(query: str, docs: Sequence[tuple[str, str]]) -> list[tuple[str, float]]:
    """Okapi BM25 of ``docs`` ((id, text) pairs) for the words of ``query``, weighed as
    every store weighs them (``core.lexical.bm25_idf`` and ``bm25_weight``: no length
    normalisation) but without stemming; best first, only documents sharing a word with
    the query."""
    terms = query_terms(query)
    if not terms or not docs:
        return []
    tokenized = [(doc_id, Counter(w.lower() for w in _WORD.findall(text)))
                 for doc_id, text in docs]
    df: Counter[str] = Counter()
    for _, tf in tokenized:
        df.update(tf.keys())
    idf = {term: bm25_idf(len(tokenized), df[term]) for term in set(terms) if df[term]}
    scored = [
        (doc_id, sum(bm25_weight(weight, tf[term]) for term, weight in idf.items() if term in tf))
        for doc_id, tf in tokenized
    ]
    scored = [(doc_id, score) for doc_id, score in scored if score > 0]
    scored.sort(key=lambda pair: (-pair[1], pair[0]))
    return scored


class ReferenceStore:
    """A Store held in dictionaries (per process, lost on exit)."""

    def __init__(self) -> None:
        self._runs: dict[tuple[str, str], Run] = {}
        self._steps: dict[tuple[str, str], list[Step]] = {}
        self._acks: dict[tuple[str, str, str], tuple[str, StepAck]] = {}
        self._checkpoints: dict[tuple[str, str], list[Checkpoint]] = {}
        # Retention removes a prefix of a run's steps (and checkpoints); the lists keep
        # only what is left, so seq == index + 1 + pruned_seq of the run.
        self._tombstones: dict[tuple[str, str], CheckpointRef] = {}
        self._proposals: dict[tuple[str, str], Proposal] = {}
        self._memories: dict[tuple[str, str], Memory] = {}
        self._blobs: dict[tuple[str, str], bytes] = {}

    async def open(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to release."""

    # -- runs ---------------------------------------------------------------------------

    def _run(self, tenant: Tenant, run_id: RunId) -> Run:
        run = self._runs.get((tenant, run_id))
        if run is None:
            raise NotFoundError(f"run {run_id}")
        return run

    async def create_run(self, tenant: Tenant, run: Run) -> Run:
        key = (tenant, run.run_id)
        if key in self._runs:
            raise ConflictError(f"run {run.run_id} already exists")
        self._runs[key] = run
        self._steps[key] = []
        self._checkpoints[key] = []
        return run

    async def get_run(self, tenant: Tenant, run_id: RunId) -> Run:
        return self._run(tenant, run_id)

    async def list_runs(
        self,
        tenant: Tenant,
        *,
        status: RunStatus | None,
        limit: int,
        offset: int,
        project: str | None = None,
    ) -> list[Run]:
        runs = [
            r for (t, _), r in self._runs.items()
            if t == tenant
            and (status is None or r.status == status)
            and (project is None or r.project == project)
        ]
        runs.sort(key=lambda r: (r.updated_at, r.run_id), reverse=True)
        return runs[max(offset, 0) : max(offset, 0) + max(limit, 0)]

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
        run = self._run(tenant, run_id)
        if run.version != expected_version:
            raise ConflictError(f"run {run_id} changed (version {run.version})")
        changes: dict[str, object] = {"version": run.version + 1, "updated_at": now}
        if status is not None:
            changes["status"] = status
        if pinned is not None:
            changes["pinned"] = pinned
        updated = run.model_copy(update=changes)
        self._runs[(tenant, run_id)] = updated
        return updated

    # -- steps --------------------------------------------------------------------------

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
        run = self._run(tenant, run_id)
        if draft.idempotency_key is not None:
            seen = self._acks.get((tenant, run_id, draft.idempotency_key))
            if seen is not None:
                first_hash, ack = seen
                if first_hash != request_hash:
                    raise ConflictError(
                        f"idempotency_key {draft.idempotency_key} was used for a different step"
                    )
                return ack.model_copy(update={"duplicate": True})
        step, after = append_step(run, draft, tokens=tokens, now=now)
        ack = make_ack(after, step)
        self._steps[(tenant, run_id)].append(step)
        self._runs[(tenant, run_id)] = after
        if draft.idempotency_key is not None:
            self._acks[(tenant, run_id, draft.idempotency_key)] = (request_hash, ack)
        return ack

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
        base = self._run(tenant, run_id).pruned_seq
        steps = self._steps[(tenant, run_id)]
        # seq == index + 1 + base (gap-free after the pruned prefix): slicing is O(limit).
        hi = len(steps) if until_seq is None else max(min(until_seq - base, len(steps)), 0)
        lo = max(after_seq - base, 0)
        if lo >= hi:
            return []
        if newest_first:
            return list(reversed(steps[max(lo, hi - limit) : hi]))
        return steps[lo : min(hi, lo + limit)]

    # -- checkpoints --------------------------------------------------------------------

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
        run = self._run(tenant, run_id)
        if any(c.checkpoint_id == checkpoint_id for c in self._checkpoints[(tenant, run_id)]):
            raise ConflictError(f"checkpoint {checkpoint_id} already exists")
        if run.latest_checkpoint_id != parent_id:
            raise ConflictError(f"run {run_id} has a newer checkpoint than {parent_id}")
        through = run.head_seq if through_seq is None else through_seq
        if not run.covered_seq <= through <= run.head_seq:
            raise InvalidArgumentError(
                f"through_seq is {through}; it must lie between {run.covered_seq} and "
                f"{run.head_seq}"
            )
        steps = self._steps[(tenant, run_id)]
        if through == run.covered_seq:  # that step may have been pruned
            covered_tokens = run.covered_tokens
        else:
            covered_tokens = steps[through - 1 - run.pruned_seq].cum_tokens
        checkpoint = Checkpoint(
            checkpoint_id=checkpoint_id,
            run_id=run_id,
            number=run.checkpoint_count + 1,
            parent_id=parent_id,
            through_seq=through,
            head_seq=run.head_seq,
            content=content,
            source=source,
            tokens=tokens,
            created_at=now,
        )
        self._checkpoints[(tenant, run_id)].append(checkpoint)
        self._runs[(tenant, run_id)] = run.model_copy(update={
            "checkpoint_count": checkpoint.number,
            "latest_checkpoint_id": checkpoint_id,
            "covered_seq": through,
            "covered_tokens": covered_tokens,
            "updated_at": now,
        })
        return checkpoint

    async def get_checkpoint(
        self, tenant: Tenant, run_id: RunId, checkpoint_id: CheckpointId
    ) -> Checkpoint:
        self._run(tenant, run_id)
        for checkpoint in self._checkpoints[(tenant, run_id)]:
            if checkpoint.checkpoint_id == checkpoint_id:
                return checkpoint
        raise NotFoundError(f"checkpoint {checkpoint_id} of run {run_id}")

    async def get_checkpoint_by_number(
        self, tenant: Tenant, run_id: RunId, number: int
    ) -> Checkpoint | None:
        base = self._run(tenant, run_id).pruned_checkpoints
        checkpoints = self._checkpoints[(tenant, run_id)]
        index = number - 1 - base  # the list starts after the pruned checkpoints
        return checkpoints[index] if 0 <= index < len(checkpoints) else None

    async def list_checkpoints(
        self, tenant: Tenant, run_id: RunId, *, limit: int, offset: int
    ) -> list[Checkpoint]:
        self._run(tenant, run_id)
        newest = list(reversed(self._checkpoints[(tenant, run_id)]))
        return newest[max(offset, 0) : max(offset, 0) + max(limit, 0)]

    # -- retention ----------------------------------------------------------------------

    async def list_prunable_runs(
        self,
        tenant: Tenant | None,
        *,
        finished_before: datetime,
        after: tuple[Tenant, RunId] | None = None,
        limit: int,
    ) -> list[tuple[Tenant, Run]]:
        keys = sorted(
            (t, i) for (t, i), r in self._runs.items()
            if (tenant is None or t == tenant) and r.status != "active"
            and r.updated_at < finished_before and (after is None or (t, i) > after)
        )
        return [(Tenant(t), self._runs[(t, i)]) for t, i in keys[: max(limit, 0)]]

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
        if keep_checkpoints < 1:
            raise InvalidArgumentError("keep_checkpoints must be at least 1")
        run = self._run(tenant, run_id)
        key = (tenant, run_id)
        skipped = (
            "active" if run.status == "active"
            else "recent" if run.updated_at >= finished_before
            else "no checkpoint" if run.checkpoint_count == 0
            else None
        )
        if skipped is not None:
            return PruneResult(tenant, run_id, dry_run, skipped, through_seq=run.pruned_seq)
        checkpoints = self._checkpoints[key]
        oldest_kept = max(run.checkpoint_count - keep_checkpoints + 1, 1)
        dropped = [c for c in checkpoints if c.number < oldest_kept]
        kept = [c for c in checkpoints if c.number >= oldest_kept]
        boundary = max(kept[0].through_seq, run.pruned_seq)
        steps = self._steps[key]
        removed = steps[: boundary - run.pruned_seq]
        result = PruneResult(
            tenant, run_id, dry_run, steps_removed=len(removed), through_seq=boundary,
            checkpoint_ids=[c.checkpoint_id for c in dropped],
        )
        if dry_run or not result.removed_anything:
            return result
        for c in dropped:
            self._tombstones[(tenant, c.checkpoint_id)] = CheckpointRef(
                c.checkpoint_id, run_id, c.number, c.through_seq, pruned=True
            )
        self._checkpoints[key] = kept
        self._steps[key] = steps[len(removed):]
        for (t, r, k), (_, ack) in list(self._acks.items()):
            if t == tenant and r == run_id and ack.seq <= boundary:
                del self._acks[(t, r, k)]
        changes: dict[str, object] = {"version": run.version + 1}
        if removed:
            changes.update(
                pruned_seq=boundary, pruned_hash=removed[-1].hash,
                pruned_tokens=removed[-1].cum_tokens,
            )
        if dropped:
            changes["pruned_checkpoints"] = dropped[-1].number
        self._runs[key] = run.model_copy(update=changes)
        return result

    async def find_checkpoint(
        self, tenant: Tenant, checkpoint_id: CheckpointId
    ) -> CheckpointRef | None:
        for (t, _), checkpoints in self._checkpoints.items():
            if t != tenant:
                continue
            for c in checkpoints:
                if c.checkpoint_id == checkpoint_id:
                    return CheckpointRef(
                        c.checkpoint_id, c.run_id, c.number, c.through_seq, pruned=False
                    )
        return self._tombstones.get((tenant, checkpoint_id))

    # -- memory -------------------------------------------------------------------------

    async def add_proposal(self, tenant: Tenant, proposal: Proposal) -> Proposal:
        key = (tenant, proposal.batch_id)
        if key in self._proposals:
            raise ConflictError(f"batch {proposal.batch_id} already exists")
        self._proposals[key] = proposal
        return proposal

    async def get_proposal(self, tenant: Tenant, batch_id: BatchId) -> Proposal:
        proposal = self._proposals.get((tenant, batch_id))
        if proposal is None:
            raise NotFoundError(f"batch {batch_id}")
        return proposal

    async def expire_proposal(self, tenant: Tenant, batch_id: BatchId, *, now: datetime) -> None:
        proposal = await self.get_proposal(tenant, batch_id)
        if proposal.status == "pending":
            self._proposals[(tenant, batch_id)] = proposal.model_copy(update={"status": "expired"})

    async def commit_proposal(self, tenant: Tenant, plan: CommitPlan, *, now: datetime) -> Proposal:
        proposal = await self.get_proposal(tenant, plan.batch_id)
        if proposal.status != "pending":
            raise ConflictError(f"batch {plan.batch_id} is already {proposal.status}")
        # Check everything before writing anything.
        for new in plan.inserts:
            if (tenant, new.memory_id) in self._memories:
                raise ConflictError(f"memory {new.memory_id} already exists")
        targets: list[MemoryUpdate | MemoryStatusChange] = [*plan.updates, *plan.status_changes]
        for target in targets:
            memory = self._memories.get((tenant, target.memory_id))
            if memory is None:
                raise NotFoundError(f"memory {target.memory_id}")
            if memory.version != target.expected_version or memory.status != "active":
                raise ConflictError(f"memory {target.memory_id} changed since it was proposed")
        for new in plan.inserts:
            self._memories[(tenant, new.memory_id)] = Memory(
                **new.model_dump(), created_at=now, updated_at=now
            )
        for upd in plan.updates:
            old = self._memories[(tenant, upd.memory_id)]
            self._memories[(tenant, upd.memory_id)] = old.model_copy(update={
                "content": upd.content, "confidence": upd.confidence,
                "source_refs": upd.source_refs, "version": old.version + 1, "updated_at": now,
                "batch_id": plan.batch_id,
            })
        for change in plan.status_changes:
            old = self._memories[(tenant, change.memory_id)]
            self._memories[(tenant, change.memory_id)] = old.model_copy(update={
                "status": change.status, "superseded_by": change.superseded_by,
                "version": old.version + 1, "updated_at": now,
            })
        committed = proposal.model_copy(update={
            "status": "committed" if plan.accepted else "rejected",
            "committed_at": now,
            "accepted": plan.accepted,
            "rejected": plan.rejected,
            "memory_ids": plan.memory_ids,
        })
        self._proposals[(tenant, plan.batch_id)] = committed
        return committed

    async def get_memory(self, tenant: Tenant, memory_id: MemoryId) -> Memory:
        memory = self._memories.get((tenant, memory_id))
        if memory is None:
            raise NotFoundError(f"memory {memory_id}")
        return memory

    async def get_memories(self, tenant: Tenant, memory_ids: Sequence[MemoryId]) -> list[Memory]:
        return [m for i in memory_ids if (m := self._memories.get((tenant, i))) is not None]

    async def list_memories(
        self,
        tenant: Tenant | None,
        *,
        status: MemoryStatus | None = "active",
        after: tuple[Tenant, MemoryId] | None = None,
        limit: int,
    ) -> list[tuple[Tenant, Memory]]:
        keys = sorted(
            (t, i) for (t, i), m in self._memories.items()
            if (tenant is None or t == tenant) and (status is None or m.status == status)
            and (after is None or (t, i) > after)
        )
        return [(Tenant(t), self._memories[(t, i)]) for t, i in keys[: max(limit, 0)]]

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
        pool = {
            m.memory_id: m for (t, _), m in self._memories.items()
            if t == tenant and m.status == status
            and (scope is None or m.scope == scope) and (kind is None or m.kind == kind)
        }
        ranked = bm25_rank(query, [(i, m.content) for i, m in pool.items()])
        return [(pool[MemoryId(i)], score) for i, score in ranked[:limit]]

    # -- blobs --------------------------------------------------------------------------

    async def put_blobs(self, tenant: Tenant, blobs: Mapping[str, bytes], *, now: datetime) -> int:
        """See ``BlobStore.put_blobs``."""
        new = [name for name in blobs if (tenant, name) not in self._blobs]
        for name in new:
            self._blobs[(tenant, name)] = bytes(blobs[name])
        return len(new)

    async def missing_blobs(self, tenant: Tenant, names: Sequence[str]) -> set[str]:
        """See ``BlobStore.missing_blobs``."""
        return {name for name in names if (tenant, name) not in self._blobs}

    async def get_blobs(self, tenant: Tenant, names: Sequence[str]) -> dict[str, bytes]:
        """See ``BlobStore.get_blobs``."""
        return {n: self._blobs[(tenant, n)] for n in names if (tenant, n) in self._blobs}

    async def list_blobs(self, tenant: Tenant) -> set[str]:
        """See ``BlobStore.list_blobs``."""
        return {name for t, name in self._blobs if t == tenant}

    async def snapshot_manifests(self, tenant: Tenant) -> set[str]:
        """See ``BlobStore.snapshot_manifests``."""
        return {
            c.content.snapshot.manifest
            for (t, _), checkpoints in self._checkpoints.items() if t == tenant
            for c in checkpoints if c.content.snapshot is not None
        }

    async def delete_blobs(self, tenant: Tenant, names: Sequence[str]) -> int:
        """See ``BlobStore.delete_blobs``."""
        gone = [n for n in set(names) if self._blobs.pop((tenant, n), None) is not None]
        return len(gone)

    # -- import -------------------------------------------------------------------------

    async def import_records(self, tenant: Tenant, records: ImportRecords) -> None:
        """Insert ``records`` as given; ConflictError, with nothing written, if an id exists
        (checked before anything is written)."""
        checks: list[tuple[str, list[str], Container[tuple[str, str]]]] = [
            ("run", [item.run.run_id for item in records.runs], self._runs),
            ("batch", [p.batch_id for p in records.proposals], self._proposals),
            ("memory", [m.memory_id for m in records.memories], self._memories),
        ]
        for what, ids, existing in checks:
            seen: set[str] = set()
            for record_id in ids:
                if (tenant, record_id) in existing or record_id in seen:
                    raise ConflictError(f"{what} {record_id} already exists")
                seen.add(record_id)
        for item in records.runs:
            key = (tenant, item.run.run_id)
            self._runs[key] = item.run
            self._steps[key] = [imported.step for imported in item.steps]
            self._checkpoints[key] = list(item.checkpoints)
            for imported in item.steps:
                if imported.step.idempotency_key is not None:
                    self._acks[(tenant, item.run.run_id, imported.step.idempotency_key)] = (
                        imported.request_hash, imported.ack
                    )
        for proposal in records.proposals:
            self._proposals[(tenant, proposal.batch_id)] = proposal
        for memory in records.memories:
            self._memories[(tenant, memory.memory_id)] = memory
