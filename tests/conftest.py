"""Shared test configuration.

anyio runs every async test on asyncio. Servers built or spawned by tests embed with the
fast, dependency-free hashing embedder unless a test picks another provider: loading the
real model in every test's server would cost seconds of CPU each (tests that need the real
model say so explicitly).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from tests._postgres import postgres_session_url, postgres_url  # noqa: F401 - fixtures

TEST_EMBEDDINGS = {"MCP_CHECKPOINT_EMBEDDINGS__PROVIDER": "hashing"}
_SESSION_DATA_DIR = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    for key, value in TEST_EMBEDDINGS.items():
        os.environ.setdefault(key, value)
    # Settings built without a data_dir (embedders exporting their ONNX file, for one)
    # write under a directory of this session, never the user's real data directory.
    if "MCP_CHECKPOINT_DATA_DIR" not in os.environ:
        os.environ["MCP_CHECKPOINT_DATA_DIR"] = tempfile.mkdtemp(prefix="mcpck-tests-")
        config.stash[_SESSION_DATA_DIR] = os.environ["MCP_CHECKPOINT_DATA_DIR"]


def pytest_unconfigure(config: pytest.Config) -> None:
    if (data_dir := config.stash.get(_SESSION_DATA_DIR, None)) is not None:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
