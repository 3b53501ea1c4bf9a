"""The lean load client (bench/_lean.py) against a canned HTTP/1.1 server: JSON and
chunked SSE bodies, errors surfaced, keep-alive and reconnection."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from bench._lean import LeanClient, LeanError

pytestmark = pytest.mark.anyio

Answer = Callable[[dict[str, Any], dict[str, str]], bytes]


def json_response(message: dict[str, Any], *, status: str = "200 OK",
                  close: bool = False) -> bytes:
    body = json.dumps(message).encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n" + ("connection: close\r\n" if close else "")
            + "\r\n").encode() + body


def chunked_sse(*messages: dict[str, Any]) -> bytes:
    events = [b": ping\r\n\r\n"] + [f"event: message\r\ndata: {json.dumps(m)}\r\n\r\n".encode()
                                     for m in messages]
    chunks = b"".join(f"{len(e):x}\r\n".encode() + e + b"\r\n" for e in events)
    return (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")


def tool_result(request: dict[str, Any], structured: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request["id"], "result": {
        "content": [{"type": "text", "text": json.dumps(structured)}],
        "structuredContent": structured, "isError": False}}


@asynccontextmanager
async def canned(answer: Answer) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A loopback HTTP/1.1 server answering each POST with ``answer(body, headers)``;
    yields its URL and the connections' request log."""
    log: list[dict[str, Any]] = []

    async def serve(stream: SocketStream) -> None:
        reader = BufferedByteReceiveStream(stream)
        async with stream:
            connection = len({entry["connection"] for entry in log}) + 1
            try:
                while True:
                    head = (await reader.receive_until(b"\r\n\r\n", 65536)).decode()
                    request_line, *lines = head.split("\r\n")
                    headers = {k.strip().lower(): v.strip()
                               for k, _, v in (line.partition(":") for line in lines)}
                    body = json.loads(await reader.receive_exactly(
                        int(headers["content-length"])))
                    log.append({"connection": connection, "line": request_line,
                                "headers": headers, "body": body})
                    reply = answer(body, headers)
                    await stream.send(reply)
                    if b"connection: close" in reply.split(b"\r\n\r\n")[0]:
                        return
            except (anyio.EndOfStream, anyio.IncompleteRead):
                return

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 - not Django
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield f"http://127.0.0.1:{port}/mcp", log
        tg.cancel_scope.cancel()


async def test_a_call_is_one_post_with_the_envelope_and_the_routing_headers() -> None:
    async with canned(lambda body, _: json_response(tool_result(body, {"seq": 7}))) as (url, log):
        client = LeanClient(url, {"Authorization": "Bearer t0k"})
        try:
            first = await client.call_tool("record_step", {"run_id": "r"})
            second = await client.call_tool("rehydrate", {"run_id": "r"})
        finally:
            await client.aclose()
    assert first.structured == {"seq": 7} and not first.is_error
    assert second.structured == {"seq": 7}
    assert [entry["connection"] for entry in log] == [1, 1]  # kept alive
    request = log[0]
    assert request["line"] == "POST /mcp HTTP/1.1"
    assert request["headers"]["authorization"] == "Bearer t0k"
    assert request["headers"]["mcp-protocol-version"] == "2026-07-28"
    assert request["headers"]["mcp-method"] == "tools/call"
    assert request["headers"]["mcp-name"] == "record_step"
    assert request["body"]["params"]["arguments"] == {"run_id": "r"}
    meta = request["body"]["params"]["_meta"]
    assert meta["io.modelcontextprotocol/protocolVersion"] == "2026-07-28"
    assert "io.modelcontextprotocol/clientCapabilities" in meta
    assert log[1]["body"]["id"] != log[0]["body"]["id"]


async def test_a_chunked_event_stream_yields_the_response_after_notifications() -> None:
    def answer(body: dict[str, Any], _: dict[str, str]) -> bytes:
        progress = {"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": 1, "progress": 0.5}}
        return chunked_sse(progress, tool_result(body, {"ok": True}))

    async with canned(answer) as (url, log):
        client = LeanClient(url, {})
        try:
            result = await client.call_tool("checkpoint", {})
            again = await client.call_tool("checkpoint", {})
        finally:
            await client.aclose()
    assert result.structured == {"ok": True} and again.structured == {"ok": True}
    assert [entry["connection"] for entry in log] == [1, 1]


async def test_a_closed_connection_is_reopened_for_the_next_call() -> None:
    async with canned(lambda body, _: json_response(tool_result(body, {}), close=True)) as (
        url, log
    ):
        client = LeanClient(url, {})
        try:
            await client.call_tool("a", {})
            await client.call_tool("b", {})
        finally:
            await client.aclose()
    assert [entry["connection"] for entry in log] == [1, 2]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (lambda body, _: json_response({"error": "no"}, status="401 Unauthorized"),
         "tools/call: HTTP 401"),
        (lambda body, _: json_response({"jsonrpc": "2.0", "id": body["id"],
                                        "error": {"code": -32602, "message": "bad"}}),
         "JSON-RPC error -32602"),
        (lambda body, _: json_response(tool_result({"id": body["id"] + 1}, {})),
         "answers another request"),
        (lambda body, _: json_response({"jsonrpc": "2.0", "id": body["id"], "result": None}),
         "no result"),
        (lambda body, _: b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                         b"content-length: 12\r\n\r\n: ping\r\n\r\n\r\n",
         "ended without a response"),
    ],
    ids=["http-status", "jsonrpc-error", "other-id", "no-result", "no-response-event"],
)
async def test_anything_but_a_result_is_a_lean_error(answer: Answer, message: str) -> None:
    async with canned(answer) as (url, _):
        client = LeanClient(url, {})
        try:
            with pytest.raises(LeanError, match=message):
                await client.call_tool("record_step", {})
        finally:
            await client.aclose()


def test_only_http_urls_are_accepted() -> None:
    with pytest.raises(ValueError, match="not an http"):
        LeanClient("ftp://127.0.0.1/mcp", {})
