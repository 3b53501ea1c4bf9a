"""Shared test configuration.

anyio runs every async test on asyncio. Servers built or spawned by tests embed with the
fast, dependency-free hashing embedder unless a test picks another provider: loading the
real model in every test's server would cost seconds of CPU each (tests that need the real
model say so explicitly).
"""

from __future__ import annotations

import os

import pytest

from tests._postgres import postgres_session_url, postgres_url  # noqa: F401 - fixtures

TEST_EMBEDDINGS = {"MCP_CHECKPOINT_EMBEDDINGS__PROVIDER": "hashing"}


def pytest_configure(config: pytest.Config) -> None:
    for key, value in TEST_EMBEDDINGS.items():
        os.environ.setdefault(key, value)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
