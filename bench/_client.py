"""A timed stdio MCP client for the benchmarks.

This is one of the modules of ``bench`` that import the MCP SDK (with ``load``, which
drives a server over streamable HTTP, and ``_server``): it spawns
``python -m mcp_checkpoint serve`` (or ``python -m bench._server``, the same server with a
``noop`` tool) with the benchmark's interpreter and this checkout on ``PYTHONPATH``, and
times each tool call as the client sees it, from the request to the validated result.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, TextIO

from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp_types import TextContent

import bench

__all__ = ["BenchError", "TimedClient", "spawn_server"]

# The source checkout the benchmarks run from: the spawned server imports its code.
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(bench.__file__)))

# A tool call that takes longer than this is a hung server, not a slow one.
_CALL_TIMEOUT_SECONDS = 120.0


class BenchError(Exception):
    """The benchmark could not run (bad data, a failing server, a tool error)."""


class TimedClient:
    """Calls tools and returns their structured output with the latency in milliseconds."""

    def __init__(self, client: Client) -> None:
        self._client = client

    async def call(self, name: str, arguments: Mapping[str, Any]) -> tuple[dict[str, Any], float]:
        """Call ``name``; returns (structured output, milliseconds). A tool error raises
        ``BenchError`` (a benchmark never measures failures as if they were answers)."""
        start = time.perf_counter()
        result = await self._client.call_tool(name, dict(arguments))
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        if result.is_error:
            text = " ".join(c.text for c in result.content if isinstance(c, TextContent))
            raise BenchError(f"tool {name} failed: {text}")
        if result.structured_content is None:
            raise BenchError(f"tool {name} returned no structured content")
        return dict(result.structured_content), elapsed_ms


@asynccontextmanager
async def spawn_server(
    env: Mapping[str, str], errlog: TextIO, *, noop: bool = False
) -> AsyncIterator[TimedClient]:
    """Start ``mcp-checkpoint serve`` on stdio (with the benchmark's ``noop`` tool when
    ``noop``) with ``env`` (merged over the SDK's small safe default environment; nothing
    else is inherited but ``PYTHONPATH``, led by this checkout) and connect a client to it.
    The server's stderr goes to ``errlog``."""
    inherited = os.environ.get("PYTHONPATH")
    env = {"PYTHONPATH": os.pathsep.join([_CHECKOUT, *([inherited] if inherited else [])]),
           **env}
    module = ["-m", "bench._server"] if noop else ["-m", "mcp_checkpoint", "serve"]
    params = StdioServerParameters(command=sys.executable, args=module, env=dict(env))
    async with Client(
        stdio_client(params, errlog=errlog), read_timeout_seconds=_CALL_TIMEOUT_SECONDS
    ) as client:
        yield TimedClient(client)
