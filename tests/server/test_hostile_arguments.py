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
