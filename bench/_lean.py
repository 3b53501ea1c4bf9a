"""A lean MCP client for ``bench load``: one self-contained streamable-HTTP POST per call.

The load benchmark's clients share the machine's cores with the server they measure. The
SDK client spends about as much CPU per call as the server does (anyio streams, pydantic
models of every message, schema validation), so on a 2-core machine it measures itself
as much as the server. This client speaks the same wire protocol with almost no work of
its own: protocol revision 2026-07-28, where a request is a single POST carrying its
envelope (protocol version and client capabilities in ``params._meta``, mirrored in the
``MCP-Protocol-Version`` / ``Mcp-Method`` / ``Mcp-Name`` headers) and the answer is either
``application/json`` or an SSE stream ending with the response. It checks what a client
must (status, JSON-RPC id, error objects) and nothing more; ``bench load --client sdk``
drives the same load through the SDK client instead.
"""

from __future__ import annotations

import itertools
import json
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
from anyio.abc import ByteStream
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    PROTOCOL_VERSION_META_KEY,
)

from mcp_checkpoint import __version__

__all__ = ["LeanClient", "LeanError", "ToolAnswer"]

PROTOCOL_VERSION = "2026-07-28"
_ENVELOPE = {
    PROTOCOL_VERSION_META_KEY: PROTOCOL_VERSION,
    CLIENT_CAPABILITIES_META_KEY: {},
    CLIENT_INFO_META_KEY: {"name": "mcp-checkpoint-bench-load", "version": __version__},
}


class LeanError(Exception):
    """The server answered with something other than a JSON-RPC result (HTTP status,
    JSON-RPC error, malformed body)."""


@dataclass(frozen=True)
class ToolAnswer:
    """A ``tools/call`` result: the tool's error flag, structured content and text."""

    is_error: bool
    structured: dict[str, Any] | None
    text: str


_MAX_HEAD = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024


class LeanClient:
    """Calls tools over one keep-alive HTTP/1.1 connection of its own (reopened when the
    server closes it). ``headers`` go with every request (e.g. Authorization)."""

    def __init__(self, url: str, headers: dict[str, str], *, timeout_s: float = 120.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url}")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._head = "".join(
            f"{k}: {v}\r\n" for k, v in {
                "Host": parts.netloc, "Accept": "application/json, text/event-stream",
                "Content-Type": "application/json", **headers}.items())
        self._timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._stream: ByteStream | None = None
        self._reader: BufferedByteReceiveStream | None = None

    async def aclose(self) -> None:
        """Close the connection (a later call opens a new one)."""
        stream, self._stream, self._reader = self._stream, None, None
        if stream is not None:
            await stream.aclose()

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolAnswer:
        """``tools/call``; LeanError when the call did not produce a tool result."""
        result = await self._request("tools/call", {"name": name, "arguments": arguments},
                                     name=name)
        content = result.get("content") or []
        text = " ".join(c.get("text", "") for c in content if c.get("type") == "text")
        structured = result.get("structuredContent")
        if structured is not None and not isinstance(structured, dict):
            raise LeanError(f"{name}: structuredContent is not an object")
        return ToolAnswer(bool(result.get("isError")), structured, text)

    async def _request(self, method: str, params: dict[str, Any], *,
                       name: str | None = None) -> dict[str, Any]:
        request_id = next(self._ids)
        body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method,
                           "params": {**params, "_meta": _ENVELOPE}}).encode()
        head = (f"POST {self._path} HTTP/1.1\r\n{self._head}"
                f"MCP-Protocol-Version: {PROTOCOL_VERSION}\r\nMcp-Method: {method}\r\n"
                + (f"Mcp-Name: {name}\r\n" if name is not None else "")
                + f"Content-Length: {len(body)}\r\n\r\n")
        try:
            with anyio.fail_after(self._timeout_s):
                status, kind, payload = await self._exchange(head.encode() + body)
        except BaseException:
            await self.aclose()  # a half-read response must not be read by the next call
            raise
        if status != 200:
            raise LeanError(f"{method}: HTTP {status}")
        text = payload.decode("utf-8")
        message = _from_sse(text, request_id) if kind.startswith("text/event-stream") \
            else json.loads(text)
        if not isinstance(message, dict) or message.get("id") != request_id:
            raise LeanError(f"{method}: the response answers another request")
        if "error" in message:
            raise LeanError(f"{method}: JSON-RPC error {message['error'].get('code')}")
        result = message.get("result")
        if not isinstance(result, dict):
            raise LeanError(f"{method}: no result")
        return result

    async def _exchange(self, request: bytes) -> tuple[int, str, bytes]:
        """Send one request; (status, content type, body) of its response."""
        stream, reader = self._stream, self._reader
        if stream is None or reader is None:
            if self._tls:
                stream = await anyio.connect_tcp(
                    self._host, self._port, ssl_context=ssl.create_default_context(),
                    tls_standard_compatible=False)
            else:
                stream = await anyio.connect_tcp(self._host, self._port)
            reader = BufferedByteReceiveStream(stream)
            self._stream, self._reader = stream, reader
        await stream.send(request)
        lines = (await reader.receive_until(b"\r\n\r\n", _MAX_HEAD)).decode("latin-1")
        status_line, *header_lines = lines.split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = {}
        for line in header_lines:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        if "content-length" in headers:
            payload = await reader.receive_exactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while size := int((await reader.receive_until(b"\r\n", 1024)).split(b";")[0], 16):
                chunks.append(await reader.receive_exactly(size))
                await reader.receive_exactly(2)
            await reader.receive_until(b"\r\n", _MAX_HEAD)  # no trailers are expected
            payload = b"".join(chunks)
        else:  # the body runs to the end of the connection
            chunks = []
            try:
                while sum(map(len, chunks)) <= _MAX_BODY:
                    chunks.append(await reader.receive())
            except (anyio.EndOfStream, anyio.IncompleteRead):
                pass
            payload = b"".join(chunks)
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            await self.aclose()
        return status, headers.get("content-type", ""), payload


def _from_sse(text: str, request_id: int) -> dict[str, Any]:
    """The JSON-RPC response for ``request_id`` in an SSE body (notifications and pings
    before it are skipped)."""
    for event in text.replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(line[5:].lstrip() for line in event.split("\n")
                         if line.startswith("data:"))
        if not data:
            continue
        message = json.loads(data)
        if isinstance(message, dict) and message.get("id") == request_id:
            return message
    raise LeanError("the event stream ended without a response")
