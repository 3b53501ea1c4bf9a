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
leave tombstones in ``pruned_checkpoints``. The port methods that are shared statements
live in ``_sqlstore``; here is how they run on PostgreSQL. Lexical search is PostgreSQL
full-text search (a GIN index over a generated ``tsvector``, so imported memories are
searchable at once), scored by ``core.lexical.rank_bm25`` with the statistics of the
searched memories.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
    Memory,
    MemoryId,
    Proposal,
    Run,
    RunId,
    Step,
    StepAck,
    StepDraft,
    Tenant,
)
from mcp_checkpoint.core.plans import CheckpointMark, CheckpointPlan, CommitWrites, PrunePlan
from mcp_checkpoint.core.ports import DeletedRun, ImportRecords, PruneResult, StepQuery
from mcp_checkpoint.errors import ConflictError, NotFoundError
from mcp_checkpoint.storage import _statements as sql
from mcp_checkpoint.storage._ints import int64
from mcp_checkpoint.storage._rows import (
    STEP_COLUMNS,
    Row,
    checkpoint_row,
    covered_params,
    iso,
    memory_row,
    memory_write_params,
    micros,
    proposal_row,
    pruned_params,
    step_row,
    to_mark,
    to_memory,
    to_proposal,
    to_run,
    to_step,
    tombstone_row,
)
from mcp_checkpoint.storage._sqlstore import Batch, SqlStore, step_filters
from mcp_checkpoint.storage._urls import mask_url
from mcp_checkpoint.storage.postgres._db import Conn
from mcp_checkpoint.storage.postgres._sql import (
    HEAD_AND_KEY,
    HOLDING_ALL,
    LOCKED_MEMORIES,
    MEMORY_COLUMNS,
    MOVE_HEAD_AND_INSERT,
    SEARCH,
    SHARING_WORDS,
    WORD_COUNTS,
    pg,
)
from mcp_checkpoint.storage.postgres.blobs import PostgresBlobs

__all__ = ["Conn", "PostgresStore", "mask_url"]

_STEP_COLUMNS = ", ".join(STEP_COLUMNS)
_ANALYZE_AFTER_STEPS = 1_000
_TSQUERY = "to_tsquery('mcpck_english'::regconfig, :terms)"

_RERANK_DEPTH = 200
"""Lexical matches (by ``ts_rank_cd``) re-scored by BM25 over the searched memories."""
_OPTIMISTIC_APPENDS = 2
"""Lock-free attempts at an append before it queues on the run's row lock."""
_KNOWN_HEADS = 4096
"""Runs whose head a store remembers after appending (one round trip per append then)."""


async def _one(conn: Conn, statement: str, params: Mapping[str, Any], missing: str) -> Row:
    """The first row of a shared statement; NotFoundError(``missing``) when there is none."""
    cursor = await conn.execute(pg(statement), params)
    row = await cursor.fetchone()
    if row is None:
        raise NotFoundError(missing)
    return row


async def _changed(conn: Conn, statement: str, params: Mapping[str, Any]) -> int:
    """How many rows a shared statement changed."""
    return (await conn.execute(pg(statement), params)).rowcount


