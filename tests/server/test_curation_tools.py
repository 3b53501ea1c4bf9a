"""Finding, browsing and deleting over MCP: search_steps, list_memories, delete_run,
forget_memory, the checkpoints:// resource, since/until, and completion of ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from mcp import Client
from mcp_types import PromptReference, ResourceTemplateReference, TextResourceContents

from tests.server.conftest import call, call_error, record, start_run

pytestmark = pytest.mark.anyio


async def test_search_steps_finds_steps_with_bounded_snippets(client: Client) -> None:
    await start_run(client, "r1")
    await start_run(client, "r2")
    await record(client, "r1", 3)
    long_output = "x " * 400 + "the login token expired" + " y" * 400
    await call(client, "record_step", {"run_id": "r2", "tool": "http", "input": "GET /login",
                                       "output": long_output, "status": "error"})
    found = await call(client, "search_steps", {"query": "pytest expired"})
    hits = {(h["run_id"], h["seq"]): h for h in found["hits"]}
    assert set(hits) == {("r1", 1), ("r1", 2), ("r1", 3), ("r2", 1)}
    assert len(hits[("r2", 1)]["snippet"]) <= 240  # cut around the match, not the start
    assert "the login token expired" in hits[("r2", 1)]["snippet"]
    assert hits[("r1", 2)]["snippet"].startswith("bash ")
    only = await call(client, "search_steps", {"query": "login", "run_id": "r2",
                                               "status": "error", "k": 5})
    assert [(h["run_id"], h["seq"], h["tool"]) for h in only["hits"]] == [("r2", 1, "http")]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    none = await call(client, "search_steps", {"query": "login", "since": future})
    assert none["hits"] == [] and none["note"] == "no step matched the query"
    assert (await call_error(client, "search_steps", {"query": "  "})).startswith(
        "invalid_argument")
    too_many = await call_error(client, "search_steps", {"query": "a", "k": 10_000})
    assert "max_search_k" in too_many


async def test_delete_run_removes_it_and_its_steps(client: Client) -> None:
    await start_run(client, "r1")
    await record(client, "r1", 4)
    await call(client, "checkpoint", {"run_id": "r1", "progress": ["half"]})
    done = await call(client, "delete_run", {"run_id": "r1"})
    assert done == {"run_id": "r1", "steps_deleted": 4, "checkpoints_deleted": 1}
    assert (await call_error(client, "rehydrate", {"run_id": "r1"})).startswith("not_found")
    assert (await call(client, "search_steps", {"query": "pytest"}))["hits"] == []
    assert (await call_error(client, "delete_run", {"run_id": "r1"})).startswith("not_found")


async def test_list_memories_and_forget_memory(client: Client) -> None:
    batch = await call(client, "propose_memory", {"items": [
        {"content": "deploys go through the staging cluster", "scope": "project:web"},
        {"content": "the user prefers tabs", "kind": "preference", "scope": "user"},
        {"content": "retry flaky tests once", "kind": "lesson", "scope": "project:web"},
    ]})
    committed = await call(client, "commit_memory", {"batch_id": batch["batch_id"]})
    ids = committed["memory_ids"]
    page = await call(client, "list_memories", {"limit": 2})
    assert len(page["memories"]) == 2 and page["next_after"]
    rest = await call(client, "list_memories", {"limit": 2, "after": page["next_after"]})
    assert len(rest["memories"]) == 1 and rest["next_after"] is None
    web = await call(client, "list_memories", {"scope": "project:web"})
    assert {m["memory_id"] for m in web["memories"]} == {ids["0"], ids["2"]}
    lessons = await call(client, "list_memories", {"kind": "lesson"})
    assert [m["content"] for m in lessons["memories"]] == ["retry flaky tests once"]

    gone = await call(client, "forget_memory", {"memory_id": ids["1"]})
    assert gone == {"memory_id": ids["1"], "forgotten": True}
    left = await call(client, "list_memories", {"status": "any"})
    assert ids["1"] not in {m["memory_id"] for m in left["memories"]}
    found = await call(client, "search_memory", {"query": "the user prefers tabs", "k": 10})
    assert ids["1"] not in {h["memory_id"] for h in found["hits"]}
    again = await call_error(client, "forget_memory", {"memory_id": ids["1"]})
    assert again.startswith("not_found") and "(forgotten " in again


async def test_list_runs_and_search_memory_take_since_and_until(client: Client) -> None:
    await start_run(client, "r1")
    now = datetime.now(UTC)
    before = (now - timedelta(hours=1)).isoformat()
    after = (now + timedelta(hours=1)).isoformat()
    assert [r["run_id"] for r in (await call(client, "list_runs", {"since": before}))["runs"]
            ] == ["r1"]
    assert (await call(client, "list_runs", {"since": after}))["runs"] == []
    assert (await call(client, "list_runs", {"until": before}))["runs"] == []
    batch = await call(client, "propose_memory", {"items": [{"content": "cats purr"}]})
    await call(client, "commit_memory", {"batch_id": batch["batch_id"]})
    hits = (await call(client, "search_memory", {"query": "cats", "since": before}))["hits"]
    assert len(hits) == 1
    assert (await call(client, "search_memory", {"query": "cats", "until": before}))[
        "hits"] == []


async def test_checkpoints_resource_lists_a_run_s_checkpoints(client: Client) -> None:
    await start_run(client, "r1")
    for i in range(3):
        await record(client, "r1", 2)
        await call(client, "checkpoint", {"run_id": "r1", "next_actions": [f"step {i}"]})
    read = await client.read_resource("checkpoints://r1?limit=2")
    content = read.contents[0]
    assert isinstance(content, TextResourceContents)
    body = json.loads(content.text)
    assert [c["number"] for c in body["checkpoints"]] == [3, 2]
    assert body["checkpoints"][0]["next_actions"] == ["step 2"]
    assert body["next_offset"] == 2
    nxt = await client.read_resource("checkpoints://r1?offset=2&limit=2")
    assert isinstance(nxt.contents[0], TextResourceContents)
    assert [c["number"] for c in json.loads(nxt.contents[0].text)["checkpoints"]] == [1]


async def test_completion_offers_ids_by_prefix(client: Client) -> None:
    for rid in ("run_alpha", "run_alpine", "run_beta"):
        await start_run(client, rid)
    done = await client.complete(PromptReference(name="resume_run"), {"name": "run_id",
                                                                       "value": "run_al"})
    assert done.completion.values == ["run_alpha", "run_alpine"]
    template = ResourceTemplateReference(uri="run://{run_id}")
    every = await client.complete(template, {"name": "run_id", "value": ""})
    assert every.completion.values == ["run_alpha", "run_alpine", "run_beta"]
    other = await client.complete(template, {"name": "cursor", "value": "1"})
    assert other.completion.values == []
