"""Numbered, append-only schema migrations shipped as ``migrations/NNNN_name.sql``.

Each migration runs with its ``schema_migrations`` row in one ``BEGIN IMMEDIATE``
transaction, and the version is read again once the write lock is held, so several
processes opening the same new file apply every migration exactly once.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from mcp_checkpoint.errors import BackendError
from mcp_checkpoint.storage._migrations import CREATE_BOOKKEEPING, packaged_scripts

__all__ = ["Migration", "apply_migrations", "current_version", "known_migrations"]


@dataclass(frozen=True)
class Migration:
    """One migration file: its number, its name and its SQL statements."""

    version: int
    name: str
    statements: tuple[str, ...]


def _split(script: str) -> tuple[str, ...]:
    # executescript() would COMMIT the surrounding transaction first, so each statement
    # runs on its own; sqlite3.complete_statement knows where CREATE TRIGGER ... END ends.
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    return tuple(statements)


@cache
def known_migrations() -> tuple[Migration, ...]:
    """The migrations shipped in this package, in order (numbered 1, 2, 3... without gaps)."""
    return tuple(
        Migration(version, name, _split(script))
        for version, name, script in packaged_scripts(__package__, "SQLite")
    )


def current_version(conn: sqlite3.Connection) -> int:
    """The newest migration applied to the open database; 0 for a new file."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
    return int(row[0])


def _refuse_newer(version: int, latest: int) -> None:
    if version > latest:
        raise BackendError(
            f"the SQLite store has schema version {version}, but this mcp-checkpoint only "
            f"knows versions up to {latest}; upgrade mcp-checkpoint to open it"
        )


def apply_migrations(conn: sqlite3.Connection) -> int:
    """Bring the database up to the newest known schema; return that version.

    BackendError if the file was written by a newer version of the code.
    """
    migrations = known_migrations()
    latest = migrations[-1].version if migrations else 0
    version = current_version(conn)
    _refuse_newer(version, latest)
    for migration in migrations:
        if migration.version <= version:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(CREATE_BOOKKEEPING)
            # Another process may have migrated while this one waited for the lock.
            version = current_version(conn)
            _refuse_newer(version, latest)
            if version < migration.version:
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, datetime.now(UTC).isoformat()),
                )
                version = migration.version
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
    return version
