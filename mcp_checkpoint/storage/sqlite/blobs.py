"""Blobs in the SQLite file (``BlobStore``): one row per tenant and name.

Blob calls always run on a worker thread: their size grows with the files, and the event
loop must not wait for a 16 MB read or write.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar

import anyio

from mcp_checkpoint.core.models import Tenant
from mcp_checkpoint.storage._rows import iso
from mcp_checkpoint.storage.sqlite._db import Conn, SqliteDatabase

__all__ = ["SqliteBlobs"]

_T = TypeVar("_T")
_CHUNK = 500  # names per IN (...) list, well under SQLite's variable limit


def _chunks(names: Sequence[str]) -> list[list[str]]:
    unique = sorted(set(names))
    return [unique[i:i + _CHUNK] for i in range(0, len(unique), _CHUNK)]


class SqliteBlobs(SqliteDatabase):
    """The blob half of the SQLite store."""

    async def _off_loop(self, fn: Callable[[Conn], _T], *, write: bool) -> _T:
        return await anyio.to_thread.run_sync(functools.partial(self._execute, fn, write=write))

    async def put_blobs(self, tenant: Tenant, blobs: Mapping[str, bytes], *, now: datetime) -> int:
        """See ``BlobStore.put_blobs``."""

        def put(conn: Conn) -> int:
            new = 0
            for name, data in blobs.items():
                cursor = conn.execute(
                    "INSERT INTO blobs (tenant, name, size, data, created_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, name) DO NOTHING",
                    (tenant, name, len(data), data, iso(now)),
                )
                new += cursor.rowcount
            return new

        return await self._off_loop(put, write=True) if blobs else 0

    async def missing_blobs(self, tenant: Tenant, names: Sequence[str]) -> set[str]:
        """See ``BlobStore.missing_blobs``."""

        def held(conn: Conn) -> set[str]:
            found: set[str] = set()
            for chunk in _chunks(names):
                marks = ",".join("?" * len(chunk))
                found.update(row[0] for row in conn.execute(
                    f"SELECT name FROM blobs WHERE tenant = ? AND name IN ({marks})",  # noqa: S608
                    (tenant, *chunk),
                ))
            return found

        return set(names) - await self._off_loop(held, write=False) if names else set()

    async def get_blobs(self, tenant: Tenant, names: Sequence[str]) -> dict[str, bytes]:
        """See ``BlobStore.get_blobs``."""

        def get(conn: Conn) -> dict[str, bytes]:
            out: dict[str, bytes] = {}
            for chunk in _chunks(names):
                marks = ",".join("?" * len(chunk))
                out.update((row[0], bytes(row[1])) for row in conn.execute(
                    f"SELECT name, data FROM blobs WHERE tenant = ? AND name IN ({marks})",  # noqa: S608
                    (tenant, *chunk),
                ))
            return out

        return await self._off_loop(get, write=False) if names else {}

    async def list_blobs(self, tenant: Tenant) -> set[str]:
        """See ``BlobStore.list_blobs``."""
        return await self._off_loop(
            lambda conn: {r[0] for r in conn.execute(
                "SELECT name FROM blobs WHERE tenant = ?", (tenant,)
            )},
            write=False,
        )

    async def snapshot_manifests(self, tenant: Tenant) -> set[str]:
        """See ``BlobStore.snapshot_manifests``."""
        return await self._off_loop(
            lambda conn: {r[0] for r in conn.execute(
                "SELECT DISTINCT json_extract(content, '$.snapshot.manifest') FROM checkpoints "
                "WHERE tenant = ? AND json_extract(content, '$.snapshot.manifest') IS NOT NULL",
                (tenant,),
            )},
            write=False,
        )

    async def delete_blobs(self, tenant: Tenant, names: Sequence[str]) -> int:
        """See ``BlobStore.delete_blobs``."""

        def delete(conn: Conn) -> int:
            gone = 0
            for chunk in _chunks(names):
                marks = ",".join("?" * len(chunk))
                gone += conn.execute(
                    f"DELETE FROM blobs WHERE tenant = ? AND name IN ({marks})",  # noqa: S608
                    (tenant, *chunk),
                ).rowcount
            return gone

        return await self._off_loop(delete, write=True) if names else 0
