"""Memory vectors in the PostgreSQL store's own database, searched exactly with numpy.

Vectors are little-endian float32 ``bytea`` values in the ``vectors`` table, with the
model id and dimension of each. A query loads the tenant's vectors that pass the filters
and multiplies their unit rows by the query vector: exact cosine, no index to build or to
drift, and the database (shared by every server process) is the only state. The one
embedding space per index is checked under a transaction-level advisory lock in the
transaction that writes, so two processes cannot mix spaces.

Used by ``make_vector_index`` when the store is PostgreSQL and no Qdrant is configured;
past some tens of thousands of vectors per tenant, Qdrant is the better home.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mcp_checkpoint.core.models import MemoryId, MemoryKind, Tenant
from mcp_checkpoint.core.ports import VectorItem
from mcp_checkpoint.storage._vectors import (
    Space,
    batch_dimension,
    check_space,
    clamp,
    ranked,
    unique_items,
    unit,
)
from mcp_checkpoint.storage.postgres.store import Conn, PostgresStore

__all__ = ["PostgresVectorIndex"]

_F32 = np.dtype("<f4")
_SPACE_LOCK = 0x6D63_706B_7665_6373
"""Advisory lock key ("mcpkvecs") of writes that may set the index's space."""

_UPSERT = (
    "INSERT INTO vectors (tenant, memory_id, model_id, dim, scope, kind, vector) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (tenant, memory_id) DO UPDATE SET model_id = excluded.model_id, "
    "dim = excluded.dim, scope = excluded.scope, kind = excluded.kind, "
    "vector = excluded.vector"
)


async def _space_of(conn: Conn) -> Space | None:
    cursor = await conn.execute("SELECT model_id, dim FROM vectors LIMIT 1")
    row = await cursor.fetchone()
    return None if row is None else (str(row["model_id"]), int(row["dim"]))


