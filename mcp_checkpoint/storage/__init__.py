"""Storage backends. ``make_store`` and ``make_vector_index`` pick them from the settings
(drivers import lazily)."""

from __future__ import annotations

import sys

from mcp_checkpoint._dist import install_hint
from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.ports import Store, VectorIndex
from mcp_checkpoint.errors import ConfigError

__all__ = ["make_store", "make_vector_index"]


def make_store(settings: Settings) -> Store:
    """The configured store, not yet opened (call ``await store.open()``)."""
    if settings.store_url is not None and settings.store_url.startswith("memory://"):
        from mcp_checkpoint.storage.reference.store import ReferenceStore

        return ReferenceStore()
    if settings.store_url is not None and settings.store_url.startswith(
        ("postgresql://", "postgres://")
    ):
        try:
            from mcp_checkpoint.storage.postgres import PostgresStore
        except ImportError as exc:
            if not (exc.name or "").startswith("psycopg"):
                raise
            raise ConfigError(
                "a postgresql:// store_url needs psycopg: " + install_hint("postgres")
            ) from exc
        return PostgresStore(settings.store_url, settings.postgres)
    from mcp_checkpoint.storage.sqlite import SqliteStore

    return SqliteStore(settings.sqlite_path, settings.sqlite)


def make_vector_index(settings: Settings, store: Store) -> VectorIndex:
    """The configured vector index, not yet opened (call ``await index.open()`` after the
    store's ``open``).

    ``vectors.backend``: ``auto`` uses Qdrant when a Qdrant URL or path is configured,
    else keeps vectors in the store's own file or database when ``store`` is SQLite or
    PostgreSQL, and in process otherwise; ``sqlite`` requires the SQLite store (the vectors
    share its file and connection); ``qdrant`` needs the ``qdrant`` extra. ConfigError when
    the choice cannot work.
    """
    backend = settings.vectors.backend
    if backend == "auto" and (settings.vectors.qdrant_url or settings.vectors.qdrant_path):
        backend = "qdrant"  # a configured Qdrant is the user's choice
    if backend in ("auto", "sqlite"):
        from mcp_checkpoint.storage.sqlite import SqliteStore

        if isinstance(store, SqliteStore):
            from mcp_checkpoint.storage.sqlite.vectors import SqliteVectorIndex

            return SqliteVectorIndex(store)
        # A PostgresStore exists only once its module was imported (psycopg is optional).
        postgres = sys.modules.get("mcp_checkpoint.storage.postgres.store")
        if backend == "auto" and postgres is not None and isinstance(
            store, postgres.PostgresStore
        ):
            from mcp_checkpoint.storage.postgres import PostgresVectorIndex

            return PostgresVectorIndex(store)
        if backend == "sqlite":
            raise ConfigError(
                "vectors.backend 'sqlite' keeps vectors in the SQLite store's file, but the "
                "store is not SQLite; choose 'auto', 'memory' or 'qdrant'"
            )
    if backend == "qdrant":
        try:
            from mcp_checkpoint.storage.qdrant import QdrantVectorIndex
        except ImportError as exc:
            if not (exc.name or "").startswith("qdrant_client"):
                raise
            raise ConfigError(
                "vectors.backend 'qdrant' needs qdrant-client: " + install_hint("qdrant")
            ) from exc
        return QdrantVectorIndex.from_settings(settings.vectors, settings.data_dir)
    from mcp_checkpoint.storage.reference.vectors import ReferenceVectorIndex

    return ReferenceVectorIndex()
