"""``mcp-checkpoint runs list|show|verify|log|export|checkpoints|delete|prune``: inspect
the store, curate it, and retention. Every RUN argument takes a unique id prefix."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from mcp_checkpoint.cli._common import confirm, out, resolve_ids, with_store

if TYPE_CHECKING:
    from datetime import datetime

    from mcp_checkpoint.config import Settings
    from mcp_checkpoint.core.episodes import Episodes
    from mcp_checkpoint.core.ports import Store

__all__ = ["register"]


def _episodes(settings: Settings, store: Store) -> Episodes:
    from mcp_checkpoint.core.episodes import Episodes
    from mcp_checkpoint.core.tokens import HeuristicTokenizer

    return Episodes(store, HeuristicTokenizer(), settings)


def cmd_runs_list(settings: Settings, args: argparse.Namespace) -> int:
    """List runs, most recently updated first."""
    from mcp_checkpoint.core.models import Tenant

    async def body(store: Store) -> int:
        runs = await _episodes(settings, store).list_runs(
            Tenant(args.tenant or settings.tenant), status=args.status, limit=args.limit,
            offset=args.offset,
        )
        if args.json:
            out(json.dumps([r.model_dump(mode="json") for r in runs], indent=1))
            return 0
        if not runs:
            out("no runs")
            return 0
        out(f"{'RUN':<32} {'STATUS':<10} {'STEPS':>6} {'CPS':>4}  UPDATED              OBJECTIVE")
        for r in runs:
            objective = r.objective.replace("\n", " ")
            objective = objective if len(objective) <= 50 else objective[:49] + "…"
            out(
                f"{r.run_id:<32} {r.status:<10} {r.step_count:>6} {r.checkpoint_count:>4}  "
                f"{r.updated_at:%Y-%m-%d %H:%M:%S}  {objective}"
            )
        return 0

    return with_store(settings, body)


def cmd_runs_show(settings: Settings, args: argparse.Namespace) -> int:
    """Show one run, its statistics, its latest checkpoint and the head of its ledger."""
    from mcp_checkpoint.core.curation import Curation
    from mcp_checkpoint.core.models import Tenant

    async def body(store: Store) -> int:
        tenant = Tenant(args.tenant or settings.tenant)
        episodes = _episodes(settings, store)
        [run_id] = await resolve_ids(store, settings, tenant, "run", [args.run_id])
        run = await episodes.get_run(tenant, run_id)
        checkpoint = await episodes.latest_checkpoint(tenant, run)
        stats = await Curation(store, settings).step_stats(tenant, run_id)
        duration = run.updated_at - run.created_at
        if args.json:
            out(json.dumps({
                "run": run.model_dump(mode="json"),
                "latest_checkpoint": checkpoint.model_dump(mode="json") if checkpoint else None,
                "stats": {
                    "steps_by_tool_and_status": [
                        {"tool": s.tool, "status": s.status, "steps": s.steps,
                         "tokens": s.tokens} for s in stats
                    ],
                    "tokens": run.head_tokens,
                    "checkpoints": run.checkpoint_count,
                    "episodes": run.episode,
                    "duration_seconds": round(duration.total_seconds(), 3),
                },
            }, indent=1))
            return 0
        out(f"run {run.run_id} ({run.status})")
        out(f"  objective:   {run.objective}")
        out(f"  steps:       {run.step_count} (head seq {run.head_seq}, episode {run.episode})")
        out(f"  working:     {run.working_steps} steps, {run.working_tokens} tokens "
             f"(budget {run.budget_tokens})")
        out(f"  checkpoints: {run.checkpoint_count} (latest {run.latest_checkpoint_id or '-'})")
        if run.pruned_seq or run.pruned_checkpoints:
            out(f"  pruned:      steps 1–{run.pruned_seq}, checkpoints "
                 f"1–{run.pruned_checkpoints} (runs prune)")
        out(f"  created:     {run.created_at:%Y-%m-%d %H:%M:%S} UTC, "
             f"updated {run.updated_at:%Y-%m-%d %H:%M:%S} UTC")
        out(f"  duration:    {_duration(duration.total_seconds())}, {run.episode} episodes, "
            f"{run.head_tokens} tokens recorded")
        if stats:
            out("  steps by tool and status:")
            for s in stats[:15]:
                out(f"    {s.steps:>7}  {s.tool} ({s.status}), {s.tokens} tokens")
            if len(stats) > 15:
                out(f"    ... and {len(stats) - 15} more tool/status pairs (--json lists all)")
        if checkpoint is not None:
            out(f"  latest checkpoint covers steps 1–{checkpoint.through_seq}:")
            for action in checkpoint.content.next_actions[:5]:
                out(f"    next: {action}")
        return 0

    return with_store(settings, body)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    return f"{minutes}m {secs}s" if minutes else f"{seconds:.1f}s"


def cmd_runs_verify(settings: Settings, args: argparse.Namespace) -> int:
    """Verify a run's ledger hash chain, page by page."""
    from mcp_checkpoint.core.ledger import ChainBreak, verify_run
    from mcp_checkpoint.core.models import RunId, Tenant

    async def body(store: Store) -> int:
        tenant = Tenant(args.tenant or settings.tenant)
        [found] = await resolve_ids(store, settings, tenant, "run", [args.run_id])
        run_id = RunId(found)
        try:
            checked = await verify_run(store, tenant, run_id)
        except ChainBreak as exc:
            out(f"run {run_id}: BROKEN — {exc}")
            return 1
        run = await store.get_run(tenant, run_id)
        pruned = f" (1–{run.pruned_seq} pruned)" if run.pruned_seq else ""
        out(f"run {run_id}: ok — {checked} steps{pruned}, head {run.head_hash[:16]}…")
        return 0

    return with_store(settings, body)


