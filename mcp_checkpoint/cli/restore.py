"""``mcp-checkpoint restore RUN``: write a checkpoint's workspace snapshot into a folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from mcp_checkpoint.cli._common import out, resolve_ids, with_store

if TYPE_CHECKING:
    from mcp_checkpoint.config import Settings
    from mcp_checkpoint.core.ports import Store

__all__ = ["register"]

_LABEL = {"create": "new", "unchanged": "same", "overwrite": "overwrite", "conflict": "CHANGED"}


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    """Restore the files a checkpoint kept into --target."""
    from mcp_checkpoint.core.episodes import Episodes
    from mcp_checkpoint.core.models import Tenant
    from mcp_checkpoint.core.snapshots import plan_restore
    from mcp_checkpoint.core.tokens import HeuristicTokenizer
    from mcp_checkpoint.workspace import apply_writes, survey

    target = Path(args.target).expanduser().resolve()
    if target.exists() and not target.is_dir():
        out(f"error: --target {args.target} is not a folder")
        return 2

    async def body(store: Store) -> int:
        episodes = Episodes(store, HeuristicTokenizer(), settings)
        tenant = Tenant(args.tenant or settings.tenant)
        [run_id] = await resolve_ids(store, settings, tenant, "run", [args.run_id])
        [checkpoint_id] = await resolve_ids(
            store, settings, tenant, "checkpoint", [args.checkpoint]
        ) if args.checkpoint else [None]
        checkpoint, entries = await episodes.snapshot(tenant, run_id, checkpoint_id)
        present, blocked = survey(target, [e.path for e in entries]) if target.exists() else (
            {e.path: None for e in entries}, {})
        plan = plan_restore([e for e in entries if e.path not in blocked], present,
                            force=args.force)
        writes = [e for e in entries if e.path in set(plan.writes)]
        if not args.dry_run and writes:
            data = await episodes.snapshot_files(tenant, writes)  # all verified first
            target.mkdir(parents=True, exist_ok=True)
            apply_writes(target, {e.path: data[e.path] for e in writes})
        summary = {
            "run_id": run_id,
            "checkpoint_id": checkpoint.checkpoint_id,
            "name": checkpoint.content.name,
            "target": str(target),
            "dry_run": args.dry_run,
            "files": dict(plan.actions),
            "blocked": blocked,
        }
        if args.json:
            out(json.dumps(summary, indent=1, ensure_ascii=False))
        else:
            label = f" ({checkpoint.content.name})" if checkpoint.content.name else ""
            verb = "would restore" if args.dry_run else "restored"
            out(f"checkpoint {checkpoint.number} {checkpoint.checkpoint_id}{label}: "
                f"{len(entries)} files -> {target}")
            for path, action in plan.actions.items():
                if action != "unchanged" or args.verbose:
                    out(f"  {_LABEL[action]:<9} {path}")
            for why in blocked.values():
                out(f"  BLOCKED   {why}")
            out(f"{verb} {len(plan.writes)}, unchanged {plan.count('unchanged')}, "
                f"changed and left alone {plan.count('conflict')}, blocked {len(blocked)}")
            if plan.count("conflict"):
                out("files changed since the checkpoint were left alone; --force overwrites")
        return 1 if plan.count("conflict") or blocked else 0

    return with_store(settings, body)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``restore``."""
    p = sub.add_parser(
        "restore",
        help="write a checkpoint's workspace files into a folder",
        description=(
            "Restore the files a checkpoint kept (checkpoint files=...) into --target. Every "
            "file's SHA-256 is verified before anything is written; each write is atomic; "
            "nothing is written outside the target or through a link; a file that differs "
            "from the snapshot is left alone unless --force. Files the snapshot does not "
            "list are never touched. Exit code 1 when some files were left alone."
        ),
    )
    p.add_argument("run_id", metavar="RUN")
    p.add_argument("--checkpoint", metavar="ID",
                   help="the checkpoint (default: the newest that kept files)")
    p.add_argument("--target", metavar="DIR", required=True,
                   help="the folder to restore into (created if missing)")
    p.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")
    p.add_argument("--force", action="store_true",
                   help="overwrite files that changed since the checkpoint")
    p.add_argument("--verbose", action="store_true", help="also list unchanged files")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--tenant", help="tenant (default: the configured one)")
    p.set_defaults(func=cmd_restore)
