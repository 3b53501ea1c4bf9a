"""Tenant isolation over real HTTP: tenant B walks every tool, resource and prompt against
tenant A's ids and learns nothing. Each answer is ``not_found`` and reads exactly like the
answer for an id that exists nowhere (no existence leak); lists and searches never show
A's items; update notifications never cross tenants."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types import ResourceTemplateReference, ResourceUpdatedNotification

from tests.e2e.conftest import server_env
from tests.e2e.http_helpers import HttpServer, connect, make_token
from tests.e2e.test_http import text

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SECRET = "the deploy key rotates every full moon"


async def ok(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return dict(result.structured_content)


async def error_text(client: Client, tool: str, args: dict[str, Any]) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, result.structured_content
    return text(result)


async def resource_error(client: Client, uri: str) -> str:
    with pytest.raises(MCPError) as caught:
        await client.read_resource(uri)
    return caught.value.error.message


async def prompt_error(client: Client, name: str, args: dict[str, str]) -> str:
    with pytest.raises(MCPError) as caught:
        await client.get_prompt(name, args)
    return caught.value.error.message


async def seed_tenant_a(client: Client) -> dict[str, str]:
    """A run with steps and a checkpoint, a committed memory and a pending batch."""
    await ok(client, "start_run", {"objective": "A's secret objective", "run_id": "run-a"})
    for i in range(3):
        await ok(client, "record_step", {"run_id": "run-a", "tool": f"a{i}"})
    cp = await ok(client, "checkpoint", {
        "run_id": "run-a", "progress": ["A's progress"],
        "files": [{"path": "secret.txt", "content": SECRET}],
    })
    proposal = await ok(client, "propose_memory", {
        "items": [{"content": SECRET, "kind": "fact"}], "run_id": "run-a",
    })
    committed = await ok(client, "commit_memory", {"batch_id": proposal["batch_id"]})
    pending = await ok(client, "propose_memory", {"items": [{"content": "A's pending idea"}]})
    return {
        "run": "run-a",
        "checkpoint": cp["checkpoint_id"],
        "memory": committed["memory_ids"]["0"],
        "batch": pending["batch_id"],
        "blob": hashlib.sha256(SECRET.encode()).hexdigest(),
    }


def same_shape(foreign: str, missing: str, foreign_id: str, missing_id: str) -> None:
    """The answer about A's id and about a nonexistent id differ only by the id."""
    assert foreign.startswith("not_found"), foreign
    assert foreign.replace(foreign_id, "<id>") == missing.replace(missing_id, "<id>")


