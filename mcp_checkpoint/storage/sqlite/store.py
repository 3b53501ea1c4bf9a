"""The embedded store: one SQLite file in WAL mode, shared safely by several processes.

Every write is one ``BEGIN IMMEDIATE`` transaction (see ``_db``), so what a method reads,
decides through ``core`` (``ledger.append_step``, ``core.plans``) and writes inside it is
atomic across processes; primary keys and unique indexes are the final word on identity
and ordering. The port methods that are shared statements live in ``_sqlstore``; here is
how they run on SQLite. Lexical search is FTS5 over memory content, kept in sync by
triggers, and scored by ``core.lexical.rank_bm25`` (see ``_lexical``).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from mcp_checkpoint.config import SqliteSettings
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
    to_json,
    to_mark,
    to_memory,
    to_proposal,
    to_run,
    to_step,
    tombstone_row,
)
from mcp_checkpoint.storage._sqlstore import Batch, SqlStore, step_filters
from mcp_checkpoint.storage.sqlite._db import Conn
from mcp_checkpoint.storage.sqlite._lexical import (
    Postings,
    all_holders,
    fts_words,
    holders,
    term_statistics,
    word_count,
)
from mcp_checkpoint.storage.sqlite.blobs import SqliteBlobs

__all__ = ["SqliteStore"]

_MOVE_HEAD = (
    "UPDATE runs SET head_seq = :head_seq, step_count = :step_count, head_hash = :head_hash, "
    "head_tokens = :head_tokens, error_seq = :error_seq, updated_at = :updated_at, "
    "updated_us = :updated_us "
    "WHERE tenant = :tenant AND run_id = :run_id AND head_seq = :expected_head"
)
_MEMORIES = (
    "SELECT * FROM memories WHERE tenant = ? AND memory_id IN (SELECT value FROM json_each(?))"
)
_SEARCHED = (
    "m.tenant = ? AND m.status = ? AND (? IS NULL OR m.scope = ?) AND (? IS NULL OR m.kind = ?)"
)


def _by_rowid(conn: Conn, rowids: Sequence[int]) -> list[Memory]:
    """The memories of these row ids, in that order."""
    rows = conn.execute(
        "SELECT * FROM memories WHERE id IN (SELECT value FROM json_each(?))",
        (to_json(list(rowids)),),
    ).fetchall()
    found = {row["id"]: to_memory(row) for row in rows}
    return [found[rowid] for rowid in rowids if rowid in found]


def _token(kind: str, *parts: str) -> str:
    """A scope token of ``steps_fts`` as an FTS5 string, as migration 0011's trigger
    writes it: ``kind``, then the hex of each part's UTF-8 bytes, separated by "x"."""
    return '"' + kind + "x".join(part.encode().hex().upper() for part in parts) + '"'


# Steps reach the search index in batches (migration 0013): the steps above the mark, one
# statement, rows in the order the steps were stored (search ranks newest rowid first).
_UNINDEXED = (
    "SELECT p.through_rowid, (SELECT coalesce(max(rowid), 0) FROM steps) "
    "FROM step_search_progress AS p"
)
_INDEX_STEPS = (
    "INSERT INTO steps_fts (body, scope, tenant, run_id, seq) "
    "SELECT tool || ' ' || coalesce(reasoning, '') || ' ' || input || ' ' || output, "
    "'n' || hex(tenant) || ' r' || hex(tenant) || 'x' || hex(run_id) "
    "|| ' t' || hex(tool) || ' s' || hex(status), tenant, run_id, seq "
    "FROM steps WHERE rowid > ? ORDER BY rowid"
)
# A step's own transaction indexes the backlog once it holds this many steps, so that a
# search never has more than this to index first.
_INDEX_BATCH = 256


def _index_steps(conn: Conn) -> None:
    """Give every step above the mark its search row, and move the mark (in the caller's
    write transaction)."""
    through, newest = conn.execute(_UNINDEXED).fetchone()
    if newest > through:
        conn.execute(_INDEX_STEPS, (through,))
        conn.execute("UPDATE step_search_progress SET through_rowid = ?", (newest,))


def _behind(conn: Conn) -> bool:
    """Whether some step has no search row yet."""
    through, newest = conn.execute(_UNINDEXED).fetchone()
    return bool(newest > through)


