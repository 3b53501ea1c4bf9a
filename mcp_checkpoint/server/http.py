"""Serving over the network: streamable HTTP (``/mcp``) or SSE (``/sse``), with uvicorn.

The MCP endpoints come from the SDK's own app builders (``MCPServer.streamable_http_app``
and ``sse_app``), so the transport, the bearer-token middleware (401 with
``WWW-Authenticate``), session ownership and the Host/Origin checks against DNS rebinding
are the SDK's. This module adds around them:

- one process-wide ``Runtime``: the store opens before the first request and closes after
  the last one (uvicorn drains in-flight requests on SIGTERM, then the lifespan ends);
- ``/healthz``: liveness plus a store round trip, no auth, no tenant data;
- ``/metrics``: Prometheus text (``http.metrics`` decides who may read it);
- ``/ui``: the web view (``mcp_checkpoint.ui``), behind the same bearer tokens;
- an HTTP 403 for a token that carries neither ``read`` nor ``write``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_checkpoint import __version__
from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.models import Tenant
from mcp_checkpoint.core.ports import Store
from mcp_checkpoint.errors import CheckpointError, ConfigError
from mcp_checkpoint.server._draining import Draining, StopSignal, draining_server
from mcp_checkpoint.server._quotas import Quotas
from mcp_checkpoint.server.app import Runtime, server_for
from mcp_checkpoint.server.auth import (
    CallerToken,
    ChainTokenVerifier,
    JwtTokenVerifier,
    LocalTokenVerifier,
    Remote,
)
from mcp_checkpoint.server.bearer import TokenFile, TokenFileError
from mcp_checkpoint.server.metrics import Metrics, WorkerMetrics
from mcp_checkpoint.server.resume import install_session_event_stores

__all__ = ["HttpOptions", "build_http_app", "is_loopback", "serve_http"]

logger = logging.getLogger("mcp_checkpoint.server")

Transport = Literal["http", "sse"]
LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
_MAX_WORKERS = 64
_QUICK_EXIT_SECONDS = 10.0
_BACKLOG = 4096
_QUICK_EXITS = 3
# The tenant /healthz probes: tenant names of tokens cannot start with "_", so it never
# holds data and the probe never reads anyone's.
_PROBE_TENANT = Tenant("__healthz__")


@dataclass(frozen=True)
class HttpOptions:
    """How to serve: transport, address, auth and session mode."""

    transport: Transport = "http"
    host: str = "127.0.0.1"
    port: int = 8000
    auth: bool = True
    stateless: bool = False
    json_response: bool = False
    workers: int = 1


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def endpoint_path(transport: Transport) -> str:
    """Where MCP clients connect."""
    return "/mcp" if transport == "http" else "/sse"


def _security(settings: Settings, options: HttpOptions) -> TransportSecuritySettings:
    hosts = list(settings.http.allowed_hosts)
    origins = list(settings.http.allowed_origins)
    if is_loopback(options.host):
        hosts += LOOPBACK_HOSTS
        origins += LOOPBACK_ORIGINS
    elif options.host not in ("0.0.0.0", "::", ""):  # noqa: S104 - a comparison, not a bind
        literal = f"[{options.host}]" if ":" in options.host else options.host
        hosts += [literal, f"{literal}:*"]
    if settings.http.public_url is not None:
        parts = urlsplit(settings.http.public_url)
        if parts.hostname:
            hosts += [parts.netloc, f"{parts.hostname}:*"]
            origins.append(f"{parts.scheme}://{parts.netloc}")
    if settings.http.dns_rebinding_protection and not hosts:
        logger.warning(
            "no Host is allowed on %s: set http.public_url or http.allowed_hosts "
            "(every MCP request is refused with 421 until then)", options.host,
        )
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=settings.http.dns_rebinding_protection,
        allowed_hosts=hosts,
        allowed_origins=origins,
    )


def _remote(
    settings: Settings, options: HttpOptions, jwks_client: Any | None
) -> tuple[Remote, ChainTokenVerifier | None]:
    if not options.auth:
        return Remote(verifier=None, auth=None, default_tenant=settings.tenant), None
    base = f"http://{options.host}:{options.port}"
    resource = settings.http.public_url or base + endpoint_path(options.transport)
    jwt_verifier = None
    if settings.jwt.issuer is not None:
        jwt_verifier = JwtTokenVerifier(settings.jwt, resource, jwks_client=jwks_client)
        # An OAuth resource server: 401s point at the protected-resource metadata, which
        # names the issuer (RFC 9728, as the MCP authorization spec asks).
        auth = AuthSettings(
            issuer_url=settings.jwt.issuer,  # type: ignore[arg-type]
            resource_server_url=resource,  # type: ignore[arg-type]
            validate_token_resource=False,  # the JWT verifier checks the audience itself
        )
    else:
        # Only the server's own tokens: not an OAuth resource server. The MCP authorization
        # spec has protected-resource metadata name at least one authorization server, and
        # there is none to name, so 401s carry no resource_metadata pointer and no metadata
        # is served; the OAuth endpoints clients probe anyway answer JSON errors that say
        # how to authenticate (``_no_oauth_routes``). issuer_url is required by the model,
        # unused without resource_server_url.
        auth = AuthSettings(
            issuer_url=base,  # type: ignore[arg-type]
            resource_server_url=None,
            validate_token_resource=False,
        )
    verifier = ChainTokenVerifier(LocalTokenVerifier(TokenFile(settings.data_dir)), jwt_verifier)
    return Remote(verifier=verifier, auth=auth, default_tenant=None), verifier


NO_OAUTH = (
    "mcp-checkpoint runs no OAuth authorization server and accepts no OAuth sign-in here: "
    "send a bearer token made with 'mcp-checkpoint tokens create' as the header "
    "'Authorization: Bearer mcpck_...' (docs/remote-hosting.md shows how for each client)"
)


def _no_oauth_routes() -> list[Route]:
    """With static tokens only: the OAuth discovery documents and endpoints OAuth-capable
    clients probe after a 401 (RFC 9728 and RFC 8414 well-known URLs, and the
    ``/register``, ``/authorize``, ``/token`` defaults of the MCP spec's fallback) answer
    404 with a JSON OAuth error naming what to do, so a client stops with that message
    rather than a parse error on a plain-text 404."""

    async def no_oauth(request: Request) -> Response:
        return JSONResponse(
            {"error": "invalid_request", "error_description": NO_OAUTH}, status_code=404,
            headers={"Cache-Control": "no-store"},
        )

    wellknown = ("oauth-protected-resource", "oauth-authorization-server",
                 "openid-configuration")
    routes = [Route(f"/.well-known/{name}{{rest:path}}", no_oauth, methods=["GET"])
              for name in wellknown]
    routes += [Route(path, no_oauth, methods=["GET", "POST"])
               for path in ("/register", "/authorize", "/token")]
    return routes


class _ScopeGate:
    """Inside the SDK's authentication: a token that may neither read nor write is
    refused with 403 ``insufficient_scope`` before any MCP message is handled."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = scope.get("user") if scope["type"] == "http" else None
        if isinstance(user, AuthenticatedUser) and not {"read", "write"} & set(user.scopes):
            response = JSONResponse(
                {"error": "insufficient_scope", "error_description": "needs read or write"},
                status_code=403,
                headers={
                    "WWW-Authenticate": 'Bearer error="insufficient_scope", '
                    'error_description="needs read or write", scope="read write"'
                },
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _TokenFileGuard:
    """An unreadable or invalid token file answers 503 (with one log line a minute, no
    trace), not a 500 with a traceback: no token can be checked until it is fixed, and
    ``tokens create``/``revoke`` refuse it with the same message."""

    LOG_EVERY_SECONDS = 60.0

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._logged = -self.LOG_EVERY_SECONDS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        except TokenFileError as exc:
            if scope["type"] != "http" or started:
                raise
            now = time.monotonic()
            if now - self._logged >= self.LOG_EVERY_SECONDS:
                self._logged = now
                logger.error("refusing authenticated requests: %s", exc)
            response = JSONResponse(
                {"error": "temporarily_unavailable",
                 "error_description": "the server cannot check tokens now"},
                status_code=503, headers={"Retry-After": "30"},
            )
            await response(scope, receive, send)


class _CountResponses:
    """Counts HTTP answers by endpoint group and status into the metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        known = ("/mcp", "/sse", "/messages", "/healthz", "/metrics", "/.well-known", "/ui")
        endpoint = next((k for k in known if path.startswith(k)), "other")

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.http_response(endpoint, int(message["status"]))
            await send(message)

        await self.app(scope, receive, counting_send)


def build_http_app(
    settings: Settings,
    options: HttpOptions,
    *,
    store: Store | None = None,
    jwks_client: Any | None = None,
    worker: int | None = None,
    stop: StopSignal | None = None,
) -> Starlette:
    """The ASGI app serving MCP over ``options.transport`` plus ``/healthz`` and
    ``/metrics``. ``jwks_client`` replaces the JWKS fetcher (tests). ``worker``: this
    process's index under ``serve --workers N`` (its metrics are shared with the others).
    ``stop``: set when the server is stopping (new requests get 503, see ``_draining``)."""
    metrics = Metrics() if settings.http.metrics != "off" else None
    shared = (
        WorkerMetrics(metrics, metrics_dir(settings), worker)
        if metrics is not None and worker is not None else None
    )
    runtime = Runtime(settings, store, metrics=metrics, remote=True)
    remote, verifier = _remote(settings, options, jwks_client)
    server = server_for(runtime, remote)
    security = _security(settings, options)
    if options.transport == "http":
        resumable = (not options.stateless and not options.json_response
                     and settings.http.resume_events > 0)
        inner = server.streamable_http_app(
            stateless_http=options.stateless,
            json_response=options.json_response,
            retry_interval=settings.http.sse_retry_ms if resumable else None,
            transport_security=security,
            host=options.host,
            session_idle_timeout=None if options.stateless
            else settings.http.session_idle_timeout_seconds,
        )
        if resumable:
            install_session_event_stores(
                server.session_manager,
                max_events=settings.http.resume_events,
                max_bytes=settings.http.resume_bytes,
            )
    else:
        inner = server.sse_app(transport_security=security, host=options.host)
    # Innermost user middleware: runs after the SDK's AuthenticationMiddleware set the user.
    inner.user_middleware.append(Middleware(_ScopeGate))
    stateful = options.transport == "http" and not options.stateless
    inner.user_middleware.append(Middleware(
        Quotas, settings=settings.http,
        # The SDK keeps no count per caller; its table of live sessions says which of the
        # sessions a caller opened still count.
        live_sessions=(lambda: server.session_manager._server_instances) if stateful else None,
    ))
    # Outermost: around the SDK's authentication, inside the inner app's 500 handler.
    inner.user_middleware.insert(0, Middleware(_TokenFileGuard))

    async def healthz(request: Request) -> Response:
        try:
            with anyio.fail_after(5):
                await runtime.services.store.list_runs(
                    _PROBE_TENANT, status=None, limit=1, offset=0
                )
        except (CheckpointError, TimeoutError):
            return JSONResponse(
                {"status": "unavailable", "store": "unavailable", "version": __version__},
                status_code=503,
            )
        return JSONResponse({"status": "ok", "store": "ok", "version": __version__})

    async def metrics_endpoint(request: Request) -> Response:
        if metrics is None:
            return PlainTextResponse("not found", status_code=404)
        if settings.http.metrics == "auth" and verifier is not None:
            header = request.headers.get("authorization", "")
            token = header[7:] if header.lower().startswith("bearer ") else ""
            found = await verifier.verify_token(token) if token else None
            if found is None:
                return PlainTextResponse(
                    "unauthorized", status_code=401,
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
            if "metrics" not in found.scopes:
                return PlainTextResponse(
                    "forbidden: needs the 'metrics' scope", status_code=403,
                    headers={"WWW-Authenticate": 'Bearer error="insufficient_scope", '
                             'scope="metrics"'},
                )
        return PlainTextResponse(
            shared.render() if shared is not None else metrics.render(),
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    async def save_metrics(shared: WorkerMetrics) -> None:
        while True:
            await anyio.sleep(shared.SAVE_EVERY_SECONDS)
            # Snapshot here, on the loop that updates the figures; write on a thread.
            await anyio.to_thread.run_sync(shared.write, shared.metrics.snapshot())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The runtime opens the store first and closes it last: after uvicorn has drained
        # in-flight requests and the SDK's session manager has ended every session.
        async with runtime.use(), inner.router.lifespan_context(inner):
            logger.info("store open; serving %s", endpoint_path(options.transport))
            if shared is None:
                yield
            else:
                async with anyio.create_task_group() as saver:
                    saver.start_soon(save_metrics, shared)
                    yield
                    saver.cancel_scope.cancel()
                shared.save()
        logger.info("store closed")

    routes: list[Route | Mount] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    if remote.auth is not None and settings.jwt.issuer is None:
        routes += _no_oauth_routes()
    routes.append(Mount("/ui", app=_ui_app(runtime, verifier)))
    routes.append(Mount("/", app=inner))
    middleware = [Middleware(_TokenFileGuard)]
    if stop is not None:
        middleware.insert(0, Middleware(
            Draining, stop=stop,
            stream_path=endpoint_path(options.transport) if options.transport == "http" else None,
        ))
    if metrics is not None:
        middleware.insert(0, Middleware(_CountResponses, metrics=metrics))
    return Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
    )


def _ui_app(runtime: Runtime, verifier: ChainTokenVerifier | None) -> ASGIApp:
    """The web view at ``/ui``, behind the same tokens as MCP (tenant and scopes from the
    token); without auth, the default tenant's, for loopback host names only."""
    from mcp_checkpoint.ui import UiCaller, build_ui_app

    if verifier is None:
        return build_ui_app(runtime.services, verify=None)
    checker = verifier

    async def verify(token: str) -> UiCaller | None:
        found = await checker.verify_token(token)
        if not isinstance(found, CallerToken):
            return None
        return UiCaller(found.tenant, frozenset(found.scopes))

    return build_ui_app(runtime.services, verify=verify)


def check_exposure(options: HttpOptions, *, insecure_public: bool) -> None:
    """Refuse to serve without auth on an interface other machines can reach."""
    if not options.auth and not is_loopback(options.host) and not insecure_public:
        raise ConfigError(
            f"refusing to serve without auth on {options.host}, which other machines can "
            "reach; create tokens (mcp-checkpoint tokens create) and drop --no-auth, or pass "
            "--insecure-no-auth-on-public-interface if you really mean it"
        )


def metrics_dir(settings: Settings) -> Path:
    """Where the workers of ``serve --workers N`` share their metrics."""
    return settings.data_dir / "metrics"


def check_workers(options: HttpOptions) -> None:
    """Refuse worker counts that cannot serve correctly."""
    if options.workers < 1:
        raise ConfigError("--workers must be at least 1")
    if options.workers > _MAX_WORKERS:
        raise ConfigError(f"--workers must be at most {_MAX_WORKERS}")
    if options.workers > 1 and not (options.transport == "http" and options.stateless):
        raise ConfigError(
            "--workers above 1 needs --transport http --stateless: a session lives in the "
            "process that created it, and the workers share one port"
        )
    if options.workers > 1 and not hasattr(os, "fork"):
        raise ConfigError("--workers above 1 needs a system with fork()")


def serve_http(settings: Settings, options: HttpOptions, *, insecure_public: bool = False) -> int:
    """Serve until SIGTERM/SIGINT; then finish in-flight requests (up to
    ``http.shutdown_timeout_seconds``) and close the store. With ``options.workers`` above
    1, that many processes share the port (see ``_supervise``). Returns the exit code."""
    check_exposure(options, insecure_public=insecure_public)
    check_workers(options)
    # Open the store once before serving: a corrupt or unreachable store is one clean
    # error line (and exit code 1), not an ASGI lifespan failure with a traceback.
    anyio.run(_check_store, settings)
    if not options.auth:
        logger.warning(
            "serving WITHOUT AUTH on %s: every caller is tenant %r with every scope",
            options.host, settings.tenant,
        )
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    balanced = options.workers > 1 and hasattr(socket, "SO_REUSEPORT")
    sock = _bind(family, options.host, options.port, reuse_port=balanced)
    port = sock.getsockname()[1]  # port 0: the OS picked one, logged below
    options = replace(options, port=port)
    # One listening socket per worker in one SO_REUSEPORT group: the kernel spreads new
    # connections over the workers. (On one shared socket, the first worker to wake would
    # accept a whole burst of connections: measured, 16 clients gained nothing.)
    socks = [sock, *(_bind(family, options.host, port, reuse_port=True)
                     for _ in range(options.workers - 1))] if balanced else [sock]
    shown = f"[{options.host}]" if family == socket.AF_INET6 else options.host
    logger.warning(
        "mcp-checkpoint %s serving %s on http://%s:%d%s (auth %s, store: %s%s)",
        __version__,
        "streamable HTTP" + (" (stateless)" if options.stateless else "")
        if options.transport == "http" else "SSE",
        shown, port, endpoint_path(options.transport),
        "on" if options.auth else "OFF",
        "postgres" if (settings.store_url or "").startswith("postgres") else
        settings.store_url or "sqlite",
        f", {options.workers} workers" if options.workers > 1 else "",
    )
    if options.workers == 1:
        _serve(settings, options, sock, worker=None)
        return 0
    return _supervise(settings, options, socks)


def connection_cap(wanted: int) -> int:
    """``wanted``, lowered to leave room below the process's open-file limit (sockets,
    the store's files and the model's are file descriptors too)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):  # pragma: no cover - not on this system
        return wanted
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, soft - 128))


async def _check_store(settings: Settings) -> None:
    from mcp_checkpoint.storage import make_store

    store = make_store(settings)
    await store.open()
    await store.close()


def _bind(family: socket.AddressFamily, host: str, port: int, *, reuse_port: bool
          ) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _serve(settings: Settings, options: HttpOptions, sock: socket.socket,
           *, worker: int | None) -> None:
    import uvicorn

    from mcp_checkpoint.server._http_guard import GuardLimits, guarded_protocol

    stop = StopSignal()
    app = build_http_app(settings, options, worker=worker, stop=stop)
    if options.transport == "http":
        # sse-starlette ends every SSE response the moment uvicorn is told to exit: the
        # streamed answers of requests still in flight were cut to empty 200s. Draining
        # ends the notification streams itself and lets the answers finish. (The SSE
        # transport's stream carries the answers, so it keeps sse-starlette's drain.)
        from sse_starlette.sse import AppStatus

        AppStatus.disable_automatic_graceful_drain()  # type: ignore[no-untyped-call]
    http = settings.http
    config = uvicorn.Config(
        app,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=int(http.shutdown_timeout_seconds),
        timeout_keep_alive=http.keep_alive_timeout_seconds,
        http=guarded_protocol(GuardLimits(
            max_header_bytes=http.max_header_bytes,
            header_timeout=http.header_timeout_seconds,
            max_connections=connection_cap(http.max_connections),
        )),
        server_header=False,
        # The accept queue: when it is full, the kernel drops a new connection's SYN and
        # the client tries again a second later. uvicorn's 2048 lets a burst of
        # connections fill it; the kernel caps this at net.core.somaxconn (4096 on
        # current Linux).
        backlog=_BACKLOG,
        lifespan="on",
        access_log=settings.log_level == "DEBUG",
    )
    # uvicorn drains on SIGTERM, then re-raises the signal with the handler it found
    # installed: a no-op one makes a graceful stop exit 0 instead of dying by the signal.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        draining_server(config, stop).run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)


def _supervise(settings: Settings, options: HttpOptions, socks: list[socket.socket]) -> int:
    """Fork ``options.workers`` processes that accept on ``socks`` and wait for them.

    Each worker is a whole server (its own store connections, its own embedding model);
    the kernel hands each new connection to one of them, which is why sessions are
    refused (``check_workers``). Worker ``i`` accepts on ``socks[i]`` (all workers share
    ``socks[0]`` where there is no SO_REUSEPORT); the supervisor keeps every socket open,
    so connections that arrive while a worker is replaced wait for its successor. SIGTERM
    or SIGINT goes on to every worker, and each drains as a single server does. A worker
    that dies is replaced; one that dies within ``_QUICK_EXIT_SECONDS`` of its start
    ``_QUICK_EXITS`` times in a row stops the server (exit code 1): it is failing at
    startup, and restarting it would only loop.
    """
    WorkerMetrics.clear(metrics_dir(settings))
    workers: dict[int, tuple[int, float]] = {}  # pid -> (index, started)
    quick_exits = [0] * options.workers
    stopping = False

    stop_signals = {signal.SIGTERM, signal.SIGINT}

    def start(index: int) -> None:
        # Stop signals wait until the new worker is in the table (or has its own handlers).
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        pid = os.fork()
        if pid == 0:  # the worker: serve, then leave without running the parent's cleanup
            code = 1
            try:
                # Its own process group: a Ctrl-C in the terminal reaches the supervisor
                # alone, which passes on one SIGTERM (a second signal would make uvicorn
                # skip draining).
                os.setpgid(0, 0)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
                logger.warning("worker %d (pid %d) starting", index, os.getpid())
                _serve(settings, options, socks[index % len(socks)], worker=index)
                code = 0
            except BaseException:
                logger.exception("worker %d failed", index)
            finally:
                os._exit(code)
        workers[pid] = (index, time.monotonic())
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    failed = False
    try:
        for index in range(options.workers):
            if not stopping:
                start(index)
        while workers:
            try:
                pid, status = os.wait()
            except ChildProcessError:  # pragma: no cover - every worker is in the table
                break
            index, started = workers.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            if stopping:
                continue
            quick = time.monotonic() - started < _QUICK_EXIT_SECONDS
            quick_exits[index] = quick_exits[index] + 1 if quick else 0
            if quick_exits[index] >= _QUICK_EXITS:
                logger.error("worker %d exited (code %d) %d times right after it started; "
                             "stopping the server", index, code, _QUICK_EXITS)
                failed = True
                stop(signal.SIGTERM, None)
                continue
            logger.error("worker %d exited (code %d); starting a new one", index, code)
            start(index)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sock in socks:
            sock.close()
    return 1 if failed else 0