async def test_tenant_b_cannot_see_or_touch_tenant_a(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = server_env(data)
    token_a = await make_token(env, "tenant-a")
    token_b = await make_token(env, "tenant-b")
    async with HttpServer(data) as server:
        async with connect(server.url, token_a) as a:
            ids = await seed_tenant_a(a)
        run, cp, memory, batch = ids["run"], ids["checkpoint"], ids["memory"], ids["batch"]
        # Nonexistent ids of the same shape (a checkpoint/memory/batch id A never made).
        ghost_run, ghost_cp = "run-z", cp[:-4] + "zzzz"
        ghost_memory, ghost_batch = memory[:-4] + "zzzz", batch[:-4] + "zzzz"

        async with connect(server.url, token_b) as b:
            # -- tools that take a run id --------------------------------------------------
            run_tools: list[tuple[str, dict[str, Any]]] = [
                ("record_step", {"tool": "x"}),
                ("checkpoint", {"progress": ["x"]}),
                ("checkpoint", {}),
                ("rehydrate", {}),
                ("rehydrate", {"checkpoint_id": cp}),
                ("update_run", {"status": "abandoned"}),
                ("update_run", {"pinned": ["x"]}),
                ("delete_run", {}),
            ]
            for tool, extra in run_tools:
                foreign = await error_text(b, tool, {"run_id": run, **extra})
                missing = await error_text(b, tool, {"run_id": ghost_run, **extra})
                same_shape(foreign, missing, run, ghost_run)
            # -- tools that take a batch or memory id -----------------------------------
            foreign = await error_text(b, "commit_memory", {"batch_id": batch})
            missing = await error_text(b, "commit_memory", {"batch_id": ghost_batch})
            same_shape(foreign, missing, batch, ghost_batch)
            foreign = await error_text(b, "forget_memory", {"memory_id": memory})
            missing = await error_text(b, "forget_memory", {"memory_id": ghost_memory})
            same_shape(foreign, missing, memory, ghost_memory)
            replacement = {"op": "add", "content": "B's replacement"}
            ops: list[list[dict[str, Any]]] = [
                [{"op": "update", "content": "B's text"}],
                [{"op": "deprecate", "rationale": "B says so"}],
                [{"op": "supersede", "superseded_by": "#1"}, replacement],
            ]
            for items in ops:
                first = items[0]
                foreign = await error_text(b, "propose_memory",
                                           {"items": [{**first, "target_id": memory}, *items[1:]]})
                missing = await error_text(
                    b, "propose_memory",
                    {"items": [{**first, "target_id": ghost_memory}, *items[1:]]},
                )
                same_shape(foreign, missing, memory, ghost_memory)
            # B's own memory "superseded by" A's: A's memory is as unknown as a ghost.
            own = await ok(b, "propose_memory", {"items": [{"content": "B's fact"}]})
            own_done = await ok(b, "commit_memory", {"batch_id": own["batch_id"]})
            own_id = own_done["memory_ids"]["0"]
            foreign = await error_text(b, "propose_memory", {"items": [
                {"op": "supersede", "target_id": own_id, "superseded_by": memory}]})
            missing = await error_text(b, "propose_memory", {"items": [
                {"op": "supersede", "target_id": own_id, "superseded_by": ghost_memory}]})
            same_shape(foreign, missing, memory, ghost_memory)
            # -- resources (every template that names a run, checkpoint or memory) ---------
            templates = (await b.list_resource_templates()).resource_templates
            listed = {t.uri_template for t in templates}
            assert listed - {"schema://{name}"} == {
                "checkpoint://{run_id}/latest", "checkpoint://{run_id}/{checkpoint_id}",
                "run://{run_id}", "ledger://{run_id}{?cursor,limit}", "memory://{memory_id}",
                "export://{run_id}", "snapshot://{run_id}/{checkpoint_id}", "blob://{sha256}",
                "checkpoints://{run_id}{?offset,limit}",
            }, "a new resource template must join this walk"
            for template in (
                "checkpoint://{run}/latest", "run://{run}", "ledger://{run}", "export://{run}",
                "snapshot://{run}/latest", "checkpoints://{run}",
            ):
                foreign = await resource_error(b, template.format(run=run))
                missing = await resource_error(b, template.format(run=ghost_run))
                same_shape(foreign.removeprefix("Resource not found: "),
                           missing.removeprefix("Resource not found: "), run, ghost_run)
            foreign = await resource_error(b, f"checkpoint://{run}/{cp}")
            missing = await resource_error(b, f"checkpoint://{ghost_run}/{ghost_cp}")
            assert "not_found" in foreign
            assert foreign.replace(run, "<r>").replace(cp, "<c>") == missing.replace(
                ghost_run, "<r>").replace(ghost_cp, "<c>")
            foreign = await resource_error(b, f"snapshot://{run}/{cp}")
            missing = await resource_error(b, f"snapshot://{ghost_run}/{ghost_cp}")
            assert "not_found" in foreign
            assert foreign.replace(run, "<r>").replace(cp, "<c>") == missing.replace(
                ghost_run, "<r>").replace(ghost_cp, "<c>")
            blob, ghost_blob = ids["blob"], "0" * 64
            same_shape(await resource_error(b, f"blob://{blob}"),
                       await resource_error(b, f"blob://{ghost_blob}"), blob, ghost_blob)
            foreign = await resource_error(b, f"memory://{memory}")
            missing = await resource_error(b, f"memory://{ghost_memory}")
            same_shape(foreign.removeprefix("Resource not found: "),
                       missing.removeprefix("Resource not found: "), memory, ghost_memory)
            # -- prompts --------------------------------------------------------------------
            for name in ("resume_run", "checkpoint_now"):
                foreign = await prompt_error(b, name, {"run_id": run})
                missing = await prompt_error(b, name, {"run_id": ghost_run})
                same_shape(foreign, missing, run, ghost_run)
            foreign = await prompt_error(b, "review_memory_batch", {"batch_id": batch})
            missing = await prompt_error(b, "review_memory_batch", {"batch_id": ghost_batch})
            same_shape(foreign, missing, batch, ghost_batch)
            # -- lists, search and completion never show A's items --------------------------
            assert (await ok(b, "list_runs", {}))["runs"] == []
            assert (await ok(b, "list_runs", {"since": "2000-01-01T00:00:00Z"}))["runs"] == []
            assert (await ok(b, "search_steps", {"query": "a0 a1 a2"}))["hits"] == []
            browsed = (await ok(b, "list_memories", {"status": "any"}))["memories"]
            assert [m["memory_id"] for m in browsed] == [own_id]
            for argument, prefix in (("run_id", run[:2]), ("memory_id", memory[:-6]),
                                     ("checkpoint_id", cp[:3]), ("batch_id", batch[:-6])):
                offered = await b.complete(
                    ResourceTemplateReference(uri="run://{run_id}"),
                    {"name": argument, "value": prefix},
                )
                assert offered.completion.values == [], argument
            hits = await ok(b, "search_memory", {"query": "deploy key rotates full moon"})
            assert [h["memory_id"] for h in hits["hits"]] == [own_id]  # only B's own
            # B's namespace is its own: A's run id is free for B (no conflict leak).
            started = await ok(b, "start_run", {"objective": "B's own", "run_id": run})
            assert started["step_count"] == 0
            listed = await ok(b, "list_runs", {})
            assert [r["objective"] for r in listed["runs"]] == ["B's own"]
            ctx = await ok(b, "rehydrate", {"run_id": run})
            assert "secret" not in ctx["context"] and SECRET not in ctx["context"]
            assert "A's progress" not in ctx["context"]

        # A's data is untouched by everything B tried.
        async with connect(server.url, token_a) as a:
            assert len((await ok(a, "search_steps", {"query": "a0 a1 a2"}))["hits"]) == 3
            mine = await ok(a, "list_runs", {})
            assert [(r["run_id"], r["status"], r["step_count"]) for r in mine["runs"]] == [
                (run, "active", 3)
            ]
            found = await ok(a, "search_memory", {"query": "deploy key rotates full moon"})
            assert [h["memory_id"] for h in found["hits"]] == [memory]


class Updates:
    """Every resources/updated URI a client receives, in order."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self.changed = anyio.Event()

    async def __call__(self, message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            self.uris.append(str(message.params.uri))
            self.changed.set()

    async def first(self) -> str:
        with anyio.fail_after(10):
            while not self.uris:
                self.changed = anyio.Event()
                await self.changed.wait()
        return self.uris[0]


async def test_subscriptions_do_not_cross_tenants(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = server_env(data)
    token_a = await make_token(env, "tenant-a")
    token_b = await make_token(env, "tenant-b")
    async with HttpServer(data) as server:
        a_updates, b_updates = Updates(), Updates()
        # Handshake era: resources/subscribe; both subscribe to the same URIs.
        async with connect(server.url, token_a, mode="legacy", message_handler=a_updates) as a, \
                connect(server.url, token_b, mode="legacy", message_handler=b_updates) as b:
            for client in (a, b):
                await ok(client, "start_run", {"objective": "o", "run_id": "shared-name"})
                await ok(client, "record_step", {"run_id": "shared-name", "tool": "t"})
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", MCPDeprecationWarning)
                    await client.subscribe_resource("checkpoint://shared-name/latest")
            await ok(a, "checkpoint", {"run_id": "shared-name", "progress": ["A"]})
            assert await a_updates.first() == "checkpoint://shared-name/latest"
            # B's own checkpoint is the first update B hears of: A's never reached it.
            await ok(b, "update_run", {"run_id": "shared-name", "pinned": ["marker"]})
            await ok(b, "checkpoint", {"run_id": "shared-name", "progress": ["B"]})
            await b_updates.first()
            latest = await b.read_resource("checkpoint://shared-name/latest")
            assert '"B"' in latest.contents[0].text  # type: ignore[union-attr]
            assert b_updates.uris.count("checkpoint://shared-name/latest") == 1
            # And the other way round: A's next update follows A's first directly.
            await ok(a, "record_step", {"run_id": "shared-name", "tool": "t2"})
            await ok(a, "checkpoint", {"run_id": "shared-name", "progress": ["A again"]})
            with anyio.fail_after(10):
                while len(a_updates.uris) < 2:
                    a_updates.changed = anyio.Event()
                    await a_updates.changed.wait()
            assert a_updates.uris == ["checkpoint://shared-name/latest"] * 2
            latest = await a.read_resource("checkpoint://shared-name/latest")
            assert "A again" in latest.contents[0].text  # type: ignore[union-attr]

        # 2026-07-28 era: subscriptions/listen streams on the partitioned bus.
        async with connect(server.url, token_a) as a, connect(server.url, token_b) as b:
            await ok(b, "start_run", {"objective": "o", "run_id": "b-only"})
            await ok(b, "record_step", {"run_id": "b-only", "tool": "t"})
            uris = ["checkpoint://shared-name/latest", "checkpoint://b-only/latest"]
            async with a.listen(resource_subscriptions=uris[:1]) as a_events, \
                    b.listen(resource_subscriptions=uris) as b_events:
                await ok(a, "checkpoint", {"run_id": "shared-name", "progress": ["A2"]})
                with anyio.fail_after(10):
                    got_a = await anext(aiter(a_events))
                assert got_a.uri == "checkpoint://shared-name/latest"  # type: ignore[attr-defined]
                await ok(b, "checkpoint", {"run_id": "b-only", "progress": ["B2"]})
                with anyio.fail_after(10):
                    got_b = await anext(aiter(b_events))
                # Had A's event leaked, it would have been queued on B's stream first.
                assert got_b.uri == "checkpoint://b-only/latest"  # type: ignore[attr-defined]
