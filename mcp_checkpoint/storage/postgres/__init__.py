"""The PostgreSQL store: psycopg 3 with an async connection pool, numbered migrations
under an advisory lock, full-text search."""

from mcp_checkpoint.storage._urls import mask_url
from mcp_checkpoint.storage.postgres.store import PostgresStore
from mcp_checkpoint.storage.postgres.vectors import PostgresVectorIndex

__all__ = ["PostgresStore", "PostgresVectorIndex", "mask_url"]
