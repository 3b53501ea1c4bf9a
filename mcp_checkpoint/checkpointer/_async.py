"""``AsyncCheckpointer``: the checkpoint loop for an agent loop that does not speak MCP."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from pydantic import JsonValue

from mcp_checkpoint.checkpointer._backends import Backend, LocalBackend, RemoteBackend
from mcp_checkpoint.checkpointer._events import Event, EventKind, Trigger, TriggerInput
from mcp_checkpoint.checkpointer._profiles import for_model
from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.models import (
    CheckpointPatch,
    RunStatus,
    StepAck,
    StepDraft,
    StepStatus,
)
from mcp_checkpoint.errors import ConfigError, InvalidArgumentError

__all__ = ["AsyncCheckpointer", "Content", "EventCallback"]

logger = logging.getLogger("mcp_checkpoint.checkpointer")

EventCallback = Callable[[Event], None]
Content = CheckpointPatch | Mapping[str, Any]


def _patch(content: Content | None) -> CheckpointPatch:
    if content is None:
        return CheckpointPatch()
    if isinstance(content, CheckpointPatch):
        return content
    return CheckpointPatch.model_validate(dict(content))


class AsyncCheckpointer:
    """One run's checkpoint loop: ``record`` after each tool call, ``should_checkpoint``,
    ``checkpoint``, and ``context`` to start the next episode. Open it with ``open``
    (an async context manager); the same run resumes across processes by ``run_id``."""

    def __init__(
        self,
        backend: Backend,
        run: dict[str, Any],
        *,
        resumed: bool,
        on_event: Sequence[EventCallback] = (),
        triggers: Sequence[Trigger] = (),
    ) -> None:
        self._backend = backend
        self._run_id = str(run["run_id"])
        self._budget = int(run["budget_tokens"])
        self._on_event = list(on_event)
        self._triggers = list(triggers)
        self._last: StepAck | None = None
        self._fired: str | None = None
        self._closed = False
        self._emit("run_resumed" if resumed else "run_started", {
            "objective": run.get("objective"), "budget_tokens": self._budget,
            "step_count": run.get("step_count", 0),
        })

    # -- opening ------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        objective: str | None = None,
        *,
        run_id: str | None = None,
        budget_tokens: int | None = None,
        model: str | None = None,
        store_url: str | None = None,
        url: str | None = None,
        token: str | None = None,
        settings: Settings | None = None,
        on_event: EventCallback | Sequence[EventCallback] = (),
        triggers: Sequence[Trigger] = (),
    ) -> AsyncCheckpointer:
        """Start a run, or resume ``run_id`` when it exists.

        Where the run lives: ``url`` (+ ``token``) is a remote mcp-checkpoint server's MCP
        endpoint; otherwise the local store that ``store_url`` names (a ``sqlite:///``,
        ``postgresql://`` or ``memory://`` URL), else the one ``settings`` (default: the
        environment, as the server reads it) configures. ``budget_tokens`` is the context
        budget of a new run; ``model`` derives it from that model's context window
        (``for_model``). ``objective`` is required unless ``run_id`` names a run that
        exists.
        """
        if url is not None and (store_url is not None or settings is not None):
            raise ConfigError("give either url (a remote server) or store_url/settings")
        if model is not None and budget_tokens is None:
            budget_tokens = for_model(model).budget_tokens
        backend: Backend
        if url is not None:
            backend = RemoteBackend(url, token)
        else:
            base = settings if settings is not None else Settings()
            if store_url is not None:
                base = base.model_copy(update={"store_url": store_url})
            backend = LocalBackend(base)
        await backend.open()
        try:
            run = await backend.get_run(run_id) if run_id is not None else None
            resumed = run is not None
            if run is None:
                if not objective or not objective.strip():
                    raise InvalidArgumentError(
                        "objective is required to start a run"
                        + (f" (no run {run_id} exists)" if run_id else "")
                    )
                run = await backend.start_run(objective, run_id, budget_tokens)
        except BaseException:
            await backend.close()
            raise
        callbacks = [on_event] if callable(on_event) else list(on_event)
        return cls(backend, run, resumed=resumed, on_event=callbacks, triggers=triggers)

    async def close(self) -> None:
        """Close the store or the connection (the run stays; open it again by id)."""
        if not self._closed:
            self._closed = True
            await self._backend.close()

    async def __aenter__(self) -> AsyncCheckpointer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- the loop -----------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        """The run's id: pass it to ``open`` to resume in another process."""
        return self._run_id

    @property
    def budget_tokens(self) -> int:
        """The run's context budget."""
        return self._budget

    @property
    def last_ack(self) -> StepAck | None:
        """The answer to the latest ``record`` (None before the first)."""
        return self._last

    async def record(
        self,
        tool: str,
        input: JsonValue = None,
        output: JsonValue = None,
        reasoning: str | None = None,
        status: StepStatus = "ok",
        *,
        idempotency_key: str | None = None,
    ) -> StepAck:
        """Record one tool call durably (on disk, or acknowledged by the server, before it
        returns). Custom triggers run on it afterwards."""
        draft = StepDraft(
            tool=tool, input=input, output=output, reasoning=reasoning, status=status,
            idempotency_key=idempotency_key,
        )
        ack = await self._backend.record(self._run_id, draft)
        self._last = ack
        if self._fired is None:
            for trigger in self._triggers:
                reason = trigger(TriggerInput(step=draft, ack=ack))
                if reason:
                    self._fired = str(reason)
                    break
        if self._on_event:
            self._emit("step", {"tool": tool, "status": status, **ack.model_dump(mode="json")})
        return ack

    def should_checkpoint(self) -> bool:
        """True when the server's triggers (steps, tokens, errors, as configured) said so on
        the latest step, or a custom trigger fired since the last checkpoint."""
        return self._fired is not None or (self._last is not None and self._last.checkpoint_due)

    @property
    def due_reason(self) -> str | None:
        """Why a checkpoint is due: a custom trigger's reason, else the server's, else None."""
        if self._fired is not None:
            return self._fired
        return self._last.due_reason if self._last is not None else None

    async def checkpoint(self, content: Content | None = None) -> dict[str, Any]:
        """Checkpoint the steps so far: ``content`` is the model's distillation (a
        ``CheckpointPatch`` or a mapping of its fields: progress, state, decisions,
        next_actions, open_questions, errors, artifacts); without it the server distils by
        rules. Returns checkpoint_id, number, through_seq, source and note."""
        done = await self._backend.checkpoint(self._run_id, _patch(content))
        self._fired = None
        if self._last is not None:
            self._last = self._last.model_copy(
                update={"checkpoint_due": False, "due_reason": None}
            )
        info = {k: done.get(k) for k in ("checkpoint_id", "number", "through_seq", "source",
                                         "note")}
        self._emit("checkpoint", info)
        return info

    async def context(self, budget_tokens: int | None = None) -> str:
        """The context to start the next episode from (Markdown), never over
        ``budget_tokens`` (default: the run's budget)."""
        return await self._context(budget_tokens, None)

    async def resume(self, checkpoint_id: str | None = None) -> str:
        """The context at ``checkpoint_id`` (time travel), or at the latest checkpoint."""
        return await self._context(None, checkpoint_id)

    async def set_status(self, status: RunStatus) -> None:
        """Mark the run completed, failed, abandoned or active again."""
        await self._backend.set_status(self._run_id, status)
        self._emit("status", {"status": status})

    async def _context(self, budget_tokens: int | None, checkpoint_id: str | None) -> str:
        packed = await self._backend.context(self._run_id, budget_tokens, checkpoint_id)
        self._emit("context", {
            "tokens": packed.get("tokens"), "budget_tokens": packed.get("budget_tokens"),
            "checkpoint_id": packed.get("checkpoint_id"), "dropped": packed.get("dropped"),
        })
        return str(packed["context"])

    def _emit(self, kind: EventKind, data: dict[str, Any]) -> None:
        event = Event(kind=kind, run_id=self._run_id, data=data)
        for callback in self._on_event:
            try:
                callback(event)
            except Exception:  # an observer's bug must not undo a durable write
                logger.exception("on_event callback failed on %s", kind)
