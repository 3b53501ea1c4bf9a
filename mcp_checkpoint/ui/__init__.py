"""The web view of runs, checkpoints and memories (``mcp-checkpoint ui``, and ``/ui`` on
the HTTP server): server-rendered pages over the core services, no script."""

from mcp_checkpoint.ui._security import UiCaller, Verify
from mcp_checkpoint.ui.app import Backend, build_ui_app
from mcp_checkpoint.ui.serve import standalone_app

__all__ = ["Backend", "UiCaller", "Verify", "build_ui_app", "standalone_app"]
