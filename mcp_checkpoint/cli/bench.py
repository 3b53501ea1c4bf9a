"""``mcp-checkpoint bench ...``: the benchmarks, which are not part of the installed package.

They live in the top-level ``bench`` package of a source checkout (``python -m bench ...``).
This command hands its arguments over to it when it is importable (an editable install, or
``PYTHONPATH`` naming the checkout) and otherwise says where to find it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["register", "run"]

HINT = (
    "the benchmarks run from a source checkout of mcp-checkpoint, not from an installed "
    "package: in the checkout, python -m bench BENCH ... (see docs/benchmarks.md)"
)


def run(argv: Sequence[str]) -> int:
    """``mcp-checkpoint bench ARGV``: ``bench.main(ARGV)`` from the checkout."""
    try:
        bench = importlib.import_module("bench")
    except ImportError:
        bench = None
    if bench is None or not getattr(bench, "IS_MCP_CHECKPOINT_BENCH", False):
        sys.stderr.write(f"mcp-checkpoint bench: {HINT}\n")
        return 2
    code: int = bench.main(list(argv))
    return code


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """List ``bench`` in the help; ``cli.main`` hands ``bench ...`` to :func:`run` before
    parsing, so that the benchmarks parse their own arguments."""
    sub.add_parser("bench", help="benchmarks (from a source checkout: python -m bench ...)",
                   add_help=False)
