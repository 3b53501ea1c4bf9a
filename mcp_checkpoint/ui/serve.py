"""The web view as its own server (``mcp-checkpoint ui``): ``/ui`` plus a redirect from
``/``, with a lifespan that holds the store open."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route

from mcp_checkpoint.ui._security import Verify
from mcp_checkpoint.ui.app import Backend, build_ui_app

__all__ = ["standalone_app"]


def standalone_app(
    backend: Backend,
    use: Callable[[], AbstractAsyncContextManager[Any]],
    *,
    verify: Verify | None,
) -> Starlette:
    """An ASGI app serving the view at ``/ui``; ``use()`` opens the services for the
    app's lifetime (``Runtime.use``)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with use():
            yield

    async def home(request: Request) -> Response:
        return RedirectResponse("/ui/", status_code=307)

    return Starlette(
        routes=[
            Route("/", home),
            Mount("/ui", app=build_ui_app(backend, verify=verify)),
        ],
        lifespan=lifespan,
    )
