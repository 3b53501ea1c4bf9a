"""The command line: the only argv parser, and the only place Settings is built.

    mcp-checkpoint serve                 run the MCP server on stdio (the default)
    mcp-checkpoint runs list|show|verify inspect the store
    mcp-checkpoint reindex               embed memories after installing or changing a model
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
from mcp_checkpoint.core.tokens import HeuristicTokenizer
from mcp_checkpoint.embeddings import embeddings_status, make_embedder
from mcp_checkpoint.errors import CheckpointError
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
    """Serve MCP on stdio."""
    from mcp_checkpoint.server.app import build_server

    server = build_server(settings)
    logging.getLogger("mcp_checkpoint").info(
        "serving on stdio (store: %s)",
        mask_url(settings.store_url) if settings.store_url else settings.sqlite_path,
    )
    server.run("stdio")
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
        _out(f"run {run_id}: ok — {checked} steps, head {run.head_hash[:16]}…")
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

    serve = sub.add_parser("serve", help="run the MCP server (stdio)")
    serve.add_argument("--transport", choices=["stdio"], default="stdio",
                       help="stdio (default); HTTP transports come with remote hosting")
    serve.set_defaults(func=cmd_serve)

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

    reindex = sub.add_parser(
        "reindex", help="embed the memories that lack a vector of the configured model"
    )
    reindex.add_argument("--rebuild", action="store_true",
                         help="drop every vector and embed all memories again")
    reindex.set_defaults(func=cmd_reindex)

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
