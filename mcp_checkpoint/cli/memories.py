"""``mcp-checkpoint memories list|forget``: browse long-term memory, and delete from it.
Every ID argument takes a unique id prefix."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from mcp_checkpoint.cli._common import confirm, out, resolve_ids, with_store

if TYPE_CHECKING:
    from mcp_checkpoint.config import Settings
    from mcp_checkpoint.core.ports import Store

__all__ = ["register"]

_KINDS = ["fact", "preference", "procedure", "lesson", "decision", "other"]
_STATUSES = ["active", "superseded", "deprecated", "any"]


def cmd_memories_list(settings: Settings, args: argparse.Namespace) -> int:
    """Memories in creation order, filtered by scope, kind and status."""
    from mcp_checkpoint._text import one_line
    from mcp_checkpoint.core.curation import Curation
    from mcp_checkpoint.core.models import Tenant

    async def body(store: Store) -> int:
        tenant = Tenant(args.tenant or settings.tenant)
        found, nxt = await Curation(store, settings).browse_memories(
            tenant, status=None if args.status == "any" else args.status, scope=args.scope,
            kind=args.kind, after=args.after, limit=args.limit,
        )
        if args.json:
            out(json.dumps({"memories": [m.model_dump(mode="json") for m in found],
                            "next_after": nxt}, indent=1))
            return 0
        if not found:
            out("no memories")
            return 0
        out(f"{'MEMORY':<28} {'KIND':<10} {'SCOPE':<16} {'STATUS':<10} UPDATED              "
            "CONTENT")
        for m in found:
            out(f"{m.memory_id:<28} {m.kind:<10} {one_line(m.scope, 16):<16} {m.status:<10} "
                f"{m.updated_at:%Y-%m-%d %H:%M:%S}  {one_line(m.content, 70)}")
        if nxt is not None:
            out(f"(more: --after {nxt})")
        return 0

    return with_store(settings, body)


def cmd_memories_forget(settings: Settings, args: argparse.Namespace) -> int:
    """Delete memories for good (not deprecate); asks unless --yes."""
    from mcp_checkpoint._text import one_line
    from mcp_checkpoint.core.memory import MemoryService
    from mcp_checkpoint.core.models import Tenant
    from mcp_checkpoint.embeddings import make_embedder
    from mcp_checkpoint.storage import make_vector_index

    async def body(store: Store) -> int:
        tenant = Tenant(args.tenant or settings.tenant)
        ids = list(dict.fromkeys(
            await resolve_ids(store, settings, tenant, "memory", args.memory_ids)))
        embedder = make_embedder(settings)
        vectors = make_vector_index(settings, store) if embedder is not None else None
        service = MemoryService(store, settings, vectors=vectors)
        found = [await service.get_memory(tenant, i) for i in ids]
        for m in found:
            out(f"{m.memory_id} ({m.kind}, {m.scope}, {m.status}): {one_line(m.content, 80)}")
        if not confirm(f"forget {len(found)} memory(ies) for good?", yes=args.yes):
            out("nothing forgotten")
            return 1
        if vectors is not None:
            await vectors.open()
        try:
            for m in found:
                await service.forget(tenant, m.memory_id)
                out(f"forgot {m.memory_id}")
        finally:
            if vectors is not None:
                await vectors.close()
        return 0

    return with_store(settings, body)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``memories list|forget``."""
    memories = sub.add_parser("memories", help="browse and forget long-term memories")
    actions = memories.add_subparsers(dest="memories_command", metavar="ACTION",
                                      required=True)
    listing = actions.add_parser("list", help="list memories (no query needed)")
    listing.add_argument("--scope", help="only this scope (e.g. global, project:web)")
    listing.add_argument("--kind", choices=_KINDS, help="only this kind")
    listing.add_argument("--status", choices=_STATUSES, default="active",
                         help="only this status (default: active)")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--after", metavar="ID", help="continue after this memory id")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.add_argument("--tenant", help="tenant (default: the configured one)")
    listing.set_defaults(func=cmd_memories_list)
    forget = actions.add_parser(
        "forget", help="delete memories for good (asks unless --yes)",
        description="Deletes the memories and their vectors. Memories that were superseded "
        "by one keep its id, and the web view says it was forgotten, and when.",
    )
    forget.add_argument("memory_ids", metavar="ID", nargs="+",
                        help="memory ids or unique prefixes of them")
    forget.add_argument("--yes", "-y", action="store_true", help="do not ask")
    forget.add_argument("--tenant", help="tenant (default: the configured one)")
    forget.set_defaults(func=cmd_memories_forget)