def _steps_deleted(conn: Conn) -> None:
    """After steps were deleted: the mark no higher than the highest rowid left, so that
    the rowids SQLite gives next count as not indexed."""
    conn.execute(
        "UPDATE step_search_progress SET through_rowid = "
        "min(through_rowid, (SELECT coalesce(max(rowid), 0) FROM steps))"
    )


class SqliteStore(SqliteBlobs, SqlStore):
    """A :class:`~mcp_checkpoint.core.ports.Store` in one SQLite file (see ``SqliteDatabase``
    for the connection model)."""

    # SQLite's own lower() folds ASCII only: str.lower, registered on every connection.
    _OBJECTIVE_HOLDS = "instr(mcpck_lower(objective), :text) > 0"

    def __init__(self, path: Path, settings: SqliteSettings) -> None:
        """Remember where the file lives; nothing is touched until :meth:`open`."""
        super().__init__(path, settings)
        self._postings = Postings()  # lexical search's memory; used under self._lock

    def _closed(self) -> None:
        self._postings = Postings()  # a file opened later may count from 0 again

    # -- the primitives of SqlStore -------------------------------------------------------

    @staticmethod
    def _load(conn: Conn, statement: str, params: Mapping[str, Any], missing: str) -> Row:
        row = conn.execute(statement, params).fetchone()
        if row is None:
            raise NotFoundError(missing)
        return row  # type: ignore[no-any-return]

    async def _select(
        self, statement: str, params: Mapping[str, Any], *, run: RunId | None = None
    ) -> list[Row]:
        def select(conn: Conn) -> list[Row]:
            rows = conn.execute(statement, params).fetchall()
            if not rows and run is not None:  # a row implies its run
                self._load(conn, sql.RUN_EXISTS, {"tenant": params["tenant"], "run_id": run},
                           f"run {run}")
            return rows

        return await self._read(select)

    async def _change(
        self, statement: str, params: Mapping[str, Any], *, then: str
    ) -> tuple[int, Row | None]:
        def change(conn: Conn) -> tuple[int, Row | None]:
            changed = conn.execute(statement, params).rowcount
            return changed, conn.execute(then, params).fetchone()

        return await self._write(change)

    async def _insert(self, batches: Sequence[Batch]) -> None:
        def insert(conn: Conn) -> None:
            for statement, rows, what in batches:
                try:
                    conn.executemany(statement, rows)
                except sqlite3.IntegrityError as exc:
                    raise ConflictError(f"{what} already exists") from exc

        await self._write(insert)

    async def _memories(self, tenant: Tenant, memory_ids: Sequence[str]) -> list[Memory]:
        return await self._read(lambda conn: self._select_memories(conn, tenant, memory_ids))

    @staticmethod
    def _select_memories(conn: Conn, tenant: Tenant, memory_ids: Sequence[str]) -> list[Memory]:
        if not memory_ids:
            return []
        rows = conn.execute(_MEMORIES, (tenant, to_json(list(memory_ids)))).fetchall()
        return [to_memory(row) for row in rows]

    async def _add_checkpoint(
        self, params: Mapping[str, Any], decide: Callable[[Run, int | None], CheckpointPlan]
    ) -> Checkpoint:
        def add(conn: Conn) -> Checkpoint:
            row = self._load(conn, sql.RUN_AND_THROUGH_TOKENS, params, f"run {params['run_id']}")
            plan = decide(to_run(row), row["through_tokens"])
            checkpoint = plan.checkpoint
            try:
                conn.execute(sql.INSERT_CHECKPOINT, checkpoint_row(params["tenant"], checkpoint))
            except sqlite3.IntegrityError as exc:
                raise ConflictError(
                    f"checkpoint {checkpoint.checkpoint_id} of run {checkpoint.run_id} "
                    "already exists"
                ) from exc
            cursor = conn.execute(sql.MOVE_COVERED, covered_params(params["tenant"], plan))
            if cursor.rowcount != 1:  # pragma: no cover - the write lock rules it out
                raise ConflictError(f"run {checkpoint.run_id} has a newer checkpoint")
            _index_steps(conn)  # an episode's end: its steps become searchable here
            return checkpoint

        return await self._write(add)

    async def _prune(
        self,
        tenant: Tenant,
        run_id: RunId,
        decide: Callable[[Run, list[CheckpointMark]], PrunePlan],
        now: datetime,
    ) -> PruneResult:
        """Freed pages are reused by later writes; :meth:`vacuum` gives them back to the
        filesystem."""
        where = {"tenant": tenant, "run_id": run_id}

        def prune(conn: Conn) -> PruneResult:
            run = to_run(self._load(conn, sql.RUN, where, f"run {run_id}"))
            plan = decide(run, [to_mark(row) for row in conn.execute(sql.CHECKPOINT_MARKS, where)])
            if plan.run is None:
                return plan.result
            conn.execute(sql.DELETE_STEPS_THROUGH, {**where, "seq": plan.steps_through})
            conn.execute(  # their search rows (migrations 0009, 0011) go with them
                "DELETE FROM steps_fts WHERE rowid IN (SELECT rowid FROM steps_fts "
                "WHERE steps_fts MATCH ? AND seq <= ?)",
                (f"scope : {_token('r', tenant, run_id)}", plan.steps_through),
            )
            _steps_deleted(conn)
            conn.executemany(
                sql.INSERT_TOMBSTONE, [tombstone_row(tenant, ref, now) for ref in plan.tombstones]
            )
            conn.execute(sql.DELETE_CHECKPOINTS_BELOW, {**where, "number": plan.checkpoints_below})
            cursor = conn.execute(sql.RECORD_PRUNED, pruned_params(tenant, plan, plan.run))
            if cursor.rowcount != 1:  # pragma: no cover - the write lock rules it out
                raise ConflictError(f"run {run_id} changed while it was pruned; try again")
            return plan.result

        return await self._write(prune)

    async def _commit(
        self,
        tenant: Tenant,
        batch_id: BatchId,
        targets: list[MemoryId],
        decide: Callable[[Proposal, dict[MemoryId, Memory]], CommitWrites],
    ) -> Proposal:
        def commit(conn: Conn) -> Proposal:
            row = self._load(conn, sql.PROPOSAL, {"tenant": tenant, "batch_id": batch_id},
                             f"batch {batch_id}")
            found = self._select_memories(conn, tenant, targets)
            writes = decide(to_proposal(row), {m.memory_id: m for m in found})
            cursor = conn.execute(sql.COMMIT_PROPOSAL, proposal_row(tenant, writes.proposal))
            if cursor.rowcount != 1:  # pragma: no cover - the write lock rules it out
                raise ConflictError(f"batch {batch_id} is no longer pending")
            for memory in writes.inserts:
                try:
                    conn.execute(sql.INSERT_MEMORY, memory_row(tenant, memory))
                except sqlite3.IntegrityError as exc:
                    raise ConflictError(f"memory {memory.memory_id} already exists") from exc
            for write in writes.writes:
                cursor = conn.execute(sql.UPDATE_MEMORY, memory_write_params(tenant, write))
                if cursor.rowcount != 1:  # pragma: no cover - the write lock rules it out
                    raise ConflictError(f"memory {write.memory.memory_id} changed meanwhile")
            return writes.proposal

        return await self._write(commit)

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
        where = {"tenant": tenant, "run_id": run_id, "key": key}

        def append(conn: Conn) -> StepAck:
            run = to_run(self._load(conn, sql.RUN, where, f"run {run_id}"))
            if key is not None and (seen := conn.execute(sql.SEEN_KEY, where).fetchone()):
                stored = StepAck.model_validate_json(seen["ack"])
                return retried_ack(key, seen["request_hash"], stored, request_hash)
            step, after = append_step(run, draft, tokens=tokens, now=now)
            ack = make_ack(after, step)
            rowid = conn.execute(sql.INSERT_STEP, step_row(tenant, step, request_hash,
                                                           ack.model_dump_json())).lastrowid
            cursor = conn.execute(_MOVE_HEAD, {
                **where, "head_seq": after.head_seq, "step_count": after.step_count,
                "head_hash": after.head_hash, "head_tokens": after.head_tokens,
                "error_seq": after.error_seq, "updated_at": iso(now),
                "updated_us": micros(now), "expected_head": run.head_seq,
            })
            if cursor.rowcount != 1:  # pragma: no cover - the write lock rules it out
                raise ConflictError(f"run {run_id} moved on; try again")
            if rowid is not None and rowid % _INDEX_BATCH == 0:  # a batch's worth, or less
                _index_steps(conn)
            return ack

        return await self._write_grouped(append)

    # -- curation -----------------------------------------------------------------------

    async def delete_run(self, tenant: Tenant, run_id: RunId) -> DeletedRun:
        """Remove the run, its ledger, its search rows, its checkpoints and their
        tombstones in one ``BEGIN IMMEDIATE`` transaction (see the port)."""

        def delete(conn: Conn) -> DeletedRun:
            self._load(conn, sql.RUN, {"tenant": tenant, "run_id": run_id}, f"run {run_id}")
            key = (tenant, run_id)
            # The run's search rows, found by its scope token (migration 0011).
            conn.execute(
                "DELETE FROM steps_fts WHERE rowid IN (SELECT rowid FROM steps_fts "
                "WHERE steps_fts MATCH ?)", (f"scope : {_token('r', tenant, run_id)}",)
            )
            steps = conn.execute(
                "DELETE FROM steps WHERE tenant = ? AND run_id = ?", key
            ).rowcount
            checkpoints = conn.execute(
                "DELETE FROM checkpoints WHERE tenant = ? AND run_id = ?", key
            ).rowcount
            conn.execute("DELETE FROM pruned_checkpoints WHERE tenant = ? AND run_id = ?", key)
            conn.execute("DELETE FROM runs WHERE tenant = ? AND run_id = ?", key)
            _steps_deleted(conn)
            return DeletedRun(run_id, steps, checkpoints)

        return await self._write(delete)

    async def search_steps(
        self, tenant: Tenant, query: StepQuery, *, limit: int, depth: int | None = None
    ) -> list[tuple[Step, float]]:
        """FTS5 over the steps' text (migrations 0009, 0011, 0013: steps not yet indexed are
        indexed first, in a write of their own), then one read: (1) the words
        in ``body`` AND the scope tokens of the filters, so the index narrows to the
        tenant, run, tool and status, newest rowid (the order steps were stored in)
        first, joined to the steps that still exist and filtered exactly, up to
        ``depth``; (2) BM25 of the words over those candidates only (scope tokens count
        in no score, and their long posting lists are never scored); (3) the best
        ``limit`` steps (see the port)."""
        words = fts_words(query_terms(query.text))
        if not words or limit <= 0:
            return []
        scope = [_token("n", tenant)]
        scope += [_token("r", tenant, query.run_id)] if query.run_id is not None else []
        scope += [_token("t", query.tool)] if query.tool is not None else []
        scope += [_token("s", query.status)] if query.status is not None else []
        where, params = step_filters(query, "s")
        candidates = (
            # CROSS JOIN: the index drives, newest rowid first, and stops at the depth.
            "SELECT f.rowid, s.run_id, s.seq FROM steps_fts AS f "  # noqa: S608 - constants
            "CROSS JOIN steps AS s ON s.tenant = f.tenant AND s.run_id = f.run_id "
            f"AND s.seq = f.seq WHERE steps_fts MATCH :match AND {' AND '.join(where)} "
            "ORDER BY f.rowid DESC LIMIT :depth"
        )
        values = {**params, "tenant": tenant,
                  "match": f"body : ({words}) AND scope : ({' AND '.join(scope)})",
                  "depth": -1 if depth is None else int64(max(depth, limit))}

        if await self._read(_behind):
            await self._write(_index_steps)

        def select(conn: Conn) -> list[tuple[Step, float]]:
            keys = {row[0]: (row[1], row[2]) for row in conn.execute(candidates, values)}
            if not keys:
                return []
            # "+rowid": the candidates filter the rows, never drive the index one by one.
            scores = conn.execute(
                "SELECT rowid, -bm25(steps_fts, 1.0, 0.0) FROM steps_fts "
                "WHERE steps_fts MATCH ? AND rowid BETWEEN ? AND ? "
                "AND +rowid IN (SELECT value FROM json_each(?))",
                (f"body : ({words})", min(keys), max(keys), to_json(list(keys))),
            ).fetchall()
            best = sorted(((-float(score), *keys[rowid]) for rowid, score in scores))[:limit]
            found = {
                (row["run_id"], row["seq"]): to_step(row)
                for row in conn.execute(
                    "SELECT s.* FROM json_each(?) AS k CROSS JOIN steps AS s "
                    "ON s.tenant = ? AND s.run_id = k.value ->> 0 AND s.seq = k.value ->> 1",
                    (to_json([[run_id, seq] for _, run_id, seq in best]), tenant),
                )
            }
            return [(found[(run_id, seq)], -score) for score, run_id, seq in best]

        return await self._read(select)

    async def import_records(self, tenant: Tenant, records: ImportRecords) -> None:
        """Insert ``records`` (see the port), then give the imported steps their search
        rows in a transaction of their own."""
        await super().import_records(tenant, records)
        await self._write(_index_steps)

    async def step_points(
        self, tenant: Tenant, run_id: RunId, seqs: Sequence[int]
    ) -> list[tuple[int, int, int]]:
        """Primary-key lookups in one read (see the port)."""
        wanted = sorted({int64(s) for s in seqs})

        def select(conn: Conn) -> list[tuple[int, int, int]]:
            self._load(conn, sql.RUN, {"tenant": tenant, "run_id": run_id}, f"run {run_id}")
            out: list[tuple[int, int, int]] = []
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                out += [
                    (row[0], row[1], row[2])
                    for row in conn.execute(
                        "SELECT seq, episode, cum_tokens FROM steps "  # noqa: S608 - marks
                        f"WHERE tenant = ? AND run_id = ? AND seq IN ({marks}) ORDER BY seq",
                        (tenant, run_id, *chunk),
                    )
                ]
            return out

        return await self._read(select)

    # -- memories (curation) --------------------------------------------------------

    async def delete_memory(self, tenant: Tenant, memory_id: MemoryId, *, now: datetime
                            ) -> None:
        """Remove the memory (its search rows go with it: migration 0001's trigger) and
        leave its tombstone (migration 0012)."""

        def delete(conn: Conn) -> None:
            gone = conn.execute(
                "DELETE FROM memories WHERE tenant = ? AND memory_id = ?", (tenant, memory_id)
            ).rowcount
            if not gone:
                raise NotFoundError(f"memory {memory_id}")
            conn.execute(sql.FORGET, {"tenant": tenant, "memory_id": memory_id,
                                      "forgotten_at": iso(now)})

        await self._write(delete)


    # -- lexical search -----------------------------------------------------------------

    async def _search(
        self, words: list[str], searched: dict[str, Any], *, limit: int
    ) -> list[tuple[Memory, float]]:
        """FTS5 finds each word's matches among the searched memories and counts them
        (``_lexical``; the index holds every tenant's memories, so its own ``bm25()``
        would weigh words by the whole file)."""
        tenant, status, scope, kind = (searched[k] for k in ("tenant", "status", "scope", "kind"))
        params = (tenant, status, scope, scope, kind, kind)

        def select(conn: Conn) -> list[tuple[Memory, float]]:
            version = conn.execute(
                "SELECT version FROM memories_version WHERE id = 1"
            ).fetchone()[0]
            self._postings.at(version)  # before any result is read: see Postings
            documents, matching, occurrences = term_statistics(
                conn, words, _SEARCHED, params, self._postings
            )
            best = rank_bm25(documents, matching, occurrences, limit=limit)
            found = {m.memory_id: m for m in self._select_memories(
                conn, tenant, [memory_id for memory_id, _ in best])}
            return [(found[MemoryId(memory_id)], score) for memory_id, score in best]

        return await self._read(select)

    async def word_counts(
        self, tenant: Tenant, words: Sequence[str], *, cap: int
    ) -> dict[str, int]:
        """See ``MemoryStore.word_counts``: the FTS5 index holds every tenant's memories,
        whatever their status, and counts them all (up to ``cap``): a word common among
        other tenants' memories is as costly to look up as a common word of one's own."""
        asked = list(dict.fromkeys(words))
        if cap <= 0:
            return dict.fromkeys(asked, 0)
        return await self._read(lambda conn: {w: word_count(conn, w, cap) for w in asked})

    async def sharing_words(
        self, tenant: Tenant, words: Sequence[str], *, per_word: int, limit: int
    ) -> list[Memory]:
        """See ``MemoryStore.sharing_words``: the newest holders of each word by row id
        (the order memories were stored in), counted per memory."""
        asked = list(dict.fromkeys(words))
        if per_word <= 0 or limit <= 0 or not asked:
            return []

        def select(conn: Conn) -> list[Memory]:
            hits: Counter[int] = Counter()
            for word in asked:
                hits.update(holders(conn, tenant, word, per_word))
            best = sorted(hits, key=lambda rowid: (-hits[rowid], -rowid))[:limit]
            return _by_rowid(conn, best)

        return await self._read(select)

    async def holding_all(
        self, tenant: Tenant, words: Sequence[str], *, limit: int
    ) -> list[Memory]:
        """See ``MemoryStore.holding_all``: one FTS5 AND query, newest row ids first."""
        if limit <= 0 or not words:
            return []
        return await self._read(
            lambda conn: _by_rowid(conn, all_holders(conn, tenant, words, limit))
        )
