"""The production store: PostgreSQL through psycopg 3 and an async connection pool (see
``_db`` for the pool, its timeouts and outages).

Every write is one transaction. An append reads its run's head (or starts from the head
this process left), then moves it and inserts the step in one statement that succeeds
only if the head has not moved meanwhile (compare-and-set); one that keeps losing that
race, and every checkpoint, locks the run's row (``SELECT ... FOR UPDATE``). So what a
method reads, decides through ``core`` (``ledger.append_step``, ``core.plans``) and
writes is serialized per run across every process sharing the database, while different
runs proceed in parallel. Primary keys and unique indexes stay the final word on identity
and ordering; compare-and-set on versions guards memories and runs. Retention
(``prune_run``) takes the same row lock, so it never races an append; removed checkpoints
leave tombstones in ``pruned_checkpoints``. Lexical search is PostgreSQL full-text search
(a GIN index over a generated ``tsvector``, so imported memories are searchable at once),
scored by ``core.lexical.rank_bm25`` with the statistics of the searched memories.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors

from mcp_checkpoint.config import PostgresSettings
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
from mcp_checkpoint.storage._urls import mask_url
from mcp_checkpoint.storage.postgres._db import Conn
from mcp_checkpoint.storage.postgres._sql import (
    HEAD_AND_KEY,
    LOCKED_MEMORIES,
    MEMORY_COLUMNS,
    MOVE_HEAD_AND_INSERT,
    SEARCH,
    pg,
)
from mcp_checkpoint.storage.postgres.blobs import PostgresBlobs

__all__ = ["Conn", "PostgresStore", "mask_url"]

_RERANK_DEPTH = 200
"""Lexical matches (by ``ts_rank_cd``) re-scored by BM25 over the searched memories."""
_OPTIMISTIC_APPENDS = 2
"""Lock-free attempts at an append before it queues on the run's row lock."""
_KNOWN_HEADS = 4096
"""Runs whose head a store remembers after appending (one round trip per append then)."""


