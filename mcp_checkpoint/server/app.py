"""``build_server(settings)``: the MCP binding, built on demand (nothing at import time).

The stores are process-wide: the SDK runs the lifespan once per connection on some
transports (SSE), so the lifespan only takes a reference on a shared ``Runtime`` that opens
the store on first use and closes it when the last connection ends.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server import MCPServer
from mcp_types import ServerCapabilities

from mcp_checkpoint import __version__
from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.ports import Store
from mcp_checkpoint.core.tokens import HeuristicTokenizer
from mcp_checkpoint.embeddings import make_embedder
from mcp_checkpoint.errors import CheckpointError
from mcp_checkpoint.server.completion import register_completion
from mcp_checkpoint.server.errors import (
    error_result,
    prompt_get_middleware,
    tool_call_middleware,
)
from mcp_checkpoint.server.prompts import register_prompts
from mcp_checkpoint.server.resources import register_resources
from mcp_checkpoint.server.services import Services
from mcp_checkpoint.server.subscriptions import Subscriptions
from mcp_checkpoint.server.tools import build_tools
from mcp_checkpoint.storage import make_store, make_vector_index

if TYPE_CHECKING:
    # Imported when used: the token machinery and metrics by remote serving only (a stdio
    # server has neither), the webhook sink when a webhook URL is set.
    from mcp_checkpoint.server.auth import Remote
    from mcp_checkpoint.server.metrics import Metrics
    from mcp_checkpoint.server.webhooks import WebhookSink

__all__ = ["Runtime", "build_server", "server_for"]

logger = logging.getLogger("mcp_checkpoint.server")

_CATCH_UP_POLL_SECONDS = 0.5

INSTRUCTIONS = """\
mcp-checkpoint keeps your working memory outside your context window.
Loop: start_run once -> record_step after every tool call you make -> when record_step says
checkpoint_due, call checkpoint with your own distillation (progress, state, decisions,
next_actions, ...) -> after a context reset or in a new session, call rehydrate(run_id) and
continue from the context it returns. Long-term knowledge: propose_memory, review the
analysis, then commit_memory. Read guide://protocol for the full protocol."""


class Runtime:
    """Process-wide services, opened by the first connection, closed by the last."""

    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        *,
        metrics: Metrics | None = None,
        remote: bool = False,
    ) -> None:
        store = store if store is not None else make_store(settings)
        tokenizer = HeuristicTokenizer()
        embedder = make_embedder(settings)
        vectors = make_vector_index(settings, store) if embedder is not None else None
        if metrics is not None:
            from mcp_checkpoint.server.metrics import instrument_store

            store = instrument_store(store, metrics)
        self.metrics = metrics
        self.webhook: WebhookSink | None = None
        if settings.webhook.url:
            from mcp_checkpoint.server.webhooks import WebhookSink

            self.webhook = WebhookSink(settings.webhook)
        self.services = Services(
            settings=settings,
            store=store,
            vectors=vectors,
            embedder=embedder,
            tokenizer=tokenizer,
            subscriptions=Subscriptions(
                max_per_connection=settings.http.max_subscriptions_per_session,
                max_uri_chars=settings.http.max_subscription_uri_chars,
            ),
            remote=remote,
            events=self.webhook,
        )
        self._users = 0
        self._lock = anyio.Lock()

    @asynccontextmanager
    async def use(self) -> AsyncIterator[Services]:
        """Hold the services open for one connection. The first connection also watches,
        in the background, for the embedding model to be loaded (nothing waits for it)
        and then gives vectors to the memories committed while it was not.

        The model loads when a request first needs it (a memory search, a proposal, a
        commit: ``MemoryService`` starts it), not when the connection opens: importing
        torch on a thread holds the GIL for seconds, which delayed the ``initialize``
        answer and slowed every call meanwhile, in sessions that never search memory too.
        Until it is loaded, searches are lexical and say so."""
        services = self.services
        async with self._lock:
            first = self._users == 0
            if first:
                await services.store.open()
                if services.vectors is not None:
                    await services.vectors.open()
            self._users += 1
        try:
            if first and services.embedder is not None:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._catch_up)
                    try:
                        yield services
                    finally:
                        tg.cancel_scope.cancel()
            else:
                yield services
        finally:
            with anyio.CancelScope(shield=True):
                async with self._lock:
                    self._users -= 1
                    if self._users == 0:
                        if services.vectors is not None:
                            await services.vectors.close()
                        await services.store.close()
                        if self.webhook is not None:
                            await anyio.to_thread.run_sync(self.webhook.close)

    async def _catch_up(self) -> None:
        embedder = self.services.embedder
        if embedder is None:
            return
        # Polled: the model loads on a thread, when a request first needs it (never here).
        while not embedder.ready and embedder.failure is None:  # noqa: ASYNC110
            await anyio.sleep(_CATCH_UP_POLL_SECONDS)
        try:
            await embedder.embed([""])  # raises the loading failure, if any
            done = await self.services.memory.sync_vectors()
        except CheckpointError as exc:
            logger.warning("semantic search stays off: %s", exc)
            return
        if done:
            logger.info("gave vectors to %d memories", done)


def build_server(settings: Settings, *, store: Store | None = None) -> MCPServer[Services]:
    """A new MCP server over the configured (or the given) store."""
    return server_for(Runtime(settings, store))


def _static_lists(server: MCPServer[Services]) -> None:
    """Advertise ``listChanged: false`` for tools, prompts and resources in every protocol
    flow: the lists never change while the server runs. (The SDK derives the flags from
    the protocol version: true under 2026-07-28, where ``subscriptions/listen`` is served
    for resource updates, false under the ``initialize`` flow.)"""
    lowlevel = server._lowlevel_server
    derive = lowlevel.get_capabilities

    def get_capabilities(*args: Any, **kwargs: Any) -> ServerCapabilities:
        caps = derive(*args, **kwargs)
        for group in (caps.tools, caps.prompts, caps.resources):
            if group is not None:
                group.list_changed = False
        return caps

    lowlevel.get_capabilities = get_capabilities  # type: ignore[method-assign]


def server_for(runtime: Runtime, remote: Remote | None = None) -> MCPServer[Services]:
    """The MCP server of ``runtime``; ``remote`` adds what HTTP/SSE serving needs (the
    token verifier, the per-request caller and scope checks, metrics, tenant-partitioned
    subscriptions)."""
    settings = runtime.services.settings
    if remote is not None:
        from mcp_checkpoint.server.auth import TenantBus, caller_middleware

    @asynccontextmanager
    async def lifespan(_: MCPServer[Services]) -> AsyncIterator[Services]:
        async with runtime.use() as services:
            yield services

    server: MCPServer[Services] = MCPServer(
        "mcp-checkpoint",
        title="mcp-checkpoint",
        description="Checkpointed episodic memory for LLM agents.",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        log_level=settings.log_level,
        token_verifier=remote.verifier if remote is not None else None,
        auth=remote.auth if remote is not None else None,
        subscriptions=TenantBus() if remote is not None else None,
        tools=build_tools(),
    )
    if runtime.metrics is not None:
        from mcp_checkpoint.server.metrics import metrics_middleware

        server.middleware.append(metrics_middleware(runtime.metrics, server))
    if remote is not None:
        server.middleware.append(
            caller_middleware(server, default_tenant=remote.default_tenant, tool_error=error_result)
        )
    server.middleware.append(tool_call_middleware(server))
    server.middleware.append(prompt_get_middleware(server))
    _static_lists(server)
    register_resources(server)
    register_prompts(server)
    register_completion(server)
    runtime.services.subscriptions.install(server)
    return server