class PostgresStore(PostgresBlobs, SqlStore):
    """A :class:`~mcp_checkpoint.core.ports.Store` in a PostgreSQL database (see
    ``PostgresDatabase`` for the connection model)."""

    _COLLATE = ' COLLATE "C"'
    # lower() follows the database's ctype (C.UTF-8, en_US.UTF-8...: Unicode-aware).
    _OBJECTIVE_HOLDS = "strpos(lower(objective), :text) > 0"

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

    # -- the primitives of SqlStore -------------------------------------------------------

    async def _select(
        self, statement: str, params: Mapping[str, Any], *, run: RunId | None = None
    ) -> list[Row]:
        async def select(conn: Conn) -> list[Row]:
            rows = await (await conn.execute(pg(statement), params)).fetchall()
            if not rows and run is not None:  # a row implies its run
                await _one(conn, sql.RUN_EXISTS, {"tenant": params["tenant"], "run_id": run},
                           f"run {run}")
            return list(rows)

        return await self._run(select, write=False)

    async def _change(
        self, statement: str, params: Mapping[str, Any], *, then: str
    ) -> tuple[int, Row | None]:
        async def change(conn: Conn) -> tuple[int, Row | None]:
            changed = await _changed(conn, statement, params)
            return changed, await (await conn.execute(pg(then), params)).fetchone()

        return await self._run(change, write=True)

    async def _insert(self, batches: Sequence[Batch]) -> None:
        async def insert(conn: Conn) -> None:
            async with conn.cursor() as cursor:
                for statement, rows, what in batches:
                    if not rows:
                        continue
                    try:
                        await cursor.executemany(pg(statement), rows)
                    except errors.UniqueViolation as exc:
                        # The transaction is aborted; _run rolls it back as this propagates.
                        raise ConflictError(f"{what} already exists") from exc

        await self._run(insert, write=True)

    async def import_records(self, tenant: Tenant, records: ImportRecords) -> None:
        """Insert ``records`` in one transaction (see ``SqlStore``); after a large import,
        refresh the planner's statistics at once: until autovacuum gets to it, the planner
        would take a run of 100,000 imported steps for a handful and read all of them for
        a page of the timeline."""
        await super().import_records(tenant, records)
        if sum(len(item.steps) for item in records.runs) >= _ANALYZE_AFTER_STEPS:

            async def analyze(conn: Conn) -> None:
                await conn.execute("ANALYZE runs, steps, checkpoints")

            await self._run(analyze, write=True)

    async def _memories(self, tenant: Tenant, memory_ids: Sequence[str]) -> list[Memory]:
        async def select(conn: Conn) -> list[Memory]:
            cursor = await conn.execute(
                f"SELECT {MEMORY_COLUMNS} FROM memories "  # noqa: S608 - constant
                "WHERE tenant = %s AND memory_id = ANY(%s)",
                (tenant, list(memory_ids)),
            )
            return [to_memory(row) for row in await cursor.fetchall()]

        return await self._run(select, write=False)

    async def _add_checkpoint(
        self, params: Mapping[str, Any], decide: Callable[[Run, int | None], CheckpointPlan]
    ) -> Checkpoint:
        """With the run's row locked, as appends lock it."""

        async def add(conn: Conn) -> Checkpoint:
            row = await _one(conn, sql.RUN_AND_THROUGH_TOKENS + " FOR UPDATE", params,
                             f"run {params['run_id']}")
            plan = decide(to_run(row), row["through_tokens"])
            checkpoint = plan.checkpoint
            try:
                await conn.execute(
                    pg(sql.INSERT_CHECKPOINT), checkpoint_row(params["tenant"], checkpoint)
                )
            except errors.UniqueViolation as exc:
                raise ConflictError(
                    f"checkpoint {checkpoint.checkpoint_id} of run {checkpoint.run_id} "
                    "already exists"
                ) from exc
            if await _changed(conn, sql.MOVE_COVERED, covered_params(params["tenant"], plan)) != 1:
                raise ConflictError(  # pragma: no cover - the row lock rules it out
                    f"run {checkpoint.run_id} has a newer checkpoint"
                )
            return checkpoint

        return await self._run(add, write=True)

    async def _prune(
        self,
        tenant: Tenant,
        run_id: RunId,
        decide: Callable[[Run, list[CheckpointMark]], PrunePlan],
        now: datetime,
    ) -> PruneResult:
        """The run's row is locked first (as appends and checkpoints lock it), so the run
        is decided on as it is: a run that moved on since it was listed is skipped, and no
        append can slip in between the decision and the delete. Freed space is reused by
        later writes (autovacuum reclaims dead rows)."""
        where = {"tenant": tenant, "run_id": run_id}

        async def prune(conn: Conn) -> PruneResult:
            run = to_run(await _one(conn, sql.RUN + " FOR UPDATE", where, f"run {run_id}"))
            marks = await (await conn.execute(pg(sql.CHECKPOINT_MARKS), where)).fetchall()
            plan = decide(run, [to_mark(row) for row in marks])
            if plan.run is None:
                return plan.result
            await conn.execute(pg(sql.DELETE_STEPS_THROUGH), {**where, "seq": plan.steps_through})
            async with conn.cursor() as cursor:
                await cursor.executemany(pg(sql.INSERT_TOMBSTONE), [
                    tombstone_row(tenant, ref, now) for ref in plan.tombstones
                ])
            await conn.execute(
                pg(sql.DELETE_CHECKPOINTS_BELOW), {**where, "number": plan.checkpoints_below}
            )
            if await _changed(conn, sql.RECORD_PRUNED, pruned_params(tenant, plan, plan.run)) != 1:
                raise ConflictError(  # pragma: no cover - the row lock rules it out
                    f"run {run_id} changed while it was pruned; try again"
                )
            return plan.result

        return await self._run(prune, write=True)

    async def _commit(
        self,
        tenant: Tenant,
        batch_id: BatchId,
        targets: list[MemoryId],
        decide: Callable[[Proposal, dict[MemoryId, Memory]], CommitWrites],
    ) -> Proposal:
        """The batch's row is locked first: a second commit, from any process, waits for
        the first and then finds the batch no longer pending. Targeted memories are locked
        in memory_id order, so two commits touching the same memories cannot deadlock."""

        async def commit(conn: Conn) -> Proposal:
            row = await _one(conn, sql.PROPOSAL + " FOR UPDATE",
                             {"tenant": tenant, "batch_id": batch_id}, f"batch {batch_id}")
            found = await (await conn.execute(LOCKED_MEMORIES, (tenant, targets))).fetchall()
            writes = decide(to_proposal(row), {r["memory_id"]: to_memory(r) for r in found})
            await conn.execute(pg(sql.COMMIT_PROPOSAL), proposal_row(tenant, writes.proposal))
            for memory in writes.inserts:
                try:
                    await conn.execute(pg(sql.INSERT_MEMORY), memory_row(tenant, memory))
                except errors.UniqueViolation as exc:
                    raise ConflictError(f"memory {memory.memory_id} already exists") from exc
            for write in writes.writes:
                if await _changed(conn, sql.UPDATE_MEMORY, memory_write_params(tenant, write)) != 1:
                    raise ConflictError(  # pragma: no cover - the row lock rules it out
                        f"memory {write.memory.memory_id} changed meanwhile"
                    )
            return writes.proposal

        return await self._run(commit, write=True)

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
                "error_seq": after.error_seq,
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


    # -- curation -----------------------------------------------------------------------

    async def delete_run(self, tenant: Tenant, run_id: RunId) -> DeletedRun:
        """Remove the run, its ledger (with its search vectors), its checkpoints and their
        tombstones in one transaction (see the port)."""

        async def delete(conn: Conn) -> DeletedRun:
            found = await conn.execute(
                "SELECT 1 FROM runs WHERE tenant = %s AND run_id = %s FOR UPDATE",
                (tenant, run_id),
            )
            if await found.fetchone() is None:
                raise NotFoundError(f"run {run_id}")
            key = (tenant, run_id)
            steps = await conn.execute(
                "DELETE FROM steps WHERE tenant = %s AND run_id = %s", key
            )
            checkpoints = await conn.execute(
                "DELETE FROM checkpoints WHERE tenant = %s AND run_id = %s", key
            )
            await conn.execute(
                "DELETE FROM pruned_checkpoints WHERE tenant = %s AND run_id = %s", key
            )
            await conn.execute("DELETE FROM runs WHERE tenant = %s AND run_id = %s", key)
            self._heads.pop(key, None)
            return DeletedRun(run_id, max(steps.rowcount, 0), max(checkpoints.rowcount, 0))

        return await self._run(delete, write=True)

    async def search_steps(
        self, tenant: Tenant, query: StepQuery, *, limit: int, depth: int | None = None
    ) -> list[tuple[Step, float]]:
        """Full-text search of the steps' vectors (GIN index, migration 0006): the newest
        ``depth`` matches that pass the filters (a run's by its key, newest ``seq``
        first, so a common word is found without reading the rest of the ledger; across
        runs by ``created_at``), ranked by ``ts_rank_cd`` (see the port). The planner
        takes the GIN index for a rare word and the run's key for a common one."""
        words = list(dict.fromkeys(query_terms(query.text)))
        if not words or limit <= 0:
            return []
        where, params = step_filters(query, "s")
        newest = "s.seq DESC" if query.run_id is not None else (
            "s.created_at DESC, s.run_id DESC, s.seq DESC")
        statement = pg(
            f"SELECT {_STEP_COLUMNS}, ts_rank_cd(tsv, q.query) AS score FROM ("  # noqa: S608
            f"SELECT {', '.join('s.' + c for c in STEP_COLUMNS)}, s.tsv FROM steps AS s "
            f"WHERE s.tsv @@ {_TSQUERY} AND {' AND '.join(where)} "
            f"ORDER BY {newest} LIMIT :depth) AS c, {_TSQUERY} AS q(query) "
            "ORDER BY score DESC, run_id, seq LIMIT :limit"
        )
        # A word holds only letters, digits and "_": quoted, it is one tsquery operand.
        values = {**params, "tenant": tenant, "terms": " | ".join(f"'{w}'" for w in words),
                  "limit": int64(limit), "depth": None if depth is None
                  else int64(max(depth, limit))}

        async def select(conn: Conn) -> list[tuple[Step, float]]:
            cursor = await conn.execute(statement, values)
            return [(to_step(row), float(row["score"])) for row in await cursor.fetchall()]

        return await self._run(select, write=False)

    async def step_points(
        self, tenant: Tenant, run_id: RunId, seqs: Sequence[int]
    ) -> list[tuple[int, int, int]]:
        """Primary-key lookups in one statement (see the port)."""
        wanted = sorted({int64(s) for s in seqs})

        async def select(conn: Conn) -> list[tuple[int, int, int]]:
            found = await conn.execute(
                "SELECT 1 FROM runs WHERE tenant = %s AND run_id = %s", (tenant, run_id)
            )
            if await found.fetchone() is None:
                raise NotFoundError(f"run {run_id}")
            cursor = await conn.execute(
                "SELECT seq, episode, cum_tokens FROM steps WHERE tenant = %s "
                "AND run_id = %s AND seq = ANY(%s) ORDER BY seq",
                (tenant, run_id, wanted),
            )
            return [(int(r["seq"]), int(r["episode"]), int(r["cum_tokens"]))
                    for r in await cursor.fetchall()]

        return await self._run(select, write=False)

    # -- memories (curation) --------------------------------------------------------

    async def delete_memory(self, tenant: Tenant, memory_id: MemoryId, *, now: datetime
                            ) -> None:
        """Remove the memory (its search vector is a column of its row) and leave its
        tombstone (migration 0009)."""

        async def delete(conn: Conn) -> None:
            cursor = await conn.execute(
                "DELETE FROM memories WHERE tenant = %s AND memory_id = %s", (tenant, memory_id)
            )
            if cursor.rowcount < 1:
                raise NotFoundError(f"memory {memory_id}")
            await conn.execute(pg(sql.FORGET), {"tenant": tenant, "memory_id": memory_id,
                                                "forgotten_at": iso(now)})

        await self._run(delete, write=True)


    # -- lexical search -----------------------------------------------------------------

    async def _search(
        self, words: list[str], searched: dict[str, Any], *, limit: int
    ) -> list[tuple[Memory, float]]:
        """The query's words are normalized by the same text search configuration as the
        memories and OR-ed as quoted ``tsquery`` lexemes. The GIN index finds the matches;
        the best ``_RERANK_DEPTH`` of them by ``ts_rank_cd`` come back with the statistics
        that ``core.lexical.rank_bm25`` scores them by."""
        params = {**searched, "text": " ".join(words),
                  "depth": int64(max(limit, _RERANK_DEPTH))}

        async def select(conn: Conn) -> list[tuple[Memory, float]]:
            found = await (await conn.execute(SEARCH, params)).fetchall()
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

    async def word_counts(
        self, tenant: Tenant, words: Sequence[str], *, cap: int
    ) -> dict[str, int]:
        """See ``MemoryStore.word_counts``: each count stops at ``cap`` rows."""
        asked = list(dict.fromkeys(words))
        if cap <= 0 or not asked:
            return dict.fromkeys(asked, 0)

        async def select(conn: Conn) -> dict[str, int]:
            rows = await (await conn.execute(
                WORD_COUNTS, {"tenant": tenant, "words": asked, "cap": int64(cap)}
            )).fetchall()
            return {row["word"]: int(row["held"]) for row in rows}

        return await self._run(select, write=False)

    async def sharing_words(
        self, tenant: Tenant, words: Sequence[str], *, per_word: int, limit: int
    ) -> list[Memory]:
        """See ``MemoryStore.sharing_words``: the newest holders by ``created_at``."""
        asked = list(dict.fromkeys(words))
        if per_word <= 0 or limit <= 0 or not asked:
            return []

        async def select(conn: Conn) -> list[Memory]:
            rows = await (await conn.execute(SHARING_WORDS, {
                "tenant": tenant, "words": asked, "per_word": int64(per_word),
                "limit": int64(limit),
            })).fetchall()
            return [to_memory(row) for row in rows]

        return await self._run(select, write=False)

    async def holding_all(
        self, tenant: Tenant, words: Sequence[str], *, limit: int
    ) -> list[Memory]:
        """See ``MemoryStore.holding_all``: the words' tsqueries AND-ed (stopwords drop out,
        as they do in search)."""
        asked = list(dict.fromkeys(words))
        if limit <= 0 or not asked:
            return []

        async def select(conn: Conn) -> list[Memory]:
            rows = await (await conn.execute(
                HOLDING_ALL, {"tenant": tenant, "words": asked, "limit": int64(limit)}
            )).fetchall()
            return [to_memory(row) for row in rows]

        return await self._run(select, write=False)
