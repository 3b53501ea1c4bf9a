"""Who is calling, and what they may do (remote transports).

The SDK's bearer middleware authenticates each HTTP request with a ``TokenVerifier``:
``LocalTokenVerifier`` checks the server's own tokens (``mcp-checkpoint tokens create``),
``JwtTokenVerifier`` checks OAuth access tokens against the issuer's JWKS (PyJWT, which the
MCP SDK already depends on, so it adds nothing to install). Both return a ``CallerToken``: an
``AccessToken`` that also names the caller's tenant.

``caller_middleware`` then runs for every MCP request: it reads the caller from the HTTP
request the transport attached, publishes it in a context variable (``caller.py``'s
``current_caller``, which ``Services.tenant()`` reads) and enforces scopes: a tool that writes (its
``readOnlyHint`` is false) needs ``write``; reading tools, resources, prompts and
subscriptions need ``read``. A missing scope is a tool error ``forbidden: ...`` (or a
``forbidden`` JSON-RPC error for non-tool requests), not an HTTP 403: on streamable HTTP
the scope of one call in an open session is a protocol matter. A token with neither
``read`` nor ``write`` is refused with HTTP 403 before any MCP traffic (see
``server/http.py``).

``TenantBus`` keeps ``subscriptions/listen`` streams to their own tenant: an update
published by tenant A's tool call reaches only listeners that authenticated as tenant A.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.subscriptions import InMemorySubscriptionBus, ServerEvent
from mcp.shared.exceptions import MCPError

from mcp_checkpoint.config import JwtSettings
from mcp_checkpoint.server.bearer import SCOPES, TokenFile, valid_tenant
from mcp_checkpoint.server.caller import CALLER, Caller, current_caller

if TYPE_CHECKING:
    import jwt  # PyJWT (and its cryptography) is imported by the verifier, not at start-up
    from mcp.server import MCPServer
    from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext

__all__ = [
    "CallerToken",
    "ChainTokenVerifier",
    "JwtTokenVerifier",
    "LocalTokenVerifier",
    "Remote",
    "TenantBus",
    "caller_middleware",
]

logger = logging.getLogger("mcp_checkpoint.server")

# JSON-RPC error code of a request the caller's token does not allow (server-defined range).
FORBIDDEN = -32003


class CallerToken(AccessToken):
    """An access token that also names the caller's tenant."""

    tenant: str


@dataclass(frozen=True)
class Remote:
    """What a server served over HTTP/SSE needs beyond the stdio one.

    ``verifier`` and ``auth`` are None when the server runs without auth; then every
    request is ``default_tenant``'s (with every scope)."""

    verifier: TokenVerifier | None
    auth: AuthSettings | None
    default_tenant: str | None


class LocalTokenVerifier:
    """Verifies the server's own bearer tokens (the token file in the data directory)."""

    def __init__(self, tokens: TokenFile) -> None:
        self._tokens = tokens

    async def verify_token(self, token: str) -> AccessToken | None:
        """The caller of ``token``, or None when it is unknown or revoked."""
        record = self._tokens.verify(token)
        if record is None:
            return None
        return CallerToken(
            token=token, client_id=record.token_id, scopes=list(record.scopes),
            tenant=record.tenant,
        )


