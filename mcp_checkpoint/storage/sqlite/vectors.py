"""Memory vectors in the SQLite store's own file, searched exactly with numpy.

Vectors are little-endian float32 BLOBs in the ``vectors`` table (migration 0002). A query
multiplies the tenant's matrix of unit rows by the query vector: exact cosine, no index to
build or to drift. The matrix is loaded once per (tenant, model_id) and kept while it is
known to be current:

* ``PRAGMA data_version`` changes when *another* connection (another process, or another
  store on the same file) commits anything; while it and this index's own write counter
  are unchanged, nothing changed, and a query costs one PRAGMA and one matrix product.
* When either moved, the tenant's row of ``vector_generations`` (bumped by triggers on
  every change of its vectors) says whether the cached matrix is still the tenant's:
  writes of other tenants, or to other tables (steps, checkpoints), do not reload it.
"""

from __future__ import annotations

import json
import sqlite3
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from types import ModuleType
from typing import TYPE_CHECKING

from mcp_checkpoint.core.models import MemoryId, MemoryKind, Tenant
from mcp_checkpoint.core.ports import VectorItem
from mcp_checkpoint.storage.sqlite.store import SqliteStore

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from mcp_checkpoint.storage._vectors import Matrix, Space

__all__ = ["SqliteVectorIndex"]

_Conn = sqlite3.Connection
# Matrices kept at once (one per tenant in practice): 3,000 x 384 floats are 4.6 MB.
_CACHED_MATRICES = 16

_SPACE = "SELECT model_id, dim FROM vectors LIMIT 1"
_UPSERT = (
    "INSERT INTO vectors (tenant, memory_id, model_id, dim, scope, kind, vector) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (tenant, memory_id) DO UPDATE SET model_id = excluded.model_id, "
    "dim = excluded.dim, scope = excluded.scope, kind = excluded.kind, "
    "vector = excluded.vector"
)


@dataclass(frozen=True)
class _Cached:
    """A tenant's matrix, verified current when ``PRAGMA data_version`` was
    ``data_version`` and this index had made ``epoch`` writes."""

    matrix: Matrix
    data_version: int
    epoch: int


def _shared() -> ModuleType:
    """``storage._vectors`` (and so numpy), imported on the first vector operation rather
    than with the server: numpy is a tenth of a second of start-up."""
    from mcp_checkpoint.storage import _vectors

    return _vectors


def _space_of(conn: _Conn) -> Space | None:
    row = conn.execute(_SPACE).fetchone()
    return None if row is None else (str(row[0]), int(row[1]))


def _generation(conn: _Conn, tenant: Tenant) -> int:
    row = conn.execute(
        "SELECT generation FROM vector_generations WHERE tenant = ?", (tenant,)
    ).fetchone()
    return 0 if row is None else int(row[0])


def _load(conn: _Conn, tenant: Tenant, space: Space, generation: int) -> Matrix:
    model_id, dim = space
    rows = conn.execute(
        "SELECT memory_id, scope, kind, vector FROM vectors "
        "WHERE tenant = ? AND model_id = ? AND dim = ? ORDER BY memory_id",
        (tenant, model_id, dim),
    ).fetchall()
    matrix: Matrix = _shared().build_matrix(space, generation, [tuple(row) for row in rows])
    return matrix


