"""Update notifications for checkpoint and run resources, in both protocol eras.

2026-07-28 clients open a ``subscriptions/listen`` stream and get events published on the
SDK's bus (``ctx.notify_resource_updated``). Handshake-era clients (2025-11-25 and before)
call ``resources/subscribe``; the SDK leaves tracking those to the server, so this module
keeps the subscribed sessions per (tenant, URI) and sends them
``notifications/resources/updated``. Keying by tenant keeps one tenant's updates away from
another's subscribers on a shared remote server (the modern bus is partitioned the same way
by ``server.auth.TenantBus``).

A connection's subscriptions are dropped when it ends (a callback on the SDK connection's
exit stack), not only on unsubscribe: a process-wide map that outlived its sessions grew
without bound. One connection holds at most ``http.max_subscriptions_per_session`` URIs of
at most ``http.max_subscription_uri_chars`` characters; beyond, ``resources/subscribe``
answers a JSON-RPC invalid-params error with a stable code prefix.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types as types
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

if TYPE_CHECKING:
    from mcp.server import MCPServer, ServerRequestContext
    from mcp.server.mcpserver import Context
    from mcp.server.session import ServerSession

__all__ = ["Subscriptions"]

logger = logging.getLogger("mcp_checkpoint.server")


class Subscriptions:
    """Subscribers by resource URI (handshake era) plus the SDK bus (modern era)."""

    def __init__(self, *, max_per_connection: int = 100, max_uri_chars: int = 2048) -> None:
        self._legacy: dict[tuple[str, str], list[tuple[object, ServerSession]]] = {}
        self._by_connection: dict[int, set[tuple[str, str]]] = {}
        self._max = max_per_connection
        self._max_uri = max_uri_chars
        self._lock = anyio.Lock()

    def __len__(self) -> int:
        """How many (connection, URI) subscriptions are held."""
        return sum(len(subs) for subs in self._legacy.values())

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
        text = str(params.uri)
        if len(text) > self._max_uri:
            raise MCPError(code=INVALID_PARAMS, message=(
                f"payload_too_large: the URI has {len(text)} characters; "
                f"http.max_subscription_uri_chars is {self._max_uri}"
            ))
        uri = (ctx.lifespan_context.tenant(), text)
        conn = self._connection(ctx.session)
        async with self._lock:
            held = self._by_connection.get(id(conn))
            if held is None or uri not in held:
                if self._max and held is not None and len(held) >= self._max:
                    raise MCPError(code=INVALID_PARAMS, message=(
                        f"payload_too_large: this session holds {len(held)} subscriptions; "
                        f"http.max_subscriptions_per_session is {self._max}"
                    ))
                if held is None:
                    held = self._by_connection[id(conn)] = set()
                    self._forget_on_close(conn)
                held.add(uri)
            subs = self._legacy.setdefault(uri, [])
            if all(c is not conn for c, _ in subs):
                subs.append((conn, ctx.session))
        return types.EmptyResult()

    def _forget_on_close(self, conn: object) -> None:
        stack = getattr(conn, "exit_stack", None)
        if stack is not None:
            stack.push_async_callback(self._drop_connection, conn)

    async def _drop_connection(self, conn: object) -> None:
        """The connection ended: every subscription it held goes."""
        async with self._lock:
            for uri in self._by_connection.pop(id(conn), set()):
                left = [(c, s) for c, s in self._legacy.get(uri, []) if c is not conn]
                if left:
                    self._legacy[uri] = left
                else:
                    self._legacy.pop(uri, None)

    async def _on_unsubscribe(
        self, ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        uri = (ctx.lifespan_context.tenant(), str(params.uri))
        conn = self._connection(ctx.session)
        async with self._lock:
            left = [(c, s) for c, s in self._legacy.get(uri, []) if c is not conn]
            if left:
                self._legacy[uri] = left
            else:
                self._legacy.pop(uri, None)
            held = self._by_connection.get(id(conn))
            if held is not None:
                held.discard(uri)
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
                for conn in dead:
                    self._by_connection.get(id(conn), set()).discard(key)

    async def checkpoint_created(self, ctx: Context[Any, Any], tenant: str, run_id: str) -> None:
        """A run got a new checkpoint: its latest-checkpoint and run resources changed."""
        for uri in (f"checkpoint://{run_id}/latest", f"run://{run_id}"):
            await self.notify(ctx, tenant, uri)
