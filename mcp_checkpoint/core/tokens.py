"""Placeholder offline token counter (replaced by the tuned heuristic)."""

from __future__ import annotations

import math


class HeuristicTokenizer:
    """Counts a token per three characters (conservative for English and code)."""

    name = "chars3"

    def count(self, text: str) -> int:
        """Tokens in ``text``."""
        return math.ceil(len(text.encode("utf-8")) / 3)

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix within ``max_tokens``."""
        out = text[: max(max_tokens, 0) * 3]
        while self.count(out) > max_tokens:
            out = out[:-1]
        return out
