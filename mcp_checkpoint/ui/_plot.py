"""The working-memory curve as SVG geometry (the template draws it; no script needed)."""

from __future__ import annotations

from dataclasses import dataclass

from mcp_checkpoint.core.curation import TokenCurve

__all__ = ["Plot", "plot"]

WIDTH = 760
HEIGHT = 200
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 12, 12, 28


@dataclass(frozen=True)
class Marker:
    """A checkpoint on the curve: x, and what its tooltip says."""

    x: float
    number: int
    checkpoint_id: str
    label: str


@dataclass(frozen=True)
class Plot:
    """Coordinates for the template, in a WIDTH x HEIGHT box."""

    width: int
    height: int
    polyline: str
    budget_y: float
    markers: list[Marker]
    y_ticks: list[tuple[float, int]]
    x_ticks: list[tuple[float, int]]
    left: int
    right: float
    top: int
    bottom: float
    empty: bool


def plot(curve: TokenCurve) -> Plot:
    """Scale ``curve`` into the box: seq on x (1..head), tokens on y (0..max of the
    budget and the highest point, plus headroom)."""
    right, bottom = WIDTH - _RIGHT, HEIGHT - _BOTTOM
    lo = curve.first_seq
    hi = max(curve.head_seq, lo + 1)
    top_value = max([curve.budget_tokens, *(p[1] for p in curve.points)]) * 1.1 or 1

    def x(seq: int) -> float:
        return round(_LEFT + (seq - lo) * (right - _LEFT) / max(hi - lo, 1), 1)

    def y(tokens: int) -> float:
        return round(bottom - tokens * (bottom - _TOP) / top_value, 1)

    polyline = " ".join(f"{x(s)},{y(t)}" for s, t in curve.points)
    markers = [
        Marker(
            x(m.head_seq), m.number, m.checkpoint_id,
            f"checkpoint {m.number} ({m.checkpoint_id}) after step {m.head_seq}, "
            f"covers 1–{m.through_seq}",
        )
        for m in curve.marks
        if m.head_seq >= lo
    ]
    y_ticks = [(y(v), v) for v in (0, curve.budget_tokens // 2, curve.budget_tokens)]
    x_ticks = [(x(s), s) for s in sorted({lo, (lo + hi) // 2, hi})]
    return Plot(
        WIDTH, HEIGHT, polyline, y(curve.budget_tokens), markers, y_ticks, x_ticks,
        _LEFT, right, _TOP, bottom, not curve.points,
    )
