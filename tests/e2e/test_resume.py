"""Resumable streamable HTTP: a client whose connection drops mid-stream reconnects with
``Last-Event-ID`` and loses no notification and no tool result.

The client talks to ``serve --transport http`` partly through a TCP proxy the test cuts
(tests/_tcp_proxy.py): its SSE streams go through the proxy, the requests that must reach
the server while the streams are down go direct. Raw HTTP, so every SSE field (ids, the
priming event, ``retry``) is visible.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests._tcp_proxy import TcpProxy
from tests.e2e.http_helpers import HttpServer

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

VERSION = "2025-11-25"
ACCEPT = "application/json, text/event-stream"


class Event(dict[str, str]):
    """One SSE event: its fields (id, event, data, retry)."""

    @property
    def message(self) -> dict[str, Any] | None:
        data = self.get("data", "")
        return json.loads(data) if data.strip() else None


async def events(response: httpx2.Response) -> AsyncIterator[Event]:
    event = Event()
    async for line in response.aiter_lines():
        if line == "":
            if event:
                yield event
            event = Event()
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        event[field] = event.get(field, "") + ("\n" if field == "data" and field in event
                                               else "") + value


class Session:
    """One MCP session: requests go to ``base`` (direct), streams to ``stream_base``."""

    def __init__(self, http: httpx2.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url
        self.id = ""
        self.next_id = 0

    def headers(self) -> dict[str, str]:
        found = {"accept": ACCEPT, "content-type": "application/json",
                 "mcp-protocol-version": VERSION}
        if self.id:
            found["mcp-session-id"] = self.id
        return found

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        return {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params or {}}

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A request whose answer comes on its own POST stream; its result."""
        body = self.request(method, params)
        async with self.http.stream("POST", self.url, json=body, headers=self.headers()) as rsp:
            assert rsp.status_code == 200, await rsp.aread()
            self.id = self.id or rsp.headers["mcp-session-id"]
            async for event in events(rsp):
                message = event.message
                if message is not None and message.get("id") == body["id"]:
                    assert "result" in message, message
                    result: dict[str, Any] = message["result"]
                    return result
        raise AssertionError(f"no answer to {method}")

    async def send(self, message: dict[str, Any]) -> None:
        """A notification or a response to the server: 202, no body."""
        rsp = await self.http.post(self.url, json=message, headers=self.headers())
        assert rsp.status_code == 202, rsp.text


async def open_session(http: httpx2.AsyncClient, url: str) -> Session:
    session = Session(http, url)
    await session.call("initialize", {
        "protocolVersion": VERSION, "clientInfo": {"name": "resume-test", "version": "1"},
        "capabilities": {"sampling": {}},
    })
    await session.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    return session


def tool_result(result: dict[str, Any]) -> dict[str, Any]:
    assert not result.get("isError"), result
    structured: dict[str, Any] = result["structuredContent"]
    return structured


