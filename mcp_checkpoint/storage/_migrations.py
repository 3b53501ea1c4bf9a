"""What the SQL stores' migration runners share: the numbered, append-only
``migrations/NNNN_name.sql`` files a backend ships, read in order, and the rule that they
are numbered 1, 2, 3... with no gap and no number twice (a repeated number refuses to
start, so two changes that took the same number cannot both ship)."""

from __future__ import annotations

import re
from importlib import resources

from mcp_checkpoint.errors import BackendError

__all__ = ["CREATE_BOOKKEEPING", "packaged_scripts"]

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

CREATE_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""
"""The table where each applied migration leaves its row (the same on every backend)."""


def packaged_scripts(package: str, engine: str) -> list[tuple[int, str, str]]:
    """``(version, name, script)`` of each ``package/migrations/NNNN_name.sql``, in order.
    BackendError, naming ``engine``, unless they are numbered 1, 2, 3... without gaps."""
    folder = resources.files(package).joinpath("migrations")
    found: list[tuple[int, str, str]] = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match is None:
            continue
        found.append((int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda migration: migration[0])
    if [version for version, _, _ in found] != list(range(1, len(found) + 1)):
        raise BackendError(f"the packaged {engine} migrations are not numbered 1, 2, 3...")
    return found
