"""``mcp-checkpoint serve``: the MCP server on stdio, or over streamable HTTP / SSE."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp_checkpoint.config import Settings

__all__ = ["register"]


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Serve MCP on stdio, or over streamable HTTP / SSE."""
    import logging

    from mcp_checkpoint.errors import ConfigError

    if args.workers != 1 and args.transport == "stdio":
        raise ConfigError("--workers applies to --transport http only")
    if args.transport != "stdio":
        from mcp_checkpoint.server.http import HttpOptions, serve_http

        if args.stateless and args.transport != "http":
            raise ConfigError("--stateless applies to --transport http only")
        return serve_http(
            settings,
            HttpOptions(
                transport=args.transport, host=args.host, port=args.port, auth=not args.no_auth,
                stateless=args.stateless, json_response=args.json_response,
                workers=args.workers,
            ),
            insecure_public=args.insecure_no_auth_on_public_interface,
        )
    import gc

    from mcp_checkpoint.cli._common import startup

    with startup():
        from mcp_checkpoint.server.app import build_server
        from mcp_checkpoint.storage._urls import mask_url

        server = build_server(settings)
    # What start-up made lives as long as the server: later collections need not walk it.
    gc.freeze()
    logging.getLogger("mcp_checkpoint").info(
        "serving on stdio (store: %s)",
        mask_url(settings.store_url) if settings.store_url else settings.sqlite_path,
    )
    try:
        import anyio

        from mcp_checkpoint.server._stdio import run_stdio

        anyio.run(run_stdio, server)
    except BaseException as exc:
        # The store opens inside the SDK's task group: a store that cannot open (corrupt,
        # unreachable) arrives wrapped in exception groups. Unwrapped, main prints its one
        # line; anything else keeps its traceback.
        found = _checkpoint_error(exc)
        if found is None:
            raise
        raise found from None
    return 0


def _checkpoint_error(exc: BaseException) -> Exception | None:
    """The first of our own errors in ``exc`` or the groups it nests, if any."""
    from mcp_checkpoint.errors import CheckpointError

    if isinstance(exc, CheckpointError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _checkpoint_error(inner)
            if found is not None:
                return found
    return None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve``."""
    serve = sub.add_parser("serve", help="run the MCP server (stdio, streamable HTTP or SSE)")
    serve.add_argument("--transport", choices=["stdio", "http", "sse"], default="stdio",
                       help="stdio (default); http = streamable HTTP at /mcp; sse = SSE at /sse")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (http/sse; default 127.0.0.1, loopback only)")
    serve.add_argument("--port", type=int, default=8000, help="port (0 = any free port)")
    serve.add_argument("--stateless", action="store_true",
                       help="streamable HTTP without sessions: any replica answers any request")
    serve.add_argument("--json-response", action="store_true",
                       help="streamable HTTP answers with JSON bodies instead of SSE streams")
    serve.add_argument("--workers", type=int, default=1,
                       help="server processes sharing the port (with --stateless; each has "
                       "its own store connections and embedding model; default 1)")
    serve.add_argument("--no-auth", action="store_true",
                       help="accept requests without a bearer token (loopback only); every "
                       "caller is the configured tenant")
    serve.add_argument("--insecure-no-auth-on-public-interface", action="store_true",
                       help="allow --no-auth on a non-loopback address (anyone who can reach "
                       "the port reads and writes everything)")
    serve.set_defaults(func=cmd_serve)
