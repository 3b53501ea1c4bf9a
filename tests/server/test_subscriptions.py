"""Update notifications for checkpoint resources, in both protocol eras."""

from __future__ import annotations

import warnings
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.server import MCPServer
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import ResourceUpdatedNotification

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
