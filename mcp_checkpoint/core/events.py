"""Domain events: what the core services announce after a durable change.

A service publishes an event only once the change it describes is stored. Publishing never
waits and never fails the call that made the change: a sink queues the event or drops it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

__all__ = ["DomainEvent", "EventSink", "EventType"]

EventType = Literal["checkpoint.created", "memory.committed", "run.status_changed"]


@dataclass(frozen=True)
class DomainEvent:
    """A stored change: its type, the tenant it belongs to, when, and its details."""

    type: EventType
    tenant: str
    at: datetime
    run_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class EventSink(Protocol):
    """Where the services publish events."""

    def publish(self, event: DomainEvent) -> None:
        """Take ``event`` without waiting (queue it or drop it); never raise."""
        ...
