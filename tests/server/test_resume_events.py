"""A session's event store hands a resumed stream what was stored between its replay and
the transport's registering it again (the SDK awaits in between)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from mcp.server.streamable_http import EventMessage
from mcp_types import JSONRPCNotification, JSONRPCResponse

from mcp_checkpoint.server.resume import SessionEvents, _LiveStreams

pytestmark = pytest.mark.anyio


def _store() -> tuple[SessionEvents, _LiveStreams]:
    store = SessionEvents(max_events=100, max_bytes=1_000_000)
    live = _LiveStreams(store, {})
    store.live = live
    return store, live


@pytest.fixture
def stream() -> Iterator[tuple[Any, Any]]:
    """A live stream's two ends, as the transport makes them (16 messages buffered)."""
    send, receive = anyio.create_memory_object_stream[EventMessage](16)
    with send, receive:
        yield send, receive


async def _replay(store: SessionEvents, after: str) -> list[EventMessage]:
    seen: list[EventMessage] = []

    async def send(event: EventMessage) -> None:
        seen.append(event)

    assert await store.replay_events_after(after, send) == "7"
    return seen


async def test_what_is_stored_before_a_resumed_stream_is_live_again_reaches_it(
    stream: tuple[Any, Any],
) -> None:
    store, live = _store()
    priming = await store.store_event("7", None)
    progress = JSONRPCNotification(jsonrpc="2.0", method="notifications/progress",
                                   params={"progressToken": 1, "progress": 1})
    await store.store_event("7", progress)

    replayed = await _replay(store, priming)
    assert [e.message for e in replayed] == [progress]

    # The tool's result is stored while the transport mints the resumed stream's priming
    # event, before it registers the stream: the router finds no stream for it.
    result = JSONRPCResponse(jsonrpc="2.0", id=7, result={"ok": True})
    result_id = await store.store_event("7", result)
    send, receive = stream
    live["7"] = (send, receive)

    delivered = receive.receive_nowait()
    assert (delivered.message, delivered.event_id) == (result, result_id)
    with pytest.raises(anyio.WouldBlock):
        receive.receive_nowait()


async def test_once_live_the_transport_delivers_and_nothing_is_handed_twice(
    stream: tuple[Any, Any],
) -> None:
    store, live = _store()
    priming = await store.store_event("7", None)
    await _replay(store, priming)
    send, receive = stream
    live["7"] = (send, receive)  # registered at once: nothing was missed

    await store.store_event("7", JSONRPCResponse(jsonrpc="2.0", id=7, result={}))
    live["7"] = (send, receive)  # registering again hands over nothing more
    with pytest.raises(anyio.WouldBlock):
        receive.receive_nowait()


async def test_a_stream_that_stayed_live_is_left_to_the_transport(
    stream: tuple[Any, Any],
) -> None:
    store, live = _store()
    send, receive = stream
    live["7"] = (send, receive)
    priming = await store.store_event("7", None)
    await store.store_event("7", JSONRPCResponse(jsonrpc="2.0", id=7, result={}))

    assert [e.message for e in await _replay(store, priming)] != []
    live["7"] = (send, receive)
    with pytest.raises(anyio.WouldBlock):
        receive.receive_nowait()
