"""The command line: the only argv parser, and the only place Settings is built.

    mcp-checkpoint serve                 run the MCP server on stdio (the default)
    mcp-checkpoint serve --transport http|sse [--host H --port P]   remote serving
    mcp-checkpoint tokens create|list|revoke   bearer tokens of a remote server
    mcp-checkpoint runs list|show|verify inspect the store
    mcp-checkpoint runs prune            retention: old steps/checkpoints of finished runs
    mcp-checkpoint reindex               embed memories after installing or changing a model
    mcp-checkpoint export|import         resume packs: move or back up runs and memories
    mcp-checkpoint doctor                check the configuration and the store
    mcp-checkpoint bench loop ...        benchmarks

Logs go to stderr; on stdio, stdout belongs to the MCP protocol alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

import anyio
from pydantic import ValidationError

from mcp_checkpoint import __version__
from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.episodes import Episodes
from mcp_checkpoint.core.ledger import ChainBreak, verify_run
from mcp_checkpoint.core.memory import MemoryService
from mcp_checkpoint.core.models import RunId, Tenant
from mcp_checkpoint.core.ports import Store
from mcp_checkpoint.core.retention import RetentionPolicy, parse_duration, prune_runs
from mcp_checkpoint.core.tokens import HeuristicTokenizer
from mcp_checkpoint.embeddings import embeddings_status, make_embedder
from mcp_checkpoint.errors import CheckpointError, ConfigError
from mcp_checkpoint.storage import make_store, make_vector_index
from mcp_checkpoint.storage._urls import mask_url

__all__ = ["main"]

T = TypeVar("T")
EXTRAS = {"embeddings": "sentence_transformers", "postgres": "psycopg", "qdrant": "qdrant_client"}


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _with_store(settings: Settings, body: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        store = make_store(settings)
        await store.open()
        try:
            return await body(store)
        finally:
            await store.close()

    return anyio.run(run)


# -- serve ---------------------------------------------------------------------------------


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Serve MCP on stdio, or over streamable HTTP / SSE."""
    if args.workers != 1 and args.transport == "stdio":
        raise ConfigError("--workers applies to --transport http only")
    if args.transport != "stdio":
        from mcp_checkpoint.server.http import HttpOptions, serve_http

        if args.stateless and args.transport != "http":
            raise ConfigError("--stateless applies to --transport http only")
        return serve_http(
            settings,
            HttpOptions(
                transport=args.transport, host=args.host, port=args.port, auth=not args.no_auth,
                stateless=args.stateless, json_response=args.json_response,
                workers=args.workers,
            ),
            insecure_public=args.insecure_no_auth_on_public_interface,
        )
    from mcp_checkpoint.server.app import build_server

    server = build_server(settings)
    logging.getLogger("mcp_checkpoint").info(
        "serving on stdio (store: %s)",
        mask_url(settings.store_url) if settings.store_url else settings.sqlite_path,
    )
    server.run("stdio")
    return 0


# -- tokens --------------------------------------------------------------------------------


def cmd_tokens_create(settings: Settings, args: argparse.Namespace) -> int:
    """Create a bearer token; print it once (only its hash is stored)."""
    from mcp_checkpoint.server.tokens import TokenFile, parse_scopes

    token, record = TokenFile(settings.data_dir).create(
        args.tenant, parse_scopes(args.scope), name=args.name
    )
    if args.json:
        _out(json.dumps({"token": token, "token_id": record.token_id, "tenant": record.tenant,
                         "scopes": record.scopes}))
        return 0
    _out(token)
    sys.stderr.write(
        f"created {record.token_id} for tenant {record.tenant} "
        f"(scopes: {','.join(record.scopes)}); the token above is shown only now\n"
    )
    return 0


def cmd_tokens_list(settings: Settings, args: argparse.Namespace) -> int:
    """List tokens (ids, tenants, scopes; never the secrets)."""
    from mcp_checkpoint.server.tokens import TokenFile, dump_record

    records = TokenFile(settings.data_dir).records()
    if not args.all:
        records = [r for r in records if r.revoked_at is None]
    if args.json:
        _out(json.dumps([dump_record(r) for r in records], indent=1))
        return 0
    if not records:
        _out("no tokens")
        return 0
    _out(f"{'ID':<18} {'TENANT':<20} {'SCOPES':<20} {'CREATED':<20} {'STATUS':<8} NAME")
    for r in records:
        status = "revoked" if r.revoked_at else "active"
        _out(f"{r.token_id:<18} {r.tenant:<20} {','.join(r.scopes):<20} "
             f"{r.created_at:%Y-%m-%d %H:%M:%S}  {status:<8} {r.name or ''}")
    return 0