class PostgresVectorIndex:
    """A :class:`~mcp_checkpoint.core.ports.VectorIndex` in the PostgreSQL store's
    database (the store must be opened first; the index shares its pool)."""

    def __init__(self, store: PostgresStore) -> None:
        """Keep vectors in ``store``'s database."""
        self._store = store

    async def open(self) -> None:
        """Nothing to connect: the store's pool serves the index (its migrations created
        the table)."""

    async def close(self) -> None:
        """Nothing to release: the store owns the pool."""

    async def space(self) -> Space | None:
        """The (model_id, dimension) of the stored vectors, or None when there are none."""
        return await self._store.transact(_space_of, write=False)

    async def upsert(self, tenant: Tenant, model_id: str, items: Sequence[VectorItem]) -> None:
        """Store or replace vectors in one transaction; InvalidArgumentError, with nothing
        written, on a mixed space."""
        dimension = batch_dimension(model_id, items)
        if dimension is None:
            # Nothing to write, but a model other than the index's is refused all the same.
            check_space(await self.space(), model_id, None, what="upsert")
            return
        rows = [
            (
                tenant, item.memory_id, model_id, dimension, item.scope, item.kind,
                np.asarray(item.vector, dtype=_F32).tobytes(),
            )
            for item in unique_items(items)
        ]

        async def write(conn: Conn) -> None:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SPACE_LOCK,))
            check_space(await _space_of(conn), model_id, dimension, what="upsert")
            async with conn.cursor() as cursor:
                await cursor.executemany(_UPSERT, rows)

        await self._store.transact(write, write=True)

    async def _matrix(
        self, tenant: Tenant, model_id: str, dimension: int, what: str, where: str,
        params: tuple[object, ...],
    ) -> tuple[list[MemoryId], np.ndarray] | None:
        """The tenant's vectors that ``where`` selects, as (ids, unit rows); None when the
        index is empty. InvalidArgumentError if (model_id, dimension) is not its space."""

        async def read(conn: Conn) -> tuple[Space | None, list[MemoryId], list[bytes]]:
            cursor = await conn.execute(
                "SELECT memory_id, vector FROM vectors "  # noqa: S608 - constant fragments
                f"WHERE tenant = %s AND model_id = %s AND dim = %s {where}",
                (tenant, model_id, dimension, *params),
            )
            rows = await cursor.fetchall()
            if not rows:
                # The index holds one space (upsert keeps it so): only an empty answer
                # needs the second statement, to tell "none here" from "another space".
                return await _space_of(conn), [], []
            return (model_id, dimension), [MemoryId(row["memory_id"]) for row in rows], [
                bytes(row["vector"]) for row in rows
            ]

        held, ids, blobs = await self._store.transact(read, write=False)
        if held is None:
            return None
        check_space(held, model_id, dimension, what=what)
        matrix = np.frombuffer(b"".join(blobs), dtype=_F32).astype(np.float64)
        matrix = matrix.reshape(len(ids), dimension)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return ids, matrix / np.where(norms == 0, 1, norms)

    async def query(
        self,
        tenant: Tenant,
        model_id: str,
        vector: Sequence[float],
        *,
        limit: int,
        scope: str | None = None,
        kind: MemoryKind | None = None,
    ) -> list[tuple[MemoryId, float]]:
        """The ``limit`` nearest of the tenant's vectors by exact cosine, best first, ties by
        memory_id, filtered by ``scope``/``kind``; [] when the index is empty."""
        query = unit(vector, what="the query vector")
        loaded = await self._matrix(
            tenant, model_id, len(query), "query",
            "AND (%s::text IS NULL OR scope = %s) AND (%s::text IS NULL OR kind = %s)",
            (scope, scope, kind, kind),
        )
        if loaded is None:
            return []
        ids, rows = loaded
        scores = rows @ query
        return ranked([(memory_id, float(s)) for memory_id, s in zip(ids, scores, strict=True)],
                      limit)

    async def similarities(
        self, tenant: Tenant, model_id: str, vector: Sequence[float], memory_ids: Sequence[MemoryId]
    ) -> dict[MemoryId, float]:
        """Exact cosine of ``vector`` to each of ``memory_ids`` the tenant has a vector for;
        {} when the index is empty."""
        query = unit(vector, what="the query vector")
        loaded = await self._matrix(
            tenant, model_id, len(query), "similarities", "AND memory_id = ANY(%s)",
            (list(memory_ids),),
        )
        if loaded is None:
            return {}
        ids, rows = loaded
        return {
            memory_id: clamp(float(score))
            for memory_id, score in zip(ids, rows @ query, strict=True)
        }

    async def delete(self, tenant: Tenant, memory_ids: Sequence[MemoryId]) -> None:
        """Remove vectors; unknown ids are ignored."""
        if not memory_ids:
            return

        async def write(conn: Conn) -> None:
            await conn.execute(
                "DELETE FROM vectors WHERE tenant = %s AND memory_id = ANY(%s)",
                (tenant, list(memory_ids)),
            )

        await self._store.transact(write, write=True)

    async def indexed(
        self, tenant: Tenant, model_id: str, memory_ids: Sequence[MemoryId]
    ) -> set[MemoryId]:
        """Which of ``memory_ids`` have a vector of ``model_id``."""
        if not memory_ids:
            return set()

        async def read(conn: Conn) -> set[MemoryId]:
            cursor = await conn.execute(
                "SELECT memory_id FROM vectors WHERE tenant = %s AND model_id = %s "
                "AND memory_id = ANY(%s)",
                (tenant, model_id, list(memory_ids)),
            )
            return {MemoryId(row["memory_id"]) for row in await cursor.fetchall()}

        return await self._store.transact(read, write=False)

    async def reset(self) -> None:
        """Remove every vector of every tenant."""

        async def write(conn: Conn) -> None:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SPACE_LOCK,))
            await conn.execute("DELETE FROM vectors")

        await self._store.transact(write, write=True)
