"""What the command modules share: stdout lines, logging, a store opened for one command."""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from mcp_checkpoint.config import Settings
    from mcp_checkpoint.core.ports import IdKind, Store

__all__ = ["confirm", "out", "resolve_ids", "setup_logging", "startup", "with_store"]

T = TypeVar("T")


@contextlib.contextmanager
def startup() -> Iterator[None]:
    """No garbage collection while the block runs (then as before). Importing the SDK,
    pydantic and the domain and building their models allocates some 170,000 objects that
    live as long as the process, and the collector would walk them again and again while
    they are made: about a tenth of the start-up."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def out(text: str) -> None:
    """One line on stdout (the command's result; logs and progress go to stderr). Stored
    text (objectives, outputs, memories) is data: control characters such as ANSI escapes
    are printed as visible escapes (``\\x1b``), never obeyed by the terminal."""
    from mcp_checkpoint._text import neutralise

    sys.stdout.write(neutralise(text) + "\n")



def confirm(question: str, *, yes: bool) -> bool:
    """True when ``--yes`` was given or the person at the terminal answers y. Without a
    terminal to ask and without ``--yes``, nothing is confirmed."""
    if yes:
        return True
    if not sys.stdin.isatty():
        sys.stderr.write(f"{question} — not confirmed: pass --yes to run without a terminal\n")
        return False
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


async def resolve_ids(
    store: Store, settings: Settings, tenant: str, kind: IdKind, texts: list[str]
) -> list[str]:
    """Each of ``texts`` as the one id of ``kind`` it names or starts with (as git takes
    a commit prefix); an unknown or ambiguous prefix is an error naming the candidates."""
    from mcp_checkpoint.core.curation import Curation
    from mcp_checkpoint.core.models import Tenant

    curation = Curation(store, settings)
    return [await curation.resolve(Tenant(tenant), kind, text) for text in texts]


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
