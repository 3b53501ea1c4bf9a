"""``mcp-checkpoint reindex``: embed memories after installing or changing a model."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mcp_checkpoint._dist import install_hint
from mcp_checkpoint.cli._common import out, with_store
from mcp_checkpoint.cli._progress import Progress

if TYPE_CHECKING:
    from mcp_checkpoint.config import Settings
    from mcp_checkpoint.core.ports import Store

__all__ = ["register"]


def cmd_reindex(settings: Settings, args: argparse.Namespace) -> int:
    """Give every active memory a vector of the configured embedding model."""
    from mcp_checkpoint.core.memory import MemoryService
    from mcp_checkpoint.embeddings import make_embedder
    from mcp_checkpoint.storage import make_vector_index

    embedder = make_embedder(settings)
    if embedder is None:
        out("no embedding model is configured: " + install_hint("embeddings"))
        return 1

    async def body(store: Store) -> int:
        vectors = make_vector_index(settings, store)
        await vectors.open()
        try:
            embedder.start()
            memory = MemoryService(store, settings, embedder=embedder, vectors=vectors)
            progress = Progress(enabled=True)
            embedded = await memory.sync_vectors(
                rebuild=args.rebuild,
                progress=progress.counter(f"reindex ({embedder.model_id})", "memories checked"),
            )
            progress.close()
            space = await vectors.space()
        finally:
            await vectors.close()
        out(f"embedded {embedded} memories; vectors: {space[0] if space else 'none'}")
        return 0

    return with_store(settings, body)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``reindex``."""
    reindex = sub.add_parser(
        "reindex", help="embed the memories that lack a vector of the configured model"
    )
    reindex.add_argument("--rebuild", action="store_true",
                         help="drop every vector and embed all memories again")
    reindex.set_defaults(func=cmd_reindex)
