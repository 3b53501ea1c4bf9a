"""A TCP proxy a test controls, to simulate a database outage without touching the server.

``cut()`` closes every proxied connection and refuses new ones (they are accepted and closed
at once, like a server that is down); ``freeze()`` keeps connections open but forwards
nothing (a network that silently drops packets); ``restore()`` closes whatever was
frozen and forwards again.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["TcpProxy"]

_CHUNK = 65_536


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._state = "up"
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.port = 0
        self.accepted = 0

    async def start(self) -> None:
        """Listen on a free loopback port (``self.port``)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
        self._drop_all()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def cut(self) -> None:
        """Close every connection and refuse new ones (the server is down)."""
        self._state = "down"
        self._flowing.set()
        self._drop_all()

    def freeze(self) -> None:
        """Forward nothing any more, closing nothing (packets silently lost)."""
        self._state = "frozen"
        self._flowing.clear()

    def restore(self) -> None:
        """Forward again; connections that were frozen are closed (the server restarted)."""
        if self._state == "frozen":
            self._drop_all()
        self._state = "up"
        self._flowing.set()

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._state == "down":
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink, (writer, up_writer)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while data := await source.read(_CHUNK):
                await self._flowing.wait()
                if sink not in self._writers:
                    break
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for writer in pair:
                self._writers.discard(writer)
                with contextlib.suppress(Exception):
                    writer.transport.abort()
