"""The web view: server-rendered pages over the core services (Starlette + Jinja2).

Every page is HTML rendered here with autoescaping on and every stored string passed
through ``neutralise`` (control characters made visible), so stored text is shown, never
obeyed. There is no script: the plot is inline SVG, the diff and the context are forms
that reload the page. Nothing here decides anything about runs or memories: it reads
through ``Curation``, ``Episodes`` and ``MemoryService`` and acts only by calling
``MemoryService.commit`` (human review of a batch).
"""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, get_args

import jinja2
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.datastructures import URL
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mcp_checkpoint import __version__
from mcp_checkpoint._text import neutralise, one_line
from mcp_checkpoint.config import Settings
from mcp_checkpoint.core._ids import utc_now
from mcp_checkpoint.core.curation import Curation, RunFilter, diff_checkpoints
from mcp_checkpoint.core.episodes import Episodes
from mcp_checkpoint.core.memory import MemoryService
from mcp_checkpoint.core.models import (
    BatchStatus,
    MemoryKind,
    MemoryStatus,
    RunStatus,
    Tenant,
)
from mcp_checkpoint.core.ports import Embedder, Store
from mcp_checkpoint.core.render import render_json
from mcp_checkpoint.errors import (
    AuthError,
    CheckpointError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    PayloadTooLargeError,
)
from mcp_checkpoint.packs import export_pack
from mcp_checkpoint.ui._plot import plot
from mcp_checkpoint.ui._security import (
    CSRF_COOKIE,
    TOKEN_COOKIE,
    SecurityHeaders,
    UiCaller,
    Verify,
    check_csrf,
    csrf_token,
    loopback_host,
)

__all__ = ["Backend", "build_ui_app"]

logger = logging.getLogger("mcp_checkpoint.ui")

_HERE = Path(__file__).resolve().parent
TIMELINE_PAGE = 100
RUNS_PAGE = 50
MEMORIES_PAGE = 50
_PREVIEW = 160
_DETAIL = 4000
_STATUSES: tuple[str, ...] = get_args(RunStatus)
_KINDS: tuple[str, ...] = get_args(MemoryKind)
_MEMORY_STATUSES: tuple[str, ...] = get_args(MemoryStatus)
_BATCH_STATUSES: tuple[str, ...] = get_args(BatchStatus)


class Backend(Protocol):
    """What the view reads and acts through (``server.app.Services`` is one)."""

    settings: Settings
    store: Store
    embedder: Embedder | None

    @property
    def episodes(self) -> Episodes:
        """Runs, steps and checkpoints."""

    @property
    def memory(self) -> MemoryService:
        """Long-term memory."""


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _finalize(value: Any) -> Any:
    if isinstance(value, str) and not isinstance(value, Markup):
        return neutralise(value)
    return value


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters["preview"] = lambda v, width=_PREVIEW: one_line(render_json(v), width)
    env.filters["detail"] = lambda v: _cut(render_json(v), _DETAIL)
    env.filters["when"] = lambda d: f"{d:%Y-%m-%d %H:%M:%S}" if d else "–"
    return env


def _paths(request: Request) -> Callable[..., URL]:
    """``url_for`` giving paths only: links stay right behind a proxy that rewrites the
    host."""

    def url(name: str, /, **params: Any) -> URL:
        return URL(request.url_for(name, **params).path)

    return url


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… ({len(text) - limit} more characters)"


