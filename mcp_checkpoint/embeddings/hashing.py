"""A dependency-free embedder: signed feature hashing of words and word pairs.

Texts that share words get similar vectors; texts that only share meaning do not. It needs
no model and no download, is ready at once and is fully deterministic (across processes,
platforms and Python versions: it uses blake2b, not ``hash()``), which makes it the embedder
of the tests and a zero-dependency option for deployments that want vector search on
shared vocabulary.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Sequence

__all__ = ["HashingEmbedder"]

_WORD = re.compile(r"\w+")
_EMPTY = "\x00empty"  # the feature of a text without words, so its vector has unit length too
_BIGRAM_WEIGHT = 0.5  # word pairs add order and phrase information, but words dominate


class HashingEmbedder:
    """Feature hashing of lower-cased word unigrams and bigrams into ``dimension`` buckets.

    Each feature adds ``±weight`` to the bucket its blake2b digest picks (the sign comes from
    the digest too, so collisions cancel out on average); the vector is then L2-normalized.

    Args:
        dimension: Length of every vector.
    """

    def __init__(self, dimension: int = 256) -> None:
        if dimension < 1:
            raise ValueError("dimension must be positive")
        self.dimension = dimension
        self.model_id = f"hashing-v1-{dimension}"

    def start(self) -> None:
        """Nothing to load."""

    @property
    def ready(self) -> bool:
        """Always True."""
        return True

    @property
    def failure(self) -> str | None:
        """Always None."""
        return None

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector per text, in order (computed inline: microseconds each)."""
        return [self.vector(text) for text in texts]

    def vector(self, text: str) -> list[float]:
        """The unit-length vector of one text."""
        words = _WORD.findall(text.lower())
        features = [(word, 1.0) for word in words]
        features += [(f"{a} {b}", _BIGRAM_WEIGHT) for a, b in itertools.pairwise(words)]
        if not features:
            features = [(_EMPTY, 1.0)]
        vec = [0.0] * self.dimension
        for feature, weight in features:
            digest = int.from_bytes(
                hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "big"
            )
            sign = 1.0 if digest >> 63 else -1.0
            vec[digest % self.dimension] += sign * weight
        norm = math.sqrt(sum(x * x for x in vec))
        if norm == 0.0:  # every feature cancelled out in shared buckets: fall back to one
            vec[0], norm = 1.0, 1.0
        return [x / norm for x in vec]
