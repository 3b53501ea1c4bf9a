"""Helpers for remote-serving tests: ``mcp-checkpoint serve --transport http|sse`` in a
subprocess on a free loopback port, tokens made by the real CLI, SDK clients with a bearer
header."""

from __future__ import annotations

import re
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import httpx2
from anyio.abc import Process
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from tests.e2e.conftest import SERVER, run_cli, server_env

_LISTENING = re.compile(r"serving .* on (http://127\.0\.0\.1:\d+)(/\w+)")


async def make_token(env: dict[str, str], tenant: str, scope: str = "read,write") -> str:
    """A new token from ``mcp-checkpoint tokens create`` (its only output line)."""
    code, out, err = await run_cli("tokens", "create", "--tenant", tenant, "--scope", scope,
                                   env=env)
    assert code == 0, err
    token = out.strip()
    assert token.startswith("mcpck_") and "\n" not in token
    return token


class HttpServer:
    """``mcp-checkpoint serve --transport T --port 0 ARGS``; knows its URL once started."""

    def __init__(self, data_dir: Path, *args: str, transport: str = "http", workers: int = 1,
                 **env: str) -> None:
        self.env = server_env(data_dir, **env)
        self.args = ["serve", "--transport", transport, "--port", "0", *args]
        if workers > 1:
            self.args += ["--workers", str(workers)]
        self.workers = workers
        self.stderr_path = data_dir.parent / f"server-{transport}.log"
        self.base = ""
        self.endpoint = ""
        self._process: Process | None = None

    @property
    def url(self) -> str:
        """Where MCP clients connect."""
        return self.base + self.endpoint

    @property
    def process(self) -> Process:
        assert self._process is not None
        return self._process

    def log(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    async def __aenter__(self) -> HttpServer:
        with self.stderr_path.open("wb") as errlog:  # a fresh log: the port is read from it
            self._process = await anyio.open_process([str(SERVER), *self.args], env=self.env,
                                                     stderr=errlog)
        with anyio.fail_after(60):
            while True:
                text = self.log()
                found = _LISTENING.search(text)
                if found and text.count("Application startup complete") >= self.workers:
                    self.base, self.endpoint = found.group(1), found.group(2)
                    return self
                if self.process.returncode is not None:
                    raise AssertionError(f"server exited early:\n{text}")
                await anyio.sleep(0.05)  # polling the log for readiness, not a timed wait

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    async def stop(self) -> int:
        """SIGTERM, wait for a graceful exit (kill after 30 s); the exit code."""
        process = self.process
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            with anyio.move_on_after(30):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.returncode is not None
        return process.returncode


def headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@asynccontextmanager
async def connect(url: str, token: str | None, *, transport: str = "http",
                  **client_args: Any) -> AsyncIterator[Client]:
    """An SDK client over streamable HTTP or SSE with a bearer header."""
    if transport == "sse":
        async with Client(sse_client(url, headers=headers(token)), **client_args) as client:
            yield client
        return
    async with httpx2.AsyncClient(headers=headers(token), timeout=30) as http, Client(
        streamable_http_client(url, http_client=http), **client_args
    ) as client:
        yield client
