"""Core on in-memory fakes: the reference store, a deterministic tokenizer, a fake clock."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.episodes import Episodes
from mcp_checkpoint.core.memory import MemoryService
from mcp_checkpoint.core.models import Tenant
from mcp_checkpoint.storage.reference.store import ReferenceStore

T = Tenant("local")


class WordTokenizer:
    """One token per 4 characters, rounded up: simple, deterministic, additive enough."""

    name = "test-chars4"

    def count(self, text: str) -> int:
        return math.ceil(len(text) / 4)

    def truncate(self, text: str, max_tokens: int) -> str:
        return text[: max(max_tokens, 0) * 4]


class FakeClock:
    """Time that moves only when told to."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(microseconds=1)
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(store_url="memory://", data_dir=tmp_path)


@pytest.fixture
def store() -> Iterator[ReferenceStore]:
    yield ReferenceStore()


@pytest.fixture
def memory(store: ReferenceStore, settings: Settings, clock: FakeClock) -> MemoryService:
    return MemoryService(store, settings, clock=clock)


@pytest.fixture
def episodes(
    store: ReferenceStore, settings: Settings, clock: FakeClock, memory: MemoryService
) -> Episodes:
    return Episodes(store, WordTokenizer(), settings, memory=memory, clock=clock)
