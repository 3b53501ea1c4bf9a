"""Small, dependency-free statistics for the benchmarks (percentiles, summaries) and
how a benchmark hands its report out."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["emit", "percentile", "ratio", "summary", "write_json"]


def emit(text: str, report: dict[str, Any], json_path: Path | None) -> None:
    """Print the rendered report, and write it as JSON when asked."""
    sys.stdout.write(text + "\n")
    write_json(report, json_path)


def write_json(report: Any, json_path: Path | None) -> None:
    """Write ``report`` as JSON to ``json_path`` (its folder made if needed); nothing when
    None."""
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks
    (numpy's default); NaN for no values."""
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must lie in [0, 100], got {q}")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(values: Sequence[float]) -> dict[str, float | None]:
    """``n``, ``p50``, ``p99``, ``mean``, ``min`` and ``max`` of ``values``, rounded to 3
    places (microseconds for milliseconds); None for no values (JSON has no NaN)."""
    if not values:
        return dict.fromkeys(("n", "p50", "p99", "mean", "min", "max"), None) | {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 3),
        "p99": round(percentile(values, 99), 3),
        "mean": round(sum(values) / len(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` rounded to 3 places; None when undefined."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    if math.isnan(numerator) or math.isnan(denominator):
        return None
    return round(numerator / denominator, 3)
