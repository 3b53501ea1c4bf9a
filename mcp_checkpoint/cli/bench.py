"""``mcp-checkpoint bench ...``: the benchmarks."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp_checkpoint.config import Settings

__all__ = ["register"]


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    """Run a benchmark (see ``mcp_checkpoint.bench``)."""
    from mcp_checkpoint.bench import run_bench

    return run_bench(args)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``bench``."""
    bench = sub.add_parser("bench", help="benchmarks")
    from mcp_checkpoint.bench import add_bench_arguments

    add_bench_arguments(bench)
    bench.set_defaults(func=cmd_bench)
