"""The SQLite file's connection: one guarded connection per store, transactions (inline
or on a worker thread), group commit, and driver errors as the caller may see them.

Every write is one ``BEGIN IMMEDIATE`` transaction (steps recorded together share one, a
savepoint each: group commit), so whatever a store reads and writes inside it is atomic
across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from mcp_checkpoint.config import SqliteSettings
from mcp_checkpoint.errors import BackendError, CheckpointError, ConflictError
from mcp_checkpoint.storage.sqlite._migrations import apply_migrations, current_version

__all__ = ["ALONE", "Conn", "SqliteDatabase", "is_busy", "translate"]

_T = TypeVar("_T")
Conn = sqlite3.Connection

_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6

ALONE = object()
"""A grouped write's outcome when the group could not take it: run it on its own."""

_Grouped = tuple[Callable[[Conn], Any], "asyncio.Future[Any]"]


def is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", -1) & 0xFF
    return isinstance(exc, sqlite3.OperationalError) and (
        code in (_SQLITE_BUSY, _SQLITE_LOCKED) or "locked" in str(exc)
    )


def translate(exc: sqlite3.Error) -> CheckpointError:
    """A driver error as the caller may see it: no path, no SQL."""
    if is_busy(exc):
        return BackendError("the SQLite store is busy; try again")
    if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc):
        return ConflictError("a record with that id already exists")
    name = getattr(exc, "sqlite_errorname", type(exc).__name__)
    return BackendError(f"the SQLite store failed ({name})")


def _caught(exc: sqlite3.Error) -> CheckpointError:
    """``translate(exc)``, chained to ``exc`` as ``raise ... from exc`` would."""
    error = translate(exc)
    error.__cause__ = exc
    return error


def _answer(group: Sequence[_Grouped], outcomes: Sequence[Any]) -> None:
    """Give each grouped write's caller its outcome (a result, an error, or ``ALONE``)."""
    for (_, future), outcome in zip(group, outcomes, strict=True):
        if future.done():  # its caller was cancelled while the group ran on a thread
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)




