"""What the command modules share: stdout lines, logging, a store opened for one command."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from mcp_checkpoint.config import Settings
    from mcp_checkpoint.core.ports import Store

__all__ = ["out", "setup_logging", "with_store"]

T = TypeVar("T")


def out(text: str) -> None:
    """One line on stdout (the command's result; logs and progress go to stderr). Stored
    text (objectives, outputs, memories) is data: control characters such as ANSI escapes
    are printed as visible escapes (``\\x1b``), never obeyed by the terminal."""
    from mcp_checkpoint._text import neutralise

    sys.stdout.write(neutralise(text) + "\n")


def setup_logging(settings: Settings) -> None:
    """Logs go to stderr (on stdio, stdout belongs to the protocol)."""
    import logging

    logging.basicConfig(
        stream=sys.stderr,
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def with_store(settings: Settings, body: Callable[[Store], Awaitable[T]]) -> T:
    """Open the configured store, run ``body`` with it, close it."""
    import anyio

    from mcp_checkpoint.storage import make_store

    async def run() -> T:
        store = make_store(settings)
        await store.open()
        try:
            return await body(store)
        finally:
            await store.close()

    return anyio.run(run)
