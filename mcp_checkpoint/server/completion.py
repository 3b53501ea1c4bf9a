"""``completion/complete``: run, checkpoint, memory and batch ids for the arguments of
prompts and resource templates that take one, from the caller's own tenant."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp_types import CompleteRequestParams, CompleteResult, Completion

from mcp_checkpoint.core.ports import IdKind

if TYPE_CHECKING:
    from mcp.server import MCPServer
    from mcp.server.context import ServerRequestContext

    from mcp_checkpoint.server.services import Services

__all__ = ["ID_ARGUMENTS", "register_completion"]

ID_ARGUMENTS: dict[str, IdKind] = {
    "run_id": "run",
    "checkpoint_id": "checkpoint",
    "memory_id": "memory",
    "batch_id": "batch",
}
"""Which argument names (of prompts and resource templates) complete to which ids."""

_MAX_VALUES = 100  # the most a completion may list (MCP spec)


def register_completion(server: MCPServer[Any]) -> None:
    """Answer ``completion/complete`` on ``server`` (ids by prefix, newest-agnostic: in
    id order, which for this server's ids is creation order)."""

    async def complete(
        ctx: ServerRequestContext[Services, Any], params: CompleteRequestParams
    ) -> CompleteResult:
        kind = ID_ARGUMENTS.get(params.argument.name)
        if kind is None:
            return CompleteResult(completion=Completion(values=[], total=0, has_more=False))
        services = ctx.lifespan_context
        prefix = params.argument.value[:200]
        found = await services.curation.complete(
            services.tenant(), kind, prefix, limit=_MAX_VALUES + 1
        )
        return CompleteResult(completion=Completion(
            values=found[:_MAX_VALUES], has_more=len(found) > _MAX_VALUES,
            total=None if len(found) > _MAX_VALUES else len(found),
        ))

    server._lowlevel_server.add_request_handler(
        "completion/complete", CompleteRequestParams, complete
    )
