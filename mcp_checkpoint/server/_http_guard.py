"""uvicorn's HTTP/1.1 protocol with the limits it lacks: header size, header-read timeout
and a connection cap that a flood of idle connections cannot use to lock others out.

uvicorn (httptools) bounds neither the size of a request's headers nor the time a client
may take to send them: one connection sending an endless header grows the server's memory
without limit, and thousands of connections that never finish their headers hold file
descriptors forever. ``GuardedHttpTools`` adds, per connection:

- ``max_header_bytes``: bytes received before the headers are complete; beyond it the
  client gets 431 and the connection is closed (memory held stays below the limit plus one
  read chunk);
- ``header_timeout``: seconds from the connection (or the end of the previous response)
  to complete headers; beyond it, 408 and the connection is closed;
- ``max_connections``: when that many connections are open, a new one first evicts (resets)
  the connection that has waited longest for its headers (a slow or idle client); only when
  every connection is busy with a request is the new one closed. A flood of half-open
  connections therefore cannot keep a new, well-behaved client out.

The idle keep-alive timeout between requests is uvicorn's own ``timeout_keep_alive``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["GuardLimits", "guarded_protocol"]

logger = logging.getLogger("mcp_checkpoint.server")

_431 = (b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n"
        b"content-length: 0\r\n\r\n")
_408 = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"


@dataclass(frozen=True)
class GuardLimits:
    """The limits of one server's connections."""

    max_header_bytes: int
    header_timeout: float
    max_connections: int


def guarded_protocol(limits: GuardLimits) -> type[HttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` that enforces ``limits``; the
    connections waiting for headers are tracked per class, that is per server."""
    waiting: OrderedDict[GuardedHttpTools, None] = OrderedDict()
    return type("GuardedHttpToolsBound", (GuardedHttpTools,),
                {"limits": limits, "waiting": waiting})


class GuardedHttpTools(HttpToolsProtocol):
    """``HttpToolsProtocol`` with the limits of ``GuardLimits`` (see the module)."""

    limits: GuardLimits
    waiting: OrderedDict[GuardedHttpTools, None]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None

    # -- waiting for headers -----------------------------------------------------------

    def _await_headers(self, *, arm: bool) -> None:
        """From now on the connection waits for a request's headers (and may be evicted);
        ``arm``: the header timeout starts now (else with the request's first bytes: an
        idle keep-alive connection is uvicorn's ``timeout_keep_alive`` to close)."""
        self._header_bytes = 0
        self._stop_timer()
        if arm:
            self._arm()
        self.waiting[self] = None

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(
            self.limits.header_timeout, self._refuse, _408, "header timeout"
        )

    def _stop_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _refuse(self, answer: bytes | None, why: str) -> None:
        """Close the connection, with ``answer`` first (None: reset it at once)."""
        self.waiting.pop(self, None)
        self._stop_timer()
        if not self.transport.is_closing():
            logger.debug("closing a connection: %s", why)
            if answer is None:
                self.transport.abort()
                return
            self.transport.write(answer)
            self.transport.close()

    # -- uvicorn's hooks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            oldest = next(iter(self.waiting), None)
            if oldest is None:  # every connection is busy with a request: refuse this one
                transport.close()
                return
            # Reset, not answered: under a flood of connections every eviction is paid
            # for on the event loop, and a client that sent no request in all that time
            # is owed no answer.
            oldest._refuse(None, "evicted: the connection cap is reached")
        super().connection_made(transport)
        self._await_headers(arm=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.waiting.pop(self, None)
        self._stop_timer()
        if getattr(self, "transport", None) is not None:  # refused in connection_made: none
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        waiting = self in self.waiting
        if waiting:
            if self._header_timer is None:
                self._arm()
            self._header_bytes += len(data)
        super().data_received(data)
        if waiting and self in self.waiting and self._header_bytes > self.limits.max_header_bytes:
            self._refuse(_431, "request headers too large")

    def on_headers_complete(self) -> None:
        self.waiting.pop(self, None)
        self._stop_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline and (
            self.cycle is None or self.cycle.response_complete
        ):
            self._await_headers(arm=False)
