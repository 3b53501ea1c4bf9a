"""The embedding model starts loading after ``initialize`` is answered, not before."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mcp import Client

from mcp_checkpoint.config import Settings
from mcp_checkpoint.server.app import Runtime, server_for, warm_up_middleware

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


async def test_initialize_does_not_start_the_model_the_next_message_does(tmp_path: Path) -> None:
    runtime, started = _runtime(tmp_path)
    middleware = warm_up_middleware(runtime)
    seen: list[str] = []

    async def call_next(ctx: Any) -> dict[str, Any]:
        seen.append(ctx.method)
        return {}

    await middleware(SimpleNamespace(method="initialize"), call_next)  # type: ignore[arg-type]
    assert started == []
    await middleware(SimpleNamespace(method="notifications/initialized"), call_next)  # type: ignore[arg-type]
    await middleware(SimpleNamespace(method="tools/list"), call_next)  # type: ignore[arg-type]
    assert started == ["start"]
    assert seen == ["initialize", "notifications/initialized", "tools/list"]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_connected_client_gets_the_model_started_and_hybrid_search(
    tmp_path: Path, mode: str
) -> None:
    runtime, started = _runtime(tmp_path)
    async with Client(server_for(runtime), mode=mode) as client:
        await client.list_tools()
        assert started  # the first message after initialize started it
        proposed = await client.call_tool("propose_memory", {"items": [
            {"content": "the deploy script lives in tools/deploy.sh", "kind": "fact"}
        ]})
        assert not proposed.is_error
        batch = (proposed.structured_content or {})["batch_id"]
        committed = await client.call_tool("commit_memory", {"batch_id": batch})
        assert not committed.is_error
        found = await client.call_tool("search_memory", {"query": "where is the deploy script"})
        assert not found.is_error
        view = found.structured_content or {}
        assert view["hits"], view
        assert "lexical search only" not in view["note"], view
