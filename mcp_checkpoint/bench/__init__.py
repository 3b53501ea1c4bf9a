"""Benchmarks: ``mcp-checkpoint bench loop --data PATH`` and friends.

Each benchmark drives a real server through a real MCP client and prints its figures (and
writes them as JSON with ``--json``). Targets live here and in the notes, never as timed
assertions in unit tests.
"""

from __future__ import annotations

import argparse

__all__ = ["add_bench_arguments", "run_bench"]


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` sub-commands to ``parser``."""
    sub = parser.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    loop = sub.add_parser(
        "loop", help="replay SWE-agent trajectories through record_step/checkpoint/rehydrate"
    )
    from mcp_checkpoint.bench.loop import add_arguments

    add_arguments(loop)


def run_bench(args: argparse.Namespace) -> int:
    """Run the chosen benchmark; returns the exit code."""
    if args.bench_command == "loop":
        from mcp_checkpoint.bench.loop import main

        return main(args)
    raise SystemExit(f"unknown benchmark {args.bench_command}")
