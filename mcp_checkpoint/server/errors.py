"""The one boundary where exceptions become tool errors.

Our own errors become ``ToolError("<code>: <message>")`` (their messages are written for
the caller). Anything else is logged with its stack trace and reported as a bare
``internal`` error: no DSN, path or trace ever reaches the client.
"""

from __future__ import annotations

import functools
import json
import logging
import math
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
    "prompt_get_middleware",
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


def _name(path: str, limit: int = 60) -> str:
    """A field path as an error may show it: printable as UTF-8 and bounded (paths hold the
    caller's own keys, which may be anything)."""
    text = path.encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(exc: ValidationError) -> str:
    """Field names and what is wrong with them, never the rejected values."""
    parts: list[str] = []
    for err in exc.errors()[:5]:
        loc = _name(".".join(str(p) for p in err["loc"])) or "arguments"
        parts.append(f"field '{loc}': {err['msg']}")
    more = len(exc.errors()) - 5
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


_Path = tuple[Any, ...]  # (parent path, key) pairs, rendered only when reported


def _render(path: _Path) -> str:
    parts: list[str] = []
    while path:
        path, key = path
        parts.append(str(key))
    return ".".join(reversed(parts))


def _not_json(args: dict[str, Any]) -> tuple[str, str] | None:
    """The first value that JSON cannot carry faithfully, as (its field path, what is
    wrong), or None when every value is plain JSON.

    Two kinds slip past the argument models: text holding a lone surrogate (U+D800-U+DFFF),
    which no UTF-8 can encode, so it reached the store's driver as an encoding error rather
    than a bad argument; and NaN or Infinity, which the stdio transport's parser accepts
    and which JSON values (a step's input, a checkpoint's state) then stored as invalid JSON
    that strict readers of the ledger cannot parse.
    """
    try:  # one pass in C (~1 ms for 100 kB); the walk below only names the field
        json.dumps(
            args, ensure_ascii=False, allow_nan=False, check_circular=False, default=repr
        ).encode("utf-8")
        return None
    except (UnicodeEncodeError, ValueError, RecursionError):
        pass  # RecursionError: nesting too deep for the C encoder; the walk has no recursion
    stack: list[tuple[_Path, Any]] = [((), args)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                where = _render(path) or "arguments"
                return where, "text must be valid Unicode (it holds a lone surrogate)"
        elif isinstance(value, float) and not math.isfinite(value):
            return _render(path) or "arguments", "NaN and Infinity are not JSON numbers"
        elif isinstance(value, dict):
            for key, item in value.items():
                stack.append(((path, key), item))
                stack.append(((path, f"{key!s} (a key)"), key))
        elif isinstance(value, list):
            stack += [((path, i), item) for i, item in enumerate(value)]
    return None


def error_result(ctx: ServerRequestContext[Any, Any], text: str) -> dict[str, Any]:
    """A tool-error result in wire form (middleware that answers owns the envelope)."""
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": True}
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        result["resultType"] = "complete"
    return result


def _shown(name: object) -> str:
    """A caller-supplied name as an error may show it: quoted, printable, bounded."""
    return repr(_name(name)) if isinstance(name, str) else "(no name)"


def prompt_get_middleware(server: MCPServer[Any]) -> ServerMiddleware[Any]:
    """Middleware for ``prompts/get``: an unknown prompt, a missing required argument or an
    argument the prompt does not take is the spec's ``-32602`` with a coded message
    (``not_found: ...`` / ``invalid_argument: ...``), in both protocol flows, and nothing is
    logged as a failure (the SDK would answer code 0, or -32603 under 2026-07-28, and log a
    traceback)."""

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "prompts/get" or not isinstance(ctx.params, dict):
            return await call_next(ctx)
        name = ctx.params.get("name")
        prompt = server._prompt_manager.get_prompt(name) if isinstance(name, str) else None
        if prompt is None:
            known = ", ".join(p.name for p in server._prompt_manager.list_prompts())
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"not_found: prompt {_shown(name)} does not exist; the prompts are "
                f"{known}",
            )
        args = ctx.params.get("arguments") or {}
        if not isinstance(args, dict):
            raise MCPError(code=INVALID_PARAMS, message="invalid_argument: arguments must be "
                           "a JSON object of strings")
        declared = prompt.arguments or []
        missing = [a.name for a in declared if a.required and args.get(a.name) in (None, "")]
        if missing:
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"invalid_argument: prompt {prompt.name} needs argument(s) "
                f"{', '.join(missing)}",
            )
        known_args = {a.name for a in declared}
        unknown = sorted(_name(str(k)) for k in args if k not in known_args)
        if unknown:
            accepts = ", ".join(sorted(known_args)) or "no arguments"
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"invalid_argument: unknown argument(s) {', '.join(unknown[:5])}; "
                f"prompt {prompt.name} accepts {accepts}",
            )
        not_text = sorted(_name(str(k)) for k, v in args.items() if not isinstance(v, str))
        if not_text:
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"invalid_argument: prompt arguments are strings; "
                f"{', '.join(not_text[:5])} is not",
            )
        return await call_next(ctx)

    return middleware


def tool_call_middleware(server: MCPServer[Any]) -> ServerMiddleware[Any]:
    """Middleware for ``tools/call``: arguments are validated up front into
    ``invalid_argument: field 'x': ...`` (unknown fields, text that is not valid Unicode and
    numbers that are not JSON included, rejected values never echoed), and the SDK's
    ``Error executing tool NAME: `` prefix is removed so every tool error text starts with
    its stable code.
    """

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call" or not isinstance(ctx.params, dict):
            return await call_next(ctx)
        name = ctx.params.get("name")
        tool = server._tool_manager.get_tool(name) if isinstance(name, str) else None
        if tool is None:
            # The spec's protocol error for an unknown tool (not a tool result): -32602.
            tools = ", ".join(t.name for t in server._tool_manager.list_tools())
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"not_found: tool {_shown(name)} does not exist; the tools are {tools}",
            )
        args = ctx.params.get("arguments") or {}
        if not isinstance(args, dict):
            return error_result(ctx, "invalid_argument: arguments must be a JSON object")
        bad = _not_json(args)
        if bad is not None:
            return error_result(ctx, f"invalid_argument: field '{_name(bad[0])}': {bad[1]}")
        known = set(tool.parameters.get("properties", {}))
        unknown = sorted(_name(str(k)) for k in args if k not in known)
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