class SqliteDatabase:
    """One SQLite file in WAL mode, shared safely by several processes.

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
        self._group: list[_Grouped] = []  # writes waiting for the group commit
        self._group_loop: asyncio.AbstractEventLoop | None = None
        self._group_tasks: set[asyncio.Task[None]] = set()  # groups waiting on a thread

    def _closed(self) -> None:
        """Called under the lock when the connection closes: forget what was learnt of
        the file (a file opened later may count from 0 again)."""

    # -- plumbing -----------------------------------------------------------------------

    async def _read(self, fn: Callable[[Conn], _T]) -> _T:
        return await self._run(fn, write=False)

    async def _write(self, fn: Callable[[Conn], _T]) -> _T:
        return await self._run(fn, write=True)

    async def _run(self, fn: Callable[[Conn], _T], *, write: bool) -> _T:
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
                    if not is_busy(exc):
                        raise translate(exc) from exc
            finally:
                self._lock.release()
        return await anyio.to_thread.run_sync(functools.partial(self._execute, fn, write=write))

    def _require_open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise BackendError("the SQLite store is not open")
        return self._conn

    @staticmethod
    def _transaction(conn: Conn, fn: Callable[[Conn], _T], *, write: bool) -> _T:
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

    def _execute(self, fn: Callable[[Conn], _T], *, write: bool) -> _T:
        with self._lock:
            conn = self._require_open()
            try:
                with self._waiting(conn):
                    return self._transaction(conn, fn, write=write)
            except sqlite3.Error as exc:
                raise translate(exc) from exc

    @contextlib.contextmanager
    def _waiting(self, conn: sqlite3.Connection) -> Iterator[None]:
        """On a worker thread: wait for other processes' locks up to ``busy_timeout_ms``
        (the connection rests at 0, for the calls that run on the event loop)."""
        conn.execute(f"PRAGMA busy_timeout = {int(self._settings.busy_timeout_ms)}")
        try:
            yield
        finally:
            conn.execute("PRAGMA busy_timeout = 0")

    async def _write_grouped(self, fn: Callable[[Conn], _T]) -> _T:
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
        if outcome is ALONE:
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

    def _group_inline(self, fns: list[Callable[[Conn], Any]]) -> list[Any] | None:
        """The group's outcomes, or None when it must wait (the connection is in use by a
        worker thread, or another process holds the write lock)."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return self._run_group(self._require_open(), fns)
        except BackendError as exc:  # not open
            return [exc] * len(fns)
        except sqlite3.Error as exc:  # BEGIN IMMEDIATE failed
            return None if is_busy(exc) else [_caught(exc)] * len(fns)
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

    def _group_waiting(self, fns: list[Callable[[Conn], Any]]) -> list[Any]:
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
    def _run_group(conn: Conn, fns: Sequence[Callable[[Conn], Any]]) -> list[Any]:
        """Run ``fns`` in one ``BEGIN IMMEDIATE`` transaction, a savepoint each; the outcome
        of each: its result, its (translated) error, or ``ALONE`` to run it on its own.
        Raises the driver's error if the transaction cannot begin."""
        if len(fns) == 1:
            return [SqliteDatabase._run_alone(conn, fns[0])]
        conn.execute("BEGIN IMMEDIATE")
        outcomes: list[Any] = []
        done: list[int] = []  # the writes that wait for the COMMIT
        try:
            for fn in fns:
                if not conn.in_transaction:
                    outcomes.append(ALONE)  # an error ended the transaction (see below)
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
                            outcomes[i] = ALONE
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

    @staticmethod
    def _run_alone(conn: Conn, fn: Callable[[Conn], Any]) -> Any:
        """A group of one write (a lone writer's every step): the same outcome as in
        :meth:`_run_group`, in a transaction of its own without the savepoint (two
        statements fewer). Raises the driver's error if the transaction cannot begin."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if not isinstance(exc, Exception):
                raise
            # A failed COMMIT too: its caller is answered with the error, never a success.
            return _caught(exc) if isinstance(exc, sqlite3.Error) else exc
        return result

    def _connect(self) -> sqlite3.Connection:
        self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Create the file private to its owner; SQLite gives -wal and -shm the same mode.
        try:
            os.close(os.open(self._path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
        except FileExistsError:
            _refuse_an_emptied_file(self._path)
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
            # Unicode lower-casing for SQL (run filters compare lower-cased text).
            conn.create_function("mcpck_lower", 1, _lower, deterministic=True)
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
                    if not is_busy(exc) or time.monotonic() + pause > deadline:
                        raise translate(exc) from exc
                    time.sleep(pause)
                    pause = min(pause * 2, 0.2)
                except sqlite3.Error as exc:
                    raise translate(exc) from exc
                except OSError as exc:
                    raise BackendError(
                        f"cannot create the SQLite store ({exc.strerror or 'OS error'})"
                    ) from exc

    def _close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            self._closed()
            if conn is not None:
                conn.close()

    async def open(self) -> None:
        """Create the file (and its directory, mode 0o700) if needed, enable WAL and
        migrate; idempotent."""
        await anyio.to_thread.run_sync(self._open)

    async def close(self) -> None:
        """Close the connection; idempotent."""
        await anyio.to_thread.run_sync(self._close)

    async def transact(self, fn: Callable[[Conn], _T], *, write: bool) -> _T:
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

        def check(conn: Conn) -> str:
            return "\n".join(str(row[0]) for row in conn.execute("PRAGMA integrity_check"))

        return await self._read(check)

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
                    raise translate(exc) from exc
                return before, size()

        return await anyio.to_thread.run_sync(run)



_NEW_FILE_SECONDS = 60.0


def _lower(text: str | None) -> str | None:
    """``mcpck_lower(x)``: ``str.lower`` of a text (NULL stays NULL)."""
    return text.lower() if isinstance(text, str) else None


def _refuse_an_emptied_file(path: Path) -> None:
    """Refuse an existing store file of zero bytes, unless it is under a minute old.

    SQLite would take an empty file for a new, empty database and this store would write a
    fresh schema into it: a store file truncated by a failed copy, a full disk or a bad
    restore would silently become an empty store, and the user would find their runs gone
    with no error. What a user expects is to be told. A store this module creates is a
    zero-byte file only between its creation and the schema's first commit (moments), when
    another process that opens it at the same time must wait, not refuse: hence the age.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    if st.st_size == 0 and time.time() - st.st_mtime > _NEW_FILE_SECONDS:
        raise BackendError(
            f"the SQLite store {path} is an empty file (0 bytes), not a store; if it held "
            "your data, restore it from a backup; to start a new store, delete the file"
        )
