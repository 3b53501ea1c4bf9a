"""VectorIndex on Qdrant, through qdrant-client's async client.

One collection (cosine distance) holds every tenant's vectors. A point's id is a uuid5 of
(tenant, memory_id), so writing a memory's vector again replaces it and two tenants never
collide; its payload ``{tenant, memory_id, scope, kind, model_id}`` carries what searches
filter on. The embedding space is the collection's vector size plus the ``model_id`` every
point carries. The client is a Qdrant server (``url``), or local mode in a folder or in
memory, which is how the tests exercise this module (local mode searches exactly; a server
uses its HNSW index, approximate on large collections).

Atomicity: each write is one request, checked against the space before it is sent. Qdrant
has no transactions, so two processes changing the *space* at the same moment (a reset
racing an upsert of another model) are not serialized the way SQLite serializes them.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from qdrant_client import AsyncQdrantClient, models

from mcp_checkpoint.config import VectorSettings
from mcp_checkpoint.core.models import MemoryId, MemoryKind, Tenant
from mcp_checkpoint.core.ports import VectorItem
from mcp_checkpoint.errors import BackendError, CheckpointError
from mcp_checkpoint.storage._vectors import (
    Space,
    batch_dimension,
    check_space,
    clamp,
    ranked,
    unique_items,
    unit,
)

__all__ = ["QdrantVectorIndex", "point_id"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
# Fixed forever: point ids derive from it, so changing it would orphan every stored point.
_POINT_NAMESPACE = uuid.UUID("6f1c0f0e-3d4b-5b7a-9a51-8a3c2e9b7d10")
_FILTERED_FIELDS = ("tenant", "scope", "kind")


def point_id(tenant: Tenant, memory_id: MemoryId) -> str:
    """The point id of a tenant's memory: a uuid5, the same in every process."""
    name = json.dumps([tenant, memory_id], ensure_ascii=False)
    return str(uuid.uuid5(_POINT_NAMESPACE, name))


def _match(key: str, value: str) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


