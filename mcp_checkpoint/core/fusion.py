"""Hybrid ranking: a convex blend of min-max normalised lexical and vector scores.

Measured on the LoCoMo dev split (759 questions, categories 1-4, all-MiniLM-L6-v2, every
conversation in one store, searches scoped to their conversation): naive reciprocal-rank
fusion (k=60) scored turn recall@5 0.492 against 0.537 for lexical alone, while this blend
over the union of each side's top 50 scored 0.577 (0.550 before lexical word weights came
from the searched scope only), and 0.604 once BM25 stopped normalising memory lengths
(``core.lexical.bm25_weight``; lexical alone 0.568). z-score instead of min-max
normalisation, scoring every memory instead of the top 50s, pseudo-relevance feedback on
the vector side, alpha anywhere in 0.4-0.6, 20 to 100 candidates a side, a per-query
alpha from each side's confidence (the gap between its top scores) and a saturating
lexical score (s / (s + c), or the share of the query's idf matched) instead of min-max
each moved it by less than 0.01, most of them down. Raising memories committed next to a
strong hit gained about 0.025, but only because a LoCoMo memory is one turn of a
conversation, whose answer often sits in the turn after the question's words: it is not
done. Without vectors the ranking is exactly the lexical one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["ALPHA", "CANDIDATES", "Fused", "fuse"]

ALPHA = 0.5
"""Weight of the lexical side."""
CANDIDATES = 50
"""Candidates taken from each side."""


@dataclass(frozen=True)
class Fused:
    """One fused hit with the scores and ranks it came from."""

    memory_id: str
    score: float
    lexical: float | None
    lexical_rank: int | None
    vector: float | None
    vector_rank: int | None


def _minmax(values: dict[str, float]) -> dict[str, float]:
    low, high = min(values.values()), max(values.values())
    if high <= low:
        return dict.fromkeys(values, 0.0)
    return {key: (value - low) / (high - low) for key, value in values.items()}


def fuse(
    lexical: Sequence[tuple[str, float]],
    vector: Sequence[tuple[str, float]] | None,
    *,
    alpha: float = ALPHA,
    extra_vector_scores: Mapping[str, float] | None = None,
) -> list[Fused]:
    """Blend two best-first ranked lists of (id, score).

    ``vector`` None (no embedder, model not loaded, no vectors) returns the lexical ranking
    unchanged. Otherwise every candidate gets ``alpha * L + (1 - alpha) * D`` with L and D
    min-max normalised over the candidates (a candidate missing from the lexical list has
    lexical score 0), ordered by the blend, then lexical rank, then id.

    A candidate missing from the vector list takes its score from ``extra_vector_scores``
    (its exact cosine, computed outside the ranking) and still has no vector rank; one
    missing from both gets the lowest score of the vector list (0.0 when it is empty).
    Entries of ``extra_vector_scores`` that are not lexical candidates, or that the vector
    list already scores, are ignored. Ignored too when ``vector`` is None.
    """
    lex_rank = {key: rank for rank, (key, _) in enumerate(lexical, 1)}
    lex_score = dict(lexical)
    if vector is None:
        return [
            Fused(key, score, score, lex_rank[key], None, None) for key, score in lexical
        ]
    vec_rank = {key: rank for rank, (key, _) in enumerate(vector, 1)}
    vec_score = dict(vector)
    candidates = list(dict.fromkeys([*lex_rank, *vec_rank]))
    if not candidates:
        return []
    floor = min(vec_score.values()) if vec_score else 0.0
    extra = extra_vector_scores or {}
    exact = vec_score | {
        key: extra[key] for key in lex_rank if key not in vec_score and key in extra
    }
    norm_lex = _minmax({key: lex_score.get(key, 0.0) for key in candidates})
    norm_vec = _minmax({key: exact.get(key, floor) for key in candidates})
    blended = [
        Fused(
            key,
            alpha * norm_lex[key] + (1 - alpha) * norm_vec[key],
            lex_score.get(key),
            lex_rank.get(key),
            exact.get(key),
            vec_rank.get(key),
        )
        for key in candidates
    ]
    last = len(candidates) + 1
    blended.sort(key=lambda f: (-f.score, f.lexical_rank or last, f.memory_id))
    return blended
