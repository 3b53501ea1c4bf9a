"""mcp-checkpoint: an MCP server that gives LLM agents checkpointed episodic memory.

The public API is what ``__all__`` names: the settings, the server factory, the core
services and models, and the error tree.
"""

from __future__ import annotations

# Not typing's: importing typing costs the per-tool-call hook process measurable time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mcp_checkpoint.checkpointer import AsyncCheckpointer, Checkpointer, for_model
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

    __version__: str

# Names are imported on first use (PEP 562): ``import mcp_checkpoint.x`` must not load
# pydantic, the store and the version metadata for a process that needs none of them (the
# client hook runs once per tool call).
_LAZY = {
    "Settings": "mcp_checkpoint.config",
    "Episodes": "mcp_checkpoint.core.episodes",
    "MemoryService": "mcp_checkpoint.core.memory",
    **dict.fromkeys(
        (
            "Checkpoint", "CheckpointContent", "CheckpointPatch", "Context", "Memory",
            "Proposal", "ProposalItem", "Run", "Step", "StepAck", "StepDraft",
        ),
        "mcp_checkpoint.core.models",
    ),
    **dict.fromkeys(
        (
            "AuthError", "BackendError", "CheckpointError", "ConfigError", "ConflictError",
            "InvalidArgumentError", "NotFoundError", "PayloadTooLargeError",
        ),
        "mcp_checkpoint.errors",
    ),
    # the embeddable checkpointer (the server does not need it)
    **dict.fromkeys(
        ("AsyncCheckpointer", "Checkpointer", "for_model"), "mcp_checkpoint.checkpointer"
    ),
}


def __getattr__(name: str) -> Any:
    if name == "__version__":  # written in _dist (hatch reads it there too): no metadata
        from mcp_checkpoint._dist import VERSION

        value: Any = VERSION
    elif name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'mcp_checkpoint' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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

def build_server(settings: Settings | None = None):  # type: ignore[no-untyped-def]
    """The MCP server (imported lazily so that the core does not pull in the SDK)."""
    from mcp_checkpoint.config import Settings
    from mcp_checkpoint.server.app import build_server as build

    return build(settings if settings is not None else Settings())
