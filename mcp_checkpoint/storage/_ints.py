"""Integers a caller chooses (offsets, cursors, seqs, limits), as SQL parameters."""

from __future__ import annotations

__all__ = ["INT64_MAX", "int64"]

INT64_MAX = 2**63 - 1


def int64(value: int) -> int:
    """``value`` clamped to the signed 64-bit range of SQLite's INTEGER and PostgreSQL's
    bigint: drivers refuse larger integers (OverflowError, NumericValueOutOfRange), and no
    stored seq, number or count lies beyond it, so the clamped bound selects the same rows."""
    return min(max(value, -INT64_MAX - 1), INT64_MAX)
