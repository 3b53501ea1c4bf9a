"""The webhook: checkpoints, commits and status changes posted as signed JSON, in order,
retried, bounded, and never on the tool call's path. A real HTTP receiver on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from mcp_checkpoint.config import Settings, WebhookSettings
from mcp_checkpoint.core.events import DomainEvent
from mcp_checkpoint.server.app import build_server
from mcp_checkpoint.server.webhooks import WebhookSink, sign
from tests.server.conftest import call, start_run

pytestmark = pytest.mark.anyio

SECRET = "s3cret-for-tests"


class Receiver:
    """A loopback HTTP server that records posts and answers with scripted statuses."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses or [])
        self.release = threading.Event()
        self.release.set()
        self.arrived = threading.Event()
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.changed:
                    receiver.posts.append(
                        ({k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    receiver.changed.notify_all()
                receiver.arrived.set()
                receiver.release.wait(10)
                status = receiver.statuses.pop(0) if receiver.statuses else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/hook"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.posts]

    def _wait(self, n: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.posts) >= n, timeout=20)

    async def wait_for(self, n: int) -> None:
        assert await anyio.to_thread.run_sync(self._wait, n), f"fewer than {n} posts arrived"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.release.set()
    r.http.shutdown()
    r.http.server_close()


def hook_settings(url: str, **kw: Any) -> WebhookSettings:
    return WebhookSettings(url=url, secret=SECRET, backoff_seconds=0.01, **kw)


def event(kind: str = "checkpoint.created", run_id: str = "r1") -> DomainEvent:
    return DomainEvent(type=kind, tenant="t", at=datetime.now(UTC), run_id=run_id)  # type: ignore[arg-type]


async def test_checkpoint_commit_and_status_changes_are_posted_signed(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = Settings(store_url="memory://", data_dir=tmp_path,
                        webhook=hook_settings(receiver.url))
    async with Client(build_server(settings)) as client:
        await start_run(client)
        await call(client, "record_step", {"run_id": "r1", "tool": "bash", "input": "ls"})
        await call(client, "checkpoint", {"run_id": "r1", "next_actions": ["ship"]})
        batch = await call(client, "propose_memory", {"items": [{"content": "CI runs on main"}]})
        await call(client, "commit_memory", {"batch_id": batch["batch_id"]})
        await call(client, "update_run", {"run_id": "r1", "pinned": ["no status change"]})
        await call(client, "update_run", {"run_id": "r1", "status": "completed"})
        await receiver.wait_for(3)
    events = receiver.events()
    assert [e["type"] for e in events] == [
        "checkpoint.created", "memory.committed", "run.status_changed"
    ]
    assert events[0]["data"]["number"] == 1 and events[0]["data"]["next_actions"] == ["ship"]
    assert events[0]["run_id"] == "r1" and events[0]["tenant"] == "local"
    assert events[1]["data"]["batch_id"] == batch["batch_id"]
    assert list(events[1]["data"]["memory_ids"]) == ["0"]
    assert events[2]["data"] == {"from": "active", "to": "completed", "version": 3}
    for headers, body in receiver.posts:
        expected = sign(SECRET.encode(), headers["x-mcp-checkpoint-timestamp"], body)
        assert headers["x-mcp-checkpoint-signature"] == expected
        assert headers["x-mcp-checkpoint-event"] == json.loads(body)["type"]
    assert sign(b"another secret", "1", receiver.posts[0][1]) != receiver.posts[0][0][
        "x-mcp-checkpoint-signature"]


async def test_a_failing_receiver_is_retried_then_the_event_arrives(receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    sink = WebhookSink(hook_settings(receiver.url))
    sink.publish(event())
    await receiver.wait_for(3)
    await anyio.to_thread.run_sync(sink.close)
    assert (sink.delivered, sink.failed) == (1, 0)
    bodies = [body for _, body in receiver.posts]
    assert bodies[0] == bodies[1] == bodies[2]  # the same event, retried


async def test_a_refusing_receiver_is_not_retried(receiver: Receiver) -> None:
    receiver.statuses = [400]
    sink = WebhookSink(hook_settings(receiver.url, max_attempts=5))
    sink.publish(event())
    sink.publish(event(run_id="r2"))
    await receiver.wait_for(2)
    await anyio.to_thread.run_sync(sink.close)
    assert (sink.delivered, sink.failed) == (1, 1)
    assert [e["run_id"] for e in receiver.events()] == ["r1", "r2"]


async def test_a_hung_receiver_never_delays_a_tool_call_and_the_queue_is_bounded(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.release.clear()  # the receiver holds every post until released
    settings = Settings(store_url="memory://", data_dir=tmp_path,
                        webhook=hook_settings(receiver.url, max_queue=1))
    server = build_server(settings)
    async with Client(server) as client:
        await start_run(client)
        for i in range(4):
            await call(client, "record_step", {"run_id": "r1", "tool": "bash", "input": str(i)})
            await call(client, "checkpoint", {"run_id": "r1", "progress": [f"step {i}"]})
            if i == 0:
                assert await anyio.to_thread.run_sync(receiver.arrived.wait, 10)
        # Four checkpoints answered while the first post was still held by the receiver.
        assert len(receiver.posts) == 1 and not receiver.release.is_set()
        receiver.release.set()
    await receiver.wait_for(2)
    numbers = [e["data"]["number"] for e in receiver.events()]
    assert numbers[:2] == [1, 2]  # one in flight, one queued; the rest were dropped
    assert len(numbers) == 2


def test_a_webhook_url_without_a_secret_is_refused() -> None:
    with pytest.raises(ValueError, match=r"webhook.url needs webhook.secret"):
        WebhookSettings(url="https://example.invalid/hook")
    with pytest.raises(ValueError, match="https?"):
        WebhookSettings(url="file:///etc/passwd", secret="x")
