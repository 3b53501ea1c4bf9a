"""The export://{run_id} resource: a resume pack of one run, bounded by a setting."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import BlobResourceContents

from mcp_checkpoint.config import Settings
from mcp_checkpoint.packs import read_pack
from mcp_checkpoint.server.app import build_server
from tests.server.conftest import call, record, start_run

pytestmark = pytest.mark.anyio


async def test_export_resource_is_a_verified_pack_of_the_run(client: Client) -> None:
    await start_run(client)
    await record(client, n=4)
    await call(client, "checkpoint", {"run_id": "r1", "next_actions": ["rerun the suite"]})
    await record(client, n=1)

    result = await client.read_resource("export://r1")

    assert len(result.contents) == 1
    blob = result.contents[0]
    assert isinstance(blob, BlobResourceContents)
    assert blob.mime_type == "application/zip"
    pack = read_pack(io.BytesIO(base64.b64decode(blob.blob)), Settings().limits)
    assert [r.run.run_id for r in pack.runs] == ["r1"]
    assert [s.seq for s in pack.runs[0].steps] == [1, 2, 3, 4, 5]
    assert [c.number for c in pack.runs[0].checkpoints] == [1]
    assert pack.manifest.runs[0].head_hash == pack.runs[0].run.head_hash


async def test_export_resource_of_an_unknown_run_is_not_found(client: Client) -> None:
    with pytest.raises(MCPError) as caught:
        await client.read_resource("export://nope")
    assert caught.value.error.message == "not_found: run nope"


async def test_export_resource_is_bounded_by_its_setting(tmp_path: Path) -> None:
    settings = Settings(
        store_url="memory://", data_dir=tmp_path, limits={"max_export_resource_bytes": 4096}
    )
    async with Client(build_server(settings)) as client:
        await start_run(client)
        await record(client, n=40, reasoning="x" * 400)
        with pytest.raises(MCPError) as caught:
            await client.read_resource("export://r1")
    message = caught.value.error.message
    assert message.startswith("payload_too_large: ")
    assert "limits.max_export_resource_bytes is 4096" in message
