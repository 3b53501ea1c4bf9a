"""mcp-checkpoint: an MCP server that gives LLM agents checkpointed episodic memory.

The public API is what ``__all__`` names: the settings, the server factory, the core
services and models, and the error tree.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from mcp_checkpoint._dist import DISTRIBUTION

try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # a source checkout that is not installed
    __version__ = "0.0.0+source"

from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.episodes import Episodes
from mcp_checkpoint.core.memory import MemoryService
from mcp_checkpoint.core.models import (
    Checkpoint,
    CheckpointContent,
    CheckpointPatch,
    Context,
    Memory,
    Proposal,
    ProposalItem,
    Run,
    Step,
    StepAck,
    StepDraft,
)
from mcp_checkpoint.errors import (
    AuthError,
    BackendError,
    CheckpointError,
    ConfigError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    PayloadTooLargeError,
)

__all__ = [
    "AsyncCheckpointer",
    "AuthError",
    "BackendError",
    "Checkpoint",
    "CheckpointContent",
    "CheckpointError",
    "CheckpointPatch",
    "Checkpointer",
    "ConfigError",
    "ConflictError",
    "Context",
    "Episodes",
    "InvalidArgumentError",
    "Memory",
    "MemoryService",
    "NotFoundError",
    "PayloadTooLargeError",
    "Proposal",
    "ProposalItem",
    "Run",
    "Settings",
    "Step",
    "StepAck",
    "StepDraft",
    "__version__",
    "build_server",
    "for_model",
]

_CHECKPOINTER = {"AsyncCheckpointer", "Checkpointer", "for_model"}


def __getattr__(name: str) -> object:
    """The embeddable checkpointer, imported on first use (the server does not need it)."""
    if name in _CHECKPOINTER:
        from mcp_checkpoint import checkpointer

        return getattr(checkpointer, name)
    raise AttributeError(f"module 'mcp_checkpoint' has no attribute {name!r}")


def build_server(settings: Settings | None = None):  # type: ignore[no-untyped-def]
    """The MCP server (imported lazily so that the core does not pull in the SDK)."""
    from mcp_checkpoint.server.app import build_server as build

    return build(settings if settings is not None else Settings())