class PostgresStore(PostgresBlobs):
    """A :class:`~mcp_checkpoint.core.ports.Store` in a PostgreSQL database (see
    ``PostgresDatabase`` for the connection model)."""

    def __init__(self, url: str, settings: PostgresSettings) -> None:
        """Remember where the database is; nothing connects until :meth:`open`."""
        super().__init__(url, settings)
        # The head each run had after this process last appended to it (newest last). A
        # hint, never trusted: an append computed from it still compares-and-sets.
        self._heads: dict[tuple[str, str], Run] = {}

    def _remember(self, where: tuple[str, str], run: Run) -> None:
        """Keep ``run`` as the head this process last wrote (the oldest one forgotten)."""
        self._heads.pop(where, None)
        self._heads[where] = run
        if len(self._heads) > _KNOWN_HEADS:
            del self._heads[next(iter(self._heads))]

    async def _one(self, conn: Conn, statement: str, params: Any) -> Any:
        """The first row of a shared statement (``storage._statements``), or None."""
        cursor = await conn.execute(pg(statement), params)
        return await cursor.fetchone()

    async def _all(self, conn: Conn, statement: str, params: Any) -> list[Any]:
        """Every row of a shared statement."""
        cursor = await conn.execute(pg(statement), params)
        return await cursor.fetchall()

    async def _count(self, conn: Conn, statement: str, params: Any) -> int:
        """How many rows a shared statement changed."""
        cursor = await conn.execute(pg(statement), params)
        return cursor.rowcount

    # -- runs ---------------------------------------------------------------------------

    async def _load_run(
        self, conn: Conn, tenant: Tenant, run_id: RunId, *, lock: bool = False
    ) -> Run:
        statement = sql.RUN + (" FOR UPDATE" if lock else "")
        row = await self._one(conn, statement, {"tenant": tenant, "run_id": run_id})
        if row is None:
            raise NotFoundError(f"run {run_id}")
        return to_run(row)

    async def _require_run(self, conn: Conn, tenant: Tenant, run_id: RunId) -> None:
        if await self._one(conn, sql.RUN_EXISTS, {"tenant": tenant, "run_id": run_id}) is None:
            raise NotFoundError(f"run {run_id}")

    async def create_run(self, tenant: Tenant, run: Run) -> Run:
        """Insert ``run`` as given. ConflictError if the tenant already has that run_id."""

        async def insert(conn: Conn) -> Run:
            try:
                await conn.execute(pg(sql.INSERT_RUN), run_row(tenant, run))
            except errors.UniqueViolation as exc:
                raise ConflictError(f"run {run.run_id} already exists") from exc
            return run

        return await self._run(insert, write=True)

    async def get_run(self, tenant: Tenant, run_id: RunId) -> Run:
        """The run. NotFoundError if the tenant has no such run."""
        return await self._run(lambda conn: self._load_run(conn, tenant, run_id), write=False)

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

        async def select(conn: Conn) -> list[Run]:
            return [to_run(row) for row in await self._all(conn, query, params)]

        return await self._run(select, write=False)

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

        async def update(conn: Conn) -> Run:
            row = await self._one(conn, sql.UPDATE_RUN + " RETURNING *", params)
            if row is not None:
                return to_run(row)
            run = await self._load_run(conn, tenant, run_id)
            raise ConflictError(f"run {run_id} changed (version {run.version})")

        return await self._run(update, write=True)

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
        """Append a step durably and return its acknowledgement (see the port).

        Lock-free first: one round trip reads the head and the key, one statement writes
        the step and moves the head if it has not moved (compare-and-set on the head's seq,
        hash, episode and version, in autocommit, so the statement is its own durable
        commit). When this process made the run's last append it starts from the head it
        left and skips the read (one round trip); a failed compare-and-set, or a used key
        (the unique index), sends it back to reading. An append that loses the race twice
        queues on the run's row lock instead, so every append finishes, also with many
        writers on one run in several processes. A
        retry with a used ``idempotency_key`` gets the stored acknowledgement with
        ``duplicate=True`` and writes nothing; ConflictError if its request differs.
        """

        key = draft.idempotency_key
        where = (tenant, run_id)

        def settle(run: Run, seen: dict[str, Any] | None
                   ) -> tuple[StepAck, tuple[Run, dict[str, Any]] | None]:
            """The stored answer to a retried key, or the new step's ack, the run after
            it and the statement's parameters."""
            if seen is not None and key is not None:
                stored = StepAck.model_validate_json(seen["ack"])
                return retried_ack(key, seen["request_hash"], stored, request_hash), None
            step, after = append_step(run, draft, tokens=tokens, now=now)
            ack = make_ack(after, step)
            return ack, (after, {
                **step_row(tenant, step, request_hash, ack.model_dump_json()),
                "prev_seq": run.head_seq, "checkpoints": run.checkpoint_count,
                "version": run.version, "step_count": after.step_count, "us": micros(now),
            })

        async def write(conn: Conn, ack: StepAck, after: Run, values: dict[str, Any]) -> bool:
            """Move the head and insert the step in one statement (compare-and-set); False
            when the head had moved, or the key was taken meanwhile."""
            try:
                written = await conn.execute(MOVE_HEAD_AND_INSERT, values)
            except psycopg.errors.UniqueViolation:
                return False
            if await written.fetchone() is None:
                return False
            self._remember(where, after)
            return True

        async def from_known_head(conn: Conn) -> StepAck | None:
            # One round trip: the head this process left. Another writer, a checkpoint or a
            # used key makes the write fail, and the append reads the head instead.
            known = self._heads.pop(where, None)
            if known is None:
                return None
            ack, new = settle(known, None)
            return ack if new is not None and await write(conn, ack, *new) else None

        async def optimistic(conn: Conn) -> StepAck | None:
            # Two round trips and no transaction: read the head (and the key), then one
            # statement that moves the head only if nothing the step was computed from
            # changed, and inserts the step, or does neither. None when another writer got
            # there first (the caller retries); the unique index on keys turns a racing
            # retry of the same key into an error, after which the lookup finds it.
            cursor = await conn.execute(HEAD_AND_KEY, (key, tenant, run_id))
            row = await cursor.fetchone()
            if row is None:
                raise NotFoundError(f"run {run_id}")
            seen = None if row["seen_request_hash"] is None else {
                "request_hash": row["seen_request_hash"], "ack": row["seen_ack"]}
            ack, new = settle(to_run(row), seen)
            if new is None:
                return ack
            return ack if await write(conn, ack, *new) else None

        async def locked(conn: Conn) -> StepAck:
            # The fallback under contention: the run's row lock queues the appenders, so
            # each reads the head, and the keys, as the previous one left them.
            async with conn.transaction():
                params = {"tenant": tenant, "run_id": run_id, "key": key}
                cursor = await conn.execute(pg(sql.RUN + " FOR UPDATE"), params)
                row = await cursor.fetchone()
                if row is None:
                    raise NotFoundError(f"run {run_id}")
                seen = None
                if key is not None:
                    cursor = await conn.execute(pg(sql.SEEN_KEY), params)
                    seen = await cursor.fetchone()
                ack, new = settle(to_run(row), seen)
                if new is not None:
                    written = await conn.execute(MOVE_HEAD_AND_INSERT, new[1])
                    if await written.fetchone() is None:  # pragma: no cover - the lock
                        raise ConflictError(f"run {run_id} moved on; try again")
            if new is not None:
                self._remember(where, new[0])
            return ack

        async def append(conn: Conn) -> StepAck:
            if (ack := await from_known_head(conn)) is not None:
                return ack
            for _ in range(_OPTIMISTIC_APPENDS):
                if (ack := await optimistic(conn)) is not None:
                    return ack
            return await locked(conn)

        return await self._run(append, write=False)

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

        async def select(conn: Conn) -> list[Step]:
            rows = await self._all(conn, query, params) if limit > 0 else []
            if not rows:  # a step implies its run; only an empty page asks about the run
                await self._require_run(conn, tenant, run_id)
            return [to_step(row) for row in rows]

        return await self._run(select, write=False)

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
        ``core.plans.plan_checkpoint`` decides (see the port), with the run's row locked as
        appends do."""

        async def add(conn: Conn) -> Checkpoint:
            row = await self._one(conn, sql.RUN_AND_THROUGH_TOKENS + " FOR UPDATE OF r", {
                "tenant": tenant, "run_id": run_id, "through_seq": through_seq,
            })
            if row is None:
                raise NotFoundError(f"run {run_id}")
            plan = plan_checkpoint(
                to_run(row), through_tokens=row["through_tokens"], checkpoint_id=checkpoint_id,
                parent_id=parent_id, through_seq=through_seq, content=content, source=source,
                tokens=tokens, now=now,
            )
            try:
                await conn.execute(
                    pg(sql.INSERT_CHECKPOINT), checkpoint_row(tenant, plan.checkpoint)
                )
            except errors.UniqueViolation as exc:
                raise ConflictError(
                    f"checkpoint {checkpoint_id} of run {run_id} already exists"
                ) from exc
            if await self._count(conn, sql.MOVE_COVERED, covered_params(tenant, plan)) != 1:
                raise ConflictError(  # pragma: no cover - the row lock rules it out
                    f"run {run_id} has a newer checkpoint than {parent_id}"
                )
            return plan.checkpoint

        return await self._run(add, write=True)

    async def get_checkpoint(
        self, tenant: Tenant, run_id: RunId, checkpoint_id: CheckpointId
    ) -> Checkpoint:
        """A checkpoint of this run. NotFoundError if the run has no such checkpoint."""
        params = {"tenant": tenant, "run_id": run_id, "checkpoint_id": checkpoint_id}

        async def select(conn: Conn) -> Checkpoint:
            row = await self._one(conn, sql.CHECKPOINT_BY_ID, params)
            if row is None:
                await self._require_run(conn, tenant, run_id)
                raise NotFoundError(f"checkpoint {checkpoint_id} of run {run_id}")
            return to_checkpoint(row)

        return await self._run(select, write=False)

    async def get_checkpoint_by_number(
        self, tenant: Tenant, run_id: RunId, number: int
    ) -> Checkpoint | None:
        """The run's ``number``-th checkpoint (1-based), or None. NotFoundError if there is
        no such run."""
        params = {"tenant": tenant, "run_id": run_id, "number": int64(number)}

        async def select(conn: Conn) -> Checkpoint | None:
            row = await self._one(conn, sql.CHECKPOINT_BY_NUMBER, params)
            if row is None:
                await self._require_run(conn, tenant, run_id)
                return None
            return to_checkpoint(row)

        return await self._run(select, write=False)

    async def list_checkpoints(
        self, tenant: Tenant, run_id: RunId, *, limit: int, offset: int
    ) -> list[Checkpoint]:
        """The run's checkpoints, newest first, paginated. NotFoundError if there is no
        such run."""
        params = {"tenant": tenant, "run_id": run_id, "limit": int64(limit),
                  "offset": int64(max(offset, 0))}

        async def select(conn: Conn) -> list[Checkpoint]:
            rows = await self._all(conn, sql.LIST_CHECKPOINTS, params) if limit > 0 else []
            if not rows:  # a checkpoint implies its run
                await self._require_run(conn, tenant, run_id)
            return [to_checkpoint(row) for row in rows]

        return await self._run(select, write=False)

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
        Ids compare bytewise (``COLLATE "C"``), so the ``after`` key pages exactly as the
        listing is ordered, on every backend."""
        if limit <= 0:
            return []
        query = sql.list_prunable_runs(
            tenant=tenant is not None, after=after is not None, collate=' COLLATE "C"'
        )
        after_tenant, after_run = after or (None, None)
        params = {"tenant": tenant, "finished_us": micros(finished_before),
                  "after_tenant": after_tenant, "after_run": after_run, "limit": int64(limit)}

        async def select(conn: Conn) -> list[tuple[Tenant, Run]]:
            rows = await self._all(conn, query, params)
            return [(Tenant(row["tenant"]), to_run(row)) for row in rows]

        return await self._run(select, write=False)

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
        port). The run's row is locked first (as appends and checkpoints lock it), so the
        run is decided on as it is: a run that moved on since it was listed is skipped,
        and no append can slip in between the decision and the delete. Freed space is
        reused by later writes (autovacuum reclaims dead rows)."""
        check_keep(keep_checkpoints)
        where = {"tenant": tenant, "run_id": run_id}

        async def prune(conn: Conn) -> PruneResult:
            run = await self._load_run(conn, tenant, run_id, lock=True)
            marks = [to_mark(row) for row in await self._all(conn, sql.CHECKPOINT_MARKS, where)]
            plan = plan_prune(tenant, run, marks, keep_checkpoints=keep_checkpoints,
                              finished_before=finished_before, dry_run=dry_run)
            if plan.run is None:
                return plan.result
            if plan.steps_through:
                await conn.execute(pg(sql.DELETE_STEPS_THROUGH),
                                   {**where, "seq": plan.steps_through})
            if plan.tombstones:
                async with conn.cursor() as cursor:
                    await cursor.executemany(pg(sql.INSERT_TOMBSTONE), [
                        tombstone_row(tenant, ref, now) for ref in plan.tombstones
                    ])
                await conn.execute(pg(sql.DELETE_CHECKPOINTS_BELOW),
                                   {**where, "number": plan.checkpoints_below})
            if await self._count(conn, sql.RECORD_PRUNED,
                                 pruned_params(tenant, plan, plan.run)) != 1:
                raise ConflictError(  # pragma: no cover - the row lock rules it out
                    f"run {run_id} changed while it was pruned; try again"
                )
            return plan.result

        return await self._run(prune, write=True)

    async def find_checkpoint(
        self, tenant: Tenant, checkpoint_id: CheckpointId
    ) -> CheckpointRef | None:
        """Where a checkpoint id points, also after pruning (see the port)."""
        params = {"tenant": tenant, "checkpoint_id": checkpoint_id}

        async def select(conn: Conn) -> CheckpointRef | None:
            row = await self._one(conn, sql.FIND_CHECKPOINT, params)
            if row is None:
                return None
            return CheckpointRef(
                checkpoint_id, RunId(row["run_id"]), int(row["number"]),
                int(row["through_seq"]), pruned=bool(row["pruned"]),
            )

        return await self._run(select, write=False)

    # -- proposals ----------------------------------------------------------------------

    async def _load_proposal(
        self, conn: Conn, tenant: Tenant, batch_id: BatchId, *, lock: bool = False
    ) -> Proposal:
        statement = sql.PROPOSAL + (" FOR UPDATE" if lock else "")
        row = await self._one(conn, statement, {"tenant": tenant, "batch_id": batch_id})
        if row is None:
            raise NotFoundError(f"batch {batch_id}")
        return to_proposal(row)

    async def add_proposal(self, tenant: Tenant, proposal: Proposal) -> Proposal:
        """Insert a pending batch durably. ConflictError if its batch_id exists."""

        async def insert(conn: Conn) -> Proposal:
            try:
                await conn.execute(pg(sql.INSERT_PROPOSAL), proposal_row(tenant, proposal))
            except errors.UniqueViolation as exc:
                raise ConflictError(f"batch {proposal.batch_id} already exists") from exc
            return proposal

        return await self._run(insert, write=True)

    async def get_proposal(self, tenant: Tenant, batch_id: BatchId) -> Proposal:
        """The batch. NotFoundError if the tenant has no such batch."""
        return await self._run(
            lambda conn: self._load_proposal(conn, tenant, batch_id), write=False
        )

    async def expire_proposal(self, tenant: Tenant, batch_id: BatchId, *, now: datetime) -> None:
        """Mark a pending batch ``expired``; no-op if it is no longer pending.
        NotFoundError if the tenant has no such batch."""
        params = {"tenant": tenant, "batch_id": batch_id}

        async def expire(conn: Conn) -> None:
            if await self._count(conn, sql.EXPIRE_PROPOSAL, params) == 0:
                await self._load_proposal(conn, tenant, batch_id)

        await self._run(expire, write=True)

    async def commit_proposal(self, tenant: Tenant, plan: CommitPlan, *, now: datetime) -> Proposal:
        """Write what ``core.plans.plan_commit`` decides for ``plan``, all or nothing;
        ConflictError or NotFoundError with nothing written (see the port).

        The batch's row is locked first: a second commit, from any process, waits for the
        first and then finds the batch no longer pending. Targeted memories are locked in
        memory_id order, so two commits touching the same memories cannot deadlock.
        """

        async def commit(conn: Conn) -> Proposal:
            proposal = await self._load_proposal(conn, tenant, plan.batch_id, lock=True)
            targets: dict[MemoryId, Memory] = {}
            if ids := target_ids(plan):
                cursor = await conn.execute(LOCKED_MEMORIES, (tenant, ids))
                targets = {row["memory_id"]: to_memory(row) for row in await cursor.fetchall()}
            writes = plan_commit(proposal, plan, targets, now=now)
            await conn.execute(pg(sql.COMMIT_PROPOSAL), proposal_row(tenant, writes.proposal))
            for memory in writes.inserts:
                try:
                    await conn.execute(pg(sql.INSERT_MEMORY), memory_row(tenant, memory))
                except errors.UniqueViolation as exc:
                    raise ConflictError(f"memory {memory.memory_id} already exists") from exc
            for write in writes.writes:
                if await self._count(conn, sql.UPDATE_MEMORY,
                                     memory_write_params(tenant, write)) != 1:
                    raise ConflictError(  # pragma: no cover - the row lock rules it out
                        f"memory {write.memory.memory_id} changed since it was proposed"
                    )
            return writes.proposal

        return await self._run(commit, write=True)

    # -- memories -----------------------------------------------------------------------

    async def get_memory(self, tenant: Tenant, memory_id: MemoryId) -> Memory:
        """The memory, whatever its status. NotFoundError if there is none."""

        async def select(conn: Conn) -> Memory:
            row = await self._one(conn, sql.MEMORY, {"tenant": tenant, "memory_id": memory_id})
            if row is None:
                raise NotFoundError(f"memory {memory_id}")
            return to_memory(row)

        return await self._run(select, write=False)

    async def get_memories(self, tenant: Tenant, memory_ids: Sequence[MemoryId]) -> list[Memory]:
        """The memories that exist among ``memory_ids``, in the order asked."""
        if not memory_ids:
            return []

        async def select(conn: Conn) -> list[Memory]:
            cursor = await conn.execute(
                f"SELECT {MEMORY_COLUMNS} FROM memories "  # noqa: S608 - constant
                "WHERE tenant = %s AND memory_id = ANY(%s)",
                (tenant, list(memory_ids)),
            )
            found = {row["memory_id"]: to_memory(row) for row in await cursor.fetchall()}
            return [found[i] for i in memory_ids if i in found]

        return await self._run(select, write=False)

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
        memories unless it is None. One range scan of the primary key."""
        if limit <= 0:
            return []
        query = sql.list_memories(
            tenant=tenant is not None, status=status is not None, after=after is not None
        )
        after_tenant, after_memory = after or (None, None)
        params = {"tenant": tenant, "status": status, "after_tenant": after_tenant,
                  "after_memory": after_memory, "limit": int64(limit)}

        async def select(conn: Conn) -> list[tuple[Tenant, Memory]]:
            rows = await self._all(conn, query, params)
            return [(Tenant(row["tenant"]), to_memory(row)) for row in rows]

        return await self._run(select, write=False)

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
        """Memories matching the words of ``query``, best first, scored by BM25 over the
        searched memories (higher is better). Only ``status`` memories; ``scope``/``kind``
        filter exactly when given. Any text is a valid query; a query with no word returns
        [].

        The query's words (``core.lexical.query_terms``) are normalized by the same text
        search configuration as the memories and OR-ed as quoted ``tsquery`` lexemes. The
        GIN index finds the matches; the best ``_RERANK_DEPTH`` of them by ``ts_rank_cd``
        are scored by ``core.lexical.rank_bm25`` from the statistics of the memories
        searched (the tenant's, after the filters) alone: another tenant's or another
        scope's memories never change a ranking or a score.
        """
        words = query_terms(query)
        if not words or limit <= 0:
            return []
        params: dict[str, Any] = {
            "tenant": tenant, "status": status, "scope": scope, "kind": kind,
            "text": " ".join(words), "depth": int64(max(limit, _RERANK_DEPTH)),
        }

        async def select(conn: Conn) -> list[tuple[Memory, float]]:
            cursor = await conn.execute(SEARCH, params)
            found = await cursor.fetchall()
            if not found:
                return []
            occurrences = [
                (row["memory_id"], lexeme, int(tf))
                for row in found for lexeme, tf in (row["tf"] or {}).items()
            ]
            best = rank_bm25(int(found[0]["documents"]), found[0]["matching"], occurrences,
                             limit=limit)
            memories = {row["memory_id"]: row for row in found}
            return [(to_memory(memories[memory_id]), score) for memory_id, score in best]

        return await self._run(select, write=False)

    # -- import -------------------------------------------------------------------------

    async def import_records(self, tenant: Tenant, records: ImportRecords) -> None:
        """Insert ``records`` as given, in one transaction; ConflictError naming the id,
        with nothing written, if one exists or is given twice (see the port). Imported
        memories are searchable at once: their ``tsvector`` is a generated column."""

        async def insert(conn: Conn) -> None:
            what = "a record"
            try:
                async with conn.cursor() as cursor:
                    for item in records.runs:
                        what = f"run {item.run.run_id}"
                        await cursor.execute(pg(sql.INSERT_RUN), run_row(tenant, item.run))
                        if item.steps:
                            await cursor.executemany(pg(sql.INSERT_STEP), [
                                step_row(tenant, s.step, s.request_hash, s.ack.model_dump_json())
                                for s in item.steps
                            ])
                        if item.checkpoints:
                            await cursor.executemany(pg(sql.INSERT_CHECKPOINT), [
                                checkpoint_row(tenant, c) for c in item.checkpoints
                            ])
                    for proposal in records.proposals:
                        what = f"batch {proposal.batch_id}"
                        await cursor.execute(pg(sql.INSERT_PROPOSAL),
                                             proposal_row(tenant, proposal))
                    for memory in records.memories:
                        what = f"memory {memory.memory_id}"
                        await cursor.execute(pg(sql.INSERT_MEMORY), memory_row(tenant, memory))
            except errors.UniqueViolation as exc:
                # The transaction is aborted; _run rolls it back as this propagates.
                raise ConflictError(f"{what} already exists") from exc

        await self._run(insert, write=True)
