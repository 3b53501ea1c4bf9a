"""The PostgreSQL connection pool: timeouts, transactions, and driver errors as the caller
may see them.

Outages: every call runs under ``postgres.operation_timeout_s`` (pool wait, queries and
commit together) and the server enforces ``statement_timeout_ms``; a lost server, a full
pool or a timeout is ``BackendError`` (``backend_unavailable``), and a transaction that did
not commit leaves nothing behind. The pool checks a connection before lending it (without a
round trip, see ``_check_idle``) and replaces broken ones, so the same store recovers once
PostgreSQL is back (within about ``reconnect_timeout_s`` at worst).
"""

from __future__ import annotations

import math
import select
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import psycopg
from psycopg import AsyncConnection, errors
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from mcp_checkpoint.config import PostgresSettings
from mcp_checkpoint.errors import BackendError, CheckpointError, ConflictError
from mcp_checkpoint.storage._urls import mask_url
from mcp_checkpoint.storage.postgres._migrations import apply_migrations, current_version

__all__ = ["Conn", "PostgresDatabase", "translate"]

_T = TypeVar("_T")
Conn = AsyncConnection[DictRow]


def _is_unavailable(exc: psycopg.Error) -> bool:
    return isinstance(
        exc, (psycopg.OperationalError, psycopg.InterfaceError, errors.QueryCanceled)
    ) or (exc.sqlstate or "").startswith(("08", "57P"))


def translate(exc: psycopg.Error) -> CheckpointError:
    """A driver error as the caller may see it: no DSN, no SQL."""
    if isinstance(exc, PoolTimeout):
        return BackendError("the PostgreSQL store is unavailable (no connection); try again")
    if isinstance(exc, errors.UniqueViolation):
        return ConflictError("a record with that id already exists")
    if isinstance(exc, (errors.SerializationFailure, errors.DeadlockDetected,
                        errors.LockNotAvailable)):
        return BackendError("the PostgreSQL store is busy; try again")
    if _is_unavailable(exc):
        return BackendError("the PostgreSQL store is unavailable; try again")
    return BackendError(f"the PostgreSQL store failed ({type(exc).__name__})")


async def _check_idle(conn: Conn) -> None:
    """Refuse to lend a pooled connection that the server (or the network) closed while it
    sat idle, without a round trip: an idle connection has nothing to read, so a readable
    socket means an EOF, a reset or an unsolicited message (such as the server's shutdown
    notice). The pool then discards it and lends or opens another. Lending a connection
    that died during an outage would otherwise fail the first calls after recovery."""
    if not conn.closed and not conn.broken:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
        if not readable:
            return
        # Closed here, the pool discards it (a connection merely refused would go back).
        await conn.close()
    raise psycopg.OperationalError("the connection was lost while idle")



