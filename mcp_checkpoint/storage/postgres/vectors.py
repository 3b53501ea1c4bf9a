"""Memory vectors in the PostgreSQL store's own database, searched exactly with numpy.

Vectors are little-endian float32 ``bytea`` values in the ``vectors`` table, with the
model id and dimension of each. A query multiplies the tenant's matrix of unit rows by the
query vector: exact cosine, no index to build or to drift. The one embedding space per
index is checked under a transaction-level advisory lock in the transaction that writes,
so two processes cannot mix spaces; every write takes that lock.

The matrix is kept in memory per (tenant, model_id) while it is current: a trigger moves
the tenant's row of ``vector_generations`` (migration 0003) on every change of its
vectors, from any process, and a query first reads that generation (with the index's
space, in one statement), then reuses the matrix loaded under the same generation or
loads the rows. The generation is read before the rows, so a matrix is never older than
the generation it is kept under.

Used by ``make_vector_index`` when the store is PostgreSQL and no Qdrant is configured;
past some tens of thousands of vectors per tenant, Qdrant is the better home.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from mcp_checkpoint.core.models import MemoryId, MemoryKind, Tenant
from mcp_checkpoint.core.ports import VectorItem
from mcp_checkpoint.storage._vectors import (
    FLOAT32_LE,
    Matrix,
    Space,
    batch_dimension,
    build_matrix,
    check_space,
    unique_items,
    unit,
)
from mcp_checkpoint.storage.postgres.store import Conn, PostgresStore

__all__ = ["PostgresVectorIndex"]

# Matrices kept at once, and their bytes (50,000 x 384 floats are 77 MB).
_CACHED_MATRICES = 16
_CACHED_BYTES = 256 * 1024 * 1024
_STATE = (
    "SELECT s.model_id, s.dim, g.generation FROM (SELECT 1) AS one "
    "LEFT JOIN LATERAL (SELECT model_id, dim FROM vectors LIMIT 1) AS s ON true "
    "LEFT JOIN vector_generations AS g ON g.tenant = %s"
)
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
        self._cache: OrderedDict[tuple[str, str], Matrix] = OrderedDict()

    async def open(self) -> None:
        """Nothing to connect: the store's pool serves the index (its migrations created
        the table)."""

    async def close(self) -> None:
        """Drop the cached matrices; the store owns the pool."""
        self._cache.clear()

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
                np.asarray(item.vector, dtype=FLOAT32_LE).tobytes(),
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
        self, tenant: Tenant, model_id: str, query: np.ndarray, *, what: str
    ) -> Matrix | None:
        """The tenant's current matrix of ``model_id`` (cached), None when the index holds
        no vectors; InvalidArgumentError when the query is not in the index's space."""
        key = (tenant, model_id)
        cached = self._cache.get(key)

        async def read(conn: Conn) -> tuple[Space | None, Matrix | None]:
            cursor = await conn.execute(_STATE, (tenant,))
            state = await cursor.fetchone()
            assert state is not None  # noqa: S101 - the statement always returns one row
            if state["model_id"] is None:
                return None, None
            space = (str(state["model_id"]), int(state["dim"]))
            generation = int(state["generation"] or 0)
            if space != (model_id, query.size):
                return space, None
            if cached is not None and (cached.space, cached.generation) == (space, generation):
                return space, cached
            cursor = await conn.execute(
                "SELECT memory_id, scope, kind, vector FROM vectors "
                "WHERE tenant = %s AND model_id = %s AND dim = %s ORDER BY memory_id",
                (tenant, model_id, query.size),
            )
            rows = [
                (row["memory_id"], row["scope"], row["kind"], bytes(row["vector"]))
                for row in await cursor.fetchall()
            ]
            return space, build_matrix(space, generation, rows)

        space, matrix = await self._store.transact(read, write=False)
        if space is None:
            return None
        check_space(space, model_id, query.size, what=what)
        if matrix is None:  # pragma: no cover - read() returns one whenever the space fits
            return None
        self._remember(key, matrix)
        return matrix

    def _remember(self, key: tuple[str, str], matrix: Matrix) -> None:
        self._cache[key] = matrix
        self._cache.move_to_end(key)
        while len(self._cache) > 1 and (
            len(self._cache) > _CACHED_MATRICES
            or sum(m.nbytes for m in self._cache.values()) > _CACHED_BYTES
        ):
            self._cache.popitem(last=False)

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
        query = unit(vector, what="the query vector").astype(np.float32)
        matrix = await self._matrix(tenant, model_id, query, what="query")
        if matrix is None:
            return []
        return matrix.rank(query, limit=limit, scope=scope, kind=kind)

    async def similarities(
        self, tenant: Tenant, model_id: str, vector: Sequence[float], memory_ids: Sequence[MemoryId]
    ) -> dict[MemoryId, float]:
        """Exact cosine of ``vector`` to each of ``memory_ids`` the tenant has a vector for,
        from the same cached matrix as :meth:`query` (so the same scores); {} when the index
        is empty."""
        query = unit(vector, what="the query vector").astype(np.float32)
        matrix = await self._matrix(tenant, model_id, query, what="similarities")
        if matrix is None:
            return {}
        return matrix.similarities(query, memory_ids)

    async def delete(self, tenant: Tenant, memory_ids: Sequence[MemoryId]) -> None:
        """Remove vectors; unknown ids are ignored."""
        if not memory_ids:
            return

        async def write(conn: Conn) -> None:
            # Every write takes the lock, so the generation rows are always locked in one
            # order (a reset deletes many tenants' vectors).
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SPACE_LOCK,))
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
