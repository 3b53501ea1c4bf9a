"""Resources and resource templates over a real MCP client, in both protocol eras."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, TextResourceContents

from mcp_checkpoint.server.resources import SCHEMA_NAMES
from tests.server.conftest import call, record, start_run

pytestmark = pytest.mark.anyio


async def read(client: Client, uri: str) -> TextResourceContents:
    result = await client.read_resource(uri)
    assert len(result.contents) == 1
    content = result.contents[0]
    assert isinstance(content, TextResourceContents)
    return content


async def read_json(client: Client, uri: str) -> Any:
    content = await read(client, uri)
    assert content.mime_type in ("application/json", "application/schema+json")
    return json.loads(content.text)


async def test_resource_templates_are_listed(client: Client) -> None:
    templates = {
        t.uri_template: t for t in (await client.list_resource_templates()).resource_templates
    }

    assert set(templates) == {
        "checkpoint://{run_id}/latest",
        "checkpoint://{run_id}/{checkpoint_id}",
        "run://{run_id}",
        "checkpoints://{run_id}{?offset,limit}",
        "ledger://{run_id}{?cursor,limit}",
        "memory://{memory_id}",
        "export://{run_id}",
        "snapshot://{run_id}/{checkpoint_id}",
        "blob://{sha256}",
        "schema://{name}",
    }
    assert all(t.description for t in templates.values())
    static = [str(r.uri) for r in (await client.list_resources()).resources]
    assert static == ["guide://protocol"]


async def test_run_resource_shows_the_runs_state(client: Client) -> None:
    await start_run(client)
    await record(client, n=3)

    run = await read_json(client, "run://r1")

    assert run["run_id"] == "r1"
    assert run["objective"] == "Fix the flaky login test"
    assert run["step_count"] == 3
    assert run["head_seq"] == 3
    assert run["episode"] == 1
    assert run["latest_checkpoint_id"] is None


async def test_run_resource_of_unknown_run_is_not_found(client: Client) -> None:
    with pytest.raises(MCPError) as caught:
        await client.read_resource("run://nope")

    assert caught.value.error.message == "not_found: run nope"


async def test_latest_checkpoint_is_not_found_before_the_first_checkpoint(client: Client) -> None:
    await start_run(client)

    with pytest.raises(MCPError) as caught:
        await client.read_resource("checkpoint://r1/latest")

    assert caught.value.error.message.startswith("not_found: run r1 has no checkpoint")


async def test_resource_not_found_is_an_invalid_params_error_not_internal(client: Client) -> None:
    with pytest.raises(MCPError) as caught:
        await client.read_resource("run://nope")

    assert caught.value.error.code == INVALID_PARAMS


async def test_checkpoint_resources_serve_latest_and_by_id(client: Client) -> None:
    await start_run(client)
    await record(client, n=2)
    first = await call(client, "checkpoint", {"run_id": "r1", "next_actions": ["step one"]})
    await record(client, n=1)
    second = await call(client, "checkpoint", {"run_id": "r1", "next_actions": ["step two"]})

    latest = await read_json(client, "checkpoint://r1/latest")
    older = await read_json(client, f"checkpoint://r1/{first['checkpoint_id']}")

    assert latest["checkpoint_id"] == second["checkpoint_id"]
    assert latest["content"]["next_actions"] == ["step two"]
    assert latest["through_seq"] == 3
    assert older["checkpoint_id"] == first["checkpoint_id"]
    assert older["content"]["next_actions"] == ["step one"]
    assert older["through_seq"] == 2
    run = await read_json(client, "run://r1")
    assert run["latest_checkpoint_id"] == second["checkpoint_id"]


async def test_checkpoint_resource_of_unknown_id_is_not_found(client: Client) -> None:
    await start_run(client)

    with pytest.raises(MCPError) as caught:
        await client.read_resource("checkpoint://r1/cp_nope")

    assert caught.value.error.message.startswith("not_found: ")


async def test_ledger_pages_through_every_step_until_exhausted(client: Client) -> None:
    await start_run(client)
    await record(client, n=7)

    seqs: list[int] = []
    pages = 0
    uri = "ledger://r1?limit=3"
    while True:
        page = await read_json(client, uri)
        pages += 1
        seqs += [step["seq"] for step in page["steps"]]
        if page["next_cursor"] is None:
            break
        uri = f"ledger://r1?cursor={page['next_cursor']}&limit=3"
        assert pages < 10, "pagination does not end"

    assert seqs == [1, 2, 3, 4, 5, 6, 7]
    assert pages == 3
    first = (await read_json(client, "ledger://r1"))["steps"][0]
    assert first["input"] == {"cmd": "pytest tests/test_login.py -k case0"}
    assert first["hash"] and first["prev_hash"]


async def test_ledger_with_a_malformed_cursor_is_invalid_argument(client: Client) -> None:
    await start_run(client)

    with pytest.raises(MCPError) as caught:
        await client.read_resource("ledger://r1?cursor=abc")

    assert caught.value.error.message.startswith("invalid_argument: cursor")


@pytest.mark.parametrize("limit", ["1000000000", "0", "-5"])
async def test_ledger_with_an_out_of_range_limit_is_invalid_argument(
    client: Client, limit: str
) -> None:
    await start_run(client)

    with pytest.raises(MCPError) as caught:
        await client.read_resource(f"ledger://r1?limit={limit}")

    assert caught.value.error.code == INVALID_PARAMS
    assert caught.value.error.message.startswith("invalid_argument: limit must be between 1")


async def test_memory_resource_shows_a_committed_memory_with_provenance(client: Client) -> None:
    await start_run(client)
    batch = await call(
        client,
        "propose_memory",
        {
            "run_id": "r1",
            "items": [{"content": "CI runs on Python 3.11", "source_refs": ["step:r1:1"]}],
        },
    )
    committed = await call(client, "commit_memory", {"batch_id": batch["batch_id"]})
    memory_id = committed["memory_ids"]["0"]

    memory = await read_json(client, f"memory://{memory_id}")

    assert memory["memory_id"] == memory_id
    assert memory["content"] == "CI runs on Python 3.11"
    assert memory["status"] == "active"
    assert memory["batch_id"] == batch["batch_id"]
    assert memory["run_id"] == "r1"
    assert memory["source_refs"] == ["step:r1:1"]
    # Each reference is resolved (retention may remove steps: then "pruned" is true).
    assert memory["provenance"] == [
        {"ref": "step:r1:1", "kind": "step", "run_id": "r1", "found": False, "pruned": False}
    ]
    await call(client, "record_step", {"run_id": "r1", "tool": "t"})
    memory = await read_json(client, f"memory://{memory_id}")
    assert memory["provenance"][0]["found"] is True


@pytest.mark.parametrize("name", SCHEMA_NAMES)
async def test_schema_resource_is_a_draft_2020_12_json_schema(client: Client, name: str) -> None:
    content = await read(client, f"schema://{name}")

    schema = json.loads(content.text)
    assert content.mime_type == "application/schema+json"
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"schema://{name}"


async def test_checkpoint_resource_validates_against_its_published_schema(
    client: Client,
) -> None:
    await start_run(client)
    await record(client, n=2)
    await call(client, "checkpoint", {"run_id": "r1", "state": {"branch": "fix/login"}})
    schema = await read_json(client, "schema://checkpoint")
    checkpoint = await read_json(client, "checkpoint://r1/latest")

    Draft202012Validator.check_schema(schema)
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(checkpoint)]
    assert errors == []


async def test_schema_of_unknown_name_is_not_found(client: Client) -> None:
    with pytest.raises(MCPError) as caught:
        await client.read_resource("schema://nope")

    assert caught.value.error.message.startswith("not_found: schema")


async def test_guide_resource_is_the_protocol_in_markdown(client: Client) -> None:
    content = await read(client, "guide://protocol")

    assert content.mime_type == "text/markdown"
    for word in ("start_run", "record_step", "checkpoint", "rehydrate"):
        assert word in content.text
