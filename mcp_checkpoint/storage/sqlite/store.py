"""The embedded store: one SQLite file in WAL mode, shared safely by several processes.

Every write is one ``BEGIN IMMEDIATE`` transaction (see ``_db``), so what a method reads,
decides through ``core`` (``ledger.append_step``, ``core.plans``) and writes inside it is
atomic across processes; primary keys and unique indexes are the final word on identity
and ordering. Lexical search is FTS5 over memory content, kept in sync by triggers, and
scored by ``core.lexical.rank_bm25`` (see ``_lexical``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from mcp_checkpoint.config import SqliteSettings
from mcp_checkpoint.core.ledger import append_step, retried_ack
from mcp_checkpoint.core.lexical import query_terms, rank_bm25
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
from mcp_checkpoint.core.plans import (
    check_keep,
    plan_checkpoint,
    plan_commit,
    plan_prune,
    target_ids,
)
from mcp_checkpoint.core.ports import CheckpointRef, CommitPlan, ImportRecords, PruneResult
from mcp_checkpoint.errors import ConflictError, NotFoundError
from mcp_checkpoint.storage import _statements as sql
from mcp_checkpoint.storage._ints import INT64_MAX, int64
from mcp_checkpoint.storage._rows import (
    checkpoint_row,
    covered_params,
    iso,
    memory_row,
    memory_write_params,
    micros,
    proposal_row,
    pruned_params,
    run_row,
    step_row,
    to_checkpoint,
    to_json,
    to_mark,
    to_memory,
    to_proposal,
    to_run,
    to_step,
    tombstone_row,
)
from mcp_checkpoint.storage.sqlite._db import Conn
from mcp_checkpoint.storage.sqlite._lexical import Postings, term_statistics
from mcp_checkpoint.storage.sqlite.blobs import SqliteBlobs

__all__ = ["SqliteStore"]

_MOVE_HEAD = (
    "UPDATE runs SET head_seq = :head_seq, step_count = :step_count, head_hash = :head_hash, "
    "head_tokens = :head_tokens, updated_at = :updated_at, updated_us = :updated_us "
    "WHERE tenant = :tenant AND run_id = :run_id AND head_seq = :expected_head"
)
_MEMORIES = (
    "SELECT * FROM memories WHERE tenant = ? AND memory_id IN (SELECT value FROM json_each(?))"
)


class SqliteStore(SqliteBlobs):
    """A :class:`~mcp_checkpoint.core.ports.Store` in one SQLite file (see ``SqliteDatabase``
    for the connection model)."""

    def __init__(self, path: Path, settings: SqliteSettings) -> None:
        """Remember where the file lives; nothing is touched until :meth:`open`."""
        super().__init__(path, settings)
        self._postings = Postings()  # lexical search's memory; used under self._lock

    def _closed(self) -> None:
        self._postings = Postings()  # a file opened later may count from 0 again

    # -- runs ---------------------------------------------------------------------------

    @staticmethod
    def _load_run(conn: Conn, tenant: Tenant, run_id: RunId) -> Run:
        row = conn.execute(sql.RUN, {"tenant": tenant, "run_id": run_id}).fetchone()
        if row is None:
            raise NotFoundError(f"run {run_id}")
        return to_run(row)

    @staticmethod
    def _require_run(conn: Conn, tenant: Tenant, run_id: RunId) -> None:
        if conn.execute(sql.RUN_EXISTS, {"tenant": tenant, "run_id": run_id}).fetchone() is None:
            raise NotFoundError(f"run {run_id}")

    async def create_run(self, tenant: Tenant, run: Run) -> Run:
        """Insert ``run`` as given. ConflictError if the tenant already has that run_id."""

        def insert(conn: Conn) -> Run:
            try:
                conn.execute(sql.INSERT_RUN, run_row(tenant, run))
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"run {run.run_id} already exists") from exc
            return run

        return await self._write(insert)

    async def get_run(self, tenant: Tenant, run_id: RunId) -> Run:
        """The run. NotFoundError if the tenant has no such run."""
        return await self._read(lambda conn: self._load_run(conn, tenant, run_id))

    async def list_runs(
        self,
        tenant: Tenant,
        *,
        status: RunStatus | None,
        limit: int,
        offset: int,
        project: str | None = None,
    ) -> list[Run]:
        """The tenant's runs, newest ``updated_at`` first (ties by run_id), paginated."""
        if limit <= 0:
            return []
        query = sql.list_runs(status=status is not None, project=project is not None)
        params = {"tenant": tenant, "status": status, "project": project,
                  "limit": int64(limit), "offset": int64(max(offset, 0))}

        def select(conn: Conn) -> list[Run]:
            return [to_run(row) for row in conn.execute(query, params)]

        return await self._read(select)

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
        params = {
            "tenant": tenant, "run_id": run_id, "expected_version": expected_version,
            "updated_at": iso(now), "updated_us": micros(now), "status": status,
            "pinned": None if pinned is None else to_json(pinned),
        }

        def update(conn: Conn) -> Run:
            cursor = conn.execute(sql.UPDATE_RUN, params)
            run = self._load_run(conn, tenant, run_id)
            if cursor.rowcount != 1:
                raise ConflictError(f"run {run_id} changed (version {run.version})")
            return run

        return await self._write(update)

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
        """Append a step durably and return its acknowledgement (see the port), in a
        transaction shared with the steps recorded at the same time (group commit)."""
        key = draft.idempotency_key

        def append(conn: Conn) -> StepAck:
            run = self._load_run(conn, tenant, run_id)
            if key is not None:
                seen = conn.execute(
                    sql.SEEN_KEY, {"tenant": tenant, "run_id": run_id, "key": key}
                ).fetchone()
                if seen is not None:
                    stored = StepAck.model_validate_json(seen["ack"])
                    return retried_ack(key, seen["request_hash"], stored, request_hash)
            step, after = append_step(run, draft, tokens=tokens, now=now)
            ack = make_ack(after, step)
            conn.execute(sql.INSERT_STEP, step_row(tenant, step, request_hash,
                                                   ack.model_dump_json()))
            cursor = conn.execute(_MOVE_HEAD, {
                "tenant": tenant, "run_id": run_id, "head_seq": after.head_seq,
                "step_count": after.step_count, "head_hash": after.head_hash,
                "head_tokens": after.head_tokens, "updated_at": iso(now),
                "updated_us": micros(now), "expected_head": run.head_seq,
            })
            if cursor.rowcount != 1:  # pragma: no cover - the write lock rules it out
                raise ConflictError(f"run {run_id} moved on; try again")
            return ack

        return await self._write_grouped(append)

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
        query = sql.list_steps(newest_first=newest_first)
        params = {
            "tenant": tenant, "run_id": run_id, "after_seq": int64(after_seq),
            "until_seq": int64(INT64_MAX if until_seq is None else until_seq),
            "limit": int64(limit),
        }

        def select(conn: Conn) -> list[Step]:
            self._require_run(conn, tenant, run_id)
            if limit <= 0:
                return []
            return [to_step(row) for row in conn.execute(query, params)]

        return await self._read(select)

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

        def add(conn: Conn) -> Checkpoint:
            row = conn.execute(sql.RUN_AND_THROUGH_TOKENS, {
                "tenant": tenant, "run_id": run_id, "through_seq": through_seq,
            }).fetchone()
            if row is None:
                raise NotFoundError(f"run {run_id}")
            plan = plan_checkpoint(
                to_run(row), through_tokens=row["through_tokens"], checkpoint_id=checkpoint_id,
                parent_id=parent_id, through_seq=through_seq, content=content, source=source,
                tokens=tokens, now=now,
            )
            try:
                conn.execute(sql.INSERT_CHECKPOINT, checkpoint_row(tenant, plan.checkpoint))
            except sqlite3.IntegrityError as exc:
                raise ConflictError(
                    f"checkpoint {checkpoint_id} of run {run_id} already exists"
                ) from exc
            cursor = conn.execute(sql.MOVE_COVERED, covered_params(tenant, plan))
            if cursor.rowcount != 1:  # pragma: no cover - the write lock rules it out
                raise ConflictError(f"run {run_id} has a newer checkpoint than {parent_id}")
            return plan.checkpoint

        return await self._write(add)

    async def get_checkpoint(
        self, tenant: Tenant, run_id: RunId, checkpoint_id: CheckpointId
    ) -> Checkpoint:
        """A checkpoint of this run. NotFoundError if the run has no such checkpoint."""
        params = {"tenant": tenant, "run_id": run_id, "checkpoint_id": checkpoint_id}

        def select(conn: Conn) -> Checkpoint:
            self._require_run(conn, tenant, run_id)
            row = conn.execute(sql.CHECKPOINT_BY_ID, params).fetchone()
            if row is None:
                raise NotFoundError(f"checkpoint {checkpoint_id} of run {run_id}")
            return to_checkpoint(row)

        return await self._read(select)

    async def get_checkpoint_by_number(
        self, tenant: Tenant, run_id: RunId, number: int
    ) -> Checkpoint | None:
        """The run's ``number``-th checkpoint (1-based), or None. NotFoundError if there is
        no such run."""
        params = {"tenant": tenant, "run_id": run_id, "number": int64(number)}

        def select(conn: Conn) -> Checkpoint | None:
            self._require_run(conn, tenant, run_id)
            row = conn.execute(sql.CHECKPOINT_BY_NUMBER, params).fetchone()
            return None if row is None else to_checkpoint(row)

        return await self._read(select)

    async def list_checkpoints(
        self, tenant: Tenant, run_id: RunId, *, limit: int, offset: int
    ) -> list[Checkpoint]:
        """The run's checkpoints, newest first, paginated. NotFoundError if there is no
        such run."""
        params = {"tenant": tenant, "run_id": run_id, "limit": int64(limit),
                  "offset": int64(max(offset, 0))}

        def select(conn: Conn) -> list[Checkpoint]:
            self._require_run(conn, tenant, run_id)
            if limit <= 0:
                return []
            return [to_checkpoint(row) for row in conn.execute(sql.LIST_CHECKPOINTS, params)]

        return await self._read(select)

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
        after ``after``, at most ``limit``; one tenant's or every tenant's (see the port)."""
        if limit <= 0:
            return []
        query = sql.list_prunable_runs(tenant=tenant is not None, after=after is not None)
        after_tenant, after_run = after or (None, None)
        params = {"tenant": tenant, "finished_us": micros(finished_before),
                  "after_tenant": after_tenant, "after_run": after_run, "limit": int64(limit)}

        def select(conn: Conn) -> list[tuple[Tenant, Run]]:
            return [(Tenant(row["tenant"]), to_run(row)) for row in conn.execute(query, params)]

        return await self._read(select)

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
        """Remove what ``core.plans.plan_prune`` decides, in one ``BEGIN IMMEDIATE``
        transaction (see the port). Freed pages are reused by later writes; :meth:`vacuum`
        gives them back to the filesystem."""
        check_keep(keep_checkpoints)
        where = {"tenant": tenant, "run_id": run_id}

        def prune(conn: Conn) -> PruneResult:
            run = self._load_run(conn, tenant, run_id)
            marks = [to_mark(row) for row in conn.execute(sql.CHECKPOINT_MARKS, where)]
            plan = plan_prune(tenant, run, marks, keep_checkpoints=keep_checkpoints,
                              finished_before=finished_before, dry_run=dry_run)
            if plan.run is None:
                return plan.result
            if plan.steps_through:
                conn.execute(sql.DELETE_STEPS_THROUGH, {**where, "seq": plan.steps_through})
            conn.executemany(
                sql.INSERT_TOMBSTONE, [tombstone_row(tenant, ref, now) for ref in plan.tombstones]
            )
            conn.execute(sql.DELETE_CHECKPOINTS_BELOW, {**where,
                                                        "number": plan.checkpoints_below})
            cursor = conn.execute(sql.RECORD_PRUNED, pruned_params(tenant, plan, plan.run))
            if cursor.rowcount != 1:  # pragma: no cover - the write lock rules it out
                raise ConflictError(f"run {run_id} changed while it was pruned; try again")
            return plan.result

        return await self._write(prune)

    async def find_checkpoint(
        self, tenant: Tenant, checkpoint_id: CheckpointId
    ) -> CheckpointRef | None:
        """Where a checkpoint id points, also after pruning (see the port)."""
        params = {"tenant": tenant, "checkpoint_id": checkpoint_id}

        def select(conn: Conn) -> CheckpointRef | None:
            row = conn.execute(sql.FIND_CHECKPOINT, params).fetchone()
            if row is None:
                return None
            return CheckpointRef(
                checkpoint_id, RunId(row["run_id"]), row["number"], row["through_seq"],
                pruned=bool(row["pruned"]),
            )

        return await self._read(select)

    # -- proposals ----------------------------------------------------------------------

    @staticmethod
    def _load_proposal(conn: Conn, tenant: Tenant, batch_id: BatchId) -> Proposal:
        row = conn.execute(sql.PROPOSAL, {"tenant": tenant, "batch_id": batch_id}).fetchone()
        if row is None:
            raise NotFoundError(f"batch {batch_id}")
        return to_proposal(row)

    async def add_proposal(self, tenant: Tenant, proposal: Proposal) -> Proposal:
        """Insert a pending batch durably. ConflictError if its batch_id exists."""

        def insert(conn: Conn) -> Proposal:
            try:
                conn.execute(sql.INSERT_PROPOSAL, proposal_row(tenant, proposal))
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"batch {proposal.batch_id} already exists") from exc
            return proposal

        return await self._write(insert)

    async def get_proposal(self, tenant: Tenant, batch_id: BatchId) -> Proposal:
        """The batch. NotFoundError if the tenant has no such batch."""
        return await self._read(lambda conn: self._load_proposal(conn, tenant, batch_id))

    async def expire_proposal(self, tenant: Tenant, batch_id: BatchId, *, now: datetime) -> None:
        """Mark a pending batch ``expired``; no-op if it is no longer pending.
        NotFoundError if the tenant has no such batch."""

        def expire(conn: Conn) -> None:
            params = {"tenant": tenant, "batch_id": batch_id}
            if conn.execute(sql.EXPIRE_PROPOSAL, params).rowcount == 0:
                self._load_proposal(conn, tenant, batch_id)

        await self._write(expire)

    async def commit_proposal(self, tenant: Tenant, plan: CommitPlan, *, now: datetime) -> Proposal:
        """Write what ``core.plans.plan_commit`` decides for ``plan``, all or nothing;
        ConflictError or NotFoundError with nothing written (see the port)."""

        def commit(conn: Conn) -> Proposal:
            proposal = self._load_proposal(conn, tenant, plan.batch_id)
            targets = {m.memory_id: m for m in self._select_memories(conn, tenant,
                                                                     target_ids(plan))}
            writes = plan_commit(proposal, plan, targets, now=now)
            cursor = conn.execute(sql.COMMIT_PROPOSAL, proposal_row(tenant, writes.proposal))
            if cursor.rowcount != 1:  # pragma: no cover - the write lock rules it out
                raise ConflictError(f"batch {plan.batch_id} is no longer pending")
            for memory in writes.inserts:
                try:
                    conn.execute(sql.INSERT_MEMORY, memory_row(tenant, memory))
                except sqlite3.IntegrityError as exc:
                    raise ConflictError(f"memory {memory.memory_id} already exists") from exc
            for write in writes.writes:
                cursor = conn.execute(sql.UPDATE_MEMORY, memory_write_params(tenant, write))
                if cursor.rowcount != 1:  # pragma: no cover - the write lock rules it out
                    raise ConflictError(
                        f"memory {write.memory.memory_id} changed since it was proposed"
                    )
            return writes.proposal

        return await self._write(commit)

    # -- memories -----------------------------------------------------------------------

    @staticmethod
    def _select_memories(conn: Conn, tenant: Tenant, memory_ids: Sequence[str]) -> list[Memory]:
        if not memory_ids:
            return []
        rows = conn.execute(_MEMORIES, (tenant, to_json(list(memory_ids)))).fetchall()
        return [to_memory(row) for row in rows]

    async def get_memory(self, tenant: Tenant, memory_id: MemoryId) -> Memory:
        """The memory, whatever its status. NotFoundError if there is none."""

        def select(conn: Conn) -> Memory:
            row = conn.execute(sql.MEMORY, {"tenant": tenant, "memory_id": memory_id}).fetchone()
            if row is None:
                raise NotFoundError(f"memory {memory_id}")
            return to_memory(row)

        return await self._read(select)

    async def get_memories(self, tenant: Tenant, memory_ids: Sequence[MemoryId]) -> list[Memory]:
        """The memories that exist among ``memory_ids``, in the order asked."""

        def select(conn: Conn) -> list[Memory]:
            found = {m.memory_id: m for m in self._select_memories(conn, tenant, memory_ids)}
            return [found[i] for i in memory_ids if i in found]

        return await self._read(select)

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
        query = sql.list_memories(
            tenant=tenant is not None, status=status is not None, after=after is not None
        )
        after_tenant, after_memory = after or (None, None)
        params = {"tenant": tenant, "status": status, "after_tenant": after_tenant,
                  "after_memory": after_memory, "limit": int64(limit)}

        def select(conn: Conn) -> list[tuple[Tenant, Memory]]:
            return [(Tenant(row["tenant"]), to_memory(row)) for row in conn.execute(query, params)]

        return await self._read(select)

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
        ``core.lexical.rank_bm25`` over the searched memories (the tenant's, after the
        filters): another tenant's or another scope's memories never change a ranking or a
        score. Any text is a valid query; a query with no word returns []."""
        words = query_terms(query)
        if not words or limit <= 0:
            return []
        where = (
            "m.tenant = ? AND m.status = ? AND (? IS NULL OR m.scope = ?) "
            "AND (? IS NULL OR m.kind = ?)"
        )
        params = (tenant, status, scope, scope, kind, kind)

        def select(conn: Conn) -> list[tuple[Memory, float]]:
            version = conn.execute(
                "SELECT version FROM memories_version WHERE id = 1"
            ).fetchone()[0]
            self._postings.at(version)  # before any result is read: see Postings
            searched, matching, occurrences = term_statistics(
                conn, words, where, params, self._postings
            )
            best = rank_bm25(searched, matching, occurrences, limit=limit)
            found = {m.memory_id: m for m in self._select_memories(
                conn, tenant, [memory_id for memory_id, _ in best])}
            return [(found[MemoryId(memory_id)], score) for memory_id, score in best]

        return await self._read(select)

    # -- import -------------------------------------------------------------------------

    async def import_records(self, tenant: Tenant, records: ImportRecords) -> None:
        """Insert ``records`` as given, in one ``BEGIN IMMEDIATE`` transaction; ConflictError
        naming the id, with nothing written, if one exists (see the port)."""

        def insert(conn: Conn) -> None:
            what = "a record"
            try:
                for item in records.runs:
                    what = f"run {item.run.run_id}"
                    conn.execute(sql.INSERT_RUN, run_row(tenant, item.run))
                    conn.executemany(sql.INSERT_STEP, [
                        step_row(tenant, s.step, s.request_hash, s.ack.model_dump_json())
                        for s in item.steps
                    ])
                    conn.executemany(sql.INSERT_CHECKPOINT, [
                        checkpoint_row(tenant, c) for c in item.checkpoints
                    ])
                for proposal in records.proposals:
                    what = f"batch {proposal.batch_id}"
                    conn.execute(sql.INSERT_PROPOSAL, proposal_row(tenant, proposal))
                for memory in records.memories:
                    what = f"memory {memory.memory_id}"
                    conn.execute(sql.INSERT_MEMORY, memory_row(tenant, memory))
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"{what} already exists") from exc

        await self._write(insert)

