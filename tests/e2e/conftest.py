"""Helpers for end-to-end tests: the real ``mcp-checkpoint`` console script in a subprocess.

``StdioServer`` is a minimal stdio client transport of our own (the SDK's ``stdio_client``
hides its process): it spawns ``mcp-checkpoint serve``, keeps the process handle (so a test
can SIGKILL it), keeps every raw stdout line (so a test can prove stdout carries nothing
but JSON-RPC) and sends the server's stderr to a file.
"""

from __future__ import annotations

import os
import sys
from contextlib import AsyncExitStack, suppress
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import mcp_types as types
from anyio.abc import Process
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from anyio.streams.text import TextReceiveStream
from mcp.shared.message import SessionMessage

SERVER = Path(sys.executable).parent / "mcp-checkpoint"


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The server's environment: isolated data dir, INFO logs (to stderr), nothing else
    inherited beyond what a stdio client passes by default."""
    env = {
        "MCP_CHECKPOINT_DATA_DIR": str(data_dir),
        "MCP_CHECKPOINT_LOG_LEVEL": "INFO",
        "MCP_CHECKPOINT_EMBEDDINGS__PROVIDER": "hashing",
        **extra,
    }
    # PYTHONPATH too: a checkout run with PYTHONPATH=$PWD serves its own code, not an
    # installed copy's.
    for key in ("HOME", "LOGNAME", "PATH", "PYTHONPATH", "SHELL", "TERM", "USER"):
        if key in os.environ:
            env.setdefault(key, os.environ[key])
    return env


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``mcp-checkpoint ARGS``; (exit code, stdout, stderr)."""
    with anyio.fail_after(60):
        done = await anyio.run_process([str(SERVER), *args], env=env, check=False)
    return done.returncode, done.stdout.decode("utf-8"), done.stderr.decode("utf-8")


class StdioServer:
    """A client transport over ``mcp-checkpoint serve`` that exposes its process."""

    def __init__(self, env: dict[str, str], stderr_path: Path) -> None:
        self.env = env
        self.stderr_path = stderr_path
        self.lines: list[str] = []
        self.bad_lines: list[str] = []
        self._process: Process | None = None
        self._stack: AsyncExitStack | None = None

    def stderr_tail(self, lines: int = 30) -> str:
        """The end of the server's log, for failure messages."""
        text = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    @property
    def process(self) -> Process:
        assert self._process is not None, "the server is not running"
        return self._process

    async def __aenter__(
        self,
    ) -> tuple[
        MemoryObjectReceiveStream[SessionMessage | Exception],
        MemoryObjectSendStream[SessionMessage],
    ]:
        async with AsyncExitStack() as stack:
            errlog = stack.enter_context(self.stderr_path.open("ab"))
            self._process = await anyio.open_process(
                [str(SERVER), "serve"], env=self.env, stderr=errlog
            )
            stack.push_async_callback(self._stop)
            read_writer, read_stream = anyio.create_memory_object_stream[
                SessionMessage | Exception
            ](0)
            write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)  # runs first on exit: stop the pipe tasks
            tg.start_soon(self._read, read_writer)
            tg.start_soon(self._write, write_reader)
            self._stack = stack.pop_all()
        return read_stream, write_stream

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._stack is not None
        await self._stack.__aexit__(exc_type, exc, tb)

    async def _read(self, out: MemoryObjectSendStream[SessionMessage | Exception]) -> None:
        assert self.process.stdout is not None
        buffer = ""
        async with out:
            with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                async for chunk in TextReceiveStream(self.process.stdout, encoding="utf-8"):
                    *complete, buffer = (buffer + chunk).split("\n")
                    for line in complete:
                        self.lines.append(line)
                        try:
                            message: Any = types.jsonrpc_message_adapter.validate_json(
                                line, by_name=False
                            )
                        except ValueError as exc:
                            self.bad_lines.append(line)
                            await out.send(exc)
                            continue
                        await out.send(SessionMessage(message))
            if buffer:
                self.bad_lines.append(buffer)  # a partial line at EOF is not protocol

    async def _write(self, messages: MemoryObjectReceiveStream[SessionMessage]) -> None:
        assert self.process.stdin is not None
        async with messages:
            with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                async for message in messages:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    await self.process.stdin.send((data + "\n").encode("utf-8"))

    async def _stop(self) -> None:
        """Close stdin and let the server exit on its own; kill it if it does not."""
        process = self.process
        assert process.stdin is not None
        with anyio.CancelScope(shield=True):
            with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                await process.stdin.aclose()
            with anyio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
