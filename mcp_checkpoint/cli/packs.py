"""``mcp-checkpoint export`` and ``mcp-checkpoint import``: resume packs on the command line
(the logic is ``mcp_checkpoint.packs``; this module parses, reports and shows progress).

    mcp-checkpoint export RUN... [--memories SCOPE] -o pack.zip
    mcp-checkpoint import pack.zip [--apply] [--rename] [--json]
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from mcp_checkpoint.cli._common import out, resolve_ids
from mcp_checkpoint.cli._progress import Progress

if TYPE_CHECKING:
    from mcp_checkpoint.config import Settings

__all__ = ["register"]


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    """Write a pack of runs (and memories) to a zip file."""
    import contextlib
    import os
    import tempfile
    from pathlib import Path

    import anyio

    from mcp_checkpoint import __version__
    from mcp_checkpoint.core._ids import utc_now
    from mcp_checkpoint.core.models import Tenant
    from mcp_checkpoint.embeddings import make_embedder
    from mcp_checkpoint.errors import InvalidArgumentError
    from mcp_checkpoint.packs import export_pack
    from mcp_checkpoint.storage import make_store

    if not args.runs and not args.memories:
        raise InvalidArgumentError("name at least one RUN (or --memories SCOPE)")
    target = Path(args.output)
    if target.exists() and not args.force:
        raise InvalidArgumentError(f"{target.name} exists; pass --force to replace it")
    embedder = make_embedder(settings)
    embedding = (embedder.model_id, embedder.dimension or None) if embedder else None
    progress = Progress(args.progress)
    directory = target.parent if str(target.parent) else Path()
    try:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept open across the export
            dir=directory, prefix=f".{target.name}.", suffix=".partial", delete=False
        )
    except OSError as exc:
        raise InvalidArgumentError(
            f"cannot write {target.name} there ({exc.strerror or 'OS error'})"
        ) from None

    async def body() -> int:
        store = make_store(settings)
        await store.open()
        try:
            tenant = Tenant(args.tenant or settings.tenant)
            runs = await resolve_ids(store, settings, tenant, "run", args.runs)
            manifest = await export_pack(
                store, tenant, runs, handle,
                limits=settings.limits, tool_version=__version__, created_at=utc_now(),
                scopes=args.memories or (), embedding=embedding, progress=progress,
            )
        finally:
            await store.close()
        steps = sum(run.head_seq for run in manifest.runs)
        records = {f.path: f.records for f in manifest.files}
        out(
            f"exported {len(manifest.runs)} runs ({steps} steps), "
            f"{records['memories.jsonl']} memories and {records['proposals.jsonl']} memory "
            f"batches to {target}"
        )
        return 0

    try:
        code = anyio.run(body)
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.replace(handle.name, target)
    finally:
        progress.close()
        handle.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(handle.name)
    return code


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    """Verify a pack and import it (a dry run unless --apply)."""
    from pathlib import Path

    import anyio

    from mcp_checkpoint.core.models import Tenant
    from mcp_checkpoint.packs import apply_import, plan_import, read_pack
    from mcp_checkpoint.storage import make_store

    progress = Progress(args.progress)
    tenant = Tenant(args.tenant or settings.tenant)

    async def body() -> int:
        try:
            pack = read_pack(Path(args.pack), settings.limits, progress=progress)
        finally:
            progress.close()
        store = make_store(settings)
        await store.open()
        try:
            plan = await plan_import(
                store, tenant, pack, checkpoint_settings=settings.checkpoint,
                rename=args.rename, progress=progress,
            )
            progress.close()
            if args.apply and not plan.nothing_to_do:
                progress("writing (one transaction)", 0, 0)
                await apply_import(store, plan)
                progress.close()
        finally:
            await store.close()
        if args.json:
            out(json.dumps({**plan.summary(), "applied": bool(args.apply)}, indent=1))
            return 0
        for line in plan.lines():
            out(line)
        if plan.nothing_to_do:
            out("nothing to do: everything in the pack is already imported")
        elif args.apply:
            written = plan.records
            out(f"imported {len(written.runs)} runs, {len(written.proposals)} memory batches "
                 f"and {len(written.memories)} memories into tenant {tenant}")
        else:
            out("dry run: nothing written; run again with --apply to import")
        return 0

    return anyio.run(body)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``export`` and ``import``."""
    export = sub.add_parser("export", help="write runs and their memories to a pack (zip)")
    export.add_argument("runs", nargs="*", metavar="RUN", help="runs to export")
    export.add_argument("--memories", action="append", metavar="SCOPE",
                        help="also every memory of SCOPE ('*' = every scope); repeatable")
    export.add_argument("-o", "--output", required=True, metavar="PACK",
                        help="the zip file to write")
    export.add_argument("--force", action="store_true", help="replace PACK if it exists")
    export.add_argument("--tenant", help="tenant (default: the configured one)")
    export.add_argument("--progress", action="store_true",
                        help="report progress on stderr even when it is not a terminal")
    export.set_defaults(func=cmd_export)

    imp = sub.add_parser("import", help="verify a pack and import it (dry run by default)")
    imp.add_argument("pack", metavar="PACK", help="the zip file to read")
    imp.add_argument("--apply", action="store_true", help="write (default: only show the plan)")
    imp.add_argument("--rename", action="store_true",
                     help="give records whose ids are taken by other content new ids")
    imp.add_argument("--json", action="store_true", help="print the plan as JSON")
    imp.add_argument("--tenant", help="tenant (default: the configured one)")
    imp.add_argument("--progress", action="store_true",
                     help="report progress on stderr even when it is not a terminal")
    imp.set_defaults(func=cmd_import)