def cmd_runs_prune(settings: Settings, args: argparse.Namespace) -> int:
    """Remove old steps and checkpoints of finished runs (a dry run unless --apply)."""
    from datetime import UTC, datetime, timedelta

    from mcp_checkpoint.core.models import RunId, Tenant
    from mcp_checkpoint.core.retention import RetentionPolicy, parse_duration, prune_runs
    cfg = settings.retention
    if args.older_than is not None:
        older_than, age = parse_duration(args.older_than), args.older_than.strip()
    elif cfg.finished_runs_days is not None:
        older_than = timedelta(days=cfg.finished_runs_days)
        age = f"{cfg.finished_runs_days:g} days"
    else:
        sys.stderr.write(
            "mcp-checkpoint: say how old a finished run must be: --older-than 30d, or set "
            "MCP_CHECKPOINT_RETENTION__FINISHED_RUNS_DAYS\n"
        )
        return 2
    keep = args.keep_checkpoints if args.keep_checkpoints is not None else cfg.keep_checkpoints
    policy = RetentionPolicy(older_than=older_than, keep_checkpoints=keep)
    dry_run = not args.apply
    tenant = None if args.all_tenants else Tenant(args.tenant or settings.tenant)

    async def body(store: Store) -> int:
        named = await resolve_ids(store, settings, tenant, "run", args.run_ids) if (
            tenant is not None) else args.run_ids
        results = await prune_runs(
            store, policy, tenant=tenant, now=datetime.now(UTC), dry_run=dry_run,
            run_ids=[RunId(r) for r in named] or None,
        )
        reclaimed: tuple[int, int] | None = None
        vacuum = getattr(store, "vacuum", None)
        if args.vacuum and not dry_run and vacuum is not None:
            reclaimed = await vacuum()
        pruned = [r for r in results if r.removed_anything]
        if args.json:
            out(json.dumps({
                "dry_run": dry_run,
                "older_than_seconds": older_than.total_seconds(),
                "keep_checkpoints": keep,
                "runs": [
                    {
                        "tenant": r.tenant, "run_id": r.run_id, "skipped": r.skipped,
                        "steps_removed": r.steps_removed, "pruned_through_seq": r.through_seq,
                        "checkpoints_removed": r.checkpoint_ids,
                    }
                    for r in results
                ],
                "file_bytes": None if reclaimed is None
                else {"before": reclaimed[0], "after": reclaimed[1]},
            }, indent=1))
            return 0
        verb = "would remove" if dry_run else "removed"
        for r in results:
            if r.skipped is not None:
                out(f"{r.run_id}: kept whole ({r.skipped})")
            elif r.removed_anything:
                out(f"{r.run_id}: {verb} {r.steps_removed} steps (through seq {r.through_seq})"
                     f" and {len(r.checkpoint_ids)} checkpoints")
        steps = sum(r.steps_removed for r in pruned)
        checkpoints = sum(len(r.checkpoint_ids) for r in pruned)
        out(f"{'dry run: ' if dry_run else ''}{verb} {steps} steps and {checkpoints} "
             f"checkpoints from {len(pruned)} of {len(results)} finished runs "
             f"(unchanged for {age}, keeping {keep} checkpoint(s) each)")
        if dry_run and pruned:
            out("nothing was removed; run again with --apply to remove it")
        if reclaimed is not None:
            out(f"file size: {reclaimed[0]} -> {reclaimed[1]} bytes")
        return 0

    return with_store(settings, body)