def _day(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgumentError(f"{name} must be a date (YYYY-MM-DD)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _int(value: str | None, name: str, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidArgumentError(f"{name} must be a whole number") from None


def _choice(value: str | None, name: str, allowed: tuple[str, ...]) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise InvalidArgumentError(f"{name} must be one of {', '.join(allowed)}")
    return value


def build_ui_app(backend: Backend, *, verify: Verify | None) -> Starlette:
    """The web view as an ASGI app, to be mounted at ``/ui``.

    ``verify`` checks bearer tokens (None: no token needed, every request is the
    configured tenant's with every scope — only for a loopback address; then a request
    must also name a loopback host, so a page of another site whose name an attacker
    re-pointed at 127.0.0.1 (DNS rebinding) cannot read the view)."""
    env = _environment()
    curation = Curation(backend.store, backend.settings)
    settings = backend.settings

    async def caller_of(request: Request) -> UiCaller | None:
        if verify is None:
            return UiCaller(settings.tenant, frozenset({"read", "write"}))
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        token = token or request.cookies.get(TOKEN_COOKIE, "")
        return await verify(token) if token else None

    async def need(request: Request, scope: str) -> UiCaller:
        caller = await caller_of(request)
        if caller is None:
            if request.method == "GET":
                raise _Refused(RedirectResponse(request.url_for("login"), status_code=303))
            raise _Refused(PlainTextResponse("unauthorized: sign in first", status_code=401))
        if scope not in caller.scopes:
            raise AuthError(f"forbidden: this token lacks the '{scope}' scope")
        return caller

    def page(
        request: Request, template: str, caller: UiCaller | None, code: int = 200,
        **context: Any,
    ) -> Response:
        csrf, fresh = csrf_token(request)
        html = env.get_template(template).render(
            request=request, url=_paths(request), caller=caller, csrf=csrf,
            login_needed=verify is not None, version=__version__, **context,
        )
        response = HTMLResponse(html, status_code=code)
        if fresh:
            response.set_cookie(
                CSRF_COOKIE, csrf, httponly=True, samesite="strict", path="/",
                secure=request.url.scheme == "https",
            )
        return response

    def handler(
        scope: str, body: Callable[[Request, UiCaller], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            caller: UiCaller | None = None
            if verify is None and not loopback_host(request):
                return PlainTextResponse(
                    "misdirected: without tokens the web view answers loopback host names "
                    "only (127.0.0.1, localhost, [::1])", status_code=421,
                )
            try:
                caller = await need(request, scope)
                return await body(request, caller)
            except _Refused as refused:
                return refused.response
            except CheckpointError as exc:
                status = (
                    404 if isinstance(exc, NotFoundError)
                    else 400 if isinstance(exc, InvalidArgumentError)
                    else 409 if isinstance(exc, ConflictError)
                    else 413 if isinstance(exc, PayloadTooLargeError)
                    else 403 if isinstance(exc, AuthError)
                    else 503
                )
                return page(request, "error.html", caller, status, message=str(exc),
                            status_code=status)
            except Exception:
                logger.exception("web view: %s failed", request.url.path)
                return page(request, "error.html", caller, 500,
                            message="internal error (see the server's log)", status_code=500)

        return endpoint

    # -- runs ---------------------------------------------------------------------------

    async def runs(request: Request, caller: UiCaller) -> Response:
        q = request.query_params
        where = RunFilter(
            status=_choice(q.get("status"), "status", _STATUSES),  # type: ignore[arg-type]
            text=(q.get("q") or "").strip() or None,
            since=_day(q.get("since"), "since"),
            until=(_day(q.get("until"), "until") or None),
        )
        if where.until is not None and len(q.get("until", "")) <= 10:
            where = RunFilter(where.status, where.text, where.since,
                              where.until + timedelta(days=1))  # a day includes itself
        offset = max(_int(q.get("offset"), "offset", 0) or 0, 0)
        found, more = await curation.find_runs(
            Tenant(caller.tenant), where, limit=RUNS_PAGE, offset=offset
        )
        return page(
            request, "runs.html", caller, runs=found, more=more, offset=offset,
            page_size=RUNS_PAGE, statuses=_STATUSES, filters=dict(q),
        )

    async def run_page(request: Request, caller: UiCaller) -> Response:
        tenant = Tenant(caller.tenant)
        q = request.query_params
        run = await backend.episodes.get_run(tenant, request.path_params["run_id"])
        before = _int(q.get("before"), "before")
        steps = await curation.timeline(tenant, run, before_seq=before, limit=TIMELINE_PAGE)
        cp_offset = max(_int(q.get("cp_offset"), "cp_offset", 0) or 0, 0)
        checkpoints = await backend.store.list_checkpoints(
            tenant, run.run_id, limit=21, offset=cp_offset
        )
        curve = await curation.token_curve(tenant, run, checkpoints[:20])
        return page(
            request, "run.html", caller, run=run, steps=steps, plot=plot(curve), curve=curve,
            checkpoints=checkpoints[:20], more_checkpoints=len(checkpoints) > 20,
            cp_offset=cp_offset, before=before,
            older=steps[-1].seq if steps and steps[-1].seq > run.pruned_seq + 1 else None,
            newer=(steps[0].seq + TIMELINE_PAGE + 1)
            if steps and steps[0].seq < run.head_seq else None,
        )

    async def diff_page(request: Request, caller: UiCaller) -> Response:
        tenant = Tenant(caller.tenant)
        run_id = request.path_params["run_id"]
        q = request.query_params
        a_id, b_id = q.get("a") or "", q.get("b") or ""
        if not a_id or not b_id:
            raise InvalidArgumentError("choose two checkpoints (a and b) to compare")
        a = await backend.episodes.get_checkpoint(tenant, run_id, a_id)
        b = await backend.episodes.get_checkpoint(tenant, run_id, b_id)
        run = await backend.episodes.get_run(tenant, run_id)
        return page(request, "diff.html", caller, run=run, a=a, b=b,
                    fields=diff_checkpoints(a, b))

    async def context_page(request: Request, caller: UiCaller) -> Response:
        tenant = Tenant(caller.tenant)
        run_id = request.path_params["run_id"]
        q = request.query_params
        run = await backend.episodes.get_run(tenant, run_id)
        budget = _int(q.get("budget"), "budget", run.budget_tokens)
        checkpoint = q.get("checkpoint") or None
        context = await backend.episodes.rehydrate(
            tenant, run_id, checkpoint_id=checkpoint, budget_tokens=budget,
            query=q.get("query") or None,
        )
        return page(request, "context.html", caller, run=run, context=context,
                    budget=budget, checkpoint=checkpoint or "", query=q.get("query") or "")

    async def verify_page(request: Request, caller: UiCaller) -> Response:
        tenant = Tenant(caller.tenant)
        run = await backend.episodes.get_run(tenant, request.path_params["run_id"])
        status = await curation.verify(tenant, run.run_id)
        return page(request, "verify.html", caller, run=run, status=status)

    async def export_zip(request: Request, caller: UiCaller) -> Response:
        tenant = Tenant(caller.tenant)
        run_id = request.path_params["run_id"]
        limits = settings.limits
        embedder = backend.embedder
        buffer = io.BytesIO()
        await export_pack(
            backend.store, tenant, [run_id], buffer, limits=limits, tool_version=__version__,
            created_at=utc_now(),
            embedding=(embedder.model_id, embedder.dimension or None) if embedder else None,
            max_bytes=min(limits.max_export_resource_bytes, limits.max_pack_bytes),
            max_setting="limits.max_export_resource_bytes",
        )
        return Response(
            buffer.getvalue(), media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{run_id}.zip"'},
        )

    async def export_md(request: Request, caller: UiCaller) -> Response:
        tenant = Tenant(caller.tenant)
        run_id = request.path_params["run_id"]
        await backend.episodes.get_run(tenant, run_id)  # 404 before the stream starts
        chunks = curation.markdown(tenant, run_id)

        async def body() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                yield neutralise(chunk).encode("utf-8")

        return StreamingResponse(
            body(), media_type="text/markdown; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{run_id}.md"'},
        )

    # -- memories -----------------------------------------------------------------------

    async def memories(request: Request, caller: UiCaller) -> Response:
        tenant = Tenant(caller.tenant)
        q = request.query_params
        status = q.get("status", "active")
        status = _choice(status, "status", (*_MEMORY_STATUSES, "any")) or "active"
        kind = _choice(q.get("kind"), "kind", _KINDS)
        scope = (q.get("scope") or "").strip() or None
        query = (q.get("q") or "").strip()
        note = None
        after_next = None
        if query:
            result = await backend.memory.search(
                tenant, query, scope=scope, kind=kind,  # type: ignore[arg-type]
                k=min(MEMORIES_PAGE, settings.limits.max_search_k),
            )
            found = [hit.memory for hit in result.hits]
            note = result.note
        else:
            found, after_next = await curation.browse_memories(
                tenant, status=None if status == "any" else status,  # type: ignore[arg-type]
                scope=scope, kind=kind,  # type: ignore[arg-type]
                after=q.get("after") or None, limit=MEMORIES_PAGE,
            )
        return page(
            request, "memories.html", caller, memories=found, note=note, next_after=after_next,
            kinds=_KINDS, statuses=(*_MEMORY_STATUSES, "any"), filters=dict(q),
            status=status,
        )

    async def memory_page(request: Request, caller: UiCaller) -> Response:
        tenant = Tenant(caller.tenant)
        memory_id = request.path_params["memory_id"]
        try:
            memory = await backend.memory.get_memory(tenant, memory_id)
        except NotFoundError:
            gone = await curation.forgotten(tenant, [memory_id])
            if memory_id not in gone:
                raise
            return page(request, "error.html", caller, 410, status_code=410,
                        message=f"memory {memory_id} was forgotten on "
                                f"{gone[memory_id]:%Y-%m-%d %H:%M} UTC")
        chain = await curation.supersession_chain(tenant, memory)
        refs = [await _ref(tenant, ref) for ref in memory.source_refs]
        # Where the chain ends at an id that is gone: forgotten (when), or unknown.
        missing = (chain[-1] if chain else memory).superseded_by
        forgotten = (await curation.forgotten(tenant, [missing])).get(missing) if missing else None
        return page(request, "memory.html", caller, memory=memory, chain=chain, refs=refs,
                    missing=missing, forgotten=forgotten)

    async def _ref(tenant: Tenant, ref: str) -> dict[str, Any]:
        """A provenance reference and where it links (None when it points nowhere)."""
        kind, _, rest = ref.partition(":")
        if kind == "step":
            run_id, _, seq = rest.rpartition(":")
            if run_id and seq.isdigit():
                return {"text": ref, "run_id": run_id, "seq": int(seq), "kind": "step"}
        if kind == "checkpoint" and rest:
            found = await backend.store.find_checkpoint(tenant, rest)  # type: ignore[arg-type]
            if found is not None:
                return {"text": ref, "run_id": found.run_id, "kind": "checkpoint",
                        "checkpoint_id": rest, "pruned": found.pruned}
        if kind == "run" and rest:
            return {"text": ref, "run_id": rest, "kind": "run"}
        return {"text": ref, "kind": "other"}

    # -- batches ------------------------------------------------------------------------

    async def batches(request: Request, caller: UiCaller) -> Response:
        q = request.query_params
        wanted = (q.get("batch") or "").strip()
        if wanted:
            return RedirectResponse(request.url_for("batch", batch_id=wanted), status_code=303)
        status = _choice(q.get("status", "pending"), "status",
                         (*_BATCH_STATUSES, "any")) or "pending"
        offset = max(_int(q.get("offset"), "offset", 0) or 0, 0)
        found = await curation.batches(
            Tenant(caller.tenant), status=None if status == "any" else status,  # type: ignore[arg-type]
            limit=RUNS_PAGE + 1, offset=offset,
        )
        now = utc_now()
        return page(request, "batches.html", caller, batches=found[:RUNS_PAGE],
                    more=len(found) > RUNS_PAGE, offset=offset, page_size=RUNS_PAGE,
                    status=status, statuses=(*_BATCH_STATUSES, "any"), now=now)

    async def batch_page(request: Request, caller: UiCaller) -> Response:
        tenant = Tenant(caller.tenant)
        proposal = await backend.memory.get_proposal(tenant, request.path_params["batch_id"])
        return page(request, "batch.html", caller, batch=proposal,
                    expired=proposal.status == "pending" and utc_now() >= proposal.expires_at)

    async def commit_batch(request: Request, caller: UiCaller) -> Response:
        form = await request.form()
        token = form.get("csrf")
        if not check_csrf(request, token if isinstance(token, str) else None):
            return PlainTextResponse("forbidden: the form's CSRF token does not match",
                                     status_code=403)
        batch_id = request.path_params["batch_id"]
        accept: list[int] = []
        for value in form.getlist("accept"):
            number = _int(value if isinstance(value, str) else None, "accept")
            if number is not None:
                accept.append(number)
        await backend.memory.commit(Tenant(caller.tenant), batch_id, accept=accept)
        return RedirectResponse(request.url_for("batch", batch_id=batch_id), status_code=303)

    # -- login ----------------------------------------------------------------------------

    async def login(request: Request) -> Response:
        if verify is None:
            return RedirectResponse(request.url_for("runs"), status_code=303)
        if request.method == "GET":
            return page(request, "login.html", None, error=None)
        form = await request.form()
        submitted = form.get("csrf")
        if not check_csrf(request, submitted if isinstance(submitted, str) else None):
            return PlainTextResponse("forbidden: the form's CSRF token does not match",
                                     status_code=403)
        token = form.get("token")
        token = token.strip() if isinstance(token, str) else ""
        found = await verify(token) if verify is not None and token else None
        if found is None:
            return page(request, "login.html", None, 401, error="unknown or revoked token")
        response = RedirectResponse(request.url_for("runs"), status_code=303)
        response.set_cookie(
            TOKEN_COOKIE, token, httponly=True, samesite="strict",
            path=request.url_for("runs").path, secure=request.url.scheme == "https",
        )
        return response

    async def logout(request: Request) -> Response:
        form = await request.form()
        submitted = form.get("csrf")
        if not check_csrf(request, submitted if isinstance(submitted, str) else None):
            return PlainTextResponse("forbidden: the form's CSRF token does not match",
                                     status_code=403)
        response = RedirectResponse(request.url_for("login"), status_code=303)
        response.delete_cookie(TOKEN_COOKIE, path=request.url_for("runs").path)
        return response

    routes = [
        Route("/", handler("read", runs), name="runs"),
        Route("/login", login, methods=["GET", "POST"], name="login"),
        Route("/logout", logout, methods=["POST"], name="logout"),
        Route("/runs/{run_id}", handler("read", run_page), name="run"),
        Route("/runs/{run_id}/diff", handler("read", diff_page), name="diff"),
        Route("/runs/{run_id}/context", handler("read", context_page), name="context"),
        Route("/runs/{run_id}/verify", handler("read", verify_page), name="verify"),
        Route("/runs/{run_id}/export.zip", handler("read", export_zip), name="export_zip"),
        Route("/runs/{run_id}/export.md", handler("read", export_md), name="export_md"),
        Route("/memories", handler("read", memories), name="memories"),
        Route("/memories/{memory_id}", handler("read", memory_page), name="memory"),
        Route("/batches", handler("read", batches), name="batches"),
        Route("/batches/{batch_id}", handler("read", batch_page), name="batch"),
        Route("/batches/{batch_id}/commit", handler("write", commit_batch), methods=["POST"],
              name="commit_batch"),
        Mount("/static", app=StaticFiles(directory=_HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])
