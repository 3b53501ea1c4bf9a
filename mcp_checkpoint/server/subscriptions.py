"""Update notifications for checkpoint and run resources, in both protocol eras.

2026-07-28 clients open a ``subscriptions/listen`` stream and get events published on the
SDK's bus (``ctx.notify_resource_updated``). Handshake-era clients (2025-11-25 and before)
call ``resources/subscribe``; the SDK leaves tracking those to the server, so this module
keeps the subscribed sessions per (tenant, URI) and sends them
``notifications/resources/updated``. Keying by tenant keeps one tenant's updates away from
another's subscribers on a shared remote server (the modern bus is partitioned the same way
by ``server.auth.TenantBus``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types as types

if TYPE_CHECKING:
    from mcp.server import MCPServer, ServerRequestContext
    from mcp.server.mcpserver import Context
    from mcp.server.session import ServerSession

__all__ = ["Subscriptions"]

logger = logging.getLogger("mcp_checkpoint.server")


class Subscriptions:
    """Subscribers by resource URI (handshake era) plus the SDK bus (modern era)."""

    def __init__(self) -> None:
        self._legacy: dict[tuple[str, str], list[tuple[object, ServerSession]]] = {}
        self._lock = anyio.Lock()

    def install(self, server: MCPServer[Any]) -> None:
        """Serve ``resources/subscribe`` and ``resources/unsubscribe`` on ``server``."""
        low = server._lowlevel_server  # the SDK exposes legacy subscribe only here
        low.add_request_handler(
            "resources/subscribe", types.SubscribeRequestParams, self._on_subscribe
        )
        low.add_request_handler(
            "resources/unsubscribe", types.UnsubscribeRequestParams, self._on_unsubscribe
        )

    @staticmethod
    def _connection(session: ServerSession) -> object:
        # ServerSession objects are per request; the connection identifies the subscriber.
        return session._connection

    async def _on_subscribe(
        self, ctx: ServerRequestContext[Any], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        uri = (ctx.lifespan_context.tenant(), str(params.uri))
        conn = self._connection(ctx.session)
        async with self._lock:
            subs = self._legacy.setdefault(uri, [])
            if all(c is not conn for c, _ in subs):
                subs.append((conn, ctx.session))
        return types.EmptyResult()

    async def _on_unsubscribe(
        self, ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        uri = (ctx.lifespan_context.tenant(), str(params.uri))
        conn = self._connection(ctx.session)
        async with self._lock:
            self._legacy[uri] = [(c, s) for c, s in self._legacy.get(uri, []) if c is not conn]
        return types.EmptyResult()

    async def notify(self, ctx: Context[Any, Any], tenant: str, uri: str) -> None:
        """Tell every subscriber of ``uri`` in ``tenant`` that it changed."""
        await ctx.notify_resource_updated(uri)
        key = (tenant, uri)
        async with self._lock:
            subs = list(self._legacy.get(key, []))
        dead: list[object] = []
        for conn, session in subs:
            try:
                await session.send_resource_updated(uri)
            except Exception:  # a closed connection must not fail the tool that notified
                logger.debug("dropping a closed subscriber of %s", uri)
                dead.append(conn)
        if dead:
            async with self._lock:
                self._legacy[key] = [
                    (c, s) for c, s in self._legacy.get(key, []) if c not in dead
                ]

    async def checkpoint_created(self, ctx: Context[Any, Any], tenant: str, run_id: str) -> None:
        """A run got a new checkpoint: its latest-checkpoint and run resources changed."""
        for uri in (f"checkpoint://{run_id}/latest", f"run://{run_id}"):
            await self.notify(ctx, tenant, uri)
