"""Regressions found by fuzzing (tests/fuzz): arguments that used to reach the store and
come back as ``internal`` errors, each now a clean coded answer with nothing written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_types import TextResourceContents

from mcp_checkpoint.config import Settings
from mcp_checkpoint.server.app import build_server
from tests.server.conftest import call, call_error, record, start_run

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)  # the SQLite store: its driver raised the errors


@pytest.mark.parametrize(
    ("tool", "args", "field"),
    [
        pytest.param("record_step", {"run_id": "\ud800", "tool": "t"}, "run_id", id="run_id"),
        pytest.param(
            "record_step", {"run_id": "r1", "tool": "t", "input": {"cmd": ["ok", "x\udfff"]}},
            "input.cmd.1", id="nested-value",
        ),
        pytest.param("update_run", {"run_id": "r1", "pinned": ["\udbff"]}, "pinned.0",
                     id="list-item"),
        pytest.param("search_memory", {"query": "cache \ud83d"}, "query", id="query"),
    ],
)
async def test_lone_surrogates_are_invalid_arguments_naming_the_field(
    client: Client, tool: str, args: dict[str, Any], field: str
) -> None:
    await start_run(client)
    await record(client)

    text = await call_error(client, tool, args)

    assert text == (
        f"invalid_argument: field '{field}': text must be valid Unicode (it holds a lone "
        "surrogate)"
    )
    run = json.loads(_text(await client.read_resource("run://r1")))
    assert run["head_seq"] == 1 and run["latest_checkpoint_id"] is None
    assert run["pinned"] == []


async def test_offsets_and_cursors_beyond_64_bits_are_empty_pages(client: Client) -> None:
    await start_run(client)
    await record(client, n=2)

    for offset in (2**63, 10**30):
        page = await call(client, "list_runs", {"offset": offset})
        assert page["runs"] == [] and page["next_offset"] is None
    ledger = json.loads(_text(await client.read_resource(f"ledger://r1?cursor={2**70}")))
    assert ledger["steps"] == [] and ledger["next_cursor"] is None
    everything = json.loads(_text(await client.read_resource("ledger://r1?cursor=0")))
    assert [step["seq"] for step in everything["steps"]] == [1, 2]


def _text(result: Any) -> str:
    content = result.contents[0]
    assert isinstance(content, TextResourceContents)
    text: str = content.text
    return text


async def test_unknown_field_names_are_shown_bounded(tmp_path: Path) -> None:
    server = build_server(Settings(data_dir=tmp_path))
    async with Client(server) as client:
        text = await call_error(client, "list_runs", {"x" * 5000: 1})
    assert text.startswith("invalid_argument: unknown field(s) xxx")
    assert len(text) < 300


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("tool", "args", "field"),
    [
        pytest.param("record_step", {"run_id": "r1", "tool": "t", "input": _nested(65)},
                     "input", id="step-input"),
        pytest.param("record_step", {"run_id": "r1", "tool": "t", "output": {"a": _nested(64)}},
                     "output", id="step-output"),
        pytest.param("checkpoint", {"run_id": "r1", "state": {"k": _nested(64)}}, "state",
                     id="checkpoint-state"),
    ],
)
async def test_json_nested_beyond_the_limit_is_refused_naming_the_setting(
    client: Client, tool: str, args: dict[str, Any], field: str
) -> None:
    await start_run(client)

    text = await call_error(client, tool, args)

    assert text == (
        f"payload_too_large: {field} is nested more than 64 levels deep; "
        "limits.max_json_depth is 64"
    )
    fits: dict[str, Any] = (
        {"run_id": "r1", "tool": "t", "input": _nested(64), "output": {"a": _nested(63)}}
        if tool == "record_step"
        else {"run_id": "r1", "state": {"k": _nested(63)}}
    )
    await call(client, tool, fits)
    assert (await call(client, "rehydrate", {"run_id": "r1"}))["tokens"] > 0


async def test_a_deeply_nested_distillation_never_bricks_the_run(
    tmp_path: Path, mode: str
) -> None:
    # Found by tests/fuzz: the client's model answered a state nested 250 deep; it was
    # stored, and every later checkpoint and rehydrate of the run failed as `internal`
    # (the stored JSON was deeper than the reader's recursion limit).
    answer = json.dumps({"progress": ["went deep"], "state": {"k": _nested(250)}})

    async def model(context: Any, params: Any) -> Any:
        from mcp_types import CreateMessageResult, TextContent

        return CreateMessageResult(
            role="assistant", content=TextContent(type="text", text=answer),
            model="deep-model", stop_reason="endTurn",
        )

    server = build_server(Settings(data_dir=tmp_path))
    async with Client(server, mode=mode, sampling_callback=model) as client:
        await start_run(client)
        await record(client, n=2)
        first = await call(client, "checkpoint", {"run_id": "r1"})
        assert first["source"] == "rules"
        assert "limits.max_json_depth" in first["note"]
        await record(client)
        assert (await call(client, "checkpoint", {"run_id": "r1"}))["number"] == 2
        context = await call(client, "rehydrate", {"run_id": "r1"})
        assert context["checkpoint_id"] is not None
