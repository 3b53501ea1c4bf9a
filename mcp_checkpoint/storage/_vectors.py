"""What the numpy VectorIndex backends share: the checks they apply the same way before they
touch their storage, and the in-memory matrix they search (exact cosine)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mcp_checkpoint.core.models import MemoryId, MemoryKind
from mcp_checkpoint.core.ports import VectorItem
from mcp_checkpoint.errors import InvalidArgumentError

__all__ = [
    "FLOAT32_LE", "Matrix", "Space", "batch_dimension", "build_matrix", "check_space", "clamp",
    "ranked", "unique_items", "unit",
]

Space = tuple[str, int]

_FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_LE = np.dtype("<f4")
"""How the backends store a vector's values."""
# Above this many candidates per result, partition before sorting.
_PARTITION_FACTOR = 4


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


def _codes(values: Sequence[str]) -> tuple[npt.NDArray[np.int32], dict[str, int]]:
    table: dict[str, int] = {}
    codes = [table.setdefault(value, len(table)) for value in values]
    return np.asarray(codes, dtype=np.int32), table


def _best(scores: npt.NDArray[np.float32], limit: int) -> npt.NDArray[np.intp]:
    """Positions of the ``limit`` highest scores, best first, ties in position order."""
    n = scores.size
    if n > _PARTITION_FACTOR * limit:
        kth = np.partition(scores, n - limit)[n - limit]  # the limit-th highest score
        candidates = np.flatnonzero(scores >= kth)
    else:
        candidates = np.arange(n)
    order = np.argsort(-scores[candidates], kind="stable")
    return candidates[order[:limit]]


@dataclass(frozen=True)
class Matrix:
    """A tenant's vectors of one space as unit float32 rows in memory_id order, as of
    ``generation`` (a counter its store moves on every change of the tenant's vectors)."""

    space: Space
    generation: int
    ids: list[MemoryId]  # sorted, so row order is memory_id order
    positions: dict[MemoryId, int]  # memory_id -> its row
    rows: npt.NDArray[np.float32]  # (n, dim), unit length
    scopes: npt.NDArray[np.int32]
    scope_codes: dict[str, int]
    kinds: npt.NDArray[np.int32]
    kind_codes: dict[str, int]

    @property
    def nbytes(self) -> int:
        """About what the matrix holds in memory."""
        return int(self.rows.nbytes) + 100 * len(self.ids)

    def rank(
        self, query: npt.NDArray[np.float32], *, limit: int, scope: str | None,
        kind: MemoryKind | None,
    ) -> list[tuple[MemoryId, float]]:
        """The ``limit`` rows nearest to the unit ``query`` that pass the filters, best
        first, ties by memory_id."""
        if limit <= 0 or not self.ids:
            return []
        mask: npt.NDArray[np.bool_] | None = None
        for value, codes, table in (
            (scope, self.scopes, self.scope_codes),
            (kind, self.kinds, self.kind_codes),
        ):
            if value is None:
                continue
            code = table.get(value)
            if code is None:
                return []
            match = codes == code
            mask = match if mask is None else mask & match
        if mask is None:
            positions = np.arange(len(self.ids))
            scores = self.rows @ query
        else:
            positions = np.flatnonzero(mask)
            scores = self.rows[positions] @ query
        best = _best(scores, limit)
        return [(self.ids[int(positions[i])], clamp(float(scores[i]))) for i in best]

    def similarities(
        self, query: npt.NDArray[np.float32], memory_ids: Sequence[MemoryId]
    ) -> dict[MemoryId, float]:
        """Cosine of the unit ``query`` to each of ``memory_ids`` that has a row."""
        wanted = list(dict.fromkeys(
            memory_id for memory_id in memory_ids if memory_id in self.positions
        ))
        if not wanted:
            return {}
        rows = np.fromiter(
            (self.positions[memory_id] for memory_id in wanted), dtype=np.intp, count=len(wanted)
        )
        scores = self.rows[rows] @ query
        return {
            memory_id: clamp(float(score)) for memory_id, score in zip(wanted, scores, strict=True)
        }


def build_matrix(
    space: Space, generation: int, rows: Sequence[tuple[str, str, str, bytes]]
) -> Matrix:
    """A :class:`Matrix` from stored rows (memory_id, scope, kind, little-endian float32
    vector), sorted by memory_id; each row is scaled to unit length."""
    dim = space[1]
    matrix = np.frombuffer(b"".join(row[3] for row in rows), dtype=FLOAT32_LE)
    matrix = matrix.astype(np.float32).reshape(len(rows), dim)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix /= np.where(norms == 0, 1, norms)
    scopes, scope_codes = _codes([row[1] for row in rows])
    kinds, kind_codes = _codes([row[2] for row in rows])
    ids = [MemoryId(row[0]) for row in rows]
    return Matrix(
        space=space,
        generation=generation,
        ids=ids,
        positions={memory_id: position for position, memory_id in enumerate(ids)},
        rows=matrix,
        scopes=scopes,
        scope_codes=scope_codes,
        kinds=kinds,
        kind_codes=kind_codes,
    )
