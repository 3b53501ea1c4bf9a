"""What the two SQL stores (SQLite, PostgreSQL) share: every port method that is one of the
shared statements (``_statements``) plus ``core``'s decision, written once. A backend
supplies how a statement runs (its driver, placeholders, transactions and locks) through
the few primitives below, and the methods that work differently on it (appends and
lexical search).

The plan methods (checkpoint, prune, commit) pass the backend a ``decide`` function: the
backend reads the rows it names inside its transaction (locking them where it must),
calls ``decide`` (``core.plans``) and applies the plan in that same transaction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from mcp_checkpoint.core.lexical import query_terms
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
    Tenant,
)
from mcp_checkpoint.core.plans import (
    CheckpointMark,
    CheckpointPlan,
    CommitWrites,
    PrunePlan,
    check_keep,
    plan_checkpoint,
    plan_commit,
    plan_prune,
    target_ids,
)
from mcp_checkpoint.core.ports import (
    CheckpointRef,
    CommitPlan,
    IdKind,
    ImportRecords,
    PruneResult,
    StepQuery,
    StepStat,
)
from mcp_checkpoint.errors import ConflictError, NotFoundError
from mcp_checkpoint.storage import _statements as sql
from mcp_checkpoint.storage._ints import INT64_MAX, int64
from mcp_checkpoint.storage._rows import (
    ID_TABLES,
    Row,
    checkpoint_row,
    from_iso,
    iso,
    memory_row,
    micros,
    prefix_range,
    proposal_row,
    run_row,
    step_row,
    to_checkpoint,
    to_json,
    to_memory,
    to_proposal,
    to_run,
    to_step,
)

__all__ = ["Batch", "SqlStore", "step_filters"]

Batch = tuple[str, list[dict[str, Any]], str]
"""Rows to insert with one statement, and what a conflict among them is called."""


def step_filters(query: StepQuery, alias: str) -> tuple[list[str], dict[str, Any]]:
    """The exact filters of a step search as conditions on the steps table named
    ``alias`` (the tenant's, then ``query``'s run, tool, status and time bounds), with
    their named parameters: both SQL stores narrow a search with these."""
    where = [f"{alias}.tenant = :tenant"]
    params: dict[str, Any] = {}
    for column, value in (("run_id", query.run_id), ("tool", query.tool),
                          ("status", query.status)):
        if value is not None:
            where.append(f"{alias}.{column} = :{column}")
            params[column] = value
    if query.since is not None:
        where.append(f"{alias}.created_at >= :since")
        params["since"] = iso(query.since)
    if query.until is not None:
        where.append(f"{alias}.created_at < :until")
        params["until"] = iso(query.until)
    return where, params


class SqlStore(ABC):
    """The port methods of a SQL store, over a backend's primitives."""

    _COLLATE = ""
    """What makes ids compare bytewise in ORDER BY and comparisons, where they would not."""

    _OBJECTIVE_HOLDS = "instr(lower(objective), :text) > 0"
    """The condition that a run's lower-cased objective holds ``:text`` (lower-cased by
    ``str.lower``): a backend names its Unicode-aware lower-casing here."""

    # -- what a backend supplies ----------------------------------------------------------

    @abstractmethod
    async def _select(
        self, statement: str, params: Mapping[str, Any], *, run: RunId | None = None
    ) -> list[Row]:
        """The rows of one shared statement; when there are none and ``run`` is given,
        NotFoundError if ``params["tenant"]`` has no such run."""

    @abstractmethod
    async def _change(
        self, statement: str, params: Mapping[str, Any], *, then: str
    ) -> tuple[int, Row | None]:
        """In one transaction: run ``statement`` (a write), then ``then`` with the same
        parameters; how many rows the write changed, and the first row ``then`` reads."""

    @abstractmethod
    async def _insert(self, batches: Sequence[Batch]) -> None:
        """Insert every batch in one transaction; ConflictError ("{what} already exists")
        with nothing written when a row's key exists."""

    @abstractmethod
    async def _memories(self, tenant: Tenant, memory_ids: Sequence[str]) -> list[Memory]:
        """The tenant's memories among ``memory_ids`` that exist, in any order."""

    @abstractmethod
    async def _add_checkpoint(
        self, params: Mapping[str, Any], decide: Callable[[Run, int | None], CheckpointPlan]
    ) -> Checkpoint:
        """Read ``sql.RUN_AND_THROUGH_TOKENS`` (NotFoundError without a row), decide and
        write the plan (``sql.INSERT_CHECKPOINT``, ``sql.MOVE_COVERED``), in one
        transaction."""

    @abstractmethod
    async def _prune(
        self,
        tenant: Tenant,
        run_id: RunId,
        decide: Callable[[Run, list[CheckpointMark]], PrunePlan],
        now: datetime,
    ) -> PruneResult:
        """Read the run and ``sql.CHECKPOINT_MARKS``, decide and apply the plan, in one
        transaction."""

    @abstractmethod
    async def _commit(
        self,
        tenant: Tenant,
        batch_id: BatchId,
        targets: list[MemoryId],
        decide: Callable[[Proposal, dict[MemoryId, Memory]], CommitWrites],
    ) -> Proposal:
        """Read the batch and the ``targets`` that exist, decide and write the result, in
        one transaction."""

    # -- runs ---------------------------------------------------------------------------

    async def create_run(self, tenant: Tenant, run: Run) -> Run:
        """Insert ``run`` as given. ConflictError if the tenant already has that run_id."""
        await self._insert([(sql.INSERT_RUN, [run_row(tenant, run)], f"run {run.run_id}")])
        return run

    async def get_run(self, tenant: Tenant, run_id: RunId) -> Run:
        """The run. NotFoundError if the tenant has no such run."""
        rows = await self._select(sql.RUN, {"tenant": tenant, "run_id": run_id})
        if not rows:
            raise NotFoundError(f"run {run_id}")
        return to_run(rows[0])

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
        """The tenant's runs, newest ``updated_at`` first (ties by run_id), filtered and
        paginated by the database (see the port)."""
        if limit <= 0:
            return []
        rows = await self._select(
            sql.list_runs(status=status is not None, project=project is not None,
                          text=self._OBJECTIVE_HOLDS if text else None,
                          since=since is not None, until=until is not None),
            {"tenant": tenant, "status": status, "project": project,
             "text": text.lower() if text else None,
             "since_us": None if since is None else micros(since),
             "until_us": None if until is None else micros(until),
             "limit": int64(limit), "offset": int64(max(offset, 0))},
        )
        return [to_run(row) for row in rows]

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
        """Change status and/or pinned items, bumping ``version`` (compare-and-set).

        ConflictError if the stored version is not ``expected_version``; NotFoundError if
        there is no such run.
        """
        changed, row = await self._change(sql.UPDATE_RUN, {
            "tenant": tenant, "run_id": run_id, "expected_version": expected_version,
            "updated_at": iso(now), "updated_us": micros(now), "status": status,
            "pinned": None if pinned is None else to_json(pinned),
        }, then=sql.RUN)
        if row is None:
            raise NotFoundError(f"run {run_id}")
        run = to_run(row)
        if changed != 1:
            raise ConflictError(f"run {run_id} changed (version {run.version})")
        return run

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
        """Steps with ``after_seq < seq <= until_seq``, at most ``limit``, in seq order
        (descending when ``newest_first``): one range scan of the primary key.
        NotFoundError if there is no such run.
        """
        rows = await self._select(sql.list_steps(newest_first=newest_first), {
            "tenant": tenant, "run_id": run_id, "after_seq": int64(after_seq),
            "until_seq": int64(INT64_MAX if until_seq is None else until_seq),
            "limit": int64(max(limit, 0)),
        }, run=run_id)
        return [to_step(row) for row in rows]

    async def step_stats(self, tenant: Tenant, run_id: RunId) -> list[StepStat]:
        """See ``EpisodicStore.step_stats``."""
        rows = await self._select(sql.STEP_STATS, {"tenant": tenant, "run_id": run_id},
                                  run=run_id)
        stats = [StepStat(str(r["tool"]), str(r["status"]), int(r["steps"]), int(r["tokens"]))
                 for r in rows]
        return sorted(stats, key=lambda s: (-s.steps, s.tool, s.status))

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
        """Insert the run's next checkpoint and make it the latest, as
        ``core.plans.plan_checkpoint`` decides (see the port)."""

        def decide(run: Run, through_tokens: int | None) -> CheckpointPlan:
            return plan_checkpoint(
                run, through_tokens=through_tokens, checkpoint_id=checkpoint_id,
                parent_id=parent_id, through_seq=through_seq, content=content, source=source,
                tokens=tokens, now=now,
            )

        params = {"tenant": tenant, "run_id": run_id, "through_seq": through_seq}
        return await self._add_checkpoint(params, decide)

    async def get_checkpoint(
        self, tenant: Tenant, run_id: RunId, checkpoint_id: CheckpointId
    ) -> Checkpoint:
        """A checkpoint of this run. NotFoundError if the run has no such checkpoint."""
        rows = await self._select(sql.CHECKPOINT_BY_ID, {
            "tenant": tenant, "run_id": run_id, "checkpoint_id": checkpoint_id,
        }, run=run_id)
        if not rows:
            raise NotFoundError(f"checkpoint {checkpoint_id} of run {run_id}")
        return to_checkpoint(rows[0])

    async def get_checkpoint_by_number(
        self, tenant: Tenant, run_id: RunId, number: int
    ) -> Checkpoint | None:
        """The run's ``number``-th checkpoint (1-based), or None. NotFoundError if there is
        no such run."""
        rows = await self._select(sql.CHECKPOINT_BY_NUMBER, {
            "tenant": tenant, "run_id": run_id, "number": int64(number),
        }, run=run_id)
        return to_checkpoint(rows[0]) if rows else None

    async def list_checkpoints(
        self, tenant: Tenant, run_id: RunId, *, limit: int, offset: int
    ) -> list[Checkpoint]:
        """The run's checkpoints, newest first, paginated. NotFoundError if there is no
        such run."""
        rows = await self._select(sql.LIST_CHECKPOINTS, {
            "tenant": tenant, "run_id": run_id, "limit": int64(max(limit, 0)),
            "offset": int64(max(offset, 0)),
        }, run=run_id)
        return [to_checkpoint(row) for row in rows]

    async def find_checkpoint(
        self, tenant: Tenant, checkpoint_id: CheckpointId
    ) -> CheckpointRef | None:
        """Where a checkpoint id points, also after pruning (see the port)."""
        rows = await self._select(
            sql.FIND_CHECKPOINT, {"tenant": tenant, "checkpoint_id": checkpoint_id}
        )
        if not rows:
            return None
        return CheckpointRef(
            checkpoint_id, RunId(rows[0]["run_id"]), int(rows[0]["number"]),
            int(rows[0]["through_seq"]), pruned=bool(rows[0]["pruned"]),
        )

    # -- ids --------------------------------------------------------------------------

    async def match_ids(
        self, tenant: Tenant, kind: IdKind, prefix: str, *, limit: int
    ) -> list[str]:
        """One range scan of the kind's (tenant, id) index, in the ids' byte order (see the
        port)."""
        table, column = ID_TABLES[kind]
        low, high = prefix_range(prefix)
        rows = await self._select(sql.match_ids(table, column, bounded=high is not None), {
            "tenant": tenant, "low": low, "high": high, "limit": int64(max(limit, 0)),
        })
        return [row[column] for row in rows]

    # -- retention ----------------------------------------------------------------------

    async def list_prunable_runs(
        self,
        tenant: Tenant | None,
        *,
        finished_before: datetime,
        after: tuple[Tenant, RunId] | None = None,
        limit: int,
    ) -> list[tuple[Tenant, Run]]:
        """Finished runs last updated before ``finished_before``, by (tenant, run_id)
        after ``after``, at most ``limit``; one tenant's or every tenant's (see the port).
        Ids compare bytewise, so the ``after`` key pages exactly as the listing is
        ordered, on every backend."""
        if limit <= 0:
            return []
        after_tenant, after_run = after or (None, None)
        rows = await self._select(
            sql.list_prunable_runs(
                tenant=tenant is not None, after=after is not None, collate=self._COLLATE
            ),
            {"tenant": tenant, "finished_us": micros(finished_before),
             "after_tenant": after_tenant, "after_run": after_run, "limit": int64(limit)},
        )
        return [(Tenant(row["tenant"]), to_run(row)) for row in rows]

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
        """Remove what ``core.plans.plan_prune`` decides, in one transaction (see the
        port)."""
        check_keep(keep_checkpoints)

        def decide(run: Run, marks: list[CheckpointMark]) -> PrunePlan:
            return plan_prune(tenant, run, marks, keep_checkpoints=keep_checkpoints,
                              finished_before=finished_before, dry_run=dry_run)

        return await self._prune(tenant, run_id, decide, now)

    # -- proposals ----------------------------------------------------------------------

    async def add_proposal(self, tenant: Tenant, proposal: Proposal) -> Proposal:
        """Insert a pending batch durably. ConflictError if its batch_id exists."""
        await self._insert([
            (sql.INSERT_PROPOSAL, [proposal_row(tenant, proposal)], f"batch {proposal.batch_id}")
        ])
        return proposal

    async def get_proposal(self, tenant: Tenant, batch_id: BatchId) -> Proposal:
        """The batch. NotFoundError if the tenant has no such batch."""
        rows = await self._select(sql.PROPOSAL, {"tenant": tenant, "batch_id": batch_id})
        if not rows:
            raise NotFoundError(f"batch {batch_id}")
        return to_proposal(rows[0])

    async def list_proposals(
        self, tenant: Tenant, *, status: BatchStatus | None, limit: int, offset: int
    ) -> list[Proposal]:
        """The tenant's batches, newest first (see the port)."""
        if limit <= 0:
            return []
        rows = await self._select(sql.list_proposals(status=status is not None), {
            "tenant": tenant, "status": status, "limit": int64(limit),
            "offset": int64(max(offset, 0)),
        })
        return [to_proposal(row) for row in rows]

    async def expire_proposal(self, tenant: Tenant, batch_id: BatchId, *, now: datetime) -> None:
        """Mark a pending batch ``expired``; no-op if it is no longer pending.
        NotFoundError if the tenant has no such batch."""
        _, row = await self._change(
            sql.EXPIRE_PROPOSAL, {"tenant": tenant, "batch_id": batch_id}, then=sql.PROPOSAL
        )
        if row is None:
            raise NotFoundError(f"batch {batch_id}")

    async def commit_proposal(self, tenant: Tenant, plan: CommitPlan, *, now: datetime) -> Proposal:
        """Write what ``core.plans.plan_commit`` decides for ``plan``, all or nothing;
        ConflictError or NotFoundError with nothing written (see the port)."""

        def decide(proposal: Proposal, targets: dict[MemoryId, Memory]) -> CommitWrites:
            return plan_commit(proposal, plan, targets, now=now)

        return await self._commit(tenant, plan.batch_id, target_ids(plan), decide)

    # -- memories -----------------------------------------------------------------------

    async def get_memory(self, tenant: Tenant, memory_id: MemoryId) -> Memory:
        """The memory, whatever its status. NotFoundError if there is none."""
        rows = await self._select(sql.MEMORY, {"tenant": tenant, "memory_id": memory_id})
        if not rows:
            raise NotFoundError(f"memory {memory_id}")
        return to_memory(rows[0])

    async def get_memories(self, tenant: Tenant, memory_ids: Sequence[MemoryId]) -> list[Memory]:
        """The memories that exist among ``memory_ids``, in the order asked."""
        if not memory_ids:
            return []
        found = {m.memory_id: m for m in await self._memories(tenant, memory_ids)}
        return [found[i] for i in memory_ids if i in found]

    async def forgotten_memories(
        self, tenant: Tenant, memory_ids: Sequence[MemoryId]
    ) -> dict[MemoryId, datetime]:
        """The tombstones of these ids (see the port): one read of the primary key."""
        if not memory_ids:
            return {}
        found: dict[MemoryId, datetime] = {}
        for memory_id in dict.fromkeys(memory_ids):
            rows = await self._select(sql.FORGOTTEN, {"tenant": tenant, "memory_id": memory_id})
            if rows:
                found[memory_id] = from_iso(rows[0]["forgotten_at"])
        return found

    async def list_memories(
        self,
        tenant: Tenant | None,
        *,
        status: MemoryStatus | None = "active",
        after: tuple[Tenant, MemoryId] | None = None,
        limit: int,
    ) -> list[tuple[Tenant, Memory]]:
        """Memories ordered by (tenant, memory_id), after the ``after`` key, at most
        ``limit``: one tenant's, or every tenant's when ``tenant`` is None. Only ``status``
        memories unless it is None. One range scan of the (tenant, memory_id) key."""
        if limit <= 0:
            return []
        after_tenant, after_memory = after or (None, None)
        rows = await self._select(
            sql.list_memories(
                tenant=tenant is not None, status=status is not None, after=after is not None
            ),
            {"tenant": tenant, "status": status, "after_tenant": after_tenant,
             "after_memory": after_memory, "limit": int64(limit)},
        )
        return [(Tenant(row["tenant"]), to_memory(row)) for row in rows]

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
        """Memories matching the words of ``query``, best first, scored by
        ``core.lexical.rank_bm25`` from the statistics of the memories searched (the
        tenant's, after the filters): another tenant's or another scope's memories never
        change a ranking or a score. Any text is a valid query; a query with no word
        returns []."""
        words = query_terms(query)
        if not words or limit <= 0:
            return []
        return await self._search(
            words, {"tenant": tenant, "status": status, "scope": scope, "kind": kind},
            limit=limit,
        )

    @abstractmethod
    async def _search(
        self, words: list[str], searched: dict[str, Any], *, limit: int
    ) -> list[tuple[Memory, float]]:
        """``search_lexical`` for ``words`` among the memories ``searched`` selects
        (``tenant``, ``status``, and ``scope``/``kind`` when not None)."""

    # -- import -------------------------------------------------------------------------

    async def import_records(self, tenant: Tenant, records: ImportRecords) -> None:
        """Insert ``records`` as given, in one transaction; ConflictError naming the id,
        with nothing written, if one exists (see the port)."""
        batches: list[Batch] = []
        for item in records.runs:
            what = f"run {item.run.run_id}"
            batches += [
                (sql.INSERT_RUN, [run_row(tenant, item.run)], what),
                (sql.INSERT_STEP, [
                    step_row(tenant, s.step, s.request_hash, s.ack.model_dump_json())
                    for s in item.steps
                ], what),
                (sql.INSERT_CHECKPOINT, [checkpoint_row(tenant, c) for c in item.checkpoints],
                 what),
            ]
        batches += [
            (sql.INSERT_PROPOSAL, [proposal_row(tenant, p)], f"batch {p.batch_id}")
            for p in records.proposals
        ]
        batches += [
            (sql.INSERT_MEMORY, [memory_row(tenant, m)], f"memory {m.memory_id}")
            for m in records.memories
        ]
        await self._insert(batches)
