"""The process-wide services, and how tools, resources and prompts reach them.

``Runtime`` (``app``) builds one ``Services`` per process; the lifespan yields it to every
connection, and a handler reaches it through its request context (``services_of``).

The core services (episodes, memory, curation) are built, and their modules imported, when
a request first needs one: answering ``initialize`` and listing tools needs none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import Context

from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.models import Tenant
from mcp_checkpoint.core.ports import Embedder, Store, Tokenizer, VectorIndex
from mcp_checkpoint.errors import AuthError
from mcp_checkpoint.server.caller import current_caller
from mcp_checkpoint.server.subscriptions import Subscriptions

if TYPE_CHECKING:
    from mcp_checkpoint.core.curation import Curation
    from mcp_checkpoint.core.episodes import Episodes
    from mcp_checkpoint.core.events import EventSink
    from mcp_checkpoint.core.memory import MemoryService

__all__ = ["Services", "services_of"]


@dataclass
class Services:
    """What tools, resources and prompts reach through the lifespan context."""

    settings: Settings
    store: Store
    vectors: VectorIndex | None
    embedder: Embedder | None
    tokenizer: Tokenizer
    subscriptions: Subscriptions
    remote: bool = False
    events: EventSink | None = None

    @cached_property
    def memory(self) -> MemoryService:
        """Long-term memory: proposals, commits, search."""
        from mcp_checkpoint.core.memory import MemoryService

        return MemoryService(self.store, self.settings, embedder=self.embedder,
                             vectors=self.vectors, events=self.events)

    @cached_property
    def episodes(self) -> Episodes:
        """Runs, steps, checkpoints and rehydration."""
        from mcp_checkpoint.core.episodes import Episodes

        return Episodes(self.store, self.tokenizer, self.settings, memory=self.memory,
                        events=self.events)

    @cached_property
    def curation(self) -> Curation:
        """Browsing, searching and deleting what is stored."""
        from mcp_checkpoint.core.curation import Curation

        return Curation(self.store, self.settings)

    def tenant(self) -> Tenant:
        """The caller's tenant: on HTTP/SSE the authenticated caller's (the middleware sets
        it per request; none set is refused, never defaulted), on stdio the configured
        local tenant."""
        caller = current_caller()
        if caller is not None:
            return Tenant(caller.tenant)
        if self.remote:
            raise AuthError("this request carries no authenticated caller")
        return Tenant(self.settings.tenant)


def services_of(ctx: Context[Any, Any]) -> Services:
    """The services the lifespan yielded for this connection."""
    services: Services = ctx.request_context.lifespan_context
    return services
