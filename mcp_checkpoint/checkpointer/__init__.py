"""An embeddable checkpointer: the checkpoint loop without MCP, for any agent loop.

``Checkpointer`` (synchronous) and ``AsyncCheckpointer`` run the same core services as the
server, on a local store or on a remote server over HTTP; ``for_model`` derives a run's
budget from a model's context window.
"""

from mcp_checkpoint.checkpointer._async import AsyncCheckpointer, Content, EventCallback
from mcp_checkpoint.checkpointer._events import Event, EventKind, Trigger, TriggerInput
from mcp_checkpoint.checkpointer._profiles import CONTEXT_WINDOWS, ModelProfile, for_model
from mcp_checkpoint.checkpointer._sync import Checkpointer

__all__ = [
    "CONTEXT_WINDOWS",
    "AsyncCheckpointer",
    "Checkpointer",
    "Content",
    "Event",
    "EventCallback",
    "EventKind",
    "ModelProfile",
    "Trigger",
    "TriggerInput",
    "for_model",
]
