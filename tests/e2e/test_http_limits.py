"""Connection limits of ``serve --transport http``: header size, header-read timeout, and
a connection cap that idle connections cannot use to lock out a new client."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import httpx2
import pytest

from tests.e2e.http_helpers import HttpServer

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

LIMITS = {
    "MCP_CHECKPOINT_HTTP__MAX_HEADER_BYTES": "8192",
    "MCP_CHECKPOINT_HTTP__HEADER_TIMEOUT_SECONDS": "1",
    "MCP_CHECKPOINT_HTTP__MAX_CONNECTIONS": "20",
}


def _address(server: HttpServer) -> tuple[str, int]:
    parts = urlsplit(server.base)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


async def test_oversized_headers_get_431_and_a_closed_connection(tmp_path: Path) -> None:
    async with HttpServer(tmp_path / "data", "--no-auth", **LIMITS) as server:
        def send_huge() -> bytes:
            with socket.create_connection(_address(server), timeout=10) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
                try:
                    for _ in range(64):  # up to 4 MB of one header, never finished
                        sock.sendall(b"a" * 65536)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the server closed the connection: what we expect
                try:
                    return _read_all(sock)
                except ConnectionResetError:
                    return b"reset"

        answer = await anyio.to_thread.run_sync(send_huge)
        assert answer.startswith(b"HTTP/1.1 431") or answer == b"reset"
        async with httpx2.AsyncClient(base_url=server.base) as http:
            assert (await http.get("/healthz")).status_code == 200


async def test_a_client_that_never_finishes_its_headers_gets_408(tmp_path: Path) -> None:
    async with HttpServer(tmp_path / "data", "--no-auth", **LIMITS) as server:
        def stall() -> bytes:
            with socket.create_connection(_address(server), timeout=15) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                return _read_all(sock)  # returns when the server closes

        answer = await anyio.to_thread.run_sync(stall)
        assert answer.startswith(b"HTTP/1.1 408")


async def test_half_open_connections_beyond_the_cap_do_not_lock_out_a_new_client(
    tmp_path: Path,
) -> None:
    async with HttpServer(tmp_path / "data", "--no-auth",
                          **{**LIMITS, "MCP_CHECKPOINT_HTTP__HEADER_TIMEOUT_SECONDS": "60"}
                          ) as server:
        idle = []
        try:
            for _ in range(60):  # three times the cap, each stuck in its headers
                sock = socket.create_connection(_address(server), timeout=10)
                sock.sendall(b"GET /healthz HTTP/1.1\r\n")
                idle.append(sock)
            async with httpx2.AsyncClient(base_url=server.base, timeout=5) as http:
                for _ in range(3):
                    assert (await http.get("/healthz")).status_code == 200
        finally:
            for sock in idle:
                sock.close()
