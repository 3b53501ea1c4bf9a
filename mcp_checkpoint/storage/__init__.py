"""Storage backends. ``open_store`` picks one from the settings (drivers import lazily)."""

from __future__ import annotations

from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.ports import Store

__all__ = ["make_store"]


def make_store(settings: Settings) -> Store:
    """The configured store, not yet opened (call ``await store.open()``)."""
    if settings.store_url is not None and settings.store_url.startswith("memory://"):
        from mcp_checkpoint.storage.memory import MemoryStore

        return MemoryStore()
    from mcp_checkpoint.storage.sqlite import SqliteStore

    return SqliteStore(settings.sqlite_path, settings.sqlite)
