"""Per-caller quotas of the HTTP server: one token (or tenant) at its limits is refused
with HTTP 429 and ``Retry-After``; every other caller is unaffected.

Runs inside the SDK's authentication (it needs the caller) and before the MCP transport:

- request rate per token: a token bucket (``requests_per_second_per_token`` sustained,
  ``request_burst_per_token`` at once);
- requests in flight per token (``max_concurrent_requests_per_token``; POSTs, not the
  long-lived GET streams);
- open streamable-HTTP sessions per token and per tenant (``max_sessions_per_token``,
  ``max_sessions_per_tenant``): a request that would open a session (a POST without an
  ``mcp-session-id``) is refused while the caller holds that many; a session counts until
  the SDK's session manager forgets it (DELETE, idle timeout, shutdown).

Without these, one read-only token could open the SDK's 10,000 sessions in seconds and
every other tenant would get 503 until they expired. A setting of 0 turns a quota off.

A refusal for rate or sessions is answered after ``refusal_delay_seconds`` while the token
has requests in flight to spare (the paused refusal counts as one): a client that ignores
``Retry-After`` and asks again at once gets about one answer a second per connection, so
its refusals cost the server (and the machine it shares with other tenants) little. The
pauses hold at most ``max_concurrent_requests_per_token`` of a token's connections; past
that, refusals are immediate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Container
from dataclasses import dataclass, field

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_checkpoint.config import HttpSettings
from mcp_checkpoint.server.auth import CallerToken

__all__ = ["Quotas"]

_SESSION_HEADER = b"mcp-session-id"


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class _Caller:
    bucket: _Bucket
    in_flight: int = 0
    sessions: set[str] = field(default_factory=set)
    opening: int = 0


class Quotas:
    """ASGI middleware enforcing the quotas of ``settings`` (see the module)."""

    def __init__(
        self,
        app: ASGIApp,
        settings: HttpSettings,
        live_sessions: Callable[[], Container[str]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.s = settings
        self._live = live_sessions
        self._clock = clock
        self._tokens: dict[str, _Caller] = {}
        self._tenants: dict[str, _Caller] = {}

    def _caller(self, table: dict[str, _Caller], key: str) -> _Caller:
        found = table.get(key)
        if found is None:
            found = table[key] = _Caller(_Bucket(float(self.s.request_burst_per_token),
                                                 self._clock()))
        return found

    def _take(self, bucket: _Bucket) -> float:
        """Take one request from ``bucket``: 0 when allowed, else seconds to wait."""
        rate = self.s.requests_per_second_per_token
        if rate <= 0:
            return 0.0
        now = self._clock()
        burst = float(self.s.request_burst_per_token)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / rate

    def _open_sessions(self, caller: _Caller) -> int:
        if self._live is not None:
            live = self._live()
            caller.sessions = {sid for sid in caller.sessions if sid in live}
        return len(caller.sessions) + caller.opening

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = scope.get("user") if scope["type"] == "http" else None
        if not isinstance(user, AuthenticatedUser) or not isinstance(
            user.access_token, CallerToken
        ):
            await self.app(scope, receive, send)
            return
        token = user.access_token
        mine = self._caller(self._tokens, token.client_id)
        wait = self._take(mine.bucket)
        if wait > 0:
            await self._refuse(mine, scope, receive, send, "request rate", wait)
            return
        if scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        limit = self.s.max_concurrent_requests_per_token
        if limit and mine.in_flight >= limit:
            await _too_many(scope, receive, send, "requests in flight", 1.0)
            return
        opens = self._live is not None and not any(
            name == _SESSION_HEADER for name, _ in scope.get("headers", [])
        )
        tenant = self._caller(self._tenants, token.tenant) if opens else None
        if tenant is not None:
            for caller, cap, what in ((mine, self.s.max_sessions_per_token, "token"),
                                      (tenant, self.s.max_sessions_per_tenant, "tenant")):
                if cap and self._open_sessions(caller) >= cap:
                    await self._refuse(mine, scope, receive, send,
                                       f"open sessions of this {what}", 30.0)
                    return
            mine.opening += 1
            tenant.opening += 1
        opened: list[str] = []

        async def watching_send(message: Message) -> None:
            if message["type"] == "http.response.start" and int(message["status"]) < 400:
                opened.extend(
                    value.decode("latin-1") for name, value in message.get("headers", [])
                    if name.lower() == _SESSION_HEADER
                )
            await send(message)

        mine.in_flight += 1
        try:
            await self.app(scope, receive, watching_send if tenant is not None else send)
        finally:
            mine.in_flight -= 1
            if tenant is not None:
                mine.opening -= 1
                tenant.opening -= 1
                mine.sessions.update(opened)
                tenant.sessions.update(opened)


    async def _refuse(self, caller: _Caller, scope: Scope, receive: Receive, send: Send,
                      what: str, wait: float) -> None:
        """429 for ``what``, after the refusal pause while ``caller`` has room in flight
        (see the module)."""
        pause = self.s.refusal_delay_seconds
        limit = self.s.max_concurrent_requests_per_token
        if pause > 0 and (not limit or caller.in_flight < limit):
            caller.in_flight += 1
            try:
                await anyio.sleep(pause)
            finally:
                caller.in_flight -= 1
        await _too_many(scope, receive, send, what, wait)


async def _too_many(scope: Scope, receive: Receive, send: Send, what: str, wait: float) -> None:
    response = JSONResponse(
        {"error": "too_many_requests",
         "error_description": f"quota exceeded: {what}; retry later"},
        status_code=429,
        headers={"Retry-After": str(max(1, math.ceil(wait)))},
    )
    await response(scope, receive, send)
