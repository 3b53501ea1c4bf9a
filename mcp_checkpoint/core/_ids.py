"""Identifiers and time: time-ordered random ids, and an injectable clock."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (the default clock)."""
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """``prefix_`` + 12 hex digits of milliseconds + 10 random hex digits (sortable by time)."""
    return f"{prefix}_{int(time.time() * 1000):012x}{secrets.token_hex(5)}"
