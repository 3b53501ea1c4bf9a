"""Where a Checkpointer's run lives: a local store through the core services, or a remote
mcp-checkpoint server through its MCP tools. Both answer in core models."""

from __future__ import annotations

from typing import Any, Protocol

from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.models import CheckpointPatch, Run, RunStatus, StepAck, StepDraft
from mcp_checkpoint.errors import (
    BackendError,
    CheckpointError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    PayloadTooLargeError,
)

__all__ = ["Backend", "LocalBackend", "RemoteBackend"]


class Backend(Protocol):
    """The operations a Checkpointer needs; every method may raise the error tree's
    CheckpointError subclasses."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def get_run(self, run_id: str) -> dict[str, Any] | None: ...
    async def start_run(
        self, objective: str, run_id: str | None, budget_tokens: int | None
    ) -> dict[str, Any]: ...
    async def record(self, run_id: str, draft: StepDraft) -> StepAck: ...
    async def checkpoint(self, run_id: str, patch: CheckpointPatch) -> dict[str, Any]: ...
    async def context(
        self, run_id: str, budget_tokens: int | None, checkpoint_id: str | None
    ) -> dict[str, Any]: ...
    async def set_status(self, run_id: str, status: RunStatus) -> dict[str, Any]: ...


def _run_dict(run: Run) -> dict[str, Any]:
    return run.model_dump(mode="json")


class LocalBackend:
    """The core services over the store the settings name (SQLite by default), in this
    process: no MCP hop. Memory search is lexical unless ``settings.embeddings.provider``
    names a provider explicitly (a library user rarely wants a model loaded behind their
    back)."""

    def __init__(self, settings: Settings) -> None:
        from mcp_checkpoint.core.episodes import Episodes
        from mcp_checkpoint.core.memory import MemoryService
        from mcp_checkpoint.core.models import Tenant
        from mcp_checkpoint.core.tokens import HeuristicTokenizer
        from mcp_checkpoint.storage import make_store, make_vector_index

        self._tenant = Tenant(settings.tenant)
        self._store = make_store(settings)
        embedder = None
        if settings.embeddings.provider != "auto":
            from mcp_checkpoint.embeddings import make_embedder

            embedder = make_embedder(settings)
        self._vectors = make_vector_index(settings, self._store) if embedder else None
        self._embedder = embedder
        memory = MemoryService(self._store, settings, embedder=embedder, vectors=self._vectors)
        self._episodes = Episodes(self._store, HeuristicTokenizer(), settings, memory=memory)

    async def open(self) -> None:
        await self._store.open()
        if self._vectors is not None:
            await self._vectors.open()
        if self._embedder is not None:
            self._embedder.start()

    async def close(self) -> None:
        if self._vectors is not None:
            await self._vectors.close()
        await self._store.close()

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        try:
            return _run_dict(await self._episodes.get_run(self._tenant, run_id))
        except NotFoundError:
            return None

    async def start_run(
        self, objective: str, run_id: str | None, budget_tokens: int | None
    ) -> dict[str, Any]:
        run = await self._episodes.start_run(
            self._tenant, objective, run_id=run_id, budget_tokens=budget_tokens
        )
        return _run_dict(run)

    async def record(self, run_id: str, draft: StepDraft) -> StepAck:
        return await self._episodes.record_step(self._tenant, run_id, draft)

    async def checkpoint(self, run_id: str, patch: CheckpointPatch) -> dict[str, Any]:
        done = await self._episodes.checkpoint(self._tenant, run_id, patch)
        cp = done.checkpoint
        return {
            "checkpoint_id": cp.checkpoint_id,
            "number": cp.number,
            "through_seq": cp.through_seq,
            "source": cp.source,
            "note": done.distill_note,
            "created": done.created,
        }

    async def context(
        self, run_id: str, budget_tokens: int | None, checkpoint_id: str | None
    ) -> dict[str, Any]:
        ctx = await self._episodes.rehydrate(
            self._tenant, run_id, checkpoint_id=checkpoint_id, budget_tokens=budget_tokens
        )
        return ctx.model_dump(mode="json")

    async def set_status(self, run_id: str, status: RunStatus) -> dict[str, Any]:
        return _run_dict(await self._episodes.set_run(self._tenant, run_id, status=status))


# A tool error's text starts with its code; map it back onto the error tree.
_CODES: dict[str, type[CheckpointError]] = {
    "not_found": NotFoundError,
    "invalid_argument": InvalidArgumentError,
    "conflict": ConflictError,
    "payload_too_large": PayloadTooLargeError,
    "backend_unavailable": BackendError,
}


class RemoteBackend:
    """A remote mcp-checkpoint server over streamable HTTP, with a bearer token: the same
    tools an MCP client calls (the MCP SDK is imported only here)."""

    def __init__(self, url: str, token: str | None, *, timeout: float = 60.0) -> None:
        self._url = url
        self._token = token
        self._timeout = timeout
        self._client: Any = None
        self._task: Any = None

    async def open(self) -> None:
        """Connect. The connection lives in a task of its own (asyncio), so that a
        synchronous Checkpointer, which runs each call as a new task, can use and close it."""
        import asyncio

        import anyio

        ready = anyio.Event()
        self._closing = anyio.Event()
        self._failure: BaseException | None = None
        self._task = asyncio.get_running_loop().create_task(self._keep(ready))
        await ready.wait()
        if self._failure is not None:
            await self._task
            raise BackendError(
                f"cannot reach the mcp-checkpoint server at {self._url}: {self._failure}"
            ) from self._failure

    async def _keep(self, ready: Any) -> None:
        from contextlib import AsyncExitStack

        import httpx2
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client

        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            async with AsyncExitStack() as stack:
                http = await stack.enter_async_context(
                    httpx2.AsyncClient(headers=headers, timeout=self._timeout)
                )
                self._client = await stack.enter_async_context(
                    Client(
                        streamable_http_client(self._url, http_client=http),
                        read_timeout_seconds=self._timeout,
                    )
                )
                ready.set()
                await self._closing.wait()
        except Exception as exc:  # reported by open(), or lost with the connection
            self._failure = exc
        finally:
            self._client = None
            ready.set()

    async def close(self) -> None:
        task = getattr(self, "_task", None)
        if task is not None:
            self._task = None
            self._closing.set()
            await task

    async def _call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        if self._client is None:
            raise BackendError("the checkpointer is closed")
        result = await self._client.call_tool(tool, arguments)
        if result.is_error:
            text = " ".join(getattr(block, "text", "") for block in result.content).strip()
            code, _, message = text.partition(": ")
            raise _CODES.get(code, BackendError)(message if code in _CODES else text)
        if result.structured_content is None:
            raise BackendError(f"the server's {tool} answered without structured content")
        return dict(result.structured_content)

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        import json

        from mcp import MCPError

        if self._client is None:
            raise BackendError("the checkpointer is closed")
        try:
            read = await self._client.read_resource(f"run://{run_id}")
        except MCPError as exc:
            if "not_found" in str(exc) or "not found" in str(exc).lower():
                return None
            raise BackendError(f"reading run {run_id} failed: {exc}") from exc
        return dict(json.loads(read.contents[0].text))

    async def start_run(
        self, objective: str, run_id: str | None, budget_tokens: int | None
    ) -> dict[str, Any]:
        args: dict[str, Any] = {"objective": objective}
        if run_id is not None:
            args["run_id"] = run_id
        if budget_tokens is not None:
            args["budget_tokens"] = budget_tokens
        return await self._call("start_run", args)

    async def record(self, run_id: str, draft: StepDraft) -> StepAck:
        args = {"run_id": run_id, **draft.model_dump(mode="json", exclude_none=True)}
        return StepAck.model_validate(await self._call("record_step", args))

    async def checkpoint(self, run_id: str, patch: CheckpointPatch) -> dict[str, Any]:
        args = {"run_id": run_id, **patch.model_dump(mode="json", exclude_none=True)}
        return await self._call("checkpoint", args)

    async def context(
        self, run_id: str, budget_tokens: int | None, checkpoint_id: str | None
    ) -> dict[str, Any]:
        args: dict[str, Any] = {"run_id": run_id}
        if budget_tokens is not None:
            args["budget_tokens"] = budget_tokens
        if checkpoint_id is not None:
            args["checkpoint_id"] = checkpoint_id
        return await self._call("rehydrate", args)

    async def set_status(self, run_id: str, status: RunStatus) -> dict[str, Any]:
        return await self._call("update_run", {"run_id": run_id, "status": status})
