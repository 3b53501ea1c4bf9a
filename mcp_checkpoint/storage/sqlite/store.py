"""The embedded store: one SQLite file in WAL mode, shared safely by several processes.

Every write is one ``BEGIN IMMEDIATE`` transaction (steps recorded together share one, a
savepoint each: group commit), so the read-check-write inside it (seq allocation,
idempotency check, hash chain, head update, compare-and-set on versions) is atomic across
processes; primary keys and unique indexes are the final word on identity and ordering.
Lexical search is FTS5 (BM25) over memory content, kept in sync by triggers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from mcp_checkpoint.config import SqliteSettings
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
    CheckpointError,
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
from mcp_checkpoint.storage.sqlite._migrations import apply_migrations, current_version

__all__ = ["SqliteStore"]

_T = TypeVar("_T")
_Conn = sqlite3.Connection

_NO_UPPER_BOUND = INT64_MAX
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6

_ALONE = object()
"""A grouped write's outcome when the group could not take it: run it on its own."""

_Grouped = tuple[Callable[[_Conn], Any], "asyncio.Future[Any]"]



# -- conversions ------------------------------------------------------------------------


_INSERT_RUN = (
    f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) "  # noqa: S608 - constant column names
    f"VALUES ({', '.join(':' + column for column in RUN_COLUMNS)})"
)


def _phrase(word: str) -> str:
    """A search word (``core.lexical.query_terms``) as an FTS5 string, so that no character
    of the user's text is ever read as FTS5 syntax."""
    # A word holds only letters, digits and "_", so it never contains a double quote; one
    # that the tokenizer reduces to nothing (like "_") is an empty phrase and matches nothing.
    return f'"{word}"'



_FTS5_K1 = 1.2
_FTS5_B = 0.75
"""The constants FTS5's ``bm25()`` fixes; term frequencies are read back through them."""


def _varint(blob: bytes, at: int = 0) -> tuple[int, int]:
    """The SQLite varint at ``at`` in ``blob`` (as FTS5 writes its records): (value, the
    offset after it)."""
    value = 0
    for i in range(8):
        byte = blob[at + i]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, at + i + 1
    return (value << 8) | blob[at + 8], at + 9


_CACHED_POSTINGS = 200_000
"""Most word matches the lexical search keeps between searches (tens of MB at most)."""

_Posting = tuple[int, str, float]
"""A memory holding a word: its row id, memory id and the word's BM25 weight in it."""


class _Postings:
    """What lexical search learnt about each word among one searched set of memories
    (its matches and their weights) and how many memories that set holds, kept while the
    counter that every change to the memories table moves (migration 0006) stays put.

    Agents ask about the same people and things again and again: 58 % of the words of
    the LoCoMo questions were asked before in the same conversation. A search reads the
    counter first and its results after, so an entry never holds an older state than the
    counter it is filed under; every use runs under the store's connection lock.
    """

    def __init__(self, budget: int = _CACHED_POSTINGS) -> None:
        self._budget = budget
        self._version: int | None = None
        self._sizes: dict[tuple[Any, ...], int] = {}
        self._words: OrderedDict[tuple[Any, ...], tuple[_Posting, ...]] = OrderedDict()
        self._held = 0

    def at(self, version: int) -> None:
        """Forget everything learnt before the memories changed."""
        if version != self._version:
            self._sizes.clear()
            self._words.clear()
            self._held = 0
            self._version = version

    def size(self, searched: tuple[Any, ...]) -> int | None:
        return self._sizes.get(searched)

    def set_size(self, searched: tuple[Any, ...], size: int) -> None:
        if len(self._sizes) >= 4096:
            self._sizes.clear()
        self._sizes[searched] = size

    def get(self, key: tuple[Any, ...]) -> tuple[_Posting, ...] | None:
        postings = self._words.get(key)
        if postings is not None:
            self._words.move_to_end(key)
        return postings

    def put(self, key: tuple[Any, ...], postings: tuple[_Posting, ...]) -> None:
        if len(postings) > self._budget // 4:
            return  # a word in most of a huge set: it would push out everything else
        self._words[key] = postings
        self._held += len(postings)
        while self._held > self._budget:
            _, evicted = self._words.popitem(last=False)
            self._held -= len(evicted)


