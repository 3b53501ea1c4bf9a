"""Serving on stdio with an answer for every line.

The SDK's stdio transport hands a line it cannot parse or validate to the session as an
exception, and the session drops it: a client that sent a lone surrogate, JSON nested a
thousand deep, a 5,000-digit integer or bytes that are not UTF-8 waited forever for an
answer. Here such a line is answered with a JSON-RPC error: -32700 (parse error) when it
is not JSON, -32600 (invalid request) when it is JSON but not a valid message; the error
carries the request's id when one can be read safely, else null (as JSON-RPC 2.0 says).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types as types
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

if TYPE_CHECKING:
    from mcp.server import MCPServer

__all__ = ["run_stdio"]

logger = logging.getLogger("mcp_checkpoint.server")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
_MAX_ID_CHARS = 200


def _safe_id(value: object) -> str | int | None:
    """``value`` as a response id when it is one JSON can carry back faithfully."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and abs(value) < 2**53:
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value) if abs(value) < 2**53 else None
    if isinstance(value, str) and len(value) <= _MAX_ID_CHARS:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return value
    return None


def error_for(exc: Exception) -> types.JSONRPCError:
    """The JSON-RPC error that answers a line the transport could not turn into a message."""
    code, what = PARSE_ERROR, "Parse error: the line is not valid JSON (or not UTF-8)"
    request_id: str | int | None = None
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_context=False)
        if not any(e.get("type") == "json_invalid" for e in errors):
            code, what = INVALID_REQUEST, "Invalid Request: the line is not a JSON-RPC message"
        for error in errors:
            found: Any = error.get("input")
            if isinstance(found, dict) and "id" in found:
                request_id = _safe_id(found["id"])
                break
    return types.JSONRPCError(
        jsonrpc="2.0", id=request_id, error=types.ErrorData(code=code, message=what)
    )


async def run_stdio(server: MCPServer[Any]) -> None:
    """Serve ``server`` on stdin/stdout until stdin closes."""
    low = server._lowlevel_server
    async with stdio_server() as (read_stream, write_stream):
        send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)

        async def answer_unreadable_lines() -> None:
            async with send:
                async for item in read_stream:
                    if isinstance(item, Exception):
                        logger.info("answered an unreadable line: %s", type(item).__name__)
                        await write_stream.send(SessionMessage(error_for(item)))
                        continue
                    await send.send(item)

        async with anyio.create_task_group() as tg:
            tg.start_soon(answer_unreadable_lines)
            await low.run(receive, write_stream, low.create_initialization_options())
            tg.cancel_scope.cancel()
