"""Update notifications for checkpoint resources, in both protocol eras."""

from __future__ import annotations

import warnings
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.server import MCPServer
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import INVALID_PARAMS, ResourceUpdatedNotification

from tests.server.conftest import call, record, start_run

pytestmark = pytest.mark.anyio


class Updates:
    """A message handler that remembers every resources/updated URI."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self.changed = anyio.Event()

    async def __call__(self, message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            self.uris.append(str(message.params.uri))
            self.changed.set()

    async def wait_for(self, uri: str) -> None:
        with anyio.fail_after(5):
            while uri not in self.uris:
                self.changed = anyio.Event()
                await self.changed.wait()


async def subscribe(client: Client, uri: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)  # handshake-era API
        await client.subscribe_resource(uri)


async def test_legacy_subscriber_is_notified_of_a_new_checkpoint(server: MCPServer[Any]) -> None:
    updates = Updates()
    async with Client(server, mode="legacy", message_handler=updates) as client:
        assert client.server_capabilities.resources is not None
        assert client.server_capabilities.resources.subscribe is True
        await start_run(client)
        await record(client, n=2)
        await subscribe(client, "checkpoint://r1/latest")

        await call(client, "checkpoint", {"run_id": "r1", "next_actions": ["go on"]})

        await updates.wait_for("checkpoint://r1/latest")
        latest = await client.read_resource("checkpoint://r1/latest")
        assert "go on" in latest.contents[0].text  # type: ignore[union-attr]


async def test_legacy_subscriber_hears_nothing_about_other_runs(server: MCPServer[Any]) -> None:
    updates = Updates()
    async with Client(server, mode="legacy", message_handler=updates) as client:
        await start_run(client, "r1")
        await start_run(client, "r2")
        await record(client, "r1")
        await record(client, "r2")
        await subscribe(client, "checkpoint://r1/latest")

        await call(client, "checkpoint", {"run_id": "r2", "progress": ["other run"]})
        await call(client, "checkpoint", {"run_id": "r1", "progress": ["this run"]})

        await updates.wait_for("checkpoint://r1/latest")
        assert "checkpoint://r2/latest" not in updates.uris


async def test_legacy_unsubscribed_client_is_no_longer_notified(server: MCPServer[Any]) -> None:
    updates = Updates()
    async with Client(server, mode="legacy", message_handler=updates) as client:
        await start_run(client)
        await record(client)
        await subscribe(client, "checkpoint://r1/latest")
        await subscribe(client, "run://r1")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.unsubscribe_resource("checkpoint://r1/latest")

        await call(client, "checkpoint", {"run_id": "r1", "progress": ["x"]})

        # run://r1 is notified after checkpoint://r1/latest would have been.
        await updates.wait_for("run://r1")
        assert "checkpoint://r1/latest" not in updates.uris


async def test_modern_listener_receives_resource_updated_on_checkpoint(
    server: MCPServer[Any],
) -> None:
    async with Client(server) as client:
        await start_run(client)
        await record(client, n=2)

        async with client.listen(resource_subscriptions=["checkpoint://r1/latest"]) as events:
            await call(client, "checkpoint", {"run_id": "r1", "progress": ["done"]})
            with anyio.fail_after(5):
                event = await anext(aiter(events))

    assert event == ResourceUpdated(uri="checkpoint://r1/latest")


def _runtime_server(tmp_path: Any, **http: Any) -> tuple[Any, MCPServer[Any]]:
    from mcp_checkpoint.config import Settings
    from mcp_checkpoint.server.app import Runtime, server_for

    runtime = Runtime(Settings(store_url="memory://", data_dir=tmp_path, http=http))
    return runtime, server_for(runtime)


async def test_legacy_subscriptions_are_dropped_when_the_session_ends(tmp_path: Any) -> None:
    runtime, server = _runtime_server(tmp_path)
    subscriptions = runtime.services.subscriptions
    for _ in range(2):
        async with Client(server, mode="legacy") as client:
            for n in range(20):
                await subscribe(client, f"checkpoint://r{n}/latest")
            assert len(subscriptions) == 20
        assert len(subscriptions) == 0  # the session ended: nothing is kept for it


async def test_subscriptions_per_session_and_uri_length_are_capped(tmp_path: Any) -> None:
    _, server = _runtime_server(tmp_path, max_subscriptions_per_session=3,
                                max_subscription_uri_chars=100)
    async with Client(server, mode="legacy") as client:
        for n in range(3):
            await subscribe(client, f"checkpoint://r{n}/latest")
        await subscribe(client, "checkpoint://r0/latest")  # again: not a new one
        with pytest.raises(MCPError) as too_many:
            await subscribe(client, "checkpoint://r9/latest")
        assert too_many.value.error.code == INVALID_PARAMS
        assert too_many.value.error.message.startswith("payload_too_large: this session holds 3")
        with pytest.raises(MCPError) as too_long:
            await subscribe(client, "checkpoint://" + "r" * 200 + "/latest")
        assert too_long.value.error.message.startswith("payload_too_large: the URI has")
        await client.call_tool("list_runs", {})  # the session still works