def cmd_tokens_revoke(settings: Settings, args: argparse.Namespace) -> int:
    """Revoke a token by id (a running server refuses it from its next request)."""
    from mcp_checkpoint.server.tokens import TokenFile

    record = TokenFile(settings.data_dir).revoke(args.token_id)
    _out(f"revoked {record.token_id} (tenant {record.tenant})")
    return 0


# -- runs ----------------------------------------------------------------------------------


def _episodes(settings: Settings, store: Store) -> Episodes:
    return Episodes(store, HeuristicTokenizer(), settings)


def cmd_runs_list(settings: Settings, args: argparse.Namespace) -> int:
    """List runs, most recently updated first."""

    async def body(store: Store) -> int:
        runs = await _episodes(settings, store).list_runs(
            Tenant(args.tenant or settings.tenant), status=args.status, limit=args.limit,
            offset=args.offset,
        )
        if args.json:
            _out(json.dumps([r.model_dump(mode="json") for r in runs], indent=1))
            return 0
        if not runs:
            _out("no runs")
            return 0
        _out(f"{'RUN':<32} {'STATUS':<10} {'STEPS':>6} {'CPS':>4}  UPDATED              OBJECTIVE")
        for r in runs:
            objective = r.objective.replace("\n", " ")
            objective = objective if len(objective) <= 50 else objective[:49] + "…"
            _out(
                f"{r.run_id:<32} {r.status:<10} {r.step_count:>6} {r.checkpoint_count:>4}  "
                f"{r.updated_at:%Y-%m-%d %H:%M:%S}  {objective}"
            )
        return 0

    return _with_store(settings, body)


def cmd_runs_show(settings: Settings, args: argparse.Namespace) -> int:
    """Show one run, its latest checkpoint and the head of its ledger."""

    async def body(store: Store) -> int:
        tenant = Tenant(args.tenant or settings.tenant)
        episodes = _episodes(settings, store)
        run = await episodes.get_run(tenant, args.run_id)
        checkpoint = await episodes.latest_checkpoint(tenant, run)
        if args.json:
            _out(json.dumps({
                "run": run.model_dump(mode="json"),
                "latest_checkpoint": checkpoint.model_dump(mode="json") if checkpoint else None,
            }, indent=1))
            return 0
        _out(f"run {run.run_id} ({run.status})")
        _out(f"  objective:   {run.objective}")
        _out(f"  steps:       {run.step_count} (head seq {run.head_seq}, episode {run.episode})")
        _out(f"  working:     {run.working_steps} steps, {run.working_tokens} tokens "
             f"(budget {run.budget_tokens})")
        _out(f"  checkpoints: {run.checkpoint_count} (latest {run.latest_checkpoint_id or '-'})")
        if run.pruned_seq or run.pruned_checkpoints:
            _out(f"  pruned:      steps 1–{run.pruned_seq}, checkpoints "
                 f"1–{run.pruned_checkpoints} (runs prune)")
        _out(f"  created:     {run.created_at:%Y-%m-%d %H:%M:%S} UTC, "
             f"updated {run.updated_at:%Y-%m-%d %H:%M:%S} UTC")
        if checkpoint is not None:
            _out(f"  latest checkpoint covers steps 1–{checkpoint.through_seq}:")
            for action in checkpoint.content.next_actions[:5]:
                _out(f"    next: {action}")
        return 0

    return _with_store(settings, body)


def cmd_runs_verify(settings: Settings, args: argparse.Namespace) -> int:
    """Verify a run's ledger hash chain, page by page."""

    async def body(store: Store) -> int:
        tenant = Tenant(args.tenant or settings.tenant)
        run_id = RunId(args.run_id)
        try:
            checked = await verify_run(store, tenant, run_id)
        except ChainBreak as exc:
            _out(f"run {run_id}: BROKEN — {exc}")
            return 1
        run = await store.get_run(tenant, run_id)
        pruned = f" (1–{run.pruned_seq} pruned)" if run.pruned_seq else ""
        _out(f"run {run_id}: ok — {checked} steps{pruned}, head {run.head_hash[:16]}…")
        return 0

    return _with_store(settings, body)


