"""``Checkpointer``: the synchronous twin of ``AsyncCheckpointer``, for plain agent loops.

It runs the async checkpointer on an event loop of its own: in the calling thread when that
thread runs no loop (a plain script: no thread hop per call), else in a background thread
(a notebook or an async application calling the sync API).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal
from pydantic import JsonValue

from mcp_checkpoint.checkpointer._async import AsyncCheckpointer, Content, EventCallback
from mcp_checkpoint.checkpointer._events import Trigger
from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.models import RunStatus, StepAck, StepStatus

__all__ = ["Checkpointer"]

T = TypeVar("T")


class _Loop:
    """Runs coroutines to completion from synchronous code, on one event loop kept for the
    checkpointer's life (its store connections belong to that loop)."""

    def __init__(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._runner: asyncio.Runner | None = asyncio.Runner()
            self.private = True  # the loop runs only while this thread calls in
            self._context = contextvars.copy_context()  # one for every call, as Runner's
            self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
            self._portal: BlockingPortal | None = None
        else:  # this thread already runs a loop: ours goes to a thread of its own
            self._runner = None
            self.private = False  # threads may call in through the portal at once
            self._portal_cm = start_blocking_portal()
            self._portal = self._portal_cm.__enter__()

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        if self._runner is not None:
            return _run_task(self._runner.get_loop(), _await(make), self._context)
        portal = self._portal
        if portal is None:
            raise RuntimeError("the checkpointer's loop is closed")
        return portal.call(_await, make)

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
        elif self._portal_cm is not None:
            self._portal_cm.__exit__(None, None, None)


async def _await(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


def _run_task(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], context: contextvars.Context
) -> T:
    """``coro`` run to completion on ``loop``. ``asyncio.Runner.run`` costs a SIGINT
    handler swap per call (about 60 us, a fifth of a ``record``); instead, an interrupt
    (Ctrl-C) that arrives while the task waits cancels it and lets it finish (a pending
    write rolls back) before the interrupt goes on, as ``Runner.run`` would do."""
    task = loop.create_task(coro, context=context)
    try:
        return loop.run_until_complete(task)
    except BaseException:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(task)
        raise


class Checkpointer:
    """One run's checkpoint loop, synchronous::

        with Checkpointer.open(objective="Fix the flaky test", model="claude-sonnet-4") as cp:
            while not done:
                result = run_tool(action)
                cp.record("bash", input=action, output=result)
                if cp.should_checkpoint():
                    cp.checkpoint({"progress": [...], "next_actions": [...]})
                    prompt = cp.context()  # start the next episode from this
    """

    def __init__(self, loop: _Loop, inner: AsyncCheckpointer) -> None:
        self._loop: _Loop | None = loop
        self._inner = inner

    @classmethod
    def open(
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
    ) -> Checkpointer:
        """Start a run or resume ``run_id``; see ``AsyncCheckpointer.open``."""
        loop = _Loop()
        if loop.private and url is None:
            # Nothing else runs on a loop of our own, so no two steps are ever stored at
            # the same moment: group commit would cost two passes of the loop per step and
            # save nothing.
            settings = settings if settings is not None else Settings()
            settings = settings.model_copy(update={
                "sqlite": settings.sqlite.model_copy(update={"group_commit": False})})
        try:
            inner = loop.run(
                lambda: AsyncCheckpointer.open(
                    objective, run_id=run_id, budget_tokens=budget_tokens, model=model,
                    store_url=store_url, url=url, token=token, settings=settings,
                    on_event=on_event, triggers=triggers,
                )
            )
        except BaseException:
            loop.close()
            raise
        return cls(loop, inner)

    def close(self) -> None:
        """Close the store or connection and stop the loop."""
        if self._loop is None:
            return
        loop, self._loop = self._loop, None
        try:
            loop.run(self._inner.close)
        finally:
            loop.close()

    def _run(self, make: Callable[[], Awaitable[T]]) -> T:
        if self._loop is None:
            from mcp_checkpoint.errors import BackendError

            raise BackendError("the checkpointer is closed")
        return self._loop.run(make)

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def run_id(self) -> str:
        """The run's id: pass it to ``open`` to resume in another process."""
        return self._inner.run_id

    @property
    def budget_tokens(self) -> int:
        """The run's context budget."""
        return self._inner.budget_tokens

    @property
    def last_ack(self) -> StepAck | None:
        """The answer to the latest ``record``."""
        return self._inner.last_ack

    @property
    def due_reason(self) -> str | None:
        """Why a checkpoint is due, or None."""
        return self._inner.due_reason

    def record(
        self,
        tool: str,
        input: JsonValue = None,
        output: JsonValue = None,
        reasoning: str | None = None,
        status: StepStatus = "ok",
        *,
        idempotency_key: str | None = None,
    ) -> StepAck:
        """Record one tool call durably; see ``AsyncCheckpointer.record``."""
        return self._run(
            lambda: self._inner.record(
                tool, input, output, reasoning, status, idempotency_key=idempotency_key
            )
        )

    def should_checkpoint(self) -> bool:
        """True when a checkpoint is due (server triggers or a custom trigger)."""
        return self._inner.should_checkpoint()

    def checkpoint(self, content: Content | None = None) -> dict[str, Any]:
        """Checkpoint the steps so far; see ``AsyncCheckpointer.checkpoint``."""
        return self._run(lambda: self._inner.checkpoint(content))

    def context(self, budget_tokens: int | None = None) -> str:
        """The context to start the next episode from, never over the budget."""
        return self._run(lambda: self._inner.context(budget_tokens))

    def resume(self, checkpoint_id: str | None = None) -> str:
        """The context at ``checkpoint_id`` (time travel), or at the latest checkpoint."""
        return self._run(lambda: self._inner.resume(checkpoint_id))

    def set_status(self, status: RunStatus) -> None:
        """Mark the run completed, failed, abandoned or active again."""
        self._run(lambda: self._inner.set_status(status))
