"""The ``export://{run_id}`` resource: a resume pack of one run, built in memory and bounded
by ``limits.max_export_resource_bytes``."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from mcp_checkpoint.core._ids import utc_now

if TYPE_CHECKING:
    from mcp_checkpoint.server.services import Services


async def export_run_pack(services: Services, run_id: str) -> bytes:
    """The pack of ``run_id`` and the memories it wrote, as zip bytes. NotFoundError for an
    unknown run; PayloadTooLargeError naming limits.max_export_resource_bytes when the pack
    would be larger (export it with `mcp-checkpoint export` instead)."""
    from mcp_checkpoint import __version__
    from mcp_checkpoint.packs import export_pack  # the zip writer: only when asked

    limits = services.settings.limits
    embedder = services.embedder
    buffer = io.BytesIO()
    await export_pack(
        services.store,
        services.tenant(),
        [run_id],
        buffer,
        limits=limits,
        tool_version=__version__,
        created_at=utc_now(),
        embedding=(embedder.model_id, embedder.dimension or None) if embedder else None,
        max_bytes=min(limits.max_export_resource_bytes, limits.max_pack_bytes),
        max_setting="limits.max_export_resource_bytes",
    )
    return buffer.getvalue()
