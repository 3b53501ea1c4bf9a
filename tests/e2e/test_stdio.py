"""The real console script over real stdio, driven by the SDK client in both eras."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.session import ClientRequestContext
from mcp_types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    TextContent,
    TextResourceContents,
)

from tests.e2e.conftest import SERVER, StdioServer, run_cli, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

MODES = [pytest.param("auto", id="auto"), pytest.param("legacy", id="legacy")]


async def call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    structured: dict[str, Any] | None = result.structured_content
    assert structured is not None
    return structured


@pytest.mark.parametrize("mode", MODES)
async def test_stdio_full_loop_persists_and_keeps_stdout_for_protocol(
    tmp_path: Path, mode: str
) -> None:
    env = server_env(tmp_path / "data")
    transport = StdioServer(env, tmp_path / "stderr.log")
    async with Client(transport, mode=mode) as client:
        assert client.protocol_version == ("2026-07-28" if mode == "auto" else "2025-11-25")
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"start_run", "record_step", "checkpoint", "rehydrate"} <= tools

        await call(client, "start_run", {"objective": "Ship release 1.2", "run_id": "rel"})
        acks = [
            await call(
                client,
                "record_step",
                {
                    "run_id": "rel",
                    "tool": "git",
                    "input": {"args": ["tag", f"v1.2.{i}"]},
                    "output": "ok",
                    "idempotency_key": f"tag-{i}",
                },
            )
            for i in range(5)
        ]
        assert [a["seq"] for a in acks] == [1, 2, 3, 4, 5]
        cp = await call(
            client,
            "checkpoint",
            {"run_id": "rel", "progress": ["Tagged v1.2.0-4"], "next_actions": ["Publish notes"]},
        )
        assert cp["source"] == "model"
        ctx = await call(client, "rehydrate", {"run_id": "rel", "budget_tokens": 300})
        assert ctx["tokens"] <= 300
        assert "Publish notes" in ctx["context"]
        failed = await client.call_tool("record_step", {"run_id": "nope", "tool": "x"})
        assert failed.is_error
        assert failed.content[0].text == "not_found: run nope"  # type: ignore[union-attr]
        resource = (await client.read_resource("run://rel")).contents[0]
        assert isinstance(resource, TextResourceContents)
        assert json.loads(resource.text)["head_seq"] == 5

    # stdout carried JSON-RPC only; the logs went to stderr.
    assert transport.lines, "the server wrote nothing to stdout"
    assert transport.bad_lines == []
    assert all(json.loads(line)["jsonrpc"] == "2.0" for line in transport.lines)
    assert transport.process.returncode == 0  # closing stdin ends the server cleanly
    stderr = (tmp_path / "stderr.log").read_text(encoding="utf-8")
    assert "serving on stdio" in stderr

    # Acknowledged writes are on disk: a fresh server process, and the CLI, see them.
    async with Client(
        StdioServerParameters(command=str(SERVER), args=["serve"], env=env), mode=mode
    ) as client:
        again = await call(
            client,
            "record_step",
            {
                "run_id": "rel",
                "tool": "git",
                "input": {"args": ["tag", "v1.2.4"]},
                "output": "ok",
                "idempotency_key": "tag-4",
            },
        )
        assert again["seq"] == 5
        assert again["duplicate"] is True
        resumed = await call(client, "rehydrate", {"run_id": "rel"})
        assert resumed["checkpoint_id"] == cp["checkpoint_id"]
    code, out, err = await run_cli("runs", "verify", "rel", env=env)
    assert code == 0, out + err
    assert "ok" in out


class FakeModel:
    """The client's LLM: answers a sampling request with a checkpoint as JSON."""

    def __init__(self) -> None:
        self.asked = 0

    async def __call__(
        self, context: ClientRequestContext, params: CreateMessageRequestParams
    ) -> CreateMessageResult:
        self.asked += 1
        answer = {"progress": ["Built the wheel"], "next_actions": ["Upload to the index"]}
        return CreateMessageResult(
            role="assistant",
            content=TextContent(type="text", text=json.dumps(answer)),
            model="fake-model",
            stop_reason="endTurn",
        )


@pytest.mark.parametrize("mode", MODES)
async def test_stdio_checkpoint_is_distilled_by_sampling(tmp_path: Path, mode: str) -> None:
    params = StdioServerParameters(
        command=str(SERVER), args=["serve"], env=server_env(tmp_path / "data")
    )
    model = FakeModel()
    async with Client(params, mode=mode, sampling_callback=model) as client:
        await call(client, "start_run", {"objective": "Release", "run_id": "r1"})
        await call(client, "record_step", {"run_id": "r1", "tool": "build", "output": "dist/x.whl"})

        cp = await call(client, "checkpoint", {"run_id": "r1"})

    assert cp["source"] == "sampling"
    assert cp["content"]["next_actions"] == ["Upload to the index"]
    assert model.asked >= 1
