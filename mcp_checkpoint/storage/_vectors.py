"""Checks every VectorIndex backend applies the same way, before it touches its storage."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from mcp_checkpoint.core.models import MemoryId
from mcp_checkpoint.core.ports import VectorItem
from mcp_checkpoint.errors import InvalidArgumentError

__all__ = [
    "Space", "batch_dimension", "check_space", "clamp", "ranked", "unique_items", "unit"
]

Space = tuple[str, int]

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def unit(vector: Sequence[float], *, what: str) -> npt.NDArray[np.float64]:
    """``vector`` scaled to length 1. InvalidArgumentError if it is empty, holds a NaN or
    an infinity, or is all zeros (a vector with no direction has no cosine)."""
    array = np.asarray(vector, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise InvalidArgumentError(f"{what} must be a non-empty list of numbers")
    if not np.isfinite(array).all() or float(np.abs(array).max()) > _FLOAT32_MAX:
        # Backends store float32: a larger magnitude would become an infinity there.
        raise InvalidArgumentError(f"{what} holds a value that is not a finite float32")
    norm = float(np.linalg.norm(array))
    if norm == 0.0:
        raise InvalidArgumentError(f"{what} is all zeros")
    return array / norm


def unique_items(items: Sequence[VectorItem]) -> list[VectorItem]:
    """``items`` with one entry per memory_id (the last one wins, as replacing would)."""
    return list({item.memory_id: item for item in items}.values())


def check_space(held: Space | None, model_id: str, dimension: int | None, *, what: str) -> None:
    """InvalidArgumentError unless (model_id, dimension) is the space the index holds
    (any space is accepted while it holds none; a None dimension checks the model only)."""
    if held is None:
        return
    held_model, held_dimension = held
    if model_id != held_model:
        raise InvalidArgumentError(
            f"{what}: model_id {model_id!r} is not the index's embedding space "
            f"({held_model!r}); reset the index and re-embed every memory to change models"
        )
    if dimension is not None and dimension != held_dimension:
        raise InvalidArgumentError(
            f"{what}: a vector of {dimension} values does not fit the index, whose "
            f"{held_model!r} vectors have {held_dimension}"
        )


def batch_dimension(model_id: str, items: Sequence[VectorItem]) -> int | None:
    """The one dimension of ``items`` (None when there are none). InvalidArgumentError if
    their lengths differ or a vector is not usable (see :func:`unit`)."""
    if not model_id:
        raise InvalidArgumentError("model_id must not be empty")
    dimension: int | None = None
    for item in items:
        unit(item.vector, what=f"the vector of memory {item.memory_id}")
        if dimension is None:
            dimension = len(item.vector)
        elif len(item.vector) != dimension:
            raise InvalidArgumentError(
                f"the vector of memory {item.memory_id} has {len(item.vector)} values, "
                f"others in the same upsert have {dimension}: one space per index"
            )
    return dimension


def ranked(
    scored: Sequence[tuple[MemoryId, float]], limit: int
) -> list[tuple[MemoryId, float]]:
    """The best ``limit`` of ``scored``: highest score first, ties by memory_id; scores
    clamped to [-1, 1] (rounding can step just outside)."""
    best = sorted(scored, key=lambda pair: (-pair[1], pair[0]))[: max(limit, 0)]
    return [(memory_id, clamp(score)) for memory_id, score in best]


def clamp(score: float) -> float:
    """``score`` as a float clamped to [-1, 1] (rounding can step just outside)."""
    return min(1.0, max(-1.0, float(score)))