def cmd_runs_prune(settings: Settings, args: argparse.Namespace) -> int:
    """Remove old steps and checkpoints of finished runs (a dry run unless --apply)."""
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
        results = await prune_runs(
            store, policy, tenant=tenant, now=datetime.now(UTC), dry_run=dry_run,
            run_ids=[RunId(r) for r in args.run_ids] or None,
        )
        reclaimed: tuple[int, int] | None = None
        vacuum = getattr(store, "vacuum", None)
        if args.vacuum and not dry_run and vacuum is not None:
            reclaimed = await vacuum()
        pruned = [r for r in results if r.removed_anything]
        if args.json:
            _out(json.dumps({
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
                _out(f"{r.run_id}: kept whole ({r.skipped})")
            elif r.removed_anything:
                _out(f"{r.run_id}: {verb} {r.steps_removed} steps (through seq {r.through_seq})"
                     f" and {len(r.checkpoint_ids)} checkpoints")
        steps = sum(r.steps_removed for r in pruned)
        checkpoints = sum(len(r.checkpoint_ids) for r in pruned)
        _out(f"{'dry run: ' if dry_run else ''}{verb} {steps} steps and {checkpoints} "
             f"checkpoints from {len(pruned)} of {len(results)} finished runs "
             f"(unchanged for {age}, keeping {keep} checkpoint(s) each)")
        if dry_run and pruned:
            _out("nothing was removed; run again with --apply to remove it")
        if reclaimed is not None:
            _out(f"file size: {reclaimed[0]} -> {reclaimed[1]} bytes")
        return 0

    return _with_store(settings, body)


# -- reindex -------------------------------------------------------------------------------


class _Progress:
    """A one-line progress report on stderr (redrawn in place on a terminal)."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._done = 0
        self._started = time.monotonic()
        self._tty = sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, count: int) -> None:
        self._done += count
        now = time.monotonic()
        if self._tty or now - self._last >= 5:
            self._last = now
            self._draw("\r" if self._tty else "", "" if self._tty else "\n")

    def _draw(self, start: str, end: str) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        sys.stderr.write(
            f"{start}{self._label}: {self._done} memories checked "
            f"({self._done / elapsed:.0f}/s){end}"
        )
        sys.stderr.flush()

    def close(self) -> None:
        self._draw("\r" if self._tty else "", "\n")


def cmd_reindex(settings: Settings, args: argparse.Namespace) -> int:
    """Give every active memory a vector of the configured embedding model."""
    embedder = make_embedder(settings)
    if embedder is None:
        _out('no embedding model is configured: pip install "mcp-checkpoint[embeddings]"')
        return 1

    async def body(store: Store) -> int:
        vectors = make_vector_index(settings, store)
        await vectors.open()
        try:
            embedder.start()
            memory = MemoryService(store, settings, embedder=embedder, vectors=vectors)
            progress = _Progress(f"reindex ({embedder.model_id})")
            embedded = await memory.sync_vectors(rebuild=args.rebuild, progress=progress)
            progress.close()
            space = await vectors.space()
        finally:
            await vectors.close()
        _out(f"embedded {embedded} memories; vectors: {space[0] if space else 'none'}")
        return 0

    return _with_store(settings, body)


# -- doctor --------------------------------------------------------------------------------


def _installed(module: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return None
    dist = {"sentence_transformers": "sentence-transformers", "qdrant_client": "qdrant-client"}
    try:
        return version(dist.get(module, module))
    except PackageNotFoundError:
        return "installed"


def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    """Check the configuration, the data directory and the store."""
    report: dict[str, Any] = {
        "version": __version__,
        "python": platform.python_version(),
        "mcp": _installed("mcp"),
        "data_dir": str(settings.data_dir),
        "store": mask_url(settings.store_url or f"sqlite:///{settings.sqlite_path}"),
        "tenant": settings.tenant,
        "tokenizer": HeuristicTokenizer().name,
        "extras": {name: _installed(mod) for name, mod in EXTRAS.items()},
        "embeddings": embeddings_status(settings),
        "vectors": settings.vectors.backend,
    }
    problems: list[str] = []
    try:
        make_embedder(settings)  # cheap: nothing loads until start()
    except CheckpointError as exc:  # the extra was asked for but is missing
        problems.append(str(exc))

    async def body(store: Store) -> None:
        schema = getattr(store, "schema_version", None)
        if schema is not None:
            report["schema_version"] = await schema()
        describe = getattr(store, "describe", None)
        if describe is not None:
            report["backend"] = await describe()
        integrity = getattr(store, "integrity_check", None)
        if integrity is not None:
            report["integrity"] = await integrity()
            if report["integrity"] != "ok":
                problems.append(f"integrity check: {report['integrity']}")
        report["runs"] = len(await store.list_runs(
            Tenant(settings.tenant), status=None, limit=1000, offset=0
        ))

    try:
        _with_store(settings, body)
        report["store_status"] = "ok"
    except CheckpointError as exc:
        report["store_status"] = str(exc)
        problems.append(str(exc))
    except OSError as exc:
        report["store_status"] = f"cannot use the data directory: {exc.strerror}"
        problems.append(report["store_status"])
    report["problems"] = problems
    if args.json:
        _out(json.dumps(report, indent=1))
    else:
        for key, value in report.items():
            if key == "extras":
                shown = ", ".join(f"{k}: {v or 'not installed'}" for k, v in value.items())
                _out(f"{'extras':<15} {shown}")
            elif key == "backend":
                for name, detail in value.items():
                    if isinstance(detail, dict):
                        detail = ", ".join(f"{k}={v}" for k, v in detail.items())
                    _out(f"{name:<15} {detail}")
            elif key != "problems":
                _out(f"{key:<15} {value}")
        _out("doctor: " + ("ok" if not problems else "PROBLEMS: " + "; ".join(problems)))
    return 0 if not problems else 1


# -- bench ---------------------------------------------------------------------------------


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    """Run a benchmark (see ``mcp_checkpoint.bench``)."""
    from mcp_checkpoint.bench import run_bench

    return run_bench(args)


# -- parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mcp-checkpoint``."""
    parser = argparse.ArgumentParser(
        prog="mcp-checkpoint",
        description="An MCP server that gives LLM agents checkpointed episodic memory.",
    )
    parser.add_argument("--version", action="version", version=f"mcp-checkpoint {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the MCP server (stdio, streamable HTTP or SSE)")
    serve.add_argument("--transport", choices=["stdio", "http", "sse"], default="stdio",
                       help="stdio (default); http = streamable HTTP at /mcp; sse = SSE at /sse")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (http/sse; default 127.0.0.1, loopback only)")
    serve.add_argument("--port", type=int, default=8000, help="port (0 = any free port)")
    serve.add_argument("--stateless", action="store_true",
                       help="streamable HTTP without sessions: any replica answers any request")
    serve.add_argument("--json-response", action="store_true",
                       help="streamable HTTP answers with JSON bodies instead of SSE streams")
    serve.add_argument("--workers", type=int, default=1,
                       help="server processes sharing the port (with --stateless; each has "
                       "its own store connections and embedding model; default 1)")
    serve.add_argument("--no-auth", action="store_true",
                       help="accept requests without a bearer token (loopback only); every "
                       "caller is the configured tenant")
    serve.add_argument("--insecure-no-auth-on-public-interface", action="store_true",
                       help="allow --no-auth on a non-loopback address (anyone who can reach "
                       "the port reads and writes everything)")
    serve.set_defaults(func=cmd_serve)

    tokens = sub.add_parser("tokens", help="bearer tokens of a remote (http/sse) server")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", metavar="ACTION", required=True)
    create = tokens_sub.add_parser("create", help="create a token (printed once)")
    create.add_argument("--tenant", required=True, help="the tenant the token acts as")
    create.add_argument("--scope", default="read,write",
                        help="comma-separated: read, write, metrics (default read,write)")
    create.add_argument("--name", help="a label (who or what uses it)")
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(func=cmd_tokens_create)
    listing = tokens_sub.add_parser("list", help="list tokens (never the secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked tokens")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_tokens_list)
    revoke = tokens_sub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("token_id", metavar="ID")
    revoke.set_defaults(func=cmd_tokens_revoke)

    runs = sub.add_parser("runs", help="inspect runs")
    runs_sub = runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    for name, helptext, func in (
        ("list", "list runs", cmd_runs_list),
        ("show", "show one run", cmd_runs_show),
        ("verify", "verify a run's ledger hash chain", cmd_runs_verify),
    ):
        p = runs_sub.add_parser(name, help=helptext)
        if name != "list":
            p.add_argument("run_id", metavar="RUN")
        else:
            p.add_argument("--status", choices=["active", "completed", "failed", "abandoned"])
            p.add_argument("--limit", type=int, default=50)
            p.add_argument("--offset", type=int, default=0)
        if name != "verify":
            p.add_argument("--json", action="store_true", help="print JSON")
        p.add_argument("--tenant", help="tenant (default: the configured one)")
        p.set_defaults(func=func)

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

    reindex = sub.add_parser(
        "reindex", help="embed the memories that lack a vector of the configured model"
    )
    reindex.add_argument("--rebuild", action="store_true",
                         help="drop every vector and embed all memories again")
    reindex.set_defaults(func=cmd_reindex)

    from mcp_checkpoint._packcli import add_pack_commands

    add_pack_commands(sub)

    doctor = sub.add_parser("doctor", help="check configuration, data dir and store")
    doctor.add_argument("--json", action="store_true", help="print JSON")
    doctor.set_defaults(func=cmd_doctor)

    bench = sub.add_parser("bench", help="benchmarks")
    from mcp_checkpoint.bench import add_bench_arguments

    add_bench_arguments(bench)
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mcp-checkpoint`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        settings = Settings()
    except ValidationError as exc:
        sys.stderr.write(f"mcp-checkpoint: invalid configuration:\n{exc}\n")
        return 2
    _setup_logging(settings)
    try:
        code: int = args.func(settings, args)
    except CheckpointError as exc:
        sys.stderr.write(f"mcp-checkpoint: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
