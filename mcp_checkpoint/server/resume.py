"""Resumable streamable HTTP: a bounded event store per session.

Every message the server sends on a session's SSE streams (tool results, progress, resource
update notifications) is kept, with an event id, in that session's ``SessionEvents``; each
stream opens with a priming event (an id, empty data, and a ``retry`` hint). A client whose
connection drops reconnects with ``GET`` and ``Last-Event-ID`` and gets every message of
that stream it missed, then the live tail (the SDK's transport does the wire part).

One store per session, never shared: event ids are only looked up in the session the
request was authenticated for, so no session can replay another's events. The store is
bounded (``http.resume_events`` messages and ``http.resume_bytes`` of JSON per session,
oldest dropped first); a client that reconnects after its events were dropped gets what
is left. It lives and dies with the session (in memory: a restarted server has no session
to resume).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

import anyio
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp_types import JSONRPCMessage, JSONRPCResponse

__all__ = ["SessionEvents", "install_session_event_stores"]

logger = logging.getLogger("mcp_checkpoint.server")


@dataclass
class _Event:
    seq: int
    stream_id: StreamId
    message: JSONRPCMessage | None  # None: a stream's priming event
    size: int


class SessionEvents(EventStore):
    """The events of one session, bounded by count and by bytes (oldest dropped first)."""

    def __init__(self, max_events: int, max_bytes: int) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._events: deque[_Event] = deque()
        self._by_seq: dict[int, _Event] = {}
        self._bytes = 0
        self._seq = itertools.count(1)
        self.dropped = 0
        self.negotiated: str | None = None  # the protocol version initialize settled on
        # The transport's live streams by stream id (set when installed). A stream being
        # resumed is not live between its replay and the SDK's registering it again (the
        # SDK awaits in between); what is stored meanwhile would reach no one, so it is
        # kept here and handed to the stream when it is registered (``_LiveStreams``).
        self.live: dict[StreamId, Any] | None = None
        self._missed: dict[StreamId, list[EventMessage]] = {}

    @property
    def size(self) -> tuple[int, int]:
        """(events kept, bytes of JSON kept)."""
        return len(self._events), self._bytes

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        seq = next(self._seq)
        size = 0 if message is None else len(
            message.model_dump_json(by_alias=True, exclude_unset=True)
        )
        if self.negotiated is None and isinstance(message, JSONRPCResponse):
            result = message.result
            version = result.get("protocolVersion") if isinstance(result, dict) else None
            if isinstance(version, str) and "serverInfo" in result:
                self.negotiated = version
        event = _Event(seq, stream_id, message, size)
        missed = self._missed.get(stream_id)
        if missed is not None and message is not None:
            if self.live is not None and stream_id not in self.live:
                missed.append(EventMessage(message, str(seq)))
            else:  # live again: the transport delivers it
                del self._missed[stream_id]
        self._events.append(event)
        self._by_seq[seq] = event
        self._bytes += size
        while self._events and (
            len(self._events) > self.max_events or self._bytes > self.max_bytes
        ):
            old = self._events.popleft()
            del self._by_seq[old.seq]
            self._bytes -= old.size
            if old.message is not None:
                self.dropped += 1
        return str(seq)

    async def replay_events_after(
        self, last_event_id: EventId, send_callback: EventCallback
    ) -> StreamId | None:
        try:
            seq = int(last_event_id)
        except ValueError:
            return None
        anchor = self._by_seq.get(seq)
        if anchor is None:
            logger.info("a client resumed after event %d, which this session no longer keeps",
                        seq)
            return None
        for event in list(self._events):
            if event.seq > seq and event.stream_id == anchor.stream_id and event.message:
                await send_callback(EventMessage(event.message, str(event.seq)))
        if self.live is not None and anchor.stream_id not in self.live:
            self._missed[anchor.stream_id] = []  # replayed up to here: the rest comes live
        return anchor.stream_id

    def registered(self, stream_id: StreamId, stream: Any) -> None:
        """The transport made ``stream_id`` live: hand it what was stored since its replay,
        in order, before anything newer (the stream holds 16; any beyond stay stored for
        the client's next resume)."""
        for message in self._missed.pop(stream_id, ()):
            with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError,
                                     anyio.ClosedResourceError):
                stream[0].send_nowait(message)


class _LiveStreams(dict[Any, Any]):
    """The transport's live streams by id, telling the session's events when one is
    registered (see ``SessionEvents.live``)."""

    def __init__(self, events: SessionEvents, streams: dict[Any, Any]) -> None:
        super().__init__(streams)
        self._session_events = events

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self._session_events.registered(key, value)


def install_session_event_stores(
    manager: Any, *, max_events: int, max_bytes: int
) -> bool:
    """Give every new session of the SDK's streamable-HTTP session ``manager`` its own
    ``SessionEvents`` (the SDK shares one store between sessions, whose stream ids - the
    JSON-RPC request ids - collide). False when this SDK version offers no hook, in which
    case streams are not resumable."""
    admit = getattr(manager, "_admit_session", None)
    if admit is None:
        logger.warning("this MCP SDK cannot keep events per session: streams are not resumable")
        return False

    def admit_with_events(*args: Any, **kwargs: Any) -> Any:
        transport = admit(*args, **kwargs)
        if transport is None:
            return None
        store = SessionEvents(max_events, max_bytes)
        transport._event_store = store
        streams = getattr(transport, "_request_streams", None)
        if isinstance(streams, dict):
            transport._request_streams = store.live = _LiveStreams(store, streams)
        mint = getattr(transport, "_mint_priming_event", None)
        if mint is not None:
            # The SDK primes a stream only when the request's MCP-Protocol-Version header
            # is 2025-11-25 or newer (older clients cannot parse an event without data);
            # the version the session negotiated is the better witness of what the client
            # parses, so it decides once known.
            async def mint_for_session(stream_id: StreamId, protocol_version: str) -> Any:
                return await mint(stream_id, store.negotiated or protocol_version)

            transport._mint_priming_event = mint_for_session
        return transport

    manager._admit_session = admit_with_events
    return True
