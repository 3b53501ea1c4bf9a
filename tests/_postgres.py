"""PostgreSQL for the tests: one fresh database per test session, emptied per test.

``MCP_CHECKPOINT_TEST_POSTGRES_URL`` points at a server where the tests may create and drop
databases (default: the local server, user postgres). In CI (``CI=true``) an unreachable
server fails the tests that need it; elsewhere they skip and say why.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

__all__ = [
    "admin_url",
    "create_database",
    "database_url",
    "drop_database",
    "require_postgres",
    "truncate_all",
]

_TABLES = (
    "steps", "checkpoints", "pruned_checkpoints", "runs", "proposals", "memories", "vectors",
    "blobs",
)


def admin_url() -> str:
    """A URL of the test server's maintenance database."""
    return os.environ.get(
        "MCP_CHECKPOINT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )


def database_url(name: str) -> str:
    """The URL of database ``name`` on the test server."""
    return urlunsplit(urlsplit(admin_url())._replace(path=f"/{name}"))


def require_postgres() -> None:
    """Fail (in CI) or skip (elsewhere) unless the test server answers."""
    try:
        with psycopg.connect(admin_url(), connect_timeout=5):
            return
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL at {urlsplit(admin_url()).hostname} is unreachable ({exc})"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}; in CI the PostgreSQL tests must run")
    pytest.skip(f"{reason}; start PostgreSQL or set MCP_CHECKPOINT_TEST_POSTGRES_URL")


def create_database(prefix: str = "mcpck_test") -> str:
    """Create a new, uniquely named empty database; return its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url(), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(name: str) -> None:
    """Drop database ``name``, disconnecting whoever is still connected to it."""
    with psycopg.connect(admin_url(), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)
        ))


def truncate_all(url: str) -> None:
    """Empty every table of the store's schema (the schema itself stays)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT to_regclass('runs') IS NOT NULL").fetchone()
        if exists is not None and exists[0]:
            conn.execute(sql.SQL("TRUNCATE {}").format(
                sql.SQL(", ").join(sql.Identifier(table) for table in _TABLES)
            ))


@pytest.fixture(scope="session")
def postgres_session_url() -> Iterator[str]:
    """The URL of a database created for this test session (dropped at its end)."""
    require_postgres()
    name = create_database()
    try:
        yield database_url(name)
    finally:
        drop_database(name)


@pytest.fixture
def postgres_url(postgres_session_url: str) -> str:
    """The session database, emptied for this test (tables and schema version kept)."""
    truncate_all(postgres_session_url)
    return postgres_session_url
