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

from mcp_checkpoint.core.ledger import append_step, canonical_json, retried_ack
from mcp_checkpoint.core.lexical import query_terms, rank_bm25
from mcp_checkpoint.core.models import (
    BatchId,
    BatchStatus,
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
from mcp_checkpoint.core.plans import (
    CheckpointMark,
    check_keep,
    plan_checkpoint,
    plan_commit,
    plan_prune,
    target_ids,
)
from mcp_checkpoint.core.ports import (
    CheckpointRef,
    CommitPlan,
    DeletedRun,
    IdKind,
    ImportRecords,
    PruneResult,
    StepQuery,
    StepStat,
)
from mcp_checkpoint.errors import ConflictError, NotFoundError

__all__ = ["ReferenceStore"]

_WORD = re.compile(r"\w+", re.UNICODE)


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
        self._forgotten: dict[tuple[str, str], datetime] = {}
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
        text: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Run]:
        needle = text.lower() if text else None
        runs = [
            r for (t, _), r in self._runs.items()
            if t == tenant
            and (status is None or r.status == status)
            and (project is None or r.project == project)
            and (needle is None or needle in r.objective.lower())
            and (since is None or r.updated_at >= since)
            and (until is None or r.updated_at < until)
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
                return retried_ack(draft.idempotency_key, *seen, request_hash)
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
        through = run.head_seq if through_seq is None else through_seq
        steps = self._steps[(tenant, run_id)]
        index = through - 1 - run.pruned_seq  # the list starts after the pruned steps
        plan = plan_checkpoint(
            run, through_tokens=steps[index].cum_tokens if 0 <= index < len(steps) else None,
            checkpoint_id=checkpoint_id, parent_id=parent_id, through_seq=through_seq,
            content=content, source=source, tokens=tokens, now=now,
        )
        self._checkpoints[(tenant, run_id)].append(plan.checkpoint)
        self._runs[(tenant, run_id)] = plan.run
        return plan.checkpoint

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
        check_keep(keep_checkpoints)
        run = self._run(tenant, run_id)
        key = (tenant, run_id)
        steps = self._steps[key]
        marks = []
        for c in self._checkpoints[key]:
            index = c.through_seq - 1 - run.pruned_seq  # the list starts after the pruned
            step = steps[index] if 0 <= index < len(steps) else None
            marks.append(CheckpointMark(
                c.checkpoint_id, c.number, c.through_seq,
                None if step is None else step.hash, None if step is None else step.cum_tokens,
            ))
        plan = plan_prune(tenant, run, marks, keep_checkpoints=keep_checkpoints,
                          finished_before=finished_before, dry_run=dry_run)
        if plan.run is None:
            return plan.result
        for ref in plan.tombstones:
            self._tombstones[(tenant, ref.checkpoint_id)] = ref
        self._checkpoints[key] = [
            c for c in self._checkpoints[key] if c.number >= plan.checkpoints_below
        ]
        self._steps[key] = [s for s in steps if s.seq > plan.steps_through]
        for (t, r, k), (_, ack) in list(self._acks.items()):
            if t == tenant and r == run_id and ack.seq <= plan.steps_through:
                del self._acks[(t, r, k)]
        self._runs[key] = plan.run
        return plan.result

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

    # -- curation -----------------------------------------------------------------------

    async def step_stats(self, tenant: Tenant, run_id: RunId) -> list[StepStat]:
        """See ``EpisodicStore.step_stats``."""
        self._run(tenant, run_id)
        counts: dict[tuple[str, str], list[int]] = {}
        for step in self._steps[(tenant, run_id)]:
            entry = counts.setdefault((step.tool, step.status), [0, 0])
            entry[0] += 1
            entry[1] += step.tokens
        stats = [StepStat(t, s, n, k) for (t, s), (n, k) in counts.items()]
        return sorted(stats, key=lambda s: (-s.steps, s.tool, s.status))

    async def delete_run(self, tenant: Tenant, run_id: RunId) -> DeletedRun:
        self._run(tenant, run_id)
        del self._runs[(tenant, run_id)]
        steps = self._steps.pop((tenant, run_id), [])
        checkpoints = self._checkpoints.pop((tenant, run_id), [])
        for ack in [k for k in self._acks if k[0] == tenant and k[1] == run_id]:
            del self._acks[ack]
        for tomb in [k for k, ref in self._tombstones.items()
                     if k[0] == tenant and ref.run_id == run_id]:
            del self._tombstones[tomb]
        return DeletedRun(run_id, len(steps), len(checkpoints))

    async def search_steps(
        self, tenant: Tenant, query: StepQuery, *, limit: int, depth: int | None = None
    ) -> list[tuple[Step, float]]:
        pool: dict[str, Step] = {}
        for (t, run_id), steps in self._steps.items():
            if t != tenant or (query.run_id is not None and run_id != query.run_id):
                continue
            for step in steps:
                if (
                    (query.tool is None or step.tool == query.tool)
                    and (query.status is None or step.status == query.status)
                    and (query.since is None or step.created_at >= query.since)
                    and (query.until is None or step.created_at < query.until)
                ):
                    pool[f"{run_id}\x00{step.seq:020d}"] = step
        terms = set(query_terms(query.text))
        counts = {
            key: Counter(w for w in (w.casefold() for w in _WORD.findall(" ".join([
                step.tool, step.reasoning or "", canonical_json(step.input),
                canonical_json(step.output)]))) if w in terms)
            for key, step in pool.items()
        }
        matching = Counter(term for tf in counts.values() for term in tf)
        if depth is not None:  # only the newest matches are ranked (see the port)
            newest = sorted((key for key, tf in counts.items() if tf), reverse=True,
                            key=lambda key: (pool[key].created_at, key))
            kept = set(newest[: max(depth, limit)])
            counts = {key: tf for key, tf in counts.items() if key in kept}
        occurrences = [(k, term, n) for k, tf in counts.items() for term, n in tf.items()]
        ranked = rank_bm25(len(pool), matching, occurrences, limit=max(limit, 0))
        return [(pool[key], score) for key, score in ranked[: max(limit, 0)]]

    async def step_points(
        self, tenant: Tenant, run_id: RunId, seqs: Sequence[int]
    ) -> list[tuple[int, int, int]]:
        self._run(tenant, run_id)
        wanted = set(seqs)
        return [(s.seq, s.episode, s.cum_tokens)
                for s in self._steps.get((tenant, run_id), []) if s.seq in wanted]

    async def match_ids(
        self, tenant: Tenant, kind: IdKind, prefix: str, *, limit: int
    ) -> list[str]:
        ids: list[str]
        if kind == "run":
            ids = [r for t, r in self._runs if t == tenant]
        elif kind == "checkpoint":
            ids = [c.checkpoint_id for (t, _), cps in self._checkpoints.items() if t == tenant
                   for c in cps]
        elif kind == "memory":
            ids = [m for t, m in self._memories if t == tenant]
        else:
            ids = [b for t, b in self._proposals if t == tenant]
        return sorted(i for i in ids if i.startswith(prefix))[: max(limit, 0)]

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
        targets = {i: m for i in target_ids(plan) if (m := self._memories.get((tenant, i)))}
        writes = plan_commit(proposal, plan, targets, now=now)
        for new in writes.inserts:  # checked before anything is written
            if (tenant, new.memory_id) in self._memories:
                raise ConflictError(f"memory {new.memory_id} already exists")
        for memory in [*writes.inserts, *(w.memory for w in writes.writes)]:
            self._memories[(tenant, memory.memory_id)] = memory
        self._proposals[(tenant, plan.batch_id)] = writes.proposal
        return writes.proposal

    async def get_memory(self, tenant: Tenant, memory_id: MemoryId) -> Memory:
        memory = self._memories.get((tenant, memory_id))
        if memory is None:
            raise NotFoundError(f"memory {memory_id}")
        return memory

    async def get_memories(self, tenant: Tenant, memory_ids: Sequence[MemoryId]) -> list[Memory]:
        return [m for i in memory_ids if (m := self._memories.get((tenant, i))) is not None]

    async def delete_memory(self, tenant: Tenant, memory_id: MemoryId, *, now: datetime
                            ) -> None:
        if (tenant, memory_id) not in self._memories:
            raise NotFoundError(f"memory {memory_id}")
        del self._memories[(tenant, memory_id)]
        self._forgotten[(tenant, memory_id)] = now

    async def forgotten_memories(
        self, tenant: Tenant, memory_ids: Sequence[MemoryId]
    ) -> dict[MemoryId, datetime]:
        return {i: at for i in memory_ids if (at := self._forgotten.get((tenant, i)))}

    async def list_proposals(
        self, tenant: Tenant, *, status: BatchStatus | None, limit: int, offset: int
    ) -> list[Proposal]:
        found = [p for (t, _), p in self._proposals.items()
                 if t == tenant and (status is None or p.status == status)]
        found.sort(key=lambda p: (p.created_at, p.batch_id), reverse=True)
        return found[max(offset, 0) : max(offset, 0) + max(limit, 0)]

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
        # The reference index: casefolded words, without stemming.
        terms = set(query_terms(query))
        counts = {i: Counter(w for w in (w.casefold() for w in _WORD.findall(m.content))
                             if w in terms)
                  for i, m in pool.items()}
        matching = Counter(term for tf in counts.values() for term in tf)
        occurrences = [(i, term, n) for i, tf in counts.items() for term, n in tf.items()]
        ranked = rank_bm25(len(pool), matching, occurrences, limit=limit)
        return [(pool[MemoryId(i)], score) for i, score in ranked]

    def _holding(self, tenant: Tenant, word: str) -> list[Memory]:
        """The tenant's active memories holding ``word``, most recently stored first."""
        word = word.casefold()
        return [
            m for (t, _), m in reversed(self._memories.items())
            if t == tenant and m.status == "active"
            and word in {w.casefold() for w in _WORD.findall(m.content)}
        ]

    async def word_counts(
        self, tenant: Tenant, words: Sequence[str], *, cap: int
    ) -> dict[str, int]:
        """See ``MemoryStore.word_counts``."""
        return {w: min(len(self._holding(tenant, w)), max(cap, 0)) for w in words}

    async def sharing_words(
        self, tenant: Tenant, words: Sequence[str], *, per_word: int, limit: int
    ) -> list[Memory]:
        """See ``MemoryStore.sharing_words``."""
        order = {key: at for at, key in enumerate(self._memories)}
        hits: Counter[MemoryId] = Counter()
        found: dict[MemoryId, Memory] = {}
        for word in dict.fromkeys(words):
            for memory in self._holding(tenant, word)[: max(per_word, 0)]:
                hits[memory.memory_id] += 1
                found[memory.memory_id] = memory
        ranked = sorted(hits, key=lambda i: (-hits[i], -order[(tenant, i)]))
        return [found[i] for i in ranked[: max(limit, 0)]]

    async def holding_all(
        self, tenant: Tenant, words: Sequence[str], *, limit: int
    ) -> list[Memory]:
        """See ``MemoryStore.holding_all``."""
        wanted = {w.casefold() for w in words}
        if not wanted:
            return []
        found = [
            m for (t, _), m in reversed(self._memories.items())
            if t == tenant and m.status == "active"
            and wanted <= {w.casefold() for w in _WORD.findall(m.content)}
        ]
        return found[: max(limit, 0)]

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
