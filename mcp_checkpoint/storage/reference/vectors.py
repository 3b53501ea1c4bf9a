"""The in-memory reference VectorIndex: the contract's executable specification.

Vectors live in a dictionary and every query computes the exact cosine against each of the
tenant's vectors. No method awaits, so each is atomic on the event loop. Used with
``store_url = "memory://"``, in unit tests, and as the reference of ``tests/contract``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

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

__all__ = ["ReferenceVectorIndex"]


@dataclass(frozen=True)
class _Entry:
    model_id: str
    unit: npt.NDArray[np.float64]
    scope: str
    kind: MemoryKind


class ReferenceVectorIndex:
    """A :class:`~mcp_checkpoint.core.ports.VectorIndex` held in a dict (lost on exit)."""

    def __init__(self) -> None:
        self._vectors: dict[tuple[str, str], _Entry] = {}
        self._space: Space | None = None

    async def open(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to release."""

    def _held(self) -> Space | None:
        return self._space if self._vectors else None

    async def space(self) -> Space | None:
        """The (model_id, dimension) of the stored vectors, or None when there are none."""
        return self._held()

    async def upsert(self, tenant: Tenant, model_id: str, items: Sequence[VectorItem]) -> None:
        """Store or replace vectors; InvalidArgumentError, with nothing written, on a mixed
        space."""
        dimension = batch_dimension(model_id, items)
        check_space(self._held(), model_id, dimension, what="upsert")
        if dimension is None:
            return
        for item in unique_items(items):
            self._vectors[(tenant, item.memory_id)] = _Entry(
                model_id, unit(item.vector, what="vector"), item.scope, item.kind
            )
        self._space = (model_id, dimension)

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
        query = unit(vector, what="the query vector")
        held = self._held()
        if held is None:
            return []
        check_space(held, model_id, len(query), what="query")
        scored = [
            (MemoryId(memory_id), float(entry.unit @ query))
            for (owner, memory_id), entry in self._vectors.items()
            if owner == tenant
            and (scope is None or entry.scope == scope)
            and (kind is None or entry.kind == kind)
        ]
        return ranked(scored, limit)

    async def similarities(
        self, tenant: Tenant, model_id: str, vector: Sequence[float], memory_ids: Sequence[MemoryId]
    ) -> dict[MemoryId, float]:
        """Exact cosine of ``vector`` to each of ``memory_ids`` the tenant has a vector for
        (the score :meth:`query` gives it); {} when the index is empty."""
        query = unit(vector, what="the query vector")
        held = self._held()
        if held is None:
            return {}
        check_space(held, model_id, len(query), what="similarities")
        return {
            memory_id: clamp(float(entry.unit @ query))
            for memory_id in memory_ids
            if (entry := self._vectors.get((tenant, memory_id))) is not None
        }

    async def delete(self, tenant: Tenant, memory_ids: Sequence[MemoryId]) -> None:
        """Remove vectors; unknown ids are ignored."""
        for memory_id in memory_ids:
            self._vectors.pop((tenant, memory_id), None)

    async def indexed(
        self, tenant: Tenant, model_id: str, memory_ids: Sequence[MemoryId]
    ) -> set[MemoryId]:
        """Which of ``memory_ids`` have a vector of ``model_id``."""
        return {
            memory_id for memory_id in memory_ids
            if (entry := self._vectors.get((tenant, memory_id))) is not None
            and entry.model_id == model_id
        }

    async def reset(self) -> None:
        """Remove every vector of every tenant."""
        self._vectors.clear()
        self._space = None
