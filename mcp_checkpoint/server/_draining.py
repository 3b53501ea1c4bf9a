"""A graceful stop in which every accepted request gets its real answer.

On SIGTERM uvicorn stops accepting connections and waits for the open ones to close
before the application shuts down, for at most ``http.shutdown_timeout_seconds``. But
sse-starlette (the SDK's SSE responses) ends every SSE response as soon as uvicorn is told
to exit: a request in flight had sent its 200 headers and its answer was cut, so the
client got an empty body for a call the server had carried out. ``serve`` turns that
drain off for streamable HTTP; then a session's standalone GET stream (notifications),
which never ends by itself, would hold the stop until the timeout.

``Draining`` fixes both halves from the moment the stop is requested (``StopSignal.set``,
called from uvicorn's signal handling): a new request is answered 503 with
``Retry-After`` and ``Connection: close``; an open GET stream of the MCP endpoint is told
its client went away, so it ends at once (clients reconnect it elsewhere); requests
already in flight run to their end and their answers are sent in full. (The SSE
transport's GET stream carries the answers themselves, so it is left to end with them.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Draining", "StopSignal"]


class StopSignal:
    """Set once the server is stopping; safe to set from a signal handler."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stopping = False

    def _bound(self) -> asyncio.Event:
        if self._event is None:
            self._loop = asyncio.get_running_loop()
            self._event = asyncio.Event()
            if self.stopping:
                self._event.set()
        return self._event

    def set(self) -> None:
        """Mark the server as stopping (from any thread or a signal handler)."""
        self.stopping = True
        if self._event is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self) -> None:
        """Return once the server is stopping."""
        await self._bound().wait()


class Draining:
    """ASGI middleware: 503 for new requests and an end to open GET streams of
    ``stream_path`` once ``stop`` is set (see the module)."""

    def __init__(self, app: ASGIApp, stop: StopSignal, stream_path: str | None) -> None:
        self.app = app
        self.stop = stop
        self.stream_path = stream_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.stop.stopping:
            response = JSONResponse(
                {"error": "unavailable", "error_description": "the server is stopping"},
                status_code=503, headers={"Retry-After": "5", "Connection": "close"},
            )
            await response(scope, receive, send)
            return
        if scope.get("method") == "GET" and scope.get("path") == self.stream_path:
            self.stop._bound()
            await self.app(scope, self._until_stop(receive), send)
            return
        await self.app(scope, receive, send)

    def _until_stop(self, receive: Receive) -> Receive:
        async def receive_or_stop() -> Message:
            if self.stop.stopping:
                return {"type": "http.disconnect"}
            got: list[Message] = []
            async with anyio.create_task_group() as tg:

                async def real() -> None:
                    got.append(await receive())
                    tg.cancel_scope.cancel()

                async def stopped() -> None:
                    await self.stop.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(real)
                tg.start_soon(stopped)
            return got[0] if got else {"type": "http.disconnect"}

        return receive_or_stop


def draining_server(config: Any, stop: StopSignal) -> Any:
    """A ``uvicorn.Server`` that sets ``stop`` when it is told to exit."""
    import uvicorn

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            stop.set()
            super().handle_exit(sig, frame)

    return _Server(config)
