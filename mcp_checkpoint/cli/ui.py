"""``mcp-checkpoint ui``: the web view of runs, checkpoints and memories on a local port."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp_checkpoint.config import Settings

__all__ = ["register"]


def cmd_ui(settings: Settings, args: argparse.Namespace) -> int:
    """Serve the web view until Ctrl-C. On a loopback address no token is needed (the
    configured tenant's data); on any other address every request needs a bearer token
    (``mcp-checkpoint tokens create``), which decides the tenant and the scopes."""
    import threading
    import webbrowser

    import uvicorn

    from mcp_checkpoint.server.app import Runtime
    from mcp_checkpoint.server.http import is_loopback
    from mcp_checkpoint.ui import UiCaller, Verify, standalone_app

    verify: Verify | None = None
    if not is_loopback(args.host):
        from mcp_checkpoint.server.bearer import TokenFile

        tokens = TokenFile(settings.data_dir)

        async def check(token: str) -> UiCaller | None:
            record = tokens.verify(token)
            if record is None:
                return None
            return UiCaller(record.tenant, frozenset(record.scopes))

        verify = check
    runtime = Runtime(settings)
    app = standalone_app(runtime.services, runtime.use, verify=verify)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{args.port}/ui/"
    sys.stderr.write(
        f"mcp-checkpoint web view on {url} "
        f"({'tenant ' + settings.tenant + ', no token' if verify is None else 'token needed'}"
        "; Ctrl-C stops)\n"
    )
    if args.open:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", server_header=False)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ui``."""
    ui = sub.add_parser(
        "ui", help="a local web view of runs, checkpoints and memories",
        description="Serves the web view at http://HOST:PORT/ui/. On 127.0.0.1 (the "
        "default) no token is needed; on any other address every request needs a bearer "
        "token (tokens create; read to look, write to accept memory batches).",
    )
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=8765)
    ui.add_argument("--open", action="store_true", help="open it in the default browser")
    ui.set_defaults(func=cmd_ui)
