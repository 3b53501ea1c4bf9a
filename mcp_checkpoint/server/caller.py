"""The caller of the MCP request being handled, in a context variable.

The remote transports' middleware (``auth.caller_middleware``) sets it for each request;
``Services.tenant()`` reads it. It lives apart from ``auth`` so that a stdio server, which
has no callers, does not import the token machinery.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["CALLER", "Caller", "current_caller"]


@dataclass(frozen=True)
class Caller:
    """The authenticated caller of one MCP request."""

    tenant: str
    scopes: frozenset[str]
    principal: str


CALLER: ContextVar[Caller | None] = ContextVar("mcp_checkpoint_caller", default=None)


def current_caller() -> Caller | None:
    """The caller of the MCP request being handled (None outside one, and on stdio)."""
    return CALLER.get()