class QdrantVectorIndex:
    """A :class:`~mcp_checkpoint.core.ports.VectorIndex` in one Qdrant collection."""

    def __init__(
        self,
        client_factory: Callable[[], AsyncQdrantClient],
        *,
        collection: str = "mcp_checkpoint_memories",
        local: bool = False,
    ) -> None:
        """Use the client ``client_factory`` makes (at :meth:`open`) and ``collection``.

        ``local`` says the client is in local mode: payload indexes (which local mode
        ignores, with a warning) are then not created.
        """
        self._factory = client_factory
        self._collection = collection
        self._local = local
        self._client: AsyncQdrantClient | None = None

    @classmethod
    def from_settings(cls, settings: VectorSettings, data_dir: Path) -> QdrantVectorIndex:
        """The index the ``vectors`` settings describe: a server when ``qdrant_url`` is
        set, else local mode in ``qdrant_path`` (default ``data_dir/qdrant``)."""
        url = settings.qdrant_url
        if url is not None:
            key = settings.qdrant_api_key
            api_key = None if key is None else key.get_secret_value()
            return cls(
                lambda: AsyncQdrantClient(url=url, api_key=api_key),
                collection=settings.qdrant_collection,
            )
        path = settings.qdrant_local_path(data_dir)
        if path == ":memory:":
            return cls(
                lambda: AsyncQdrantClient(location=":memory:"),
                collection=settings.qdrant_collection,
                local=True,
            )
        return cls(
            lambda: AsyncQdrantClient(path=path),
            collection=settings.qdrant_collection,
            local=True,
        )

    # -- plumbing -----------------------------------------------------------------------

    def _failure(self, what: str, exc: Exception) -> BackendError:
        if what == "open":
            # A refused open is configuration (a URL, a folder another process holds), and
            # a traceback kept in a log record would keep the half-built client alive.
            logger.warning("Qdrant: open failed: %s", f"{type(exc).__name__}: {exc}")
        else:
            logger.warning("Qdrant: %s failed", what, exc_info=exc)
        hint = "; local mode lets one process at a time use a folder" if self._local else ""
        return BackendError(f"the Qdrant index could not {what} ({type(exc).__name__}){hint}")

    async def _call(self, what: str, call: Callable[[AsyncQdrantClient], Awaitable[_T]]) -> _T:
        """Run one client call; whatever the client raises leaves as BackendError."""
        client = self._client
        if client is None:
            raise BackendError("the Qdrant index is not open")
        try:
            return await call(client)
        except CheckpointError:
            raise
        # The boundary to a driver that raises httpx, grpc, pydantic and builtin errors
        # (local mode signals with ValueError/RuntimeError): none may reach the caller.
        except Exception as exc:
            raise self._failure(what, exc) from exc

    async def open(self) -> None:
        """Create the client (local mode locks its folder here); idempotent."""
        if self._client is not None:
            return
        try:
            self._client = self._factory()
        except Exception as exc:  # see _call
            raise self._failure("open", exc) from exc

    async def close(self) -> None:
        """Close the client (releasing a local folder); idempotent."""
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.close()
            except Exception as exc:  # see _call
                raise self._failure("close", exc) from exc

    async def _exists(self) -> bool:
        return await self._call(
            "check the collection", lambda c: c.collection_exists(self._collection)
        )

    async def _dimension(self) -> int | None:
        """The collection's vector size, or None without a collection."""
        if not await self._exists():
            return None
        info = await self._call("read the collection", lambda c: c.get_collection(self._collection))
        params = info.config.params.vectors
        if not isinstance(params, models.VectorParams):  # pragma: no cover - not ours
            raise BackendError(f"the Qdrant collection {self._collection} has named vectors")
        return int(params.size)

    async def _space(self) -> tuple[Space | None, int | None]:
        """The space of the stored points (None if there are none), and the collection's
        vector size (None without a collection)."""
        dimension = await self._dimension()
        if dimension is None:
            return None, None
        points, _ = await self._call("read a point", lambda c: c.scroll(
            self._collection, limit=1, with_payload=["model_id"], with_vectors=False
        ))
        if not points or not points[0].payload:
            return None, dimension
        return (str(points[0].payload["model_id"]), dimension), dimension

    async def _create(self, dimension: int) -> None:
        await self._call("create the collection", lambda c: c.create_collection(
            self._collection,
            vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
        ))
        if self._local:
            return

        async def index(client: AsyncQdrantClient) -> None:
            for field in _FILTERED_FIELDS:
                await client.create_payload_index(
                    self._collection, field, field_schema=models.PayloadSchemaType.KEYWORD
                )

        await self._call("index the payload", index)

    # -- the port -----------------------------------------------------------------------

    async def space(self) -> Space | None:
        """The (model_id, dimension) of the stored vectors, or None when there are none."""
        space, _ = await self._space()
        return space

    async def upsert(self, tenant: Tenant, model_id: str, items: Sequence[VectorItem]) -> None:
        """Store or replace vectors in one request; InvalidArgumentError, with nothing
        written, if ``model_id`` or a vector's length differs from the index's space."""
        dimension = batch_dimension(model_id, items)
        held, size = await self._space()
        check_space(held, model_id, dimension, what="upsert")
        if dimension is None:
            return
        if size != dimension:
            # No collection, or an empty one of another size: it holds no space yet.
            if size is not None:
                await self._call(
                    "drop the empty collection", lambda c: c.delete_collection(self._collection)
                )
            await self._create(dimension)
        points = [
            models.PointStruct(
                id=point_id(tenant, item.memory_id),
                vector=[float(value) for value in item.vector],
                payload={
                    "tenant": tenant,
                    "memory_id": item.memory_id,
                    "scope": item.scope,
                    "kind": item.kind,
                    "model_id": model_id,
                },
            )
            for item in unique_items(items)
        ]
        await self._call(
            "store vectors", lambda c: c.upsert(self._collection, points=points, wait=True)
        )

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
        """The ``limit`` nearest of the tenant's vectors by cosine, best first, ties by
        memory_id; [] when the index is empty."""
        query = unit(vector, what="the query vector").tolist()
        held, _ = await self._space()
        if held is None:
            return []
        check_space(held, model_id, len(query), what="query")
        if limit <= 0:
            return []
        must = [_match("tenant", tenant)]
        if scope is not None:
            must.append(_match("scope", scope))
        if kind is not None:
            must.append(_match("kind", kind))
        where = models.Filter(must=must)
        # Qdrant orders equal scores its own way: fetch until the limit-th score is
        # followed by a lower one (or by nothing), then order ties by memory_id.

        async def search(client: AsyncQdrantClient) -> list[models.ScoredPoint]:
            fetch = limit + 1
            while True:
                response = await client.query_points(
                    self._collection, query=query, query_filter=where, limit=fetch,
                    with_payload=["memory_id"], with_vectors=False,
                )
                points = response.points
                if len(points) < fetch or points[-1].score < points[limit - 1].score:
                    return points
                fetch *= 2

        points = await self._call("search", search)
        scored: list[tuple[MemoryId, float]] = [
            (MemoryId(str(point.payload["memory_id"])), float(point.score))
            for point in points
            if point.payload
        ]
        return ranked(scored, limit)

    async def similarities(
        self, tenant: Tenant, model_id: str, vector: Sequence[float], memory_ids: Sequence[MemoryId]
    ) -> dict[MemoryId, float]:
        """Cosine of ``vector`` to each of ``memory_ids`` the tenant has a vector for: the
        points are fetched by id and scored here in float32, as Qdrant scores them for
        :meth:`query`; {} when the index is empty."""
        query = unit(vector, what="the query vector").astype(np.float32)
        held, _ = await self._space()
        if held is None:
            return {}
        check_space(held, model_id, query.size, what="similarities")
        ids: list[models.ExtendedPointId] = list(
            dict.fromkeys(point_id(tenant, i) for i in memory_ids)
        )
        if not ids:
            return {}
        records = await self._call("read vectors", lambda c: c.retrieve(
            self._collection, ids=ids, with_payload=["memory_id", "tenant"], with_vectors=True,
        ))
        found: list[tuple[MemoryId, list[float]]] = []
        for record in records:
            payload = record.payload
            if not payload or payload.get("tenant") != tenant:
                continue
            stored = record.vector
            if not isinstance(stored, list) or not stored or not isinstance(stored[0], float):
                raise BackendError(  # pragma: no cover - not a vector this index wrote
                    f"the Qdrant collection {self._collection} returned a vector it cannot score"
                )
            found.append((MemoryId(str(payload["memory_id"])), stored))
        if not found:
            return {}
        matrix = np.asarray([stored for _, stored in found], dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix /= np.where(norms == 0, 1, norms)
        scores = matrix @ query
        return {
            memory_id: clamp(float(score))
            for (memory_id, _), score in zip(found, scores, strict=True)
        }

    async def delete(self, tenant: Tenant, memory_ids: Sequence[MemoryId]) -> None:
        """Remove vectors in one request; unknown ids are ignored."""
        if not memory_ids or not await self._exists():
            return
        ids: list[models.ExtendedPointId] = [point_id(tenant, i) for i in memory_ids]
        await self._call("delete vectors", lambda c: c.delete(
            self._collection, points_selector=models.PointIdsList(points=ids), wait=True
        ))

    async def indexed(
        self, tenant: Tenant, model_id: str, memory_ids: Sequence[MemoryId]
    ) -> set[MemoryId]:
        """Which of ``memory_ids`` have a vector of ``model_id``."""
        if not memory_ids or not await self._exists():
            return set()
        ids: list[models.ExtendedPointId] = [point_id(tenant, i) for i in memory_ids]
        records = await self._call("read vectors", lambda c: c.retrieve(
            self._collection, ids=ids, with_payload=["memory_id", "model_id", "tenant"],
            with_vectors=False,
        ))
        payloads: list[dict[str, Any]] = [r.payload for r in records if r.payload]
        return {
            MemoryId(str(p["memory_id"])) for p in payloads
            if p.get("tenant") == tenant and p.get("model_id") == model_id
        }

    async def reset(self) -> None:
        """Remove every vector of every tenant (drops the collection)."""
        if await self._exists():
            await self._call(
                "drop the collection", lambda c: c.delete_collection(self._collection)
            )