class SqliteVectorIndex:
    """A :class:`~mcp_checkpoint.core.ports.VectorIndex` in a :class:`SqliteStore`'s file.

    It owns no connection: every statement runs through the store's (its lock, its
    transactions, its error translation), so the store must be open, and closing the
    index leaves the store open. Each write is one ``BEGIN IMMEDIATE`` transaction that
    checks the embedding space before it writes, so the one-space rule holds across
    processes.
    """

    def __init__(self, store: SqliteStore) -> None:
        """Keep vectors in ``store``'s file."""
        self._store = store
        self._cache: OrderedDict[tuple[str, str], _Cached] = OrderedDict()
        # Writes made through this index: PRAGMA data_version does not see them.
        self._epoch = 0

    async def open(self) -> None:
        """Open the store if it is not yet (idempotent)."""
        await self._store.open()

    async def close(self) -> None:
        """Drop the cached matrices; the store stays open (it belongs to its owner)."""
        self._cache.clear()

    def _wrote(self) -> None:
        self._epoch += 1

    async def space(self) -> Space | None:
        """The (model_id, dimension) of the stored vectors, or None when there are none."""
        return await self._store.transact(_space_of, write=False)

    async def upsert(self, tenant: Tenant, model_id: str, items: Sequence[VectorItem]) -> None:
        """Store or replace vectors in one transaction; InvalidArgumentError, with nothing
        written, if ``model_id`` or a vector's length differs from the index's space."""
        shared = _shared()
        dimension = shared.batch_dimension(model_id, items)
        if dimension is None:  # nothing to write; a foreign model_id is still refused
            shared.check_space(await self.space(), model_id, None, what="upsert")
            return
        np = shared.np
        rows = [
            (
                tenant, item.memory_id, model_id, dimension, item.scope, item.kind,
                np.asarray(item.vector, dtype=shared.FLOAT32_LE).tobytes(),
            )
            for item in shared.unique_items(items)
        ]

        def write(conn: _Conn) -> None:
            shared.check_space(_space_of(conn), model_id, dimension, what="upsert")
            conn.executemany(_UPSERT, rows)

        try:
            await self._store.transact(write, write=True)
        finally:
            self._wrote()

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
        memory_id; [] when the index is empty."""
        shared = _shared()
        query = shared.unit(vector, what="the query vector").astype(shared.np.float32)
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
        shared = _shared()
        query = shared.unit(vector, what="the query vector").astype(shared.np.float32)
        matrix = await self._matrix(tenant, model_id, query, what="similarities")
        if matrix is None:
            return {}
        return matrix.similarities(query, memory_ids)

    async def _matrix(
        self, tenant: Tenant, model_id: str, query: npt.NDArray[np.float32], *, what: str
    ) -> Matrix | None:
        """The tenant's current matrix of ``model_id`` (cached), None when the index holds
        no vectors; InvalidArgumentError when the query is not in the index's space."""
        key = (tenant, model_id)
        cached = self._cache.get(key)
        epoch = self._epoch

        def read(conn: _Conn) -> tuple[Space | None, _Cached | None]:
            """The index's space, and the tenant's matrix when the query is in it."""
            data_version = int(conn.execute("PRAGMA data_version").fetchone()[0])
            if cached is not None and (cached.data_version, cached.epoch) == (
                data_version, epoch
            ):
                return cached.matrix.space, cached  # nothing was committed since it was verified
            space = _space_of(conn)
            if space is None or space != (model_id, query.size):
                return space, None
            # Generation first: a commit landing before the rows are read only makes the
            # matrix newer than its generation, so the next check reloads (never the reverse).
            generation = _generation(conn, tenant)
            if cached is not None and (cached.matrix.space, cached.matrix.generation) == (
                space, generation
            ):
                return space, replace(cached, data_version=data_version, epoch=epoch)
            return space, _Cached(_load(conn, tenant, space, generation), data_version, epoch)

        space, verified = await self._store.transact(read, write=False)
        if space is None:
            return None
        _shared().check_space(space, model_id, query.size, what=what)
        if verified is None:  # pragma: no cover - read() returns one whenever the space fits
            return None
        self._remember(key, verified)
        return verified.matrix

    def _remember(self, key: tuple[str, str], verified: _Cached) -> None:
        self._cache[key] = verified
        self._cache.move_to_end(key)
        while len(self._cache) > _CACHED_MATRICES:
            self._cache.popitem(last=False)

    async def delete(self, tenant: Tenant, memory_ids: Sequence[MemoryId]) -> None:
        """Remove vectors in one transaction; unknown ids are ignored."""
        if not memory_ids:
            return

        def write(conn: _Conn) -> None:
            conn.executemany(
                "DELETE FROM vectors WHERE tenant = ? AND memory_id = ?",
                [(tenant, memory_id) for memory_id in memory_ids],
            )

        try:
            await self._store.transact(write, write=True)
        finally:
            self._wrote()

    async def indexed(
        self, tenant: Tenant, model_id: str, memory_ids: Sequence[MemoryId]
    ) -> set[MemoryId]:
        """Which of ``memory_ids`` have a vector of ``model_id``."""
        if not memory_ids:
            return set()
        wanted = json.dumps(list(memory_ids), ensure_ascii=False)

        def read(conn: _Conn) -> set[MemoryId]:
            rows = conn.execute(
                "SELECT memory_id FROM vectors WHERE tenant = ? AND model_id = ? "
                "AND memory_id IN (SELECT value FROM json_each(?))",
                (tenant, model_id, wanted),
            ).fetchall()
            return {MemoryId(row[0]) for row in rows}

        return await self._store.transact(read, write=False)

    async def reset(self) -> None:
        """Remove every vector of every tenant, in one transaction."""

        def write(conn: _Conn) -> None:
            conn.execute("DELETE FROM vectors")

        try:
            await self._store.transact(write, write=True)
        finally:
            self._wrote()
            self._cache.clear()