async def test_a_dropped_standalone_stream_resumes_without_losing_a_notification(
    tmp_path: Path,
) -> None:
    async with HttpServer(tmp_path / "data", "--no-auth") as server, \
            httpx2.AsyncClient(timeout=30) as http:
        proxy = TcpProxy("127.0.0.1", int(server.base.rsplit(":", 1)[1]))
        await proxy.start()
        try:
            session = await open_session(http, server.url)
            via_proxy = f"http://127.0.0.1:{proxy.port}{server.endpoint}"
            tool_result(await session.call("tools/call", {
                "name": "start_run", "arguments": {"objective": "resume", "run_id": "r1"}}))
            await session.call("resources/subscribe", {"uri": "checkpoint://r1/latest"})

            # The standalone stream carries the update notifications, each with an event id.
            # (The SDK sends no priming event on it: a client resumes from the last event
            # it received there.)
            async with http.stream("GET", via_proxy, headers=session.headers()) as rsp:
                assert rsp.status_code == 200
                tool_result(await session.call("tools/call", {
                    "name": "checkpoint", "arguments": {"run_id": "r1", "progress": ["p0"]}}))
                stream = events(rsp)
                async for last in stream:
                    if last.message is not None:
                        break
                assert last.message["method"] == "notifications/resources/updated"  # type: ignore[index]
                assert last["id"]
                proxy.cut()  # the connection drops; the server cannot tell yet
                with pytest.raises(httpx2.HTTPError):
                    async for _ in stream:
                        pass

            # Three checkpoints while the stream is down: three notifications to miss.
            numbers = []
            for i in range(1, 4):
                cp = tool_result(await session.call("tools/call", {
                    "name": "checkpoint", "arguments": {"run_id": "r1", "progress": [f"p{i}"]}}))
                numbers.append(cp["number"])

            proxy.restore()
            got: list[dict[str, Any]] = []
            headers = {**session.headers(), "last-event-id": last["id"]}
            async with http.stream("GET", via_proxy, headers=headers) as rsp:
                assert rsp.status_code == 200
                with anyio.move_on_after(5):  # the replay comes at once; then it is live
                    async for event in events(rsp):
                        if event.message is not None:
                            got.append(event.message)
                        if len(got) == 3:
                            break
            assert [m["method"] for m in got] == ["notifications/resources/updated"] * 3
            assert {m["params"]["uri"] for m in got} == {"checkpoint://r1/latest"}
            assert numbers == [2, 3, 4]
        finally:
            await proxy.close()


async def test_a_dropped_request_stream_resumes_and_delivers_the_tool_result(
    tmp_path: Path,
) -> None:
    """The connection of a ``checkpoint`` call drops while the server waits for the
    client's model (sampling); the client answers, reconnects with the last event id it
    saw, and gets the tool's result."""
    async with HttpServer(tmp_path / "data", "--no-auth") as server, \
            httpx2.AsyncClient(timeout=30) as http:
        proxy = TcpProxy("127.0.0.1", int(server.base.rsplit(":", 1)[1]))
        await proxy.start()
        try:
            session = await open_session(http, server.url)
            via_proxy = f"http://127.0.0.1:{proxy.port}{server.endpoint}"
            tool_result(await session.call("tools/call", {
                "name": "start_run", "arguments": {"objective": "resume", "run_id": "r1"}}))
            tool_result(await session.call("tools/call", {
                "name": "record_step", "arguments": {"run_id": "r1", "tool": "build"}}))

            call = session.request("tools/call", {"name": "checkpoint",
                                                  "arguments": {"run_id": "r1"}})
            seen: list[Event] = []
            async with http.stream("POST", via_proxy, json=call,
                                   headers=session.headers()) as rsp:
                async for event in events(rsp):
                    seen.append(event)
                    message = event.message
                    if message is not None and message.get("method") == "sampling/createMessage":
                        break
                proxy.cut()
            priming, sampling = seen[0], seen[-1]
            assert priming.message is None and priming["id"] and priming["retry"] == "1000"
            assert all(e.message is None or e.message.get("id") != call["id"] for e in seen)

            # The client's model answers (direct), then the client resumes the stream.
            answer = {"progress": ["built"], "next_actions": ["ship"]}
            await session.send({"jsonrpc": "2.0", "id": sampling.message["id"], "result": {  # type: ignore[index]
                "role": "assistant", "model": "m", "stopReason": "endTurn",
                "content": {"type": "text", "text": json.dumps(answer)}}})
            proxy.restore()
            result = None
            headers = {**session.headers(), "last-event-id": sampling["id"]}
            async with http.stream("GET", via_proxy, headers=headers) as rsp:
                assert rsp.status_code == 200
                with anyio.fail_after(20):
                    async for event in events(rsp):
                        if event.message is not None and event.message.get("id") == call["id"]:
                            result = event.message["result"]
                            break
            assert result is not None, "the tool result was lost"
            cp = tool_result(result)
            assert (cp["source"], cp["number"]) == ("sampling", 1)
            assert cp["content"]["next_actions"] == ["ship"]
        finally:
            await proxy.close()
