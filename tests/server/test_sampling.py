"""Server-side distillation: the client's model via MCP sampling, else rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp_types import CreateMessageRequestParams, CreateMessageResult, TextContent

from mcp_checkpoint.config import Settings
from mcp_checkpoint.server.app import build_server
from tests.server.conftest import call, record, start_run

pytestmark = pytest.mark.anyio

DISTILLED = {
    "progress": ["Found the race in the session refresh"],
    "state": {"root_cause": "refresh token reused"},
    "next_actions": ["Add a lock around refresh()"],
}


class FakeModel:
    """A client-side LLM that answers every sampling request with a fixed text."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.requests: list[CreateMessageRequestParams] = []

    async def __call__(
        self, context: ClientRequestContext, params: CreateMessageRequestParams
    ) -> CreateMessageResult:
        self.requests.append(params)
        return CreateMessageResult(
            role="assistant",
            content=TextContent(type="text", text=self.answer),
            model="fake-model",
            stop_reason="endTurn",
        )


async def checkpoint_with_model(
    tmp_path: Path, mode: str, model: FakeModel | None, **settings: Any
) -> dict[str, Any]:
    server = build_server(Settings(store_url="memory://", data_dir=tmp_path, **settings))
    async with Client(server, mode=mode, sampling_callback=model) as client:
        await start_run(client)
        await record(client, n=3)
        return await call(client, "checkpoint", {"run_id": "r1"})


async def test_checkpoint_without_content_is_distilled_by_the_clients_model(
    tmp_path: Path, mode: str
) -> None:
    model = FakeModel("Here is the checkpoint:\n" + json.dumps(DISTILLED))

    cp = await checkpoint_with_model(tmp_path, mode, model)

    assert cp["source"] == "sampling"
    assert cp["note"] is None
    assert cp["content"]["state"]["root_cause"] == "refresh token reused"
    assert cp["content"]["next_actions"] == ["Add a lock around refresh()"]
    assert "Found the race in the session refresh" in cp["content"]["progress"]
    assert model.requests, "the client's model was never asked"
    prompt = model.requests[-1].messages[0].content
    assert isinstance(prompt, TextContent)
    assert "Fix the flaky login test" in prompt.text  # the model sees the objective ...
    assert "case2" in prompt.text  # ... and the steps to distil


async def test_checkpoint_falls_back_to_rules_when_the_model_answers_garbage(
    tmp_path: Path, mode: str
) -> None:
    cp = await checkpoint_with_model(tmp_path, mode, FakeModel("I'd rather write a poem."))

    assert cp["source"] == "rules"
    assert cp["note"] is not None
    assert cp["note"].startswith("sampling failed")
    assert cp["content"]["progress"]  # the rules still distilled the three steps
    assert cp["through_seq"] == 3


async def test_checkpoint_without_sampling_client_is_distilled_by_rules(
    tmp_path: Path, mode: str
) -> None:
    cp = await checkpoint_with_model(tmp_path, mode, None)

    assert cp["source"] == "rules"
    assert cp["note"] is not None
    assert "the client does not offer sampling" in cp["note"]
    assert cp["working_steps"] == 0


async def test_checkpoint_with_content_never_asks_the_model(tmp_path: Path, mode: str) -> None:
    model = FakeModel(json.dumps(DISTILLED))
    server = build_server(Settings(store_url="memory://", data_dir=tmp_path))
    async with Client(server, mode=mode, sampling_callback=model) as client:
        await start_run(client)
        await record(client, n=2)

        cp = await call(client, "checkpoint", {"run_id": "r1", "next_actions": ["mine"]})

    assert cp["source"] == "model"
    assert cp["content"]["next_actions"] == ["mine"]
    assert model.requests == []


async def test_checkpoint_with_sampling_disabled_uses_rules(tmp_path: Path, mode: str) -> None:
    model = FakeModel(json.dumps(DISTILLED))

    cp = await checkpoint_with_model(tmp_path, mode, model, sampling={"enabled": False})

    assert cp["source"] == "rules"
    assert cp["note"] == "sampling is disabled (sampling.enabled=false); distilled by rules instead"
    assert model.requests == []
