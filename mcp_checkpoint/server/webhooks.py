"""The webhook: domain events posted as signed JSON to one URL, off the request path.

``WebhookSink.publish`` only puts the event on a bounded queue (a full queue drops the new
event, logged); one sender thread posts the events in order, retrying a failed post with a
doubling delay. Every post carries ``X-MCP-Checkpoint-Signature: sha256=HEX``, the
HMAC-SHA256 of ``TIMESTAMP.BODY`` under the shared secret, with the timestamp in
``X-MCP-Checkpoint-Timestamp``, so a receiver can check both origin and freshness.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from mcp_checkpoint import __version__
from mcp_checkpoint.config import WebhookSettings
from mcp_checkpoint.core._ids import new_id
from mcp_checkpoint.core.events import DomainEvent

__all__ = ["WebhookSink", "sign"]

logger = logging.getLogger("mcp_checkpoint.webhook")

_STOP = object()


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` posted at ``timestamp``."""
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _retryable(status: int) -> bool:
    return status >= 500 or status in (408, 425, 429)


class WebhookSink:
    """Posts the configured event types to ``settings.url`` (see the module docstring)."""

    def __init__(self, settings: WebhookSettings) -> None:
        if settings.url is None or settings.secret is None:
            raise ValueError("a webhook needs webhook.url and webhook.secret")
        self._url = settings.url
        self._secret = settings.secret.get_secret_value().encode("utf-8")
        self._types = set(settings.events)
        self._cfg = settings
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=settings.max_queue)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.delivered = 0
        self.dropped = 0
        self.failed = 0

    def publish(self, event: DomainEvent) -> None:
        """Queue ``event`` for posting (never waits; a full queue drops it, logged)."""
        if event.type not in self._types or self._stopping.is_set():
            return
        self._start()
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            logger.warning("webhook queue full (%d events): dropped %s of run %s",
                           self._cfg.max_queue, event.type, event.run_id)

    def close(self, timeout: float = 5.0) -> None:
        """Stop after posting what is queued, waiting at most ``timeout`` seconds (retry
        delays are cut short); what is left is logged as lost."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(_STOP)
        thread.join(timeout)
        self._stopping.set()
        thread.join(1.0)
        left = self._queue.qsize()
        if thread.is_alive() or left > 1:
            logger.warning("webhook stopped with %d event(s) not posted", max(0, left - 1))

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._stopping.clear()
                self._thread = threading.Thread(
                    target=self._run, name="mcp-checkpoint-webhook", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            self._deliver(item)

    def _payload(self, event: DomainEvent) -> bytes:
        body = {
            "id": new_id("evt"),
            "type": event.type,
            "tenant": event.tenant,
            "run_id": event.run_id,
            "at": event.at.isoformat(),
            "data": event.data,
        }
        return json.dumps(body, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8")

    def _deliver(self, event: DomainEvent) -> None:
        body = self._payload(event)
        delay = self._cfg.backoff_seconds
        for attempt in range(1, self._cfg.max_attempts + 1):
            status, reason = self._post(body, event.type)
            if status is not None and 200 <= status < 300:
                self.delivered += 1
                return
            final = attempt == self._cfg.max_attempts or (
                status is not None and not _retryable(status)
            )
            if final:
                self.failed += 1
                logger.warning("webhook gave up on %s of run %s after %d attempt(s): %s",
                               event.type, event.run_id, attempt, reason)
                return
            if self._stopping.wait(delay):
                self.failed += 1
                logger.warning("webhook stopping: %s of run %s not posted", event.type,
                               event.run_id)
                return
            delay *= 2

    def _post(self, body: bytes, event_type: str) -> tuple[int | None, str]:
        timestamp = str(int(time.time()))
        request = urllib.request.Request(  # noqa: S310 - the URL's scheme is checked (http/s)
            self._url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": f"mcp-checkpoint/{__version__}",
                "X-MCP-Checkpoint-Event": event_type,
                "X-MCP-Checkpoint-Timestamp": timestamp,
                "X-MCP-Checkpoint-Signature": sign(self._secret, timestamp, body),
            },
        )
        try:
            with urllib.request.urlopen(  # noqa: S310 - as above
                request, timeout=self._cfg.timeout_seconds
            ) as answer:
                return int(answer.status), f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            return int(exc.code), f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return None, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
