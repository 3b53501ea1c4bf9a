"""In-process MCP clients against ``build_server`` on the in-memory store.

Most behaviour must be the same in both protocol eras, so the ``mode`` fixture runs a
test twice: ``auto`` (negotiates 2026-07-28) and ``legacy`` (the 2025-11-25 handshake).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.server import MCPServer
from mcp_types import CallToolResult, TextContent

from mcp_checkpoint.config import Settings
from mcp_checkpoint.server.app import build_server

MODES = [pytest.param("auto", id="auto"), pytest.param("legacy", id="legacy")]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    return mode


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(store_url="memory://", data_dir=tmp_path)


@pytest.fixture
def server(settings: Settings) -> MCPServer[Any]:
    return build_server(settings)


@pytest.fixture
async def client(server: MCPServer[Any], mode: str) -> AsyncIterator[Client]:
    async with Client(server, mode=mode) as connected:
        yield connected


def text_of(result: CallToolResult) -> str:
    """The text of a tool result's single text block."""
    assert len(result.content) == 1
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


async def call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """Call a tool that must succeed; its structured output."""
    result = await client.call_tool(tool, args)
    assert not result.is_error, text_of(result)
    structured: dict[str, Any] | None = result.structured_content
    assert structured is not None
    return structured


async def call_error(client: Client, tool: str, args: dict[str, Any]) -> str:
    """Call a tool that must fail; its error text."""
    result = await client.call_tool(tool, args)
    assert result.is_error, result.structured_content
    return text_of(result)


async def start_run(client: Client, run_id: str = "r1", **extra: Any) -> dict[str, Any]:
    return await call(
        client, "start_run", {"objective": "Fix the flaky login test", "run_id": run_id, **extra}
    )


async def record(
    client: Client, run_id: str = "r1", n: int = 1, **extra: Any
) -> list[dict[str, Any]]:
    """Record ``n`` ordinary steps; their acks."""
    acks = []
    for i in range(n):
        args: dict[str, Any] = {
            "run_id": run_id,
            "tool": "bash",
            "input": {"cmd": f"pytest tests/test_login.py -k case{i}"},
            "output": f"case{i}: 1 passed",
            **extra,
        }
        acks.append(await call(client, "record_step", args))
    return acks
