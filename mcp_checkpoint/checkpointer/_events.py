"""What a Checkpointer tells its ``on_event`` callbacks and custom triggers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from mcp_checkpoint.core.models import StepAck, StepDraft

__all__ = ["Event", "EventKind", "Trigger", "TriggerInput"]

EventKind = Literal["run_started", "run_resumed", "step", "checkpoint", "context", "status"]


@dataclass(frozen=True)
class Event:
    """Something that happened to the run: ``kind`` says what, ``data`` the details
    (``step``: the ack's fields and the tool; ``checkpoint``: id, number, through_seq,
    source, note; ``context``: tokens, budget, checkpoint id; ``status``: the new status)."""

    kind: EventKind
    run_id: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TriggerInput:
    """What a custom trigger sees after each recorded step."""

    step: StepDraft
    ack: StepAck


# A custom trigger returns a reason (a short text) when a checkpoint is due, else None. A
# trigger that fired stays due until the next checkpoint.
Trigger = Callable[[TriggerInput], str | None]
