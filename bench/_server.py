"""The server the latency benchmarks measure: ``mcp-checkpoint serve`` on stdio, plus a
``noop`` tool that the benchmark registers itself (the product has none).

``noop`` takes the same payload as ``record_step`` and passes through the same guard and
middleware, so ``record_step p50 / noop p50`` is what recording costs beyond the protocol:
argument validation, the core service and the durable append.

    python -m bench._server      (spawned by ``bench loop``; configured by the environment)

With ``BENCH_SERVER_TIMES=PATH`` in its environment it also times each tool call inside the
server, from the request's line read on stdin to the answer's line written on stdout, and
writes the seconds by tool to PATH as JSON when stdin ends (``bench loop --server-times``).
A call whose arguments name the tool ``MINIMAL_TOOL`` (``record_step``'s ``tool``, or the
``noop`` payload's) is filed as ``<name> (minimal)``.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from io import TextIOWrapper
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, JsonValue

from mcp_checkpoint import Settings, build_server
from mcp_checkpoint.cli._common import startup
from mcp_checkpoint.server.errors import guard_tool

__all__ = ["MINIMAL_TOOL", "add_noop_tool", "main"]

# The ``tool`` of the steps of a few bytes that ``bench loop`` records beside the real ones.
MINIMAL_TOOL = "bench-minimal-step"


class NoopResult(BaseModel):
    """The answer of the no-op tool."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    ok: bool


async def noop(ctx: Context[Any, Any], payload: JsonValue = None) -> NoopResult:
    """Do nothing (benchmarks compare record_step with this floor)."""
    _ = ctx.request_context.lifespan_context  # what every real tool looks up first
    return NoopResult(ok=True)


def add_noop_tool(server: MCPServer[Any]) -> None:
    """Register ``noop`` on ``server``, guarded like the real tools."""
    server.add_tool(
        guard_tool(noop),
        name="noop",
        annotations=ToolAnnotations(title="No-op", read_only_hint=True, destructive_hint=False,
                                    idempotent_hint=True, open_world_hint=False),
        structured_output=True,
    )


class _TimedLines:
    """A text stream of the stdio transport that notes when each line passed; the lines
    are read only when the figures are written (no parsing on the timed path)."""

    def __init__(self, inner: anyio.AsyncFile[str], log: list[tuple[float, str]]) -> None:
        self._inner = inner
        self._log = log

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        async for line in self._inner:
            self._log.append((time.perf_counter(), line))
            yield line

    async def write(self, text: str) -> int:
        self._log.append((time.perf_counter(), text))
        return await self._inner.write(text)

    async def flush(self) -> None:
        await self._inner.flush()


def _call_times(
    received: list[tuple[float, str]], sent: list[tuple[float, str]]
) -> dict[str, list[float]]:
    """Seconds from each tools/call request read to its answer written, by tool name."""
    asked: dict[Any, tuple[str, float]] = {}
    for at, line in received:
        message = json.loads(line)
        if message.get("method") != "tools/call":
            continue
        params = message["params"]
        arguments = params.get("arguments") or {}
        payload = arguments.get("payload")
        tool = arguments.get("tool") or (payload.get("tool") if isinstance(payload, dict) else None)
        name = params["name"] + (" (minimal)" if tool == MINIMAL_TOOL else "")
        asked[message["id"]] = (name, at)
    times: dict[str, list[float]] = {}
    for at, text in sent:
        message = json.loads(text)
        if "id" in message and message["id"] in asked:
            name, start = asked.pop(message["id"])
            times.setdefault(name, []).append(at - start)
    return times


async def _serve_timed(server: MCPServer[Any]) -> dict[str, list[float]]:
    from mcp.server.stdio import stdio_server

    received: list[tuple[float, str]] = []
    sent: list[tuple[float, str]] = []
    stdin = anyio.wrap_file(TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace"))
    stdout = anyio.wrap_file(TextIOWrapper(sys.stdout.buffer, encoding="utf-8"))
    streams = stdio_server(
        stdin=_TimedLines(stdin, received),  # type: ignore[arg-type]
        stdout=_TimedLines(stdout, sent),  # type: ignore[arg-type]
    )
    async with streams as (read, write):
        lowlevel = server._lowlevel_server  # what run_stdio_async runs
        await lowlevel.run(read, write, lowlevel.create_initialization_options())
    return _call_times(received, sent)


def main() -> int:
    settings = Settings()
    logging.basicConfig(stream=sys.stderr, level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with startup():  # as ``mcp-checkpoint serve`` starts (cli/serve.py)
        server = build_server(settings)
        add_noop_tool(server)
    gc.freeze()
    times_path = os.environ.get("BENCH_SERVER_TIMES")
    if times_path:
        times = anyio.run(_serve_timed, server)
        with open(times_path, "w", encoding="utf-8") as out:
            json.dump(times, out)
    else:
        server.run("stdio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
