"""Sampling never breaks ``checkpoint``: with a client that offers sampling, on every
transport mode (stdio, streamable HTTP with SSE or JSON responses, stateless HTTP, SSE) and
in both protocol flows, ``checkpoint(run_id)`` either distils with the client's model or
falls back to rules and says truthfully why; a client whose sampling fails or never answers
gets rules too. One server per transport mode serves every case."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.session import ClientRequestContext
from mcp_types import (
    INTERNAL_ERROR,
    CreateMessageRequestParams,
    CreateMessageResult,
    ErrorData,
    TextContent,
)

from tests.e2e.conftest import SERVER, server_env
from tests.e2e.http_helpers import HttpServer, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

ANSWER = {"progress": ["Built the wheel"], "next_actions": ["Upload to the index"]}
RULES = "; distilled by rules instead"
NO_BACK_CHANNEL = (
    "this transport cannot carry a request from the server to the client (stateless or "
    "JSON-response HTTP), so the client's model was not asked" + RULES
)
TIMEOUT = "2"
# transport mode -> (serve arguments, does a 2025-11-25 server-initiated request reach the
# client on it?)
MODES: dict[str, tuple[list[str], bool]] = {
    "stdio": ([], True),
    "http": (["--transport", "http"], True),
    "http-json": (["--transport", "http", "--json-response"], False),
    "http-stateless": (["--transport", "http", "--stateless"], False),
    "http-stateless-json": (["--transport", "http", "--stateless", "--json-response"], False),
    "sse": (["--transport", "sse"], True),
}


class Model:
    """The client's LLM: answers, fails, or never answers."""

    def __init__(self, behaviour: str = "answer") -> None:
        self.behaviour = behaviour
        self.asked = 0

    async def __call__(
        self, context: ClientRequestContext, params: CreateMessageRequestParams
    ) -> CreateMessageResult | ErrorData:
        self.asked += 1
        if self.behaviour == "fail":
            return ErrorData(code=INTERNAL_ERROR, message="the user declined\nto sample")
        if self.behaviour == "hang":
            await anyio.sleep_forever()
        return CreateMessageResult(
            role="assistant",
            content=TextContent(type="text", text=json.dumps(ANSWER)),
            model="fake-model",
            stop_reason="endTurn",
        )


Connect = Callable[[str, Model], AbstractAsyncContextManager[Client]]


@asynccontextmanager
async def serving(tmp_path: Path, mode: str) -> AsyncIterator[Connect]:
    """Serve ``mode``; yields how to connect a client (protocol flow, model)."""
    args, _ = MODES[mode]
    data = tmp_path / "data"
    env = {"MCP_CHECKPOINT_SAMPLING__TIMEOUT_SECONDS": TIMEOUT}
    if mode == "stdio":
        params = StdioServerParameters(
            command=str(SERVER), args=["serve"], env=server_env(data, **env)
        )
        yield lambda flow, model: Client(params, mode=flow, sampling_callback=model)
        return
    transport = args[1]
    async with HttpServer(data, "--no-auth", *args[2:], transport=transport, **env) as server:
        yield lambda flow, model: connect(
            server.url, None, transport=transport, mode=flow, sampling_callback=model
        )


async def checkpoint(client: Client, run_id: str) -> dict[str, Any]:
    for name, args in (
        ("start_run", {"objective": "Release", "run_id": run_id}),
        ("record_step", {"run_id": run_id, "tool": "build", "output": "dist/x.whl"}),
    ):
        result = await client.call_tool(name, args)
        assert not result.is_error, result.content
    result = await client.call_tool("checkpoint", {"run_id": run_id})
    assert not result.is_error, result.content  # a protocol error would have raised
    assert result.structured_content is not None
    return result.structured_content


@pytest.mark.parametrize("mode", list(MODES))
async def test_checkpoint_with_a_sampling_client_never_fails(tmp_path: Path, mode: str) -> None:
    _, carries = MODES[mode]
    async with serving(tmp_path, mode) as connect_client:
        # 2026-07-28 carries the request inside the tool's answer, on every transport.
        model = Model()
        async with connect_client("auto", model) as client:
            cp = await checkpoint(client, "modern")
        assert (cp["source"], cp["note"]) == ("sampling", None)
        assert cp["content"]["next_actions"] == ["Upload to the index"]
        assert model.asked >= 1

        # 2025-11-25 sends a request of its own: only where the transport carries one.
        model = Model()
        async with connect_client("legacy", model) as client:
            cp = await checkpoint(client, "legacy")
        if carries:
            assert (cp["source"], cp["note"]) == ("sampling", None)
            assert model.asked == 1
        else:
            assert (cp["source"], cp["note"]) == ("rules", NO_BACK_CHANNEL)
            assert model.asked == 0
        assert cp["working_steps"] == 0
        assert cp["content"]["progress"]

        if not carries:
            return
        # A client whose sampling fails: rules, and the note quotes it on one line.
        model = Model("fail")
        async with connect_client("legacy", model) as client:
            cp = await checkpoint(client, "failing")
        assert model.asked == 1
        assert (cp["source"], cp["note"]) == (
            "rules", "the client's sampling failed: the user declined to sample" + RULES
        )

        # A client whose model never answers: rules after sampling.timeout_seconds.
        model = Model("hang")
        async with connect_client("legacy", model) as client:
            with anyio.fail_after(30):
                cp = await checkpoint(client, "hanging")
        assert model.asked == 1
        assert (cp["source"], cp["note"]) == (
            "rules", f"the client's sampling did not answer within {TIMEOUT} s" + RULES
        )
