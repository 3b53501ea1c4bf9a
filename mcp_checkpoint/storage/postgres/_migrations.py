"""Numbered, append-only schema migrations shipped as ``migrations/NNNN_name.sql``.

Every pending migration runs, with its ``schema_migrations`` row, in one transaction that
first takes a transaction-level advisory lock: when several processes start at once on a
new database, one migrates and the others wait for it, then find nothing left to do.
PostgreSQL's DDL is transactional, so a failed migration leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import tuple_row

from mcp_checkpoint.errors import BackendError
from mcp_checkpoint.storage._migrations import CREATE_BOOKKEEPING, packaged_scripts

__all__ = ["MIGRATION_LOCK", "Migration", "apply_migrations", "current_version", "known_migrations"]


MIGRATION_LOCK = 0x6D63_706B_6D69_6772
"""The advisory lock key migrations hold ("mcpkmigr"), per database."""


@dataclass(frozen=True)
class Migration:
    """One migration file: its number, its name and its SQL script."""

    version: int
    name: str
    script: str


@cache
def known_migrations() -> tuple[Migration, ...]:
    """The migrations shipped in this package, in order (numbered 1, 2, 3... without gaps)."""
    return tuple(
        Migration(version, name, script)
        for version, name, script in packaged_scripts(__package__, "PostgreSQL")
    )


async def current_version(conn: AsyncConnection[Any]) -> int:
    """The newest migration applied to the database; 0 for a new one."""
    async with conn.cursor(row_factory=tuple_row) as cursor:
        await cursor.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        row = await cursor.fetchone()
        if row is None or not row[0]:
            return 0
        await cursor.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        row = await cursor.fetchone()
        return 0 if row is None else int(row[0])


def _refuse_newer(version: int, latest: int) -> None:
    if version > latest:
        raise BackendError(
            f"the PostgreSQL store has schema version {version}, but this mcp-checkpoint only "
            f"knows versions up to {latest}; upgrade mcp-checkpoint to open it"
        )


async def apply_migrations(conn: AsyncConnection[Any], *, lock_timeout_s: float) -> int:
    """Bring the database up to the newest known schema; return that version.

    ``conn`` must be in autocommit mode. Waits at most ``lock_timeout_s`` for another
    process that is migrating. BackendError if the database was written by a newer version
    of the code.
    """
    migrations = known_migrations()
    latest = migrations[-1].version if migrations else 0
    version = await current_version(conn)
    _refuse_newer(version, latest)
    if version == latest:
        return version
    async with conn.transaction():
        await conn.execute(
            sql.SQL("SET LOCAL lock_timeout = {}").format(
                sql.Literal(f"{max(int(lock_timeout_s * 1000), 1)}ms")
            )
        )
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute(CREATE_BOOKKEEPING)
        # Another process may have migrated while this one waited for the lock.
        version = await current_version(conn)
        _refuse_newer(version, latest)
        for migration in migrations:
            if migration.version <= version:
                continue
            await conn.execute(migration.script.encode("utf-8"))
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                (migration.version, migration.name, datetime.now(UTC).isoformat()),
            )
            version = migration.version
    return version