def _scoped_bm25(
    conn: _Conn, words: Sequence[str], where: str, params: tuple[Any, ...],
    cache: _Postings,
) -> tuple[dict[int, float], dict[int, str]]:
    """BM25 (``core.lexical.bm25_weight``: no length normalisation) of every memory that
    ``where`` selects and that holds a word of ``words``, by row id, and its memory id;
    each word's idf taken from the memories ``where`` selects rather than from the whole
    index. What ``cache`` knows is not read again.

    FTS5's ``bm25()`` fixes k1 = 1.2 and b = 0.75 and weighs words index-wide, so here it
    only tells how often a word occurs in a memory: a one-word ``bm25()`` is
    ``-idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / average))``, with the
    index-wide idf, the memory's length in tokens (FTS5's ``_docsize`` table) and the
    average length (FTS5's averages record, row 1 of its ``_data`` table), which leaves
    tf. Per word: one count over the index, and one pass over its matches among the
    searched memories, which also counts them for the idf.
    """
    scores: dict[int, float] = {}
    ids: dict[int, str] = {}
    searched = cache.size(params)
    if searched is None:
        searched = conn.execute(
            f"SELECT count(*) FROM memories AS m WHERE {where}", params  # noqa: S608
        ).fetchone()[0]
        cache.set_size(params, searched)
    stats: tuple[int, float, float] | None = None
    for word in dict.fromkeys(words):
        postings = cache.get((params, word))
        if postings is None:
            if stats is None:
                stats = _index_stats(conn)
            postings = _postings(conn, word, where, params, searched, stats)
            cache.put((params, word), postings)
        for rowid, memory_id, weight in postings:
            scores[rowid] = scores.get(rowid, 0.0) + weight
            ids[rowid] = memory_id
    return scores, ids


def _index_stats(conn: _Conn) -> tuple[int, float, float]:
    """How many memories FTS5 indexes, and its length normalisation of a memory of n
    tokens as fixed + per_token * n (from its averages record)."""
    averages = conn.execute("SELECT block FROM memories_fts_data WHERE id = 1").fetchone()
    indexed, at = _varint(averages[0]) if averages is not None else (0, 0)
    if not indexed:
        return 0, 0.0, 0.0
    per_token = _FTS5_K1 * _FTS5_B * indexed / _varint(averages[0], at)[0]
    return indexed, _FTS5_K1 * (1 - _FTS5_B), per_token


def _postings(
    conn: _Conn, word: str, where: str, params: tuple[Any, ...], searched: int,
    stats: tuple[int, float, float],
) -> tuple[_Posting, ...]:
    """The memories ``where`` selects that hold ``word``, with its weight in each."""
    indexed, fixed, per_token = stats
    phrase = _phrase(word)
    overall = conn.execute(
        "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH ?", (phrase,)
    ).fetchone()[0]
    if not overall or not indexed:
        return ()
    rows = conn.execute(
        # CROSS JOIN keeps the FTS5 match outermost: the planner would otherwise walk the
        # searched memories and run the match again for each of them.
        "SELECT m.id, m.memory_id, bm25(memories_fts), d.sz FROM memories_fts "  # noqa: S608
        "CROSS JOIN memories AS m ON m.id = memories_fts.rowid "
        "CROSS JOIN memories_fts_docsize AS d ON d.id = m.id "
        f"WHERE memories_fts MATCH ? AND {where}",
        (phrase, *params),
    ).fetchall()
    index_idf = bm25_idf(indexed, overall)
    idf = bm25_idf(searched, len(rows))
    weights: dict[int, float] = {}  # by tf: most memories hold a word once
    postings: list[_Posting] = []
    for rowid, memory_id, rank, size in rows:
        length = size[0] if size[0] < 0x80 else _varint(size)[0]
        norm = fixed + per_token * length
        part = -rank / index_idf  # tf * (k1 + 1) / (tf + norm)
        room = _FTS5_K1 + 1 - part
        tf = max(1, round(part * norm / room)) if room > 0 else 1 << 16
        weight = weights.get(tf)
        if weight is None:
            weight = weights[tf] = bm25_weight(idf, tf)
        postings.append((rowid, memory_id, weight))
    return tuple(postings)


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", -1) & 0xFF
    return isinstance(exc, sqlite3.OperationalError) and (
        code in (_SQLITE_BUSY, _SQLITE_LOCKED) or "locked" in str(exc)
    )