def _since(text: str | None) -> tuple[int, datetime | None]:
    """``--since``: a seq (show the steps after it), a duration ago (``10m``, ``2h``) or
    an ISO time."""
    from datetime import UTC, datetime

    from mcp_checkpoint.core.retention import parse_duration
    from mcp_checkpoint.errors import InvalidArgumentError

    if text is None:
        return 0, None
    if text.isdigit():
        return int(text), None
    try:
        return 0, datetime.now(UTC) - parse_duration(text)
    except InvalidArgumentError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgumentError(
            f"--since {text!r}: give a step number, a duration (10m, 2h, 3d) or an ISO time"
        ) from None
    return 0, moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cmd_runs_log(settings: Settings, args: argparse.Namespace) -> int:
    """A readable timeline of a run: one line per step, checkpoints between them."""
    import anyio

    from mcp_checkpoint._text import one_line
    from mcp_checkpoint.core.models import RunId, Tenant
    from mcp_checkpoint.core.render import render_json

    after, since = _since(args.since)
    width = args.width

    async def body(store: Store) -> int:
        tenant = Tenant(args.tenant or settings.tenant)
        [found] = await resolve_ids(store, settings, tenant, "run", [args.run_id])
        run_id = RunId(found)
        run = await store.get_run(tenant, run_id)
        out(f"run {run.run_id} ({run.status}): {one_line(run.objective, 100)}")
        marks: dict[int, list[str]] = {}
        offset = 0
        while True:  # checkpoints are few beside steps: their marks are read once
            page = await store.list_checkpoints(tenant, run_id, limit=500, offset=offset)
            for cp in page:
                marks.setdefault(cp.head_seq, []).append(
                    f"  ── checkpoint {cp.number} ({cp.checkpoint_id}, {cp.source}) covers "
                    f"steps 1–{cp.through_seq}; next: "
                    f"{one_line('; '.join(cp.content.next_actions[:2]) or '-', 80)}"
                )
            offset += len(page)
            if len(page) < 500:
                break
        cursor = max(after, run.pruned_seq)
        if run.pruned_seq > after:
            out(f"  (steps 1–{run.pruned_seq} were removed by retention)")
        while True:
            steps = await store.get_steps(tenant, run_id, after_seq=cursor, limit=500)
            for step in steps:
                cursor = step.seq
                if since is not None and step.created_at < since:
                    continue
                preview = one_line(
                    f"{render_json(step.input)} → {render_json(step.output)}", width
                )
                out(f"#{step.seq:<6} {step.created_at:%Y-%m-%d %H:%M:%S}  "
                    f"{one_line(step.tool, 24):<24} {step.status:<5} {step.tokens:>6}t  "
                    f"{preview}")
                for line in marks.pop(step.seq, []):
                    out(line)
            if len(steps) == 500:
                continue
            if not args.follow:
                return 0
            sys.stdout.flush()
            await anyio.sleep(args.interval)
            fresh = await store.list_checkpoints(tenant, run_id, limit=20, offset=0)
            for cp in fresh:
                if cp.head_seq > cursor and cp.head_seq not in marks:
                    marks[cp.head_seq] = [
                        f"  ── checkpoint {cp.number} ({cp.checkpoint_id}, {cp.source}) "
                        f"covers steps 1–{cp.through_seq}"
                    ]

    try:
        return with_store(settings, body)
    except KeyboardInterrupt:
        return 0


