"""How tools, resources and prompts reach the process-wide services."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import Context

if TYPE_CHECKING:
    from mcp_checkpoint.server.app import Services


def services_of(ctx: Context[Any, Any]) -> Services:
    """The services the lifespan yielded for this connection."""
    services: Services = ctx.request_context.lifespan_context
    return services