class PostgresDatabase:
    """A PostgreSQL database behind a ``psycopg_pool.AsyncConnectionPool`` sized by the
    settings; connections run in autocommit mode, and each write opens one explicit
    transaction."""

    def __init__(self, url: str, settings: PostgresSettings) -> None:
        """Remember where the database is; nothing connects until :meth:`open`."""
        self._url = url.replace("postgres://", "postgresql://", 1)
        self._settings = settings
        self._pool: AsyncConnectionPool[Conn] | None = None


    @property
    def settings(self) -> PostgresSettings:
        """The pool and timeout settings."""
        return self._settings

    @property
    def display_url(self) -> str:
        """The database URL without its password."""
        return mask_url(self._url)

    # -- plumbing -----------------------------------------------------------------------

    def _make_pool(self) -> AsyncConnectionPool[Conn]:
        settings = self._settings
        options = f"-c statement_timeout={int(settings.statement_timeout_ms)}"
        return AsyncConnectionPool(
            self._url,
            connection_class=AsyncConnection[DictRow],
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "connect_timeout": max(1, math.ceil(settings.connect_timeout_s)),
                "options": options,
                "application_name": "mcp-checkpoint",
                # A silently lost peer is noticed by the kernel, not only by our timeout.
                "keepalives": 1,
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
            },
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            max_idle=settings.pool_max_idle_s,
            max_lifetime=settings.pool_max_lifetime_s,
            timeout=settings.pool_timeout_s,
            reconnect_timeout=settings.reconnect_timeout_s,
            check=_check_idle,
            open=False,
            name="mcp-checkpoint",
        )

    def _require_open(self) -> AsyncConnectionPool[Conn]:
        if self._pool is None:
            raise BackendError("the PostgreSQL store is not open")
        return self._pool

    async def _run(self, fn: Callable[[Conn], Awaitable[_T]], *, write: bool) -> _T:
        """Run ``fn`` on a pooled connection, in one transaction when ``write`` (rolled back
        if it raises), within ``operation_timeout_s``; driver errors come out translated."""
        pool = self._require_open()
        try:
            with anyio.fail_after(self._settings.operation_timeout_s):
                async with pool.connection() as conn:
                    if not write:
                        return await fn(conn)
                    async with conn.transaction():
                        return await fn(conn)
        except TimeoutError as exc:
            raise BackendError(
                "the PostgreSQL store did not answer in time "
                f"({self._settings.operation_timeout_s:g} s); try again"
            ) from exc
        except psycopg.Error as exc:
            raise translate(exc) from exc

    async def transact(self, fn: Callable[[Conn], Awaitable[_T]], *, write: bool) -> _T:
        """Run ``fn`` on a pooled connection, in one transaction when ``write``; driver
        errors come out translated. For components that keep their data in the same
        database (the vector index)."""
        return await self._run(fn, write=write)

    async def open(self) -> None:
        """Open the pool and migrate (under an advisory lock); idempotent. BackendError if
        the server cannot be reached within ``connect_timeout_s``."""
        if self._pool is not None:
            return
        pool = self._make_pool()
        try:
            with anyio.fail_after(
                self._settings.connect_timeout_s + self._settings.migration_lock_timeout_s
            ):
                await pool.open(wait=False)
                async with pool.connection(timeout=self._settings.connect_timeout_s) as conn:
                    await apply_migrations(
                        conn, lock_timeout_s=self._settings.migration_lock_timeout_s
                    )
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, TimeoutError):
                raise BackendError("the PostgreSQL store did not answer in time") from exc
            if isinstance(exc, psycopg.Error):
                raise BackendError(
                    f"cannot open the PostgreSQL store at {self.display_url} "
                    f"({type(exc).__name__})"
                ) from exc
            raise
        self._pool = pool

    async def close(self) -> None:
        """Close the pool; idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def schema_version(self) -> int:
        """The newest migration applied to the database."""
        return await self._run(current_version, write=False)

    async def describe(self) -> dict[str, Any]:
        """What ``mcp-checkpoint doctor`` shows: the server, the database (URL without its
        password) and the pool."""

        async def read(conn: Conn) -> dict[str, Any]:
            cursor = await conn.execute(
                "SELECT current_setting('server_version') AS server_version, "
                "current_database() AS database"
            )
            row = await cursor.fetchone()
            return {
                "backend": "postgresql",
                "url": self.display_url,
                "server_version": None if row is None else row["server_version"],
                "database": None if row is None else row["database"],
            }

        info = await self._run(read, write=False)
        settings = self._settings
        pool = self._require_open()
        info["pool"] = {
            "min_size": settings.pool_min_size,
            "max_size": settings.pool_max_size,
            "open_connections": pool.get_stats().get("pool_size", 0),
            "max_idle_s": settings.pool_max_idle_s,
            "max_lifetime_s": settings.pool_max_lifetime_s,
            "connect_timeout_s": settings.connect_timeout_s,
            "pool_timeout_s": settings.pool_timeout_s,
            "reconnect_timeout_s": settings.reconnect_timeout_s,
            "statement_timeout_ms": settings.statement_timeout_ms,
            "operation_timeout_s": settings.operation_timeout_s,
        }
        return info

