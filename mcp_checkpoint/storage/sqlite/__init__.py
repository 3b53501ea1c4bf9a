"""The embedded SQLite store: one file, WAL, numbered migrations, FTS5 search."""

from mcp_checkpoint.storage.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
