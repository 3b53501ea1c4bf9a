"""The name this project is published under, and how to install one of its extras.

The module is ``mcp_checkpoint`` and the command ``mcp-checkpoint``; the distribution has
its own name because ``mcp-checkpoint`` on the package index is an unrelated project
(installing it would replace this one).
"""

from __future__ import annotations

__all__ = ["DISTRIBUTION", "VERSION", "install_hint"]

DISTRIBUTION = "mcp-checkpoint-server"
# The one place the version is written: pyproject.toml reads it from here (hatch's version
# source), and ``mcp_checkpoint.__version__`` is it without a metadata lookup.
VERSION = "0.1.0"


def install_hint(extra: str) -> str:
    """The pip command that adds ``extra`` to an install, from the index or a checkout."""
    return (f'pip install "{DISTRIBUTION}[{extra}]" '
            f'(in a source checkout: pip install -e ".[{extra}]")')
