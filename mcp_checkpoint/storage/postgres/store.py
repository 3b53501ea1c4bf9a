"""The production store: PostgreSQL through psycopg 3 and an async connection pool (see
``_db`` for the pool, its timeouts and outages).

Every write is one transaction. An append reads its run's head (or starts from the head
this process left), then moves it and inserts the step in one statement that succeeds
only if the head has not moved meanwhile (compare-and-set); one that keeps losing that
race, and every checkpoint, locks the run's
row (``SELECT ... FOR UPDATE``). So the read-check-write (seq allocation, idempotency
check, hash chain, head update) is serialized per run across every process sharing the
database, while different runs proceed in parallel. Primary keys and unique
indexes stay the final word on identity and ordering; compare-and-set on versions guards
memories and runs. Retention (``prune_run``) takes the same row lock, so it never races an
append; removed checkpoints leave tombstones in ``pruned_checkpoints``. Lexical search is
PostgreSQL full-text search (a GIN index over a generated ``tsvector``, so imported
memories are searchable at once), scored by BM25 with the statistics of the searched
memories.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors

from mcp_checkpoint.config import PostgresSettings
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
from mcp_checkpoint.errors import (
    BackendError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
)
from mcp_checkpoint.storage._ints import INT64_MAX, int64
from mcp_checkpoint.storage._rows import (
    ITEMS,
    MEMORY_IDS,
    iso,
    micros,
    run_row,
    to_checkpoint,
    to_json,
    to_memory,
    to_proposal,
    to_run,
    to_step,
)
from mcp_checkpoint.storage._urls import mask_url
from mcp_checkpoint.storage.postgres._db import Conn
from mcp_checkpoint.storage.postgres._sql import (
    HEAD_AND_KEY,
    INSERT_RUN,
    MEMORY_COLUMNS,
    MOVE_HEAD_AND_INSERT,
    SEARCH,
)
from mcp_checkpoint.storage.postgres.blobs import PostgresBlobs

__all__ = ["Conn", "PostgresStore", "mask_url"]

_NO_UPPER_BOUND = INT64_MAX
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


    # -- runs ---------------------------------------------------------------------------

    @staticmethod
    async def _load_run(
        conn: Conn, tenant: Tenant, run_id: RunId, *, lock: bool = False
    ) -> Run:
        sql = "SELECT * FROM runs WHERE tenant = %s AND run_id = %s"
        cursor = await conn.execute(sql + (" FOR UPDATE" if lock else ""), (tenant, run_id))
        row = await cursor.fetchone()
        if row is None:
            raise NotFoundError(f"run {run_id}")
        return to_run(row)

    @staticmethod
    async def _require_run(conn: Conn, tenant: Tenant, run_id: RunId) -> None:
        cursor = await conn.execute(
            "SELECT 1 FROM runs WHERE tenant = %s AND run_id = %s", (tenant, run_id)
        )
        if await cursor.fetchone() is None:
            raise NotFoundError(f"run {run_id}")

    async def create_run(self, tenant: Tenant, run: Run) -> Run:
        """Insert ``run`` as given. ConflictError if the tenant already has that run_id."""

        async def insert(conn: Conn) -> Run:
            cursor = await conn.execute(
                INSERT_RUN + " ON CONFLICT DO NOTHING", run_row(tenant, run)
            )
            if cursor.rowcount != 1:
                raise ConflictError(f"run {run.run_id} already exists")
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
        filters = {"tenant": tenant, "status": status, "project": project}
        where = " AND ".join(f"{name} = %s" for name, v in filters.items() if v is not None)
        params: tuple[Any, ...] = tuple(v for v in filters.values() if v is not None)
        sql = (
            f"SELECT * FROM runs WHERE {where} "  # noqa: S608 - constant column names
            "ORDER BY updated_us DESC, run_id DESC LIMIT %s OFFSET %s"
        )

        async def select(conn: Conn) -> list[Run]:
            cursor = await conn.execute(sql, (*params, int64(limit), int64(max(offset, 0))))
            return [to_run(row) for row in await cursor.fetchall()]

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

        async def update(conn: Conn) -> Run:
            cursor = await conn.execute(
                "UPDATE runs SET version = version + 1, updated_at = %s, updated_us = %s, "
                "status = COALESCE(%s, status), pinned = COALESCE(%s, pinned) "
                "WHERE tenant = %s AND run_id = %s AND version = %s RETURNING *",
                (
                    iso(now), micros(now), status,
                    None if pinned is None else to_json(pinned),
                    tenant, run_id, expected_version,
                ),
            )
            row = await cursor.fetchone()
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
            it and the step's row."""
            if seen is not None:
                if seen["request_hash"] != request_hash:
                    raise ConflictError(
                        f"idempotency_key {key} was used for a different step"
                    )
                stored = StepAck.model_validate_json(seen["ack"])
                return stored.model_copy(update={"duplicate": True}), None
            step, after = append_step(run, draft, tokens=tokens, now=now)
            ack = make_ack(after, step)
            return ack, (after, {
                "tenant": tenant, "run_id": run_id, "prev_seq": run.head_seq,
                "checkpoints": run.checkpoint_count, "version": run.version,
                "seq": step.seq, "step_count": after.step_count, "hash": step.hash,
                "cum_tokens": step.cum_tokens, "at": iso(now), "us": micros(now),
                "episode": step.episode, "tool": step.tool,
                "input": to_json(step.input), "output": to_json(step.output),
                "reasoning": step.reasoning, "status": step.status,
                "key": step.idempotency_key, "tokens": step.tokens,
                "prev_hash": step.prev_hash, "request_hash": request_hash,
                "ack": ack.model_dump_json(),
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
                cursor = await conn.execute(
                    "SELECT * FROM runs WHERE tenant = %s AND run_id = %s FOR UPDATE",
                    (tenant, run_id),
                )
                row = await cursor.fetchone()
                if row is None:
                    raise NotFoundError(f"run {run_id}")
                seen = None
                if key is not None:
                    cursor = await conn.execute(
                        "SELECT request_hash, ack FROM steps "
                        "WHERE tenant = %s AND run_id = %s AND idempotency_key = %s",
                        (tenant, run_id, key),
                    )
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
        order = "DESC" if newest_first else "ASC"
        sql = (
            "SELECT * FROM steps WHERE tenant = %s AND run_id = %s "  # noqa: S608 - constant
            f"AND seq > %s AND seq <= %s ORDER BY seq {order} LIMIT %s"
        )
        upper = _NO_UPPER_BOUND if until_seq is None else until_seq

        async def select(conn: Conn) -> list[Step]:
            rows = []
            if limit > 0:
                cursor = await conn.execute(
                    sql, (tenant, run_id, int64(after_seq), int64(upper), int64(limit))
                )
                rows = await cursor.fetchall()
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
        """Insert the run's next checkpoint and make it the latest (see the port), with
        the run's row locked as appends do.

        ConflictError if the run's latest checkpoint is not ``parent_id``;
        InvalidArgumentError unless ``covered_seq <= through_seq <= head_seq``.
        """

        async def add(conn: Conn) -> Checkpoint:
            run = await self._load_run(conn, tenant, run_id, lock=True)
            if run.latest_checkpoint_id != parent_id:
                raise ConflictError(f"run {run_id} has a newer checkpoint than {parent_id}")
            through = run.head_seq if through_seq is None else through_seq
            if not run.covered_seq <= through <= run.head_seq:
                raise InvalidArgumentError(
                    f"through_seq is {through}; it must lie between {run.covered_seq} and "
                    f"{run.head_seq}"
                )
            covered_tokens = 0
            if through == run.covered_seq:  # that step may have been pruned
                covered_tokens = run.covered_tokens
            elif through > 0:
                cursor = await conn.execute(
                    "SELECT cum_tokens FROM steps WHERE tenant = %s AND run_id = %s "
                    "AND seq = %s",
                    (tenant, run_id, through),
                )
                row = await cursor.fetchone()
                if row is None:  # pragma: no cover - seq is gap-free up to head_seq
                    raise BackendError(f"step {through} of run {run_id} is missing")
                covered_tokens = int(row["cum_tokens"])
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
            cursor = await conn.execute(
                "INSERT INTO checkpoints (tenant, run_id, checkpoint_id, number, parent_id, "
                "through_seq, head_seq, content, source, tokens, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (tenant, run_id, checkpoint_id) DO NOTHING",
                (
                    tenant, run_id, checkpoint_id, checkpoint.number, parent_id, through,
                    run.head_seq, content.model_dump_json(), source, tokens, iso(now),
                ),
            )
            if cursor.rowcount != 1:
                raise ConflictError(f"checkpoint {checkpoint_id} of run {run_id} already exists")
            await conn.execute(
                "UPDATE runs SET checkpoint_count = %s, latest_checkpoint_id = %s, "
                "covered_seq = %s, covered_tokens = %s, updated_at = %s, updated_us = %s "
                "WHERE tenant = %s AND run_id = %s",
                (
                    checkpoint.number, checkpoint_id, through, covered_tokens, iso(now),
                    micros(now), tenant, run_id,
                ),
            )
            return checkpoint

        return await self._run(add, write=True)

    async def get_checkpoint(
        self, tenant: Tenant, run_id: RunId, checkpoint_id: CheckpointId
    ) -> Checkpoint:
        """A checkpoint of this run. NotFoundError if the run has no such checkpoint."""

        async def select(conn: Conn) -> Checkpoint:
            cursor = await conn.execute(
                "SELECT * FROM checkpoints WHERE tenant = %s AND run_id = %s "
                "AND checkpoint_id = %s",
                (tenant, run_id, checkpoint_id),
            )
            row = await cursor.fetchone()
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

        async def select(conn: Conn) -> Checkpoint | None:
            cursor = await conn.execute(
                "SELECT * FROM checkpoints WHERE tenant = %s AND run_id = %s AND number = %s",
                (tenant, run_id, int64(number)),
            )
            row = await cursor.fetchone()
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

        async def select(conn: Conn) -> list[Checkpoint]:
            rows = []
            if limit > 0:
                cursor = await conn.execute(
                    "SELECT * FROM checkpoints WHERE tenant = %s AND run_id = %s "
                    "ORDER BY number DESC LIMIT %s OFFSET %s",
                    (tenant, run_id, int64(limit), int64(max(offset, 0))),
                )
                rows = await cursor.fetchall()
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
        where = ["status <> 'active'", "updated_us < %s"]
        params: list[Any] = [micros(finished_before)]
        if tenant is not None:
            where.append("tenant = %s")
            params.append(tenant)
        if after is not None:
            where.append('(tenant, run_id) > (%s COLLATE "C", %s COLLATE "C")')
            params += [after[0], after[1]]
        sql = (
            f"SELECT * FROM runs WHERE {' AND '.join(where)} "  # noqa: S608 - constants
            'ORDER BY tenant COLLATE "C", run_id COLLATE "C" LIMIT %s'
        )

        async def select(conn: Conn) -> list[tuple[Tenant, Run]]:
            cursor = await conn.execute(sql, (*params, int64(limit)))
            return [(Tenant(row["tenant"]), to_run(row)) for row in await cursor.fetchall()]

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
        """Remove a finished run's old checkpoints and the steps they cover, in one
        transaction (see the port). The run's row is locked first (as appends and
        checkpoints lock it) and its status and ``updated_at`` are checked under the lock:
        a run that moved on since it was listed is skipped, and no append can slip in
        between the check and the delete. Freed space is reused by later writes
        (autovacuum reclaims dead rows)."""
        if keep_checkpoints < 1:
            raise InvalidArgumentError("keep_checkpoints must be at least 1")

        async def prune(conn: Conn) -> PruneResult:
            run = await self._load_run(conn, tenant, run_id, lock=True)
            skipped = (
                "active" if run.status == "active"
                else "recent" if run.updated_at >= finished_before
                else "no checkpoint" if run.checkpoint_count == 0
                else None
            )
            if skipped is not None:
                return PruneResult(tenant, run_id, dry_run, skipped, through_seq=run.pruned_seq)
            oldest_kept = max(run.checkpoint_count - keep_checkpoints + 1, 1)
            cursor = await conn.execute(
                "SELECT through_seq FROM checkpoints WHERE tenant = %s AND run_id = %s "
                "AND number = %s",
                (tenant, run_id, oldest_kept),
            )
            kept = await cursor.fetchone()
            if kept is None:  # pragma: no cover - numbers are gap-free above the pruned
                raise BackendError(f"checkpoint {oldest_kept} of run {run_id} is missing")
            boundary = max(int(kept["through_seq"]), run.pruned_seq)
            cursor = await conn.execute(
                "SELECT checkpoint_id, number FROM checkpoints "
                "WHERE tenant = %s AND run_id = %s AND number < %s ORDER BY number",
                (tenant, run_id, oldest_kept),
            )
            dropped = await cursor.fetchall()
            last = None
            if boundary > run.pruned_seq:
                cursor = await conn.execute(
                    "SELECT hash, cum_tokens FROM steps WHERE tenant = %s AND run_id = %s "
                    "AND seq = %s",
                    (tenant, run_id, boundary),
                )
                last = await cursor.fetchone()
                if last is None:  # pragma: no cover - seq is gap-free after pruned_seq
                    raise BackendError(f"step {boundary} of run {run_id} is missing")
            result = PruneResult(
                tenant, run_id, dry_run,
                steps_removed=boundary - run.pruned_seq,
                through_seq=boundary,
                checkpoint_ids=[CheckpointId(row["checkpoint_id"]) for row in dropped],
            )
            if dry_run or not result.removed_anything:
                return result
            if last is not None:
                # The idempotency keys of these steps go with them.
                await conn.execute(
                    "DELETE FROM steps WHERE tenant = %s AND run_id = %s AND seq <= %s",
                    (tenant, run_id, boundary),
                )
            if dropped:
                # Each removed checkpoint leaves its tombstone, in the same statement.
                await conn.execute(
                    "WITH gone AS ("
                    " DELETE FROM checkpoints WHERE tenant = %s AND run_id = %s AND number < %s"
                    " RETURNING tenant, checkpoint_id, run_id, number, through_seq) "
                    "INSERT INTO pruned_checkpoints (tenant, checkpoint_id, run_id, number, "
                    "through_seq, pruned_at) "
                    "SELECT tenant, checkpoint_id, run_id, number, through_seq, %s FROM gone",
                    (tenant, run_id, oldest_kept, iso(now)),
                )
            # Pruning is not activity: updated_at stays, the version moves.
            await conn.execute(
                "UPDATE runs SET version = version + 1, pruned_seq = %s, pruned_hash = %s, "
                "pruned_tokens = %s, pruned_checkpoints = %s "
                "WHERE tenant = %s AND run_id = %s",
                (
                    boundary,
                    run.pruned_hash if last is None else last["hash"],
                    run.pruned_tokens if last is None else last["cum_tokens"],
                    dropped[-1]["number"] if dropped else run.pruned_checkpoints,
                    tenant,
                    run_id,
                ),
            )
            return result

        return await self._run(prune, write=True)

    async def find_checkpoint(
        self, tenant: Tenant, checkpoint_id: CheckpointId
    ) -> CheckpointRef | None:
        """Where a checkpoint id points, also after pruning (see the port)."""

        async def select(conn: Conn) -> CheckpointRef | None:
            cursor = await conn.execute(
                "SELECT run_id, number, through_seq, false AS pruned FROM checkpoints "
                "WHERE tenant = %s AND checkpoint_id = %s "
                "UNION ALL SELECT run_id, number, through_seq, true FROM pruned_checkpoints "
                "WHERE tenant = %s AND checkpoint_id = %s LIMIT 1",
                (tenant, checkpoint_id, tenant, checkpoint_id),
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            return CheckpointRef(
                checkpoint_id, RunId(row["run_id"]), int(row["number"]),
                int(row["through_seq"]), pruned=bool(row["pruned"]),
            )

        return await self._run(select, write=False)

    # -- proposals ----------------------------------------------------------------------

    @staticmethod
    async def _load_proposal(
        conn: Conn, tenant: Tenant, batch_id: BatchId, *, lock: bool = False
    ) -> Proposal:
        sql = "SELECT * FROM proposals WHERE tenant = %s AND batch_id = %s"
        cursor = await conn.execute(sql + (" FOR UPDATE" if lock else ""), (tenant, batch_id))
        row = await cursor.fetchone()
        if row is None:
            raise NotFoundError(f"batch {batch_id}")
        return to_proposal(row)

    async def add_proposal(self, tenant: Tenant, proposal: Proposal) -> Proposal:
        """Insert a pending batch durably. ConflictError if its batch_id exists."""

        async def insert(conn: Conn) -> Proposal:
            cursor = await conn.execute(
                "INSERT INTO proposals (tenant, batch_id, run_id, status, items, "
                "created_at, expires_at, committed_at, accepted, rejected, memory_ids) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    tenant,
                    proposal.batch_id,
                    proposal.run_id,
                    proposal.status,
                    ITEMS.dump_json(proposal.items).decode("utf-8"),
                    iso(proposal.created_at),
                    iso(proposal.expires_at),
                    None if proposal.committed_at is None else iso(proposal.committed_at),
                    to_json(proposal.accepted),
                    to_json(proposal.rejected),
                    MEMORY_IDS.dump_json(proposal.memory_ids).decode("utf-8"),
                ),
            )
            if cursor.rowcount != 1:
                raise ConflictError(f"batch {proposal.batch_id} already exists")
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

        async def expire(conn: Conn) -> None:
            cursor = await conn.execute(
                "UPDATE proposals SET status = 'expired' "
                "WHERE tenant = %s AND batch_id = %s AND status = 'pending'",
                (tenant, batch_id),
            )
            if cursor.rowcount == 0:
                await self._load_proposal(conn, tenant, batch_id)

        await self._run(expire, write=True)

    async def commit_proposal(self, tenant: Tenant, plan: CommitPlan, *, now: datetime) -> Proposal:
        """Apply ``plan`` atomically and mark the batch committed (or rejected when nothing
        was accepted); ConflictError or NotFoundError with nothing written (see the port).

        The batch's row is locked first: a second commit, from any process, waits for the
        first and then finds the batch no longer pending. Targeted memories are locked in
        memory_id order, so two commits touching the same memories cannot deadlock.
        """
        updated_at = iso(now)

        async def commit(conn: Conn) -> Proposal:
            proposal = await self._load_proposal(conn, tenant, plan.batch_id, lock=True)
            if proposal.status != "pending":
                raise ConflictError(f"batch {plan.batch_id} is already {proposal.status}")
            status = "committed" if plan.accepted else "rejected"
            targets: list[MemoryUpdate | MemoryStatusChange] = [
                *plan.updates, *plan.status_changes
            ]
            versions: dict[str, int] = {}
            if targets:
                cursor = await conn.execute(
                    "SELECT memory_id, version, status FROM memories "
                    "WHERE tenant = %s AND memory_id = ANY(%s) ORDER BY memory_id FOR UPDATE",
                    (tenant, sorted({target.memory_id for target in targets})),
                )
                found = {row["memory_id"]: row for row in await cursor.fetchall()}
                for target in targets:
                    row = found.get(target.memory_id)
                    if row is None:
                        raise NotFoundError(f"memory {target.memory_id}")
                    if row["version"] != target.expected_version or row["status"] != "active":
                        raise ConflictError(
                            f"memory {target.memory_id} changed since it was proposed"
                        )
                    versions[target.memory_id] = int(row["version"])
            for new in plan.inserts:
                cursor = await conn.execute(
                    "INSERT INTO memories (tenant, memory_id, content, kind, scope, status, "
                    "confidence, source_refs, batch_id, run_id, superseded_by, created_at, "
                    "updated_at, version) "
                    "VALUES (%s, %s, %s, %s, %s, 'active', %s, %s, %s, %s, NULL, %s, %s, 1) "
                    "ON CONFLICT DO NOTHING",
                    (
                        tenant, new.memory_id, new.content, new.kind, new.scope,
                        new.confidence, to_json(new.source_refs), new.batch_id, new.run_id,
                        updated_at, updated_at,
                    ),
                )
                if cursor.rowcount != 1:
                    raise ConflictError(f"memory {new.memory_id} already exists")
            for upd in plan.updates:
                await self._bump_memory(
                    conn, tenant, upd.memory_id, versions,
                    "content = %s, confidence = %s, source_refs = %s, batch_id = %s, "
                    "updated_at = %s",
                    (upd.content, upd.confidence, to_json(upd.source_refs), plan.batch_id,
                     updated_at),
                )
            for change in plan.status_changes:
                await self._bump_memory(
                    conn, tenant, change.memory_id, versions,
                    "status = %s, superseded_by = %s, updated_at = %s",
                    (change.status, change.superseded_by, updated_at),
                )
            await conn.execute(
                "UPDATE proposals SET status = %s, committed_at = %s, accepted = %s, "
                "rejected = %s, memory_ids = %s WHERE tenant = %s AND batch_id = %s",
                (
                    status, updated_at, to_json(plan.accepted), to_json(plan.rejected),
                    MEMORY_IDS.dump_json(plan.memory_ids).decode("utf-8"),
                    tenant, plan.batch_id,
                ),
            )
            return proposal.model_copy(update={
                "status": status,
                "committed_at": now,
                "accepted": plan.accepted,
                "rejected": plan.rejected,
                "memory_ids": plan.memory_ids,
            })

        return await self._run(commit, write=True)

    @staticmethod
    async def _bump_memory(
        conn: Conn,
        tenant: Tenant,
        memory_id: MemoryId,
        versions: dict[str, int],
        assignments: str,
        values: tuple[Any, ...],
    ) -> None:
        expected = versions[memory_id]
        cursor = await conn.execute(
            f"UPDATE memories SET {assignments}, version = %s "  # noqa: S608 - constants
            "WHERE tenant = %s AND memory_id = %s AND version = %s",
            (*values, expected + 1, tenant, memory_id, expected),
        )
        if cursor.rowcount != 1:  # pragma: no cover - the row lock rules it out
            raise ConflictError(f"memory {memory_id} changed since it was proposed")
        versions[memory_id] = expected + 1

    # -- memories -----------------------------------------------------------------------

    async def get_memory(self, tenant: Tenant, memory_id: MemoryId) -> Memory:
        """The memory, whatever its status. NotFoundError if there is none."""

        async def select(conn: Conn) -> Memory:
            cursor = await conn.execute(
                f"SELECT {MEMORY_COLUMNS} FROM memories "  # noqa: S608 - constant
                "WHERE tenant = %s AND memory_id = %s",
                (tenant, memory_id),
            )
            row = await cursor.fetchone()
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
        where: list[str] = []
        params: list[Any] = []
        if tenant is not None:
            where.append("tenant = %s")
            params.append(tenant)
        if status is not None:
            where.append("status = %s")
            params.append(status)
        if after is not None:
            where.append("(tenant, memory_id) > (%s, %s)")
            params.extend(after)
        sql = (
            f"SELECT {MEMORY_COLUMNS} FROM memories "  # noqa: S608 - constant fragments
            f"{'WHERE ' + ' AND '.join(where) if where else ''} "
            "ORDER BY tenant, memory_id LIMIT %s"
        )

        async def select(conn: Conn) -> list[tuple[Tenant, Memory]]:
            cursor = await conn.execute(sql, (*params, int64(limit)))
            return [(Tenant(row["tenant"]), to_memory(row)) for row in await cursor.fetchall()]

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
        are scored as ``core.lexical.bm25_weight`` says, each word's idf taken from the
        memories searched (the tenant's, after the filters) alone: another tenant's or
        another scope's memories never change a ranking or a score.
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
            documents = int(found[0]["documents"])
            idf = {
                lexeme: bm25_idf(documents, int(matching))
                for lexeme, matching in found[0]["matching"].items()
            }
            scored = [
                (to_memory(row), sum(
                    bm25_weight(idf[lexeme], tf) for lexeme, tf in (row["tf"] or {}).items()
                ))
                for row in found
            ]
            scored.sort(key=lambda pair: (-pair[1], pair[0].memory_id))
            return scored[:limit]

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
                        await cursor.execute(INSERT_RUN, run_row(tenant, item.run))
                        if item.steps:
                            await cursor.executemany(
                                "INSERT INTO steps (tenant, run_id, seq, episode, tool, input, "
                                "output, reasoning, status, idempotency_key, tokens, "
                                "cum_tokens, created_at, prev_hash, hash, request_hash, ack) "
                                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                                "%s, %s, %s, %s)",
                                [
                                    (
                                        tenant, s.run_id, s.seq, s.episode, s.tool,
                                        to_json(s.input), to_json(s.output), s.reasoning, s.status,
                                        s.idempotency_key, s.tokens, s.cum_tokens,
                                        iso(s.created_at), s.prev_hash, s.hash,
                                        imported.request_hash, imported.ack.model_dump_json(),
                                    )
                                    for imported in item.steps
                                    for s in (imported.step,)
                                ],
                            )
                        if item.checkpoints:
                            await cursor.executemany(
                                "INSERT INTO checkpoints (tenant, run_id, checkpoint_id, "
                                "number, parent_id, through_seq, head_seq, content, source, "
                                "tokens, created_at) "
                                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                                [
                                    (
                                        tenant, c.run_id, c.checkpoint_id, c.number,
                                        c.parent_id, c.through_seq, c.head_seq,
                                        c.content.model_dump_json(), c.source, c.tokens,
                                        iso(c.created_at),
                                    )
                                    for c in item.checkpoints
                                ],
                            )
                    for proposal in records.proposals:
                        what = f"batch {proposal.batch_id}"
                        await cursor.execute(
                            "INSERT INTO proposals (tenant, batch_id, run_id, status, items, "
                            "created_at, expires_at, committed_at, accepted, rejected, "
                            "memory_ids) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                            (
                                tenant, proposal.batch_id, proposal.run_id, proposal.status,
                                ITEMS.dump_json(proposal.items).decode("utf-8"),
                                iso(proposal.created_at), iso(proposal.expires_at),
                                None if proposal.committed_at is None
                                else iso(proposal.committed_at),
                                to_json(proposal.accepted), to_json(proposal.rejected),
                                MEMORY_IDS.dump_json(proposal.memory_ids).decode("utf-8"),
                            ),
                        )
                    for memory in records.memories:
                        what = f"memory {memory.memory_id}"
                        await cursor.execute(
                            "INSERT INTO memories (tenant, memory_id, content, kind, scope, "
                            "status, confidence, source_refs, batch_id, run_id, superseded_by, "
                            "created_at, updated_at, version) "
                            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                            (
                                tenant, memory.memory_id, memory.content, memory.kind,
                                memory.scope, memory.status, memory.confidence,
                                to_json(memory.source_refs), memory.batch_id, memory.run_id,
                                memory.superseded_by, iso(memory.created_at),
                                iso(memory.updated_at), memory.version,
                            ),
                        )
            except errors.UniqueViolation as exc:
                # The transaction is aborted; _run rolls it back as this propagates.
                raise ConflictError(f"{what} already exists") from exc

        await self._run(insert, write=True)
