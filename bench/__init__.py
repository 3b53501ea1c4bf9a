"""Benchmarks of mcp-checkpoint, run from a source checkout (they are not in the wheel):

    python -m bench loop|tokens|budget|locomo --data PATH ...
    python -m bench packs|load|throughput ...

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
import sys
from collections.abc import Sequence

__all__ = ["IS_MCP_CHECKPOINT_BENCH", "add_bench_arguments", "main", "run_bench"]

# ``mcp-checkpoint bench`` checks for this before it hands over to an importable ``bench``.
IS_MCP_CHECKPOINT_BENCH = True


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` sub-commands to ``parser``."""
    sub = parser.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    loop = sub.add_parser(
        "loop", help="replay SWE-agent trajectories through record_step/checkpoint/rehydrate"
    )
    from bench import loop as loop_bench

    loop_bench.add_arguments(loop)
    tokens = sub.add_parser(
        "tokens",
        help="compare the offline token counter with the real o200k_base "
        '(needs pip install -e ".[bench]")',
    )
    from bench import tokens as tokens_bench

    tokens_bench.add_arguments(tokens)
    locomo = sub.add_parser(
        "locomo",
        help="memory retrieval on LoCoMo: every turn committed as a memory, every question "
        "searched, lexical and hybrid servers",
    )
    from bench import locomo as locomo_bench

    locomo_bench.add_arguments(locomo)
    packs = sub.add_parser(
        "packs", help="export and import a large synthetic resume pack (SQLite to SQLite)"
    )
    from bench import packs as packs_bench

    packs_bench.add_arguments(packs)
    load = sub.add_parser(
        "load",
        help="N concurrent clients drive record_step/rehydrate/search over streamable HTTP; "
        "throughput, p50/p99, errors, and every acknowledged step verified stored once",
    )
    from bench import load as load_bench

    load_bench.add_arguments(load)
    continuity = sub.add_parser(
        "continuity",
        help="replay trajectories through MCP tools and through Claude Code hook processes, "
        "reset, and score the facts of earlier work in what the model reads (o200k)",
    )
    from bench import continuity as continuity_bench

    continuity_bench.add_arguments(continuity)
    throughput = sub.add_parser(
        "throughput",
        help="record_step throughput and latency from several server processes on one run, "
        "then rehydrate latency (any store: SQLite file or --store-url)",
    )
    from bench import throughput as throughput_bench

    throughput_bench.add_arguments(throughput)
    budget = sub.add_parser(
        "budget",
        help="every text block the model reads (rehydrate, resume_run) counted with the real "
        "o200k_base over replayed trajectories and hostile runs, at budgets 500-4000",
    )
    from bench import budget as budget_bench

    budget_bench.add_arguments(budget)
    snapshots = sub.add_parser(
        "snapshots",
        help="workspace snapshots (store, dedup, restore, dry run) and the embeddable "
        "checkpointer's record latency, on SQLite",
    )
    from bench import snapshots as snapshots_bench

    snapshots_bench.add_arguments(snapshots)


def run_bench(args: argparse.Namespace) -> int:
    """Run the chosen benchmark; returns the exit code."""
    if args.bench_command == "loop":
        from bench.loop import main

        return main(args)
    if args.bench_command == "budget":
        from bench.budget import main as budget_main

        return budget_main(args)
    if args.bench_command == "tokens":
        from bench.tokens import main as tokens_main

        return tokens_main(args)
    if args.bench_command == "locomo":
        from bench.locomo import main as locomo_main

        return locomo_main(args)
    if args.bench_command == "packs":
        from bench.packs import main as packs_main

        return packs_main(args)
    if args.bench_command == "load":
        from bench.load import main as load_main

        return load_main(args)
    if args.bench_command == "continuity":
        from bench.continuity import main as continuity_main

        return continuity_main(args)
    if args.bench_command == "throughput":
        from bench.throughput import main as throughput_main

        return throughput_main(args)
    if args.bench_command == "snapshots":
        from bench.snapshots import main as snapshots_main

        return snapshots_main(args)
    raise SystemExit(f"unknown benchmark {args.bench_command}")


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
