"""Blobs in the PostgreSQL database (``BlobStore``): one ``bytea`` row per tenant and name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from mcp_checkpoint.core.models import Tenant
from mcp_checkpoint.storage._rows import iso
from mcp_checkpoint.storage.postgres._db import Conn, PostgresDatabase

__all__ = ["PostgresBlobs"]


class PostgresBlobs(PostgresDatabase):
    """The blob half of the PostgreSQL store."""

    async def put_blobs(self, tenant: Tenant, blobs: Mapping[str, bytes], *, now: datetime) -> int:
        """See ``BlobStore.put_blobs``."""

        async def put(conn: Conn) -> int:
            new = 0
            for name, data in blobs.items():
                cursor = await conn.execute(
                    "INSERT INTO blobs (tenant, name, size, data, created_at) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant, name) DO NOTHING",
                    (tenant, name, len(data), data, iso(now)),
                )
                new += cursor.rowcount
            return new

        return await self._run(put, write=True) if blobs else 0

    async def missing_blobs(self, tenant: Tenant, names: Sequence[str]) -> set[str]:
        """See ``BlobStore.missing_blobs``."""
        if not names:
            return set()

        async def held(conn: Conn) -> set[str]:
            cursor = await conn.execute(
                "SELECT name FROM blobs WHERE tenant = %s AND name = ANY(%s)",
                (tenant, sorted(set(names))),
            )
            return {row["name"] for row in await cursor.fetchall()}

        return set(names) - await self._run(held, write=False)

    async def get_blobs(self, tenant: Tenant, names: Sequence[str]) -> dict[str, bytes]:
        """See ``BlobStore.get_blobs``."""
        if not names:
            return {}

        async def get(conn: Conn) -> dict[str, bytes]:
            cursor = await conn.execute(
                "SELECT name, data FROM blobs WHERE tenant = %s AND name = ANY(%s)",
                (tenant, sorted(set(names))),
            )
            return {row["name"]: bytes(row["data"]) for row in await cursor.fetchall()}

        return await self._run(get, write=False)

    async def list_blobs(self, tenant: Tenant) -> set[str]:
        """See ``BlobStore.list_blobs``."""

        async def names(conn: Conn) -> set[str]:
            cursor = await conn.execute("SELECT name FROM blobs WHERE tenant = %s", (tenant,))
            return {row["name"] for row in await cursor.fetchall()}

        return await self._run(names, write=False)

    async def snapshot_manifests(self, tenant: Tenant) -> set[str]:
        """See ``BlobStore.snapshot_manifests``."""

        async def manifests(conn: Conn) -> set[str]:
            cursor = await conn.execute(
                "SELECT DISTINCT content::jsonb -> 'snapshot' ->> 'manifest' AS name "
                "FROM checkpoints WHERE tenant = %s "
                "AND content::jsonb -> 'snapshot' ->> 'manifest' IS NOT NULL",
                (tenant,),
            )
            return {row["name"] for row in await cursor.fetchall()}

        return await self._run(manifests, write=False)

    async def delete_blobs(self, tenant: Tenant, names: Sequence[str]) -> int:
        """See ``BlobStore.delete_blobs``."""
        if not names:
            return 0

        async def delete(conn: Conn) -> int:
            cursor = await conn.execute(
                "DELETE FROM blobs WHERE tenant = %s AND name = ANY(%s)",
                (tenant, sorted(set(names))),
            )
            return cursor.rowcount

        return await self._run(delete, write=True)
