"""The server the latency benchmarks measure: ``mcp-checkpoint serve`` on stdio, plus a
``noop`` tool that the benchmark registers itself (the product has none).

``noop`` takes the same payload as ``record_step`` and passes through the same guard and
middleware, so ``record_step p50 / noop p50`` is what recording costs beyond the protocol:
argument validation, the core service and the durable append.

    python -m bench._server      (spawned by ``bench loop``; configured by the environment)
"""

from __future__ import annotations

import gc
import logging
import sys
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, JsonValue

from mcp_checkpoint import Settings, build_server
from mcp_checkpoint.cli._common import startup
from mcp_checkpoint.server.errors import guard_tool

__all__ = ["add_noop_tool", "main"]


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


def main() -> int:
    settings = Settings()
    logging.basicConfig(stream=sys.stderr, level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with startup():  # as ``mcp-checkpoint serve`` starts (cli/serve.py)
        server = build_server(settings)
        add_noop_tool(server)
    gc.freeze()
    server.run("stdio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
