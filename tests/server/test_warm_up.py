"""The embedding model loads when a request first needs it, never on connecting."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from mcp_checkpoint.config import Settings
from mcp_checkpoint.server.app import Runtime, server_for

pytestmark = pytest.mark.anyio


def _runtime(tmp_path: Path) -> tuple[Runtime, list[str]]:
    settings = Settings(
        store_url="memory://", data_dir=tmp_path, embeddings={"provider": "hashing"}
    )
    runtime = Runtime(settings)
    embedder = runtime.services.embedder
    assert embedder is not None
    started: list[str] = []
    real_start = embedder.start

    def start() -> None:
        started.append("start")
        real_start()

    embedder.start = start  # type: ignore[method-assign]
    return runtime, started


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_loop_without_memories_never_loads_the_model(
    tmp_path: Path, mode: str
) -> None:
    runtime, started = _runtime(tmp_path)
    async with Client(server_for(runtime), mode=mode) as client:
        await client.list_tools()
        assert not (await client.call_tool("start_run", {"objective": "x", "run_id": "r"})).is_error
        for n in range(3):
            ack = await client.call_tool("record_step", {"run_id": "r", "tool": "t", "output": n})
            assert not ack.is_error
        assert not (await client.call_tool("rehydrate", {"run_id": "r"})).is_error
        found = await client.call_tool("search_memory", {"query": "anything"})
        assert not found.is_error
        assert started == []  # nothing stored or searchable needed a vector


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_commit_loads_the_model_and_the_next_search_is_hybrid(
    tmp_path: Path, mode: str
) -> None:
    runtime, started = _runtime(tmp_path)
    async with Client(server_for(runtime), mode=mode) as client:
        proposed = await client.call_tool("propose_memory", {"items": [
            {"content": "the deploy script lives in tools/deploy.sh", "kind": "fact"}
        ]})
        assert not proposed.is_error
        batch = (proposed.structured_content or {})["batch_id"]
        committed = await client.call_tool("commit_memory", {"batch_id": batch})
        assert not committed.is_error
        assert started == ["start"]
        found = await client.call_tool("search_memory", {"query": "where is the deploy script"})
        assert not found.is_error
        view = found.structured_content or {}
        assert view["hits"], view
        assert "lexical search only" not in view["note"], view
