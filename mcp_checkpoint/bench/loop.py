"""Placeholder: the loop benchmark is being written."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bench loop``."""
    parser.add_argument("--data", required=True, help="folder of SWE-agent *.traj files")


def main(args: argparse.Namespace) -> int:
    """Run the benchmark."""
    raise SystemExit("bench loop is not implemented yet")