class JwtTokenVerifier:
    """Verifies OAuth access tokens (JWTs) signed by the configured issuer.

    Signature (with the issuer's JWKS, fetched and cached), ``iss``, ``aud``, ``exp`` and
    ``nbf`` are checked; the tenant comes from ``jwt.tenant_claim`` (a token without one is
    refused) and the scopes from ``jwt.scope_claim`` (this server's scopes, optionally
    prefixed with ``jwt.scope_prefix``)."""

    def __init__(
        self,
        settings: JwtSettings,
        audience: str | None,
        *,
        jwks_client: jwt.PyJWKClient | None = None,
    ) -> None:
        if settings.issuer is None or settings.jwks_url is None:
            raise ValueError("JwtTokenVerifier needs jwt.issuer and jwt.jwks_url")
        import jwt

        self._settings = settings
        self._issuer = settings.issuer
        self._audience = settings.audience or audience
        self._jwks = jwks_client or jwt.PyJWKClient(
            settings.jwks_url,
            cache_jwk_set=settings.jwks_cache_seconds > 0,
            lifespan=max(settings.jwks_cache_seconds, 1),
            timeout=10,
        )

    def _decode(self, token: str) -> dict[str, Any]:
        import jwt

        key = self._jwks.get_signing_key_from_jwt(token)
        options: jwt.types.Options = {"require": ["exp", "iss"]}
        if self._audience is None:
            options["verify_aud"] = False
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key.key,
            algorithms=self._settings.algorithms,
            issuer=self._issuer,
            audience=self._audience,
            leeway=self._settings.leeway_seconds,
            options=options,
        )
        return claims

    def _scopes(self, claims: dict[str, Any]) -> list[str]:
        raw = claims.get(self._settings.scope_claim)
        items = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
        prefix = self._settings.scope_prefix
        found = {
            str(s).removeprefix(prefix)
            for s in items
            if isinstance(s, str) and s.startswith(prefix)
        }
        return sorted(found & set(SCOPES))

    async def verify_token(self, token: str) -> AccessToken | None:
        """The caller of a valid JWT, or None (bad signature, expired, wrong issuer or
        audience, no tenant claim, JWKS unreachable)."""
        import jwt

        try:
            # PyJWKClient fetches with urllib (blocking): keep it off the event loop.
            claims = await anyio.to_thread.run_sync(self._decode, token)
        except jwt.PyJWTError as exc:
            logger.info("rejected a JWT: %s", type(exc).__name__)
            return None
        tenant = claims.get(self._settings.tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            logger.info("rejected a JWT without the %r claim", self._settings.tenant_claim)
            return None
        if not valid_tenant(tenant):
            # The same rule as a token's tenant: no reserved "__name__" (the /healthz probe's
            # tenant), no control characters, no trailing newline.
            logger.info("rejected a JWT whose %r claim is not a valid tenant name",
                        self._settings.tenant_claim)
            return None
        aud = claims.get("aud")
        return CallerToken(
            token=token,
            client_id=str(claims.get("client_id") or claims.get("azp") or claims.get("sub", "")),
            scopes=self._scopes(claims),
            expires_at=int(claims["exp"]),
            resource=aud if isinstance(aud, str) else None,
            subject=str(claims["sub"]) if "sub" in claims else None,
            claims={"iss": claims.get("iss")},
            tenant=tenant,
        )


class ChainTokenVerifier:
    """Local tokens (by their prefix) first, then JWTs when an issuer is configured."""

    def __init__(self, local: LocalTokenVerifier, jwt_verifier: JwtTokenVerifier | None) -> None:
        self._local = local
        self._jwt = jwt_verifier

    async def verify_token(self, token: str) -> AccessToken | None:
        """The caller of ``token`` according to the first verifier that knows it."""
        found = await self._local.verify_token(token)
        if found is not None or self._jwt is None:
            return found
        if token.count(".") != 2:
            return None
        return await self._jwt.verify_token(token)


def caller_of_scope(scope: dict[str, Any] | None, default_tenant: str | None) -> Caller | None:
    """The caller an HTTP request authenticated as; with auth off (``default_tenant``
    given), the local tenant with every scope."""
    user = (scope or {}).get("user")
    if isinstance(user, AuthenticatedUser) and isinstance(user.access_token, CallerToken):
        token = user.access_token
        return Caller(
            tenant=token.tenant, scopes=frozenset(token.scopes), principal=token.client_id
        )
    if default_tenant is not None:
        return Caller(tenant=default_tenant, scopes=frozenset(SCOPES), principal="anonymous")
    return None


def _forbidden(text: str) -> MCPError:
    return MCPError(code=FORBIDDEN, message=f"forbidden: {text}")


_READ_METHODS = frozenset({
    "resources/read", "resources/list", "resources/templates/list", "resources/subscribe",
    "resources/unsubscribe", "prompts/get", "subscriptions/listen", "completion/complete",
})


def caller_middleware(
    server: MCPServer[Any],
    *,
    default_tenant: str | None,
    tool_error: Callable[[ServerRequestContext[Any, Any], str], HandlerResult],
) -> ServerMiddleware[Any]:
    """Middleware of a remote server: sets ``current_caller`` for the request and enforces
    scopes. ``default_tenant`` is the tenant of unauthenticated requests when the server
    runs without auth (None: such requests are refused; the HTTP layer already answered
    them with 401)."""

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        request = ctx.request
        scope = getattr(request, "scope", None)
        caller = caller_of_scope(scope, default_tenant)
        if caller is None:
            raise _forbidden("this request carries no authenticated caller")
        if ctx.method == "tools/call" and isinstance(ctx.params, dict):
            name = ctx.params.get("name")
            tool = server._tool_manager.get_tool(name) if isinstance(name, str) else None
            if tool is not None:
                ann = tool.annotations
                writes = not (ann is not None and ann.read_only_hint)
                needed = "write" if writes else "read"
                if needed not in caller.scopes:
                    return tool_error(
                        ctx, f"forbidden: tool {name} needs the '{needed}' scope; this token "
                        f"has {', '.join(sorted(caller.scopes)) or 'none'}"
                    )
        elif ctx.method in _READ_METHODS and "read" not in caller.scopes:
            raise _forbidden(f"{ctx.method} needs the 'read' scope")
        reset = CALLER.set(caller)
        try:
            return await call_next(ctx)
        finally:
            CALLER.reset(reset)

    return middleware


class TenantBus(InMemorySubscriptionBus):
    """The SDK's in-process subscription bus, partitioned by tenant: a listener receives
    only events published while handling a request of its own tenant."""

    async def publish(self, event: ServerEvent) -> None:
        """Deliver ``event`` to the listeners of the publishing caller's tenant."""
        caller = current_caller()
        token = _publisher.set(caller.tenant if caller is not None else None)
        try:
            await super().publish(event)
        finally:
            _publisher.reset(token)

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        """Register ``listener`` for the subscribing caller's tenant."""
        caller = current_caller()
        tenant = caller.tenant if caller is not None else None

        def scoped(event: ServerEvent) -> None:
            if _publisher.get() == tenant:
                listener(event)

        return super().subscribe(scoped)


_publisher: ContextVar[str | None] = ContextVar("mcp_checkpoint_publisher", default=None)
