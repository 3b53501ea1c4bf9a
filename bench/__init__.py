"""Benchmarks of mcp-checkpoint, run from a source checkout (they are not in the wheel):

    python -m bench loop|tokens|budget|locomo --data PATH ...
    python -m bench packs|load|throughput|startup ...

``mcp-checkpoint bench ...`` runs the same from a checkout (an editable install, or
``PYTHONPATH`` naming the checkout).

``loop`` drives a real server through a real MCP client; ``tokens`` measures the offline
token counter against the real o200k_base encoding (the ``bench`` extra); ``locomo``
measures memory retrieval on LoCoMo (lexical and hybrid servers, through a real client);
``throughput`` measures record_step from several server processes sharing one store.
Each prints its figures (and writes them as JSON with ``--json``). Targets live here and in
the notes, never as timed assertions in unit tests.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["BENCHES", "IS_MCP_CHECKPOINT_BENCH", "add_bench_arguments", "main", "run_bench"]

# ``mcp-checkpoint bench`` checks for this before it hands over to an importable ``bench``.
IS_MCP_CHECKPOINT_BENCH = True


# name -> help. Each is the module ``bench.<name>`` with ``add_arguments(parser)`` and
# ``main(args) -> int``; a new benchmark adds one line here.
BENCHES: dict[str, str] = {
    "loop": "replay SWE-agent trajectories through record_step/checkpoint/rehydrate",
    "tokens": "compare the offline token counter with the real o200k_base "
              '(needs pip install -e ".[bench]")',
    "locomo": "memory retrieval on LoCoMo: every turn committed as a memory, every question "
              "searched, lexical and hybrid servers",
    "packs": "export and import a large synthetic resume pack (SQLite to SQLite)",
    "load": "N concurrent clients drive record_step/rehydrate/search over streamable HTTP; "
            "throughput, p50/p99, errors, and every acknowledged step verified stored once",
    "continuity": "replay trajectories through MCP tools and through Claude Code hook "
                  "processes, reset, and score the facts of earlier work in what the model "
                  "reads (o200k)",
    "throughput": "record_step throughput and latency from several server processes on one "
                  "run, then rehydrate latency (any store: SQLite file or --store-url)",
    "snapshots": "workspace snapshots (store, dedup, restore, dry run) and the embeddable "
                 "checkpointer's record latency, on SQLite",
    "budget": "every text block the model reads (rehydrate, resume_run) counted with the "
              "real o200k_base over replayed trajectories and hostile runs, at budgets "
              "500-4000",
    "hooks": "client hook processes (PostToolUse, PreCompact, SessionStart(compact)) "
             "timed from process start to exit, each beside a python -c pass",
    "startup": "cold start to initialize against a bare MCPServer with one tool, and "
               "--version",
}


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` sub-commands to ``parser``."""
    sub = parser.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    for name, helptext in BENCHES.items():
        importlib.import_module(f"bench.{name}").add_arguments(
            sub.add_parser(name, help=helptext)
        )


def run_bench(args: argparse.Namespace) -> int:
    """Run the chosen benchmark; returns the exit code."""
    if args.bench_command not in BENCHES:
        raise SystemExit(f"unknown benchmark {args.bench_command}")
    code: int = importlib.import_module(f"bench.{args.bench_command}").main(args)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench BENCH ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmarks of mcp-checkpoint (from a checkout)."
    )
    add_bench_arguments(parser)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return run_bench(args)
    except KeyboardInterrupt:
        return 130
