"""The embedded store: one SQLite file in WAL mode, shared safely by several processes.

Every write is one ``BEGIN IMMEDIATE`` transaction (see ``_db``), so the read-check-write
inside it (seq allocation,
idempotency check, hash chain, head update, compare-and-set on versions) is atomic across
processes; primary keys and unique indexes are the final word on identity and ordering.
Lexical search is FTS5 (BM25) over memory content, kept in sync by triggers.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from mcp_checkpoint.config import SqliteSettings
from mcp_checkpoint.core.ledger import append_step
from mcp_checkpoint.core.lexical import query_terms
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
    RUN_COLUMNS,
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
from mcp_checkpoint.storage.sqlite._db import Conn
from mcp_checkpoint.storage.sqlite._lexical import Postings, scoped_bm25
from mcp_checkpoint.storage.sqlite.blobs import SqliteBlobs

__all__ = ["SqliteStore"]

_NO_UPPER_BOUND = INT64_MAX

_INSERT_RUN = (
    f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) "  # noqa: S608 - constant column names
    f"VALUES ({', '.join(':' + column for column in RUN_COLUMNS)})"
)


# -- the store --------------------------------------------------------------------------


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
        row = conn.execute(
            "SELECT * FROM runs WHERE tenant = ? AND run_id = ?", (tenant, run_id)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"run {run_id}")
        return to_run(row)

    @staticmethod
    def _require_run(conn: Conn, tenant: Tenant, run_id: RunId) -> None:
        row = conn.execute(
            "SELECT 1 FROM runs WHERE tenant = ? AND run_id = ?", (tenant, run_id)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"run {run_id}")

    async def create_run(self, tenant: Tenant, run: Run) -> Run:
        """Insert ``run`` as given. ConflictError if the tenant already has that run_id."""

        def insert(conn: Conn) -> Run:
            try:
                conn.execute(_INSERT_RUN, run_row(tenant, run))
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
        filters = {"tenant": tenant, "status": status, "project": project}
        where = " AND ".join(f"{name} = ?" for name, v in filters.items() if v is not None)
        params: tuple[Any, ...] = tuple(v for v in filters.values() if v is not None)
        sql = (
            f"SELECT * FROM runs WHERE {where} "  # noqa: S608 - constant column names
            "ORDER BY updated_us DESC, run_id DESC LIMIT ? OFFSET ?"
        )

        def select(conn: Conn) -> list[Run]:
            rows = conn.execute(
                sql, (*params, int64(limit), int64(max(offset, 0)))
            ).fetchall()
            return [to_run(row) for row in rows]

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

        def update(conn: Conn) -> Run:
            cursor = conn.execute(
                "UPDATE runs SET version = version + 1, updated_at = ?, updated_us = ?, "
                "status = COALESCE(?, status), pinned = COALESCE(?, pinned) "
                "WHERE tenant = ? AND run_id = ? AND version = ?",
                (
                    iso(now),
                    micros(now),
                    status,
                    None if pinned is None else to_json(pinned),
                    tenant,
                    run_id,
                    expected_version,
                ),
            )
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
        """Append a step durably and return its acknowledgement (see the port).

        A retry with a used ``idempotency_key`` gets the stored acknowledgement with
        ``duplicate=True`` and writes nothing; ConflictError if its request differs.
        """

        def append(conn: Conn) -> StepAck:
            run = self._load_run(conn, tenant, run_id)
            if draft.idempotency_key is not None:
                seen = conn.execute(
                    "SELECT request_hash, ack FROM steps "
                    "WHERE tenant = ? AND run_id = ? AND idempotency_key = ?",
                    (tenant, run_id, draft.idempotency_key),
                ).fetchone()
                if seen is not None:
                    if seen["request_hash"] != request_hash:
                        raise ConflictError(
                            f"idempotency_key {draft.idempotency_key} was used for a "
                            "different step"
                        )
                    stored = StepAck.model_validate_json(seen["ack"])
                    return stored.model_copy(update={"duplicate": True})
            step, after = append_step(run, draft, tokens=tokens, now=now)
            ack = make_ack(after, step)
            conn.execute(
                "INSERT INTO steps (tenant, run_id, seq, episode, tool, input, output, "
                "reasoning, status, idempotency_key, tokens, cum_tokens, created_at, "
                "prev_hash, hash, request_hash, ack) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    tenant, run_id, step.seq, step.episode, step.tool, to_json(step.input),
                    to_json(step.output), step.reasoning, step.status, step.idempotency_key,
                    step.tokens, step.cum_tokens, iso(now), step.prev_hash, step.hash,
                    request_hash, ack.model_dump_json(),
                ),
            )
            cursor = conn.execute(
                "UPDATE runs SET head_seq = ?, step_count = ?, head_hash = ?, "
                "head_tokens = ?, updated_at = ?, updated_us = ? "
                "WHERE tenant = ? AND run_id = ? AND head_seq = ?",
                (
                    step.seq, after.step_count, step.hash, step.cum_tokens, iso(now),
                    micros(now), tenant, run_id, run.head_seq,
                ),
            )
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
        order = "DESC" if newest_first else "ASC"
        sql = (
            "SELECT * FROM steps WHERE tenant = ? AND run_id = ? "  # noqa: S608 - constant
            f"AND seq > ? AND seq <= ? ORDER BY seq {order} LIMIT ?"
        )
        upper = _NO_UPPER_BOUND if until_seq is None else until_seq

        def select(conn: Conn) -> list[Step]:
            self._require_run(conn, tenant, run_id)
            if limit <= 0:
                return []
            rows = conn.execute(
                sql, (tenant, run_id, int64(after_seq), int64(upper), int64(limit))
            ).fetchall()
            return [to_step(row) for row in rows]

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
        """Insert the run's next checkpoint and make it the latest (see the port).

        ConflictError if the run's latest checkpoint is not ``parent_id``;
        InvalidArgumentError unless ``covered_seq <= through_seq <= head_seq``.
        """

        def add(conn: Conn) -> Checkpoint:
            run = self._load_run(conn, tenant, run_id)
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
                row = conn.execute(
                    "SELECT cum_tokens FROM steps WHERE tenant = ? AND run_id = ? AND seq = ?",
                    (tenant, run_id, through),
                ).fetchone()
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
            try:
                conn.execute(
                    "INSERT INTO checkpoints (tenant, run_id, checkpoint_id, number, parent_id, "
                    "through_seq, head_seq, content, source, tokens, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        tenant, run_id, checkpoint_id, checkpoint.number, parent_id, through,
                        run.head_seq, content.model_dump_json(), source, tokens, iso(now),
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise ConflictError(
                    f"checkpoint {checkpoint_id} of run {run_id} already exists"
                ) from exc
            cursor = conn.execute(
                "UPDATE runs SET checkpoint_count = ?, latest_checkpoint_id = ?, "
                "covered_seq = ?, covered_tokens = ?, updated_at = ?, updated_us = ? "
                "WHERE tenant = ? AND run_id = ? AND latest_checkpoint_id IS ?",
                (
                    checkpoint.number, checkpoint_id, through, covered_tokens, iso(now),
                    micros(now), tenant, run_id, parent_id,
                ),
            )
            if cursor.rowcount != 1:  # pragma: no cover - the write lock rules it out
                raise ConflictError(f"run {run_id} has a newer checkpoint than {parent_id}")
            return checkpoint

        return await self._write(add)

    async def get_checkpoint(
        self, tenant: Tenant, run_id: RunId, checkpoint_id: CheckpointId
    ) -> Checkpoint:
        """A checkpoint of this run. NotFoundError if the run has no such checkpoint."""

        def select(conn: Conn) -> Checkpoint:
            self._require_run(conn, tenant, run_id)
            row = conn.execute(
                "SELECT * FROM checkpoints WHERE tenant = ? AND run_id = ? AND checkpoint_id = ?",
                (tenant, run_id, checkpoint_id),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"checkpoint {checkpoint_id} of run {run_id}")
            return to_checkpoint(row)

        return await self._read(select)

    async def get_checkpoint_by_number(
        self, tenant: Tenant, run_id: RunId, number: int
    ) -> Checkpoint | None:
        """The run's ``number``-th checkpoint (1-based), or None. NotFoundError if there is
        no such run."""

        def select(conn: Conn) -> Checkpoint | None:
            self._require_run(conn, tenant, run_id)
            row = conn.execute(
                "SELECT * FROM checkpoints WHERE tenant = ? AND run_id = ? AND number = ?",
                (tenant, run_id, int64(number)),
            ).fetchone()
            return None if row is None else to_checkpoint(row)

        return await self._read(select)

    async def list_checkpoints(
        self, tenant: Tenant, run_id: RunId, *, limit: int, offset: int
    ) -> list[Checkpoint]:
        """The run's checkpoints, newest first, paginated. NotFoundError if there is no
        such run."""

        def select(conn: Conn) -> list[Checkpoint]:
            self._require_run(conn, tenant, run_id)
            if limit <= 0:
                return []
            rows = conn.execute(
                "SELECT * FROM checkpoints WHERE tenant = ? AND run_id = ? "
                "ORDER BY number DESC LIMIT ? OFFSET ?",
                (tenant, run_id, int64(limit), int64(max(offset, 0))),
            ).fetchall()
            return [to_checkpoint(row) for row in rows]

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
        where = ["status != 'active'", "updated_us < ?"]
        params: list[Any] = [micros(finished_before)]
        if tenant is not None:
            where.append("tenant = ?")
            params.append(tenant)
        if after is not None:
            where.append("(tenant > ? OR (tenant = ? AND run_id > ?))")
            params += [after[0], after[0], after[1]]
        sql = (
            f"SELECT * FROM runs WHERE {' AND '.join(where)} "  # noqa: S608 - constants
            "ORDER BY tenant, run_id LIMIT ?"
        )

        def select(conn: Conn) -> list[tuple[Tenant, Run]]:
            rows = conn.execute(sql, (*params, limit)).fetchall()
            return [(Tenant(row["tenant"]), to_run(row)) for row in rows]

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
        """Remove a finished run's old checkpoints and the steps they cover, in one
        ``BEGIN IMMEDIATE`` transaction (see the port). Freed pages are reused by later
        writes; :meth:`vacuum` gives them back to the filesystem."""
        if keep_checkpoints < 1:
            raise InvalidArgumentError("keep_checkpoints must be at least 1")

        def prune(conn: Conn) -> PruneResult:
            run = self._load_run(conn, tenant, run_id)
            skipped = (
                "active" if run.status == "active"
                else "recent" if run.updated_at >= finished_before
                else "no checkpoint" if run.checkpoint_count == 0
                else None
            )
            if skipped is not None:
                return PruneResult(tenant, run_id, dry_run, skipped, through_seq=run.pruned_seq)
            oldest_kept = max(run.checkpoint_count - keep_checkpoints + 1, 1)
            kept = conn.execute(
                "SELECT through_seq FROM checkpoints WHERE tenant = ? AND run_id = ? "
                "AND number = ?",
                (tenant, run_id, oldest_kept),
            ).fetchone()
            if kept is None:  # pragma: no cover - numbers are gap-free above the pruned
                raise BackendError(f"checkpoint {oldest_kept} of run {run_id} is missing")
            boundary = max(int(kept["through_seq"]), run.pruned_seq)
            dropped = conn.execute(
                "SELECT checkpoint_id, number, through_seq FROM checkpoints "
                "WHERE tenant = ? AND run_id = ? AND number < ? ORDER BY number",
                (tenant, run_id, oldest_kept),
            ).fetchall()
            last = None
            if boundary > run.pruned_seq:
                last = conn.execute(
                    "SELECT hash, cum_tokens FROM steps WHERE tenant = ? AND run_id = ? "
                    "AND seq = ?",
                    (tenant, run_id, boundary),
                ).fetchone()
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
                conn.execute(
                    "DELETE FROM steps WHERE tenant = ? AND run_id = ? AND seq <= ?",
                    (tenant, run_id, boundary),
                )
            conn.executemany(
                "INSERT INTO pruned_checkpoints (tenant, checkpoint_id, run_id, number, "
                "through_seq, pruned_at) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (tenant, row["checkpoint_id"], run_id, row["number"], row["through_seq"],
                     iso(now))
                    for row in dropped
                ],
            )
            conn.execute(
                "DELETE FROM checkpoints WHERE tenant = ? AND run_id = ? AND number < ?",
                (tenant, run_id, oldest_kept),
            )
            conn.execute(
                "UPDATE runs SET version = version + 1, pruned_seq = ?, pruned_hash = ?, "
                "pruned_tokens = ?, pruned_checkpoints = ? WHERE tenant = ? AND run_id = ?",
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

        return await self._write(prune)

    async def find_checkpoint(
        self, tenant: Tenant, checkpoint_id: CheckpointId
    ) -> CheckpointRef | None:
        """Where a checkpoint id points, also after pruning (see the port)."""

        def select(conn: Conn) -> CheckpointRef | None:
            row = conn.execute(
                "SELECT run_id, number, through_seq, 0 AS pruned FROM checkpoints "
                "WHERE tenant = ? AND checkpoint_id = ? "
                "UNION ALL SELECT run_id, number, through_seq, 1 FROM pruned_checkpoints "
                "WHERE tenant = ? AND checkpoint_id = ? LIMIT 1",
                (tenant, checkpoint_id, tenant, checkpoint_id),
            ).fetchone()
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
        row = conn.execute(
            "SELECT * FROM proposals WHERE tenant = ? AND batch_id = ?", (tenant, batch_id)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"batch {batch_id}")
        return to_proposal(row)

    async def add_proposal(self, tenant: Tenant, proposal: Proposal) -> Proposal:
        """Insert a pending batch durably. ConflictError if its batch_id exists."""

        def insert(conn: Conn) -> Proposal:
            try:
                conn.execute(
                    "INSERT INTO proposals (tenant, batch_id, run_id, status, items, "
                    "created_at, expires_at, committed_at, accepted, rejected, memory_ids) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            cursor = conn.execute(
                "UPDATE proposals SET status = 'expired' "
                "WHERE tenant = ? AND batch_id = ? AND status = 'pending'",
                (tenant, batch_id),
            )
            if cursor.rowcount == 0:
                self._load_proposal(conn, tenant, batch_id)

        await self._write(expire)

    async def commit_proposal(self, tenant: Tenant, plan: CommitPlan, *, now: datetime) -> Proposal:
        """Apply ``plan`` atomically and mark the batch committed (or rejected when nothing
        was accepted); ConflictError or NotFoundError with nothing written (see the port).
        """
        updated_at = iso(now)

        def commit(conn: Conn) -> Proposal:
            proposal = self._load_proposal(conn, tenant, plan.batch_id)
            status = "committed" if plan.accepted else "rejected"
            cursor = conn.execute(
                "UPDATE proposals SET status = ?, committed_at = ?, accepted = ?, "
                "rejected = ?, memory_ids = ? "
                "WHERE tenant = ? AND batch_id = ? AND status = 'pending'",
                (
                    status,
                    updated_at,
                    to_json(plan.accepted),
                    to_json(plan.rejected),
                    MEMORY_IDS.dump_json(plan.memory_ids).decode("utf-8"),
                    tenant,
                    plan.batch_id,
                ),
            )
            if cursor.rowcount != 1:
                raise ConflictError(f"batch {plan.batch_id} is already {proposal.status}")
            # Check every target before writing anything, as the reference store does; the
            # writes below compare-and-set on these versions all the same.
            versions: dict[str, int] = {}
            targets: list[MemoryUpdate | MemoryStatusChange] = [
                *plan.updates, *plan.status_changes
            ]
            for target in targets:
                row = conn.execute(
                    "SELECT version, status FROM memories WHERE tenant = ? AND memory_id = ?",
                    (tenant, target.memory_id),
                ).fetchone()
                if row is None:
                    raise NotFoundError(f"memory {target.memory_id}")
                if row["version"] != target.expected_version or row["status"] != "active":
                    raise ConflictError(
                        f"memory {target.memory_id} changed since it was proposed"
                    )
                versions[target.memory_id] = int(row["version"])
            for new in plan.inserts:
                try:
                    conn.execute(
                        "INSERT INTO memories (tenant, memory_id, content, kind, scope, status, "
                        "confidence, source_refs, batch_id, run_id, superseded_by, created_at, "
                        "updated_at, version) "
                        "VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, NULL, ?, ?, 1)",
                        (
                            tenant, new.memory_id, new.content, new.kind, new.scope,
                            new.confidence, to_json(new.source_refs), new.batch_id, new.run_id,
                            updated_at, updated_at,
                        ),
                    )
                except sqlite3.IntegrityError as exc:
                    raise ConflictError(f"memory {new.memory_id} already exists") from exc
            for upd in plan.updates:
                self._bump_memory(
                    conn, tenant, upd.memory_id, versions,
                    "content = ?, confidence = ?, source_refs = ?, batch_id = ?, updated_at = ?",
                    (upd.content, upd.confidence, to_json(upd.source_refs), plan.batch_id,
                     updated_at),
                )
            for change in plan.status_changes:
                self._bump_memory(
                    conn, tenant, change.memory_id, versions,
                    "status = ?, superseded_by = ?, updated_at = ?",
                    (change.status, change.superseded_by, updated_at),
                )
            return proposal.model_copy(update={
                "status": status,
                "committed_at": now,
                "accepted": plan.accepted,
                "rejected": plan.rejected,
                "memory_ids": plan.memory_ids,
            })

        return await self._write(commit)

    @staticmethod
    def _bump_memory(
        conn: Conn,
        tenant: Tenant,
        memory_id: MemoryId,
        versions: dict[str, int],
        assignments: str,
        values: tuple[Any, ...],
    ) -> None:
        expected = versions[memory_id]
        cursor = conn.execute(
            f"UPDATE memories SET {assignments}, version = ? "  # noqa: S608 - constants
            "WHERE tenant = ? AND memory_id = ? AND version = ?",
            (*values, expected + 1, tenant, memory_id, expected),
        )
        if cursor.rowcount != 1:  # pragma: no cover - the write lock rules it out
            raise ConflictError(f"memory {memory_id} changed since it was proposed")
        versions[memory_id] = expected + 1

    # -- memories -----------------------------------------------------------------------

    async def get_memory(self, tenant: Tenant, memory_id: MemoryId) -> Memory:
        """The memory, whatever its status. NotFoundError if there is none."""

        def select(conn: Conn) -> Memory:
            row = conn.execute(
                "SELECT * FROM memories WHERE tenant = ? AND memory_id = ?", (tenant, memory_id)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"memory {memory_id}")
            return to_memory(row)

        return await self._read(select)

    async def get_memories(self, tenant: Tenant, memory_ids: Sequence[MemoryId]) -> list[Memory]:
        """The memories that exist among ``memory_ids``, in the order asked."""
        if not memory_ids:
            return []
        wanted = to_json(list(memory_ids))

        def select(conn: Conn) -> list[Memory]:
            rows = conn.execute(
                "SELECT * FROM memories WHERE tenant = ? "
                "AND memory_id IN (SELECT value FROM json_each(?))",
                (tenant, wanted),
            ).fetchall()
            found = {row["memory_id"]: to_memory(row) for row in rows}
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
        where: list[str] = []
        params: list[Any] = []
        if tenant is not None:
            where.append("tenant = ?")
            params.append(tenant)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if after is not None:
            where.append("(tenant, memory_id) > (?, ?)")
            params.extend(after)
        sql = (
            "SELECT * FROM memories "  # noqa: S608 - constant fragments, values bound
            f"{'WHERE ' + ' AND '.join(where) if where else ''} "
            "ORDER BY tenant, memory_id LIMIT ?"
        )

        def select(conn: Conn) -> list[tuple[Tenant, Memory]]:
            rows = conn.execute(sql, (*params, int64(limit))).fetchall()
            return [(Tenant(row["tenant"]), to_memory(row)) for row in rows]

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
        """Memories matching the words of ``query``, best first, scored by BM25 over the
        searched memories (higher is better). Only ``status`` memories; ``scope``/``kind``
        filter exactly when given. Any text is a valid query; a query with no word returns
        [].

        The FTS5 index holds every tenant's memories, so its ``bm25()`` weighs a word by how
        rare it is in the whole file (and normalises lengths). Every match among the
        searched memories is scored as ``core.lexical.bm25_weight`` says instead, with the
        statistics of the searched set (see ``_scoped_bm25``): another tenant's or another
        scope's memories never change a ranking or a score.
        """
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
            self._postings.at(version)  # before any result is read: see _Postings
            scores, ids = scoped_bm25(conn, words, where, params, self._postings)
            best = heapq.nsmallest(limit, scores, key=lambda rowid: (-scores[rowid], ids[rowid]))
            if not best:
                return []
            marks = ",".join("?" * len(best))
            rows = {
                row["id"]: row
                for row in conn.execute(
                    f"SELECT * FROM memories WHERE id IN ({marks})",  # noqa: S608 - placeholders
                    tuple(best),
                )
            }
            return [(to_memory(rows[rowid]), scores[rowid]) for rowid in best]

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
                    conn.execute(_INSERT_RUN, run_row(tenant, item.run))
                    conn.executemany(
                        "INSERT INTO steps (tenant, run_id, seq, episode, tool, input, output, "
                        "reasoning, status, idempotency_key, tokens, cum_tokens, created_at, "
                        "prev_hash, hash, request_hash, ack) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            (
                                tenant, s.run_id, s.seq, s.episode, s.tool, to_json(s.input),
                                to_json(s.output), s.reasoning, s.status, s.idempotency_key,
                                s.tokens, s.cum_tokens, iso(s.created_at), s.prev_hash, s.hash,
                                imported.request_hash, imported.ack.model_dump_json(),
                            )
                            for imported in item.steps
                            for s in (imported.step,)
                        ),
                    )
                    conn.executemany(
                        "INSERT INTO checkpoints (tenant, run_id, checkpoint_id, number, "
                        "parent_id, through_seq, head_seq, content, source, tokens, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            (
                                tenant, c.run_id, c.checkpoint_id, c.number, c.parent_id,
                                c.through_seq, c.head_seq, c.content.model_dump_json(), c.source,
                                c.tokens, iso(c.created_at),
                            )
                            for c in item.checkpoints
                        ),
                    )
                for proposal in records.proposals:
                    what = f"batch {proposal.batch_id}"
                    conn.execute(
                        "INSERT INTO proposals (tenant, batch_id, run_id, status, items, "
                        "created_at, expires_at, committed_at, accepted, rejected, memory_ids) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    conn.execute(
                        "INSERT INTO memories (tenant, memory_id, content, kind, scope, status, "
                        "confidence, source_refs, batch_id, run_id, superseded_by, created_at, "
                        "updated_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            tenant, memory.memory_id, memory.content, memory.kind, memory.scope,
                            memory.status, memory.confidence, to_json(memory.source_refs),
                            memory.batch_id, memory.run_id, memory.superseded_by,
                            iso(memory.created_at), iso(memory.updated_at), memory.version,
                        ),
                    )
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"{what} already exists") from exc

        await self._write(insert)
