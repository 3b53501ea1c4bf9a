"""Where the shipped ``resources/`` and ``prompts/`` folders are.

In an installed wheel they sit inside the package (``mcp_checkpoint/resources``); in a
source checkout they are the top-level folders beside the package.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

__all__ = ["asset_dir"]

_PACKAGE = Path(__file__).resolve().parent


@cache
def asset_dir(name: str) -> Path:
    """The folder ``name`` ("resources" or "prompts"), installed or from the checkout."""
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"the {name}/ folder is missing from this installation")