def cmd_runs_export(settings: Settings, args: argparse.Namespace) -> int:
    """A human-readable record of a run in Markdown (to stdout or --output FILE)."""
    from pathlib import Path

    from mcp_checkpoint._text import neutralise
    from mcp_checkpoint.core.curation import Curation
    from mcp_checkpoint.core.models import Tenant

    async def body(store: Store) -> int:
        tenant = Tenant(args.tenant or settings.tenant)
        [run_id] = await resolve_ids(store, settings, tenant, "run", [args.run_id])
        chunks = Curation(store, settings).markdown(tenant, run_id)
        if args.output is None:
            async for chunk in chunks:
                sys.stdout.write(neutralise(chunk))
            return 0
        target = Path(args.output)
        partial = target.with_name(target.name + ".partial")
        with partial.open("w", encoding="utf-8") as handle:
            async for chunk in chunks:
                handle.write(neutralise(chunk))
        partial.replace(target)
        sys.stderr.write(f"wrote {target}\n")
        return 0

    return with_store(settings, body)


def cmd_runs_checkpoints(settings: Settings, args: argparse.Namespace) -> int:
    """A run's checkpoints, newest first."""
    from mcp_checkpoint._text import one_line
    from mcp_checkpoint.core.models import RunId, Tenant

    async def body(store: Store) -> int:
        tenant = Tenant(args.tenant or settings.tenant)
        [found] = await resolve_ids(store, settings, tenant, "run", [args.run_id])
        run = await store.get_run(tenant, RunId(found))
        checkpoints = await store.list_checkpoints(tenant, run.run_id, limit=args.limit,
                                                   offset=args.offset)
        if args.json:
            out(json.dumps([c.model_dump(mode="json") for c in checkpoints], indent=1))
            return 0
        if not checkpoints:
            out(f"run {run.run_id} has no checkpoint" + (
                f" after the first {args.offset}" if args.offset else ""))
            return 0
        out(f"{'#':>4}  {'CHECKPOINT':<28} {'TAKEN (UTC)':<19}  {'COVERS':<12} {'SOURCE':<8} "
            f"{'TOKENS':>6} {'FILES':>5}  NAME [STAGE] / NEXT")
        for c in checkpoints:
            content = c.content
            label = " ".join(
                part for part in (content.name, f"[{content.stage}]" if content.stage else None)
                if part
            ) or "; ".join(content.next_actions[:2]) or "-"
            files = str(content.snapshot.files) if content.snapshot is not None else "-"
            out(f"{c.number:>4}  {c.checkpoint_id:<28} {c.created_at:%Y-%m-%d %H:%M:%S}  "
                f"{'1–' + str(c.through_seq):<12} {c.source:<8} {c.tokens:>6} {files:>5}  "
                f"{one_line(label, 60)}")
        if run.pruned_checkpoints:
            out(f"(checkpoints 1–{run.pruned_checkpoints} were removed by retention)")
        return 0

    return with_store(settings, body)