def _translate(exc: sqlite3.Error) -> CheckpointError:
    """A driver error as the caller may see it: no path, no SQL."""
    if _is_busy(exc):
        return BackendError("the SQLite store is busy; try again")
    if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc):
        return ConflictError("a record with that id already exists")
    name = getattr(exc, "sqlite_errorname", type(exc).__name__)
    return BackendError(f"the SQLite store failed ({name})")


def _caught(exc: sqlite3.Error) -> CheckpointError:
    """``_translate(exc)``, chained to ``exc`` as ``raise ... from exc`` would."""
    error = _translate(exc)
    error.__cause__ = exc
    return error


def _answer(group: Sequence[_Grouped], outcomes: Sequence[Any]) -> None:
    """Give each grouped write's caller its outcome (a result, an error, or ``_ALONE``)."""
    for (_, future), outcome in zip(group, outcomes, strict=True):
        if future.done():  # its caller was cancelled while the group ran on a thread
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


# -- the store --------------------------------------------------------------------------


class SqliteStore:
    """A :class:`~mcp_checkpoint.core.ports.Store` in one SQLite file.

    Connection model: one connection per store, used by one thread at a time under a lock
    (``check_same_thread=False``); see ``_run`` for when a call runs inline. SQLite admits
    one writer per file anyway, reads are short indexed lookups, and a connection's
    explicit transaction cannot be shared between threads; one guarded connection keeps
    every transaction on a single connection, needs no thread-local bookkeeping, and lets
    ``close()`` release it deterministically. Concurrency *between processes* comes from
    WAL (readers never wait for the writer) and ``busy_timeout`` (writers queue for the
    lock).
    """

    def __init__(self, path: Path, settings: SqliteSettings) -> None:
        """Remember where the file lives; nothing is touched until :meth:`open`."""
        self._path = path
        self._settings = settings
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._postings = _Postings()  # lexical search's memory; used under self._lock
        self._group: list[_Grouped] = []  # writes waiting for the group commit
        self._group_loop: asyncio.AbstractEventLoop | None = None
        self._group_tasks: set[asyncio.Task[None]] = set()  # groups waiting on a thread

    # -- plumbing -----------------------------------------------------------------------

    async def _read(self, fn: Callable[[_Conn], _T]) -> _T:
        return await self._run(fn, write=False)

    async def _write(self, fn: Callable[[_Conn], _T]) -> _T:
        return await self._run(fn, write=True)

    async def _run(self, fn: Callable[[_Conn], _T], *, write: bool) -> _T:
        """Run ``fn`` in its transaction: inline when nothing waits, else on a worker thread.

        A thread hop costs more than a typical statement here (about 0.25 ms against
        0.1 ms for an append), so an uncontended call runs on the caller's thread with
        ``busy_timeout`` 0 (the connection's resting value): it never waits there. If the
        connection is in use by a worker thread, or another process holds the write lock,
        the call goes to a worker thread and waits there as configured (``_waiting``). The
        one bounded block left on the caller's thread is the commit's fsync.
        """
        if self._lock.acquire(blocking=False):
            try:
                conn = self._require_open()
                try:
                    return self._transaction(conn, fn, write=write)
                except sqlite3.Error as exc:
                    if not _is_busy(exc):
                        raise _translate(exc) from exc
            finally:
                self._lock.release()
        return await anyio.to_thread.run_sync(functools.partial(self._execute, fn, write=write))

    def _require_open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise BackendError("the SQLite store is not open")
        return self._conn

    @staticmethod
    def _transaction(conn: _Conn, fn: Callable[[_Conn], _T], *, write: bool) -> _T:
        if not write:
            return fn(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        return result

    def _execute(self, fn: Callable[[_Conn], _T], *, write: bool) -> _T:
        with self._lock:
            conn = self._require_open()
            try:
                with self._waiting(conn):
                    return self._transaction(conn, fn, write=write)
            except sqlite3.Error as exc:
                raise _translate(exc) from exc

    @contextlib.contextmanager
    def _waiting(self, conn: sqlite3.Connection) -> Iterator[None]:
        """On a worker thread: wait for other processes' locks up to ``busy_timeout_ms``
        (the connection rests at 0, for the calls that run on the event loop)."""
        conn.execute(f"PRAGMA busy_timeout = {int(self._settings.busy_timeout_ms)}")
        try:
            yield
        finally:
            conn.execute("PRAGMA busy_timeout = 0")

    async def _write_grouped(self, fn: Callable[[_Conn], _T]) -> _T:
        """Run ``fn`` like :meth:`_write`, in a transaction shared with the other grouped
        writes that arrive in the same pass of the event loop (group commit).

        Under load most of a write's cost on this thread is the commit's fsync; one commit
        for the writes that arrived together pays it once. Each write runs in its own
        savepoint, so an error rolls back that write alone and reaches only its caller;
        every caller is answered only after the shared COMMIT. A write whose caller was
        cancelled before its group ran is not made. The group runs inline like any
        uncontended call; when a worker thread holds the connection or another process
        holds the write lock, the whole group waits on a worker thread instead.
        """
        loop = asyncio.get_running_loop()
        if not self._settings.group_commit or (self._group and self._group_loop is not loop):
            return await self._write(fn)
        future: asyncio.Future[Any] = loop.create_future()
        if not self._group:
            self._group_loop = loop
            loop.call_soon(self._commit_group)
        self._group.append((fn, future))
        outcome = await future
        if outcome is _ALONE:
            return await self._write(fn)
        return outcome  # type: ignore[no-any-return]

    def _commit_group(self) -> None:
        """The event-loop callback that runs the grouped writes (see ``_write_grouped``)."""
        group, self._group, self._group_loop = self._group, [], None
        group = [(fn, future) for fn, future in group if not future.done()]
        if not group:
            return
        fns = [fn for fn, _ in group]
        try:
            outcomes = self._group_inline(fns)
        except BaseException:
            _answer(group, [BackendError("the SQLite store was interrupted")] * len(group))
            raise
        if outcomes is not None:
            _answer(group, outcomes)
            return
        task = asyncio.get_running_loop().create_task(self._group_on_thread(group))
        self._group_tasks.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._group_tasks.discard)

    def _group_inline(self, fns: list[Callable[[_Conn], Any]]) -> list[Any] | None:
        """The group's outcomes, or None when it must wait (the connection is in use by a
        worker thread, or another process holds the write lock)."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return self._run_group(self._require_open(), fns)
        except BackendError as exc:  # not open
            return [exc] * len(fns)
        except sqlite3.Error as exc:  # BEGIN IMMEDIATE failed
            return None if _is_busy(exc) else [_caught(exc)] * len(fns)
        finally:
            self._lock.release()

    async def _group_on_thread(self, group: list[_Grouped]) -> None:
        fns = [fn for fn, _ in group]
        try:
            outcomes = await anyio.to_thread.run_sync(self._group_waiting, fns)
        except BaseException:
            _answer(group, [BackendError("the SQLite store was interrupted")] * len(group))
            raise
        _answer(group, outcomes)

    def _group_waiting(self, fns: list[Callable[[_Conn], Any]]) -> list[Any]:
        """On a worker thread: the group's outcomes, waiting for the connection and for other
        processes' write locks up to ``busy_timeout_ms``."""
        with self._lock:
            try:
                conn = self._require_open()
                with self._waiting(conn):
                    return self._run_group(conn, fns)
            except BackendError as exc:  # not open
                return [exc] * len(fns)
            except sqlite3.Error as exc:  # BEGIN IMMEDIATE failed, even after waiting
                return [_caught(exc)] * len(fns)

    @staticmethod
    def _run_group(conn: _Conn, fns: Sequence[Callable[[_Conn], Any]]) -> list[Any]:
        """Run ``fns`` in one ``BEGIN IMMEDIATE`` transaction, a savepoint each; the outcome
        of each: its result, its (translated) error, or ``_ALONE`` to run it on its own.
        Raises the driver's error if the transaction cannot begin."""
        conn.execute("BEGIN IMMEDIATE")
        outcomes: list[Any] = []
        done: list[int] = []  # the writes that wait for the COMMIT
        try:
            for fn in fns:
                if not conn.in_transaction:
                    outcomes.append(_ALONE)  # an error ended the transaction (see below)
                    continue
                conn.execute("SAVEPOINT grouped_write")
                try:
                    result = fn(conn)
                except Exception as exc:
                    outcomes.append(_caught(exc) if isinstance(exc, sqlite3.Error) else exc)
                    if conn.in_transaction:
                        conn.execute("ROLLBACK TO grouped_write")
                        conn.execute("RELEASE grouped_write")
                    else:
                        # Some errors (a full disk, I/O) make SQLite roll the whole
                        # transaction back: nothing is written, so the earlier writes
                        # run again on their own.
                        for i in done:
                            outcomes[i] = _ALONE
                        done.clear()
                    continue
                conn.execute("RELEASE grouped_write")
                done.append(len(outcomes))
                outcomes.append(result)
            if conn.in_transaction:
                conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if not isinstance(exc, Exception):
                raise
            # Whether a failed COMMIT left anything on disk is not knowable here: answer
            # every write that waited for it with the error, never with a success.
            failure = _caught(exc) if isinstance(exc, sqlite3.Error) else exc
            for i in done:
                outcomes[i] = failure
            outcomes.extend([failure] * (len(fns) - len(outcomes)))
        return outcomes

    def _connect(self) -> sqlite3.Connection:
        self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Create the file private to its owner; SQLite gives -wal and -shm the same mode.
        os.close(os.open(self._path, os.O_CREAT | os.O_RDWR, 0o600))
        settings = self._settings
        conn = sqlite3.connect(
            self._path,
            timeout=settings.busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(settings.busy_timeout_ms)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise BackendError("the SQLite store cannot use WAL mode on this filesystem")
            # synchronous is a Literal of the settings model; never free text.
            conn.execute(f"PRAGMA synchronous = {settings.synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            apply_migrations(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _open(self) -> None:
        with self._lock:
            if self._conn is not None:
                return
            # Switching a new file to WAL can answer "locked" at once, without the busy
            # handler, when several processes open it together: retry until busy_timeout.
            deadline = time.monotonic() + self._settings.busy_timeout_ms / 1000
            pause = 0.01
            while True:
                try:
                    conn = self._connect()
                    conn.execute("PRAGMA busy_timeout = 0")  # the resting value: see _run
                    self._conn = conn
                    return
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc) or time.monotonic() + pause > deadline:
                        raise _translate(exc) from exc
                    time.sleep(pause)
                    pause = min(pause * 2, 0.2)
                except sqlite3.Error as exc:
                    raise _translate(exc) from exc
                except OSError as exc:
                    raise BackendError(
                        f"cannot create the SQLite store ({exc.strerror or 'OS error'})"
                    ) from exc

    def _close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            self._postings = _Postings()  # a file opened later may count from 0 again
            if conn is not None:
                conn.close()

    async def open(self) -> None:
        """Create the file (and its directory, mode 0o700) if needed, enable WAL and
        migrate; idempotent."""
        await anyio.to_thread.run_sync(self._open)

    async def close(self) -> None:
        """Close the connection; idempotent."""
        await anyio.to_thread.run_sync(self._close)

    async def transact(self, fn: Callable[[_Conn], _T], *, write: bool) -> _T:
        """Run ``fn`` on this store's connection, in one ``BEGIN IMMEDIATE`` transaction when
        ``write`` (rolled back if it raises); driver errors come out translated.

        For the components that keep their data in the same file (the vector index), so
        that the file keeps one connection, one lock and one transaction discipline. ``fn``
        may run more than once (a busy inline attempt is retried on a worker thread), so it
        must not change anything outside the database.
        """
        return await self._run(fn, write=write)

    async def schema_version(self) -> int:
        """The newest migration applied to the file."""
        return await self._read(current_version)

    async def integrity_check(self) -> str:
        """The result of ``PRAGMA integrity_check``: ``"ok"`` when the file is sound."""

        def check(conn: _Conn) -> str:
            return "\n".join(str(row[0]) for row in conn.execute("PRAGMA integrity_check"))

        return await self._read(check)

    # -- runs ---------------------------------------------------------------------------

    @staticmethod
    def _load_run(conn: _Conn, tenant: Tenant, run_id: RunId) -> Run:
        row = conn.execute(
            "SELECT * FROM runs WHERE tenant = ? AND run_id = ?", (tenant, run_id)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"run {run_id}")
        return to_run(row)

    @staticmethod
    def _require_run(conn: _Conn, tenant: Tenant, run_id: RunId) -> None:
        row = conn.execute(
            "SELECT 1 FROM runs WHERE tenant = ? AND run_id = ?", (tenant, run_id)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"run {run_id}")

    async def create_run(self, tenant: Tenant, run: Run) -> Run:
        """Insert ``run`` as given. ConflictError if the tenant already has that run_id."""

        def insert(conn: _Conn) -> Run:
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
        self, tenant: Tenant, *, status: RunStatus | None, limit: int, offset: int
    ) -> list[Run]:
        """The tenant's runs, newest ``updated_at`` first (ties by run_id), paginated."""
        if limit <= 0:
            return []
        where = "tenant = ?" if status is None else "tenant = ? AND status = ?"
        params: tuple[Any, ...] = (tenant,) if status is None else (tenant, status)
        sql = (
            f"SELECT * FROM runs WHERE {where} "  # noqa: S608 - a choice of two constants
            "ORDER BY updated_us DESC, run_id DESC LIMIT ? OFFSET ?"
        )

        def select(conn: _Conn) -> list[Run]:
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

        def update(conn: _Conn) -> Run:
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

        def append(conn: _Conn) -> StepAck:
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

        def select(conn: _Conn) -> list[Step]:
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

        def add(conn: _Conn) -> Checkpoint:
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

        def select(conn: _Conn) -> Checkpoint:
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

        def select(conn: _Conn) -> Checkpoint | None:
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

        def select(conn: _Conn) -> list[Checkpoint]:
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

        def select(conn: _Conn) -> list[tuple[Tenant, Run]]:
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

        def prune(conn: _Conn) -> PruneResult:
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

        def select(conn: _Conn) -> CheckpointRef | None:
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

    async def vacuum(self) -> tuple[int, int]:
        """Give free pages back to the filesystem (``VACUUM``, after a WAL checkpoint);
        (bytes before, bytes after). Needs the write lock for as long as it copies the
        file, and temporary space about the size of the file."""

        def size() -> int:
            return sum(
                p.stat().st_size for p in (self._path, Path(f"{self._path}-wal")) if p.exists()
            )

        def run() -> tuple[int, int]:
            with self._lock:
                conn = self._require_open()
                before = size()
                try:
                    with self._waiting(conn):
                        conn.execute("VACUUM")
                        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error as exc:
                    raise _translate(exc) from exc
                return before, size()

        return await anyio.to_thread.run_sync(run)

    # -- proposals ----------------------------------------------------------------------

    @staticmethod
    def _load_proposal(conn: _Conn, tenant: Tenant, batch_id: BatchId) -> Proposal:
        row = conn.execute(
            "SELECT * FROM proposals WHERE tenant = ? AND batch_id = ?", (tenant, batch_id)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"batch {batch_id}")
        return to_proposal(row)

    async def add_proposal(self, tenant: Tenant, proposal: Proposal) -> Proposal:
        """Insert a pending batch durably. ConflictError if its batch_id exists."""

        def insert(conn: _Conn) -> Proposal:
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

        def expire(conn: _Conn) -> None:
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

        def commit(conn: _Conn) -> Proposal:
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
        conn: _Conn,
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

        def select(conn: _Conn) -> Memory:
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

        def select(conn: _Conn) -> list[Memory]:
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

        def select(conn: _Conn) -> list[tuple[Tenant, Memory]]:
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

        def select(conn: _Conn) -> list[tuple[Memory, float]]:
            version = conn.execute(
                "SELECT version FROM memories_version WHERE id = 1"
            ).fetchone()[0]
            self._postings.at(version)  # before any result is read: see _Postings
            scores, ids = _scoped_bm25(conn, words, where, params, self._postings)
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

        def insert(conn: _Conn) -> None:
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
