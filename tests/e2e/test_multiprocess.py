"""Several `mcp-checkpoint serve` processes share one SQLite data file safely."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SERVE = str(Path(sys.executable).parent / "mcp-checkpoint")


def params(data_dir: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command=SERVE,
        args=["serve"],
        env={
            "MCP_CHECKPOINT_DATA_DIR": str(data_dir),
            "MCP_CHECKPOINT_EMBEDDINGS__PROVIDER": "hashing",
        },
    )


async def test_servers_sharing_a_file_never_lose_or_double_a_step(tmp_path: Path) -> None:
    processes, per_process = 3, 40
    async with Client(params(tmp_path)) as first:
        started = await first.call_tool("start_run", {"objective": "share", "run_id": "shared"})
        assert not started.is_error
    acked: list[int] = []

    async def writer(worker: int) -> None:
        async with Client(params(tmp_path)) as client:
            for i in range(per_process):
                key = f"w{worker}-{i}"
                args = {"run_id": "shared", "tool": "t", "input": key, "idempotency_key": key}
                result = await client.call_tool("record_step", args)
                assert not result.is_error, result.content
                acked.append(result.structured_content["seq"])  # type: ignore[index]
                if i % 10 == 0:  # a retry from the same worker must not write again
                    again = await client.call_tool("record_step", args)
                    assert again.structured_content["duplicate"] is True  # type: ignore[index]

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for worker in range(processes):
                tg.start_soon(writer, worker)

    total = processes * per_process
    assert sorted(acked) == list(range(1, total + 1))
    async with Client(params(tmp_path)) as reader:
        run = json.loads((await reader.read_resource("run://shared")).contents[0].text)
        assert run["step_count"] == run["head_seq"] == total
