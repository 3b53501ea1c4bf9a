"""Near duplicates inside one proposal batch, in time linear in the batch size.

Comparing every item with every other one (re-tokenising both texts per pair) made a batch
of 100 long items take seconds. Here each text is tokenised once; candidate pairs come
from MinHash locality-sensitive hashing (``BANDS`` bands of ``ROWS`` rows: two texts with
word-set Jaccard similarity ``s`` share a band with probability ``1 - (1 - s**ROWS)**BANDS``,
above 0.99 from s = 0.5 on, and 0.88 at the 0.35 floor that makes two texts "related");
each item keeps at most ``MAX_CANDIDATES`` candidates, so the exact Jaccard is computed on
at most ``n * MAX_CANDIDATES`` pairs. With vectors (the embedding model's unit vectors),
the cosine of every pair is one matrix product in numpy, and the ``MAX_CANDIDATES`` best
of each row are kept.

Everything here is CPU work: callers run it on a worker thread, never on the event loop.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["MAX_CANDIDATES", "batch_neighbours", "jaccard", "words"]

_WORD = re.compile(r"\w+", re.UNICODE)
_PRIME = (1 << 61) - 1
ROWS = 2
BANDS = 16
MAX_CANDIDATES = 16


@functools.cache
def _hash_coefficients() -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """The (a, b) of the universal hashes; numpy is imported here, on the first batch, not
    when the server starts."""
    import numpy as np

    rng = np.random.default_rng(20260728)  # fixed: the same batch always gets the same answer
    return (rng.integers(1, _PRIME, size=ROWS * BANDS, dtype=np.uint64),
            rng.integers(0, _PRIME, size=ROWS * BANDS, dtype=np.uint64))


def words(text: str) -> frozenset[str]:
    """The casefolded word set of ``text`` (what Jaccard similarity compares)."""
    return frozenset(w.lower() for w in _WORD.findall(text))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """Jaccard similarity of two word sets, in [0, 1] (0 when either is empty)."""
    if not a or not b:
        return 0.0
    shared = len(a & b)
    return shared / (len(a) + len(b) - shared)


def _signature(ws: frozenset[str]) -> tuple[int, ...]:
    """MinHash signature of a word set (``ROWS * BANDS`` minima of universal hashes)."""
    import numpy as np

    a, b = _hash_coefficients()
    hashes = np.fromiter((zlib.crc32(w.encode("utf-8", "replace")) for w in ws),
                         dtype=np.uint64, count=len(ws))
    # (a * h + b) mod p on 64 bits: h < 2**32 and a < 2**61 can overflow, which only mixes
    # the bits further; each column stays one fixed function of the word.
    mixed = (np.outer(hashes, a) + b) % np.uint64(_PRIME)
    return tuple(int(v) for v in mixed.min(axis=0))


def batch_neighbours(
    texts: Sequence[str],
    vectors: Sequence[Sequence[float]] | None,
    floor: float,
) -> list[list[tuple[int, float]]]:
    """For each text, the other texts of the batch at similarity ``floor`` or above, as
    (index, similarity), best first, at most ``MAX_CANDIDATES`` each: cosine of
    ``vectors`` when given, else word-set Jaccard. Empty texts have no neighbours."""
    if vectors is not None:
        return _dense(texts, vectors, floor)
    sets = [words(t) for t in texts]
    buckets: dict[tuple[int, tuple[int, ...]], list[int]] = {}
    candidates: list[dict[int, None]] = [{} for _ in texts]
    for i, ws in enumerate(sets):
        if not ws:
            continue
        sig = _signature(ws)
        for band in range(BANDS):
            key = (band, sig[band * ROWS:(band + 1) * ROWS])
            bucket = buckets.setdefault(key, [])
            for j in bucket:
                # Each item adds at most MAX_CANDIDATES pairs, so a crowd of identical items
                # costs n * MAX_CANDIDATES comparisons; a bucket keeps its first members.
                if len(candidates[i]) >= MAX_CANDIDATES:
                    break
                candidates[i][j] = None
                candidates[j][i] = None
            if len(bucket) < MAX_CANDIDATES:
                bucket.append(i)
    scores: dict[tuple[int, int], float] = {}
    found: list[list[tuple[int, float]]] = []
    for i, near in enumerate(candidates):
        scored = []
        for j in near:
            pair = (i, j) if i < j else (j, i)
            if pair not in scores:
                scores[pair] = jaccard(sets[i], sets[j])
            scored.append((j, scores[pair]))
        best = sorted(((j, s) for j, s in scored if s >= floor), key=lambda p: (-p[1], p[0]))
        found.append(_keep_earliest(i, best))
    return found


def _keep_earliest(i: int, best: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """The first MAX_CANDIDATES of ``best``, keeping its best earlier item (j < i) even when
    later ones score higher: an item is a duplicate of the earlier one it repeats."""
    kept = best[:MAX_CANDIDATES]
    earlier = next((p for p in best if p[0] < i), None)
    if earlier is not None and earlier not in kept:
        kept[-1] = earlier
    return kept


def _dense(
    texts: Sequence[str], vectors: Sequence[Sequence[float]], floor: float
) -> list[list[tuple[int, float]]]:
    import numpy as np

    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or len(matrix) != len(texts):
        raise ValueError("one vector per text")
    sims = matrix @ matrix.T
    np.fill_diagonal(sims, -np.inf)
    empty = [i for i, t in enumerate(texts) if not t]
    sims[empty, :] = -np.inf
    sims[:, empty] = -np.inf
    found: list[list[tuple[int, float]]] = []
    for i, row in enumerate(sims):
        k = min(MAX_CANDIDATES, len(row))
        best = np.argpartition(-row, k - 1)[:k] if k else np.array([], dtype=np.int64)
        pairs = [(int(j), float(row[j])) for j in best if row[j] >= floor]
        ranked = sorted(pairs, key=lambda p: (-p[1], p[0]))
        earlier = [j for j in range(i) if row[j] >= floor]
        if earlier and all(j >= i for j, _ in ranked):
            j = max(earlier, key=lambda e: row[e])
            ranked = [*ranked[:-1], (j, float(row[j]))] if ranked else [(j, float(row[j]))]
        found.append(ranked)
    return found
