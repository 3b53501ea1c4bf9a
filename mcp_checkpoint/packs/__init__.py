"""Resume packs: a portable, verified copy of runs and memories in one zip file.

``export_pack`` writes one through the Store port (``export``). Importing is three steps,
each usable alone: ``read_pack`` refuses a hostile or damaged file before trusting any of
it (``read``, then ``verify`` for the records' consistency); ``plan_import`` compares the
pack with the store (already imported, new, or colliding ids, renamed with ``rename``);
``apply_import`` writes the plan in one transaction (``plan``). The zip's layout is in
``format``. Nothing is ever extracted to disk.
"""

from __future__ import annotations

from mcp_checkpoint.packs.export import export_pack
from mcp_checkpoint.packs.format import (
    FORMAT,
    FORMAT_VERSION,
    SCHEMA_VERSION,
    Manifest,
    Pack,
    PackRun,
    Progress,
)
from mcp_checkpoint.packs.plan import ImportPlan, apply_import, plan_import
from mcp_checkpoint.packs.read import read_pack

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SCHEMA_VERSION",
    "ImportPlan",
    "Manifest",
    "Pack",
    "PackRun",
    "Progress",
    "apply_import",
    "export_pack",
    "plan_import",
    "read_pack",
]