def cmd_runs_delete(settings: Settings, args: argparse.Namespace) -> int:
    """Delete runs for good: steps, checkpoints, search index (asks unless --yes)."""
    from mcp_checkpoint._text import one_line
    from mcp_checkpoint.core.curation import Curation
    from mcp_checkpoint.core.models import RunId, Tenant

    async def body(store: Store) -> int:
        tenant = Tenant(args.tenant or settings.tenant)
        run_ids = list(dict.fromkeys(
            await resolve_ids(store, settings, tenant, "run", args.run_ids)))
        runs = [await store.get_run(tenant, RunId(r)) for r in run_ids]
        for run in runs:
            out(f"{run.run_id}: {run.step_count} steps, {run.checkpoint_count} checkpoints, "
                f"{run.status} — {one_line(run.objective, 60)}")
        question = (f"delete {len(runs)} run(s) with their steps and checkpoints for good? "
                    "(memories they wrote stay)")
        if not confirm(question, yes=args.yes):
            out("nothing deleted")
            return 1
        curation = Curation(store, settings)
        for run in runs:
            done = await curation.delete_run(tenant, run.run_id)
            out(f"deleted {done.run_id}: {done.steps} steps, {done.checkpoints} checkpoints")
        return 0

    return with_store(settings, body)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``runs list|show|verify|prune``."""
    runs = sub.add_parser("runs", help="inspect runs")
    runs_sub = runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    for name, helptext, func in (
        ("list", "list runs", cmd_runs_list),
        ("show", "show one run", cmd_runs_show),
        ("verify", "verify a run's ledger hash chain", cmd_runs_verify),
    ):
        p = runs_sub.add_parser(name, help=helptext)
        if name != "list":
            p.add_argument("run_id", metavar="RUN", help="a run id or a unique prefix of one")
        else:
            p.add_argument("--status", choices=["active", "completed", "failed", "abandoned"])
            p.add_argument("--limit", type=int, default=50)
            p.add_argument("--offset", type=int, default=0)
        if name != "verify":
            p.add_argument("--json", action="store_true", help="print JSON")
        p.add_argument("--tenant", help="tenant (default: the configured one)")
        p.set_defaults(func=func)

    log = runs_sub.add_parser("log", help="a run's steps as a readable timeline")
    log.add_argument("run_id", metavar="RUN", help="a run id or a unique prefix of one")
    log.add_argument("--since", metavar="SEQ|AGE|TIME",
                     help="only steps after this seq, or newer than 10m/2h/3d or an ISO time")
    log.add_argument("--follow", "-f", action="store_true",
                     help="keep printing new steps as they are recorded (Ctrl-C stops)")
    log.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    log.add_argument("--width", type=int, default=100, help="characters of input → output")
    log.add_argument("--tenant", help="tenant (default: the configured one)")
    log.set_defaults(func=cmd_runs_log)

    export = runs_sub.add_parser("export", help="a run as a readable Markdown record")
    export.add_argument("run_id", metavar="RUN", help="a run id or a unique prefix of one")
    export.add_argument("--format", choices=["markdown"], default="markdown",
                        help="markdown (a resume pack: mcp-checkpoint export RUN)")
    export.add_argument("--output", "-o", metavar="FILE", help="write here, not to stdout")
    export.add_argument("--tenant", help="tenant (default: the configured one)")
    export.set_defaults(func=cmd_runs_export)

    cps = runs_sub.add_parser("checkpoints", help="a run's checkpoints, newest first")
    cps.add_argument("run_id", metavar="RUN", help="a run id or a unique prefix of one")
    cps.add_argument("--limit", type=int, default=50)
    cps.add_argument("--offset", type=int, default=0)
    cps.add_argument("--json", action="store_true", help="print JSON")
    cps.add_argument("--tenant", help="tenant (default: the configured one)")
    cps.set_defaults(func=cmd_runs_checkpoints)

    delete = runs_sub.add_parser(
        "delete", help="delete runs for good (steps, checkpoints; asks unless --yes)"
    )
    delete.add_argument("run_ids", metavar="RUN", nargs="+",
                        help="run ids or unique prefixes of them")
    delete.add_argument("--yes", "-y", action="store_true", help="do not ask")
    delete.add_argument("--tenant", help="tenant (default: the configured one)")
    delete.set_defaults(func=cmd_runs_delete)

    prune = runs_sub.add_parser(
        "prune",
        help="remove old steps and checkpoints of finished runs (dry run unless --apply)",
        description=(
            "Finished runs (completed, failed, abandoned) unchanged for --older-than keep "
            "their newest --keep-checkpoints checkpoints and the steps after the oldest "
            "kept one; older checkpoints and steps are removed, one transaction per run. "
            "Active runs are never touched. Without --apply nothing is removed: the "
            "command shows what it would remove."
        ),
    )
    prune.add_argument("run_ids", metavar="RUN", nargs="*",
                       help="only these runs (default: every finished run)")
    prune.add_argument("--older-than", metavar="DURATION",
                       help="e.g. 30d, 12h, 2w (default: retention.finished_runs_days)")
    prune.add_argument("--keep-checkpoints", metavar="N", type=int,
                       help="newest checkpoints each run keeps (default: "
                            "retention.keep_checkpoints, 1)")
    mode = prune.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="show what would be removed (the default)")
    mode.add_argument("--apply", action="store_true", help="remove it")
    prune.add_argument("--vacuum", action="store_true",
                       help="SQLite: give the freed space back to the filesystem afterwards "
                            "(VACUUM; otherwise later writes reuse it)")
    who = prune.add_mutually_exclusive_group()
    who.add_argument("--tenant", help="tenant (default: the configured one)")
    who.add_argument("--all-tenants", action="store_true", help="every tenant's runs")
    prune.add_argument("--json", action="store_true", help="print JSON")
    prune.set_defaults(func=cmd_runs_prune)
