"""The one boundary where exceptions become tool errors.

Our own errors become ``ToolError("<code>: <message>")`` (their messages are written for
the caller). Anything else is logged with its stack trace and reported as a bare
``internal`` error: no DSN, path or trace ever reaches the client.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from mcp_checkpoint.errors import CheckpointError, InvalidArgumentError, NotFoundError

if TYPE_CHECKING:
    from mcp.server import MCPServer
    from mcp.server.context import ServerMiddleware

__all__ = [
    "error_result",
    "guard_resource",
    "guard_tool",
    "internal_message",
    "tool_call_middleware",
]

logger = logging.getLogger("mcp_checkpoint.server")

P = ParamSpec("P")
R = TypeVar("R")


def internal_message(what: str) -> str:
    """The only text a client sees about an unexpected failure."""
    return f"internal: {what} failed unexpectedly; the server logged the details"


def guard_tool(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Wrap a tool so every failure reaches the client as a coded, safe tool error."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except CheckpointError as exc:
            raise ToolError(str(exc)) from exc
        except ToolError:
            raise
        except Exception as exc:
            logger.exception("tool %s raised", fn.__name__)
            raise ToolError(internal_message(f"tool {fn.__name__}")) from exc

    return wrapper


def guard_resource(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Wrap a resource reader the same way (resource errors carry the same code prefixes)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except NotFoundError as exc:
            raise ResourceNotFoundError(str(exc)) from exc  # -32602, not an internal error
        except InvalidArgumentError as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc)) from exc
        except CheckpointError as exc:
            raise ResourceError(str(exc)) from exc
        except ResourceError:
            raise
        except Exception as exc:
            logger.exception("resource %s raised", fn.__name__)
            raise ResourceError(internal_message(f"resource {fn.__name__}")) from exc

    return wrapper


def _describe(exc: ValidationError) -> str:
    """Field names and what is wrong with them, never the rejected values."""
    parts: list[str] = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "arguments"
        parts.append(f"field '{loc}': {err['msg']}")
    more = len(exc.errors()) - 5
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def error_result(ctx: ServerRequestContext[Any, Any], text: str) -> dict[str, Any]:
    """A tool-error result in wire form (middleware that answers owns the envelope)."""
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": True}
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        result["resultType"] = "complete"
    return result


def tool_call_middleware(server: MCPServer[Any]) -> ServerMiddleware[Any]:
    """Middleware for ``tools/call``: arguments are validated up front into
    ``invalid_argument: field 'x': ...`` (unknown fields included, rejected values never
    echoed), and the SDK's ``Error executing tool NAME: `` prefix is removed so every tool
    error text starts with its stable code.
    """

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call" or not isinstance(ctx.params, dict):
            return await call_next(ctx)
        name = ctx.params.get("name")
        tool = server._tool_manager.get_tool(name) if isinstance(name, str) else None
        if tool is not None:
            args = ctx.params.get("arguments") or {}
            if not isinstance(args, dict):
                return error_result(ctx, "invalid_argument: arguments must be a JSON object")
            known = set(tool.parameters.get("properties", {}))
            unknown = sorted(str(k) for k in args if k not in known)
            if unknown:
                return error_result(
                    ctx,
                    f"invalid_argument: unknown field(s) {', '.join(unknown[:5])}; "
                    f"{name} accepts {', '.join(sorted(known))}"
                )
            meta = tool.fn_metadata
            try:
                meta.arg_model.model_validate(meta.pre_parse_json(args))
            except ValidationError as exc:
                return error_result(ctx, f"invalid_argument: {_describe(exc)}")
        result = await call_next(ctx)
        if isinstance(result, dict) and result.get("isError") and isinstance(name, str):
            prefix = f"Error executing tool {name}"
            content = result.get("content") or []
            for block in content:
                text = block.get("text") if isinstance(block, dict) else None
                if isinstance(text, str) and text.startswith(prefix):
                    rest = text.removeprefix(prefix).removeprefix(": ")
                    block["text"] = rest or internal_message(f"tool {name}")
        return result

    return middleware
