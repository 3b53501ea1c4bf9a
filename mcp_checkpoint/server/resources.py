"""MCP resources: checkpoints, runs, the ledger, memories, JSON Schemas and the guide.

All JSON resources are ``application/json``. URI parameters arrive as text and are parsed
here, so a malformed cursor is a clean ``invalid_argument``, not a crash.
"""

# No ``from __future__ import annotations``: the SDK evaluates the text of every handler's
# annotations when it registers the handler, on every start.
import json
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import Context

from mcp_checkpoint._assets import asset_dir
from mcp_checkpoint.errors import InvalidArgumentError, NotFoundError
from mcp_checkpoint.server import _prebuilt
from mcp_checkpoint.server._packs import export_run_pack
from mcp_checkpoint.server.errors import guard_resource
from mcp_checkpoint.server.services import services_of
from mcp_checkpoint.server.views import RunView

if TYPE_CHECKING:
    from mcp.server import MCPServer


__all__ = ["SCHEMA_NAMES", "register_resources", "template_functions"]

JSON = "application/json"
MIME_TYPES = {
    "schema": "application/schema+json",
    "export": "application/zip",
    "blob": "application/octet-stream",
}
SCHEMA_NAMES = ("run", "step", "checkpoint", "checkpoint-content", "proposal", "memory", "context")
_NAME = re.compile(r"[a-z][a-z-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")



def _int(name: str, raw: str | None, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidArgumentError(f"{name} must be an integer, got {raw[:40]!r}") from None


def _dump(model: Any) -> str:
    return json.dumps(model, ensure_ascii=False, indent=1, default=str)


class Resources:
    """Resource readers (registered in ``register_resources``)."""

    @staticmethod
    async def latest_checkpoint(run_id: str, ctx: Context[Any, Any]) -> str:
        """The run's latest checkpoint (JSON)."""
        s = services_of(ctx)
        run = await s.episodes.get_run(s.tenant(), run_id)
        checkpoint = await s.episodes.latest_checkpoint(s.tenant(), run)
        if checkpoint is None:
            raise NotFoundError(f"run {run_id} has no checkpoint yet")
        return checkpoint.model_dump_json(indent=1)

    @staticmethod
    async def checkpoint(run_id: str, checkpoint_id: str, ctx: Context[Any, Any]) -> str:
        """One checkpoint of a run (JSON)."""
        s = services_of(ctx)
        found = await s.episodes.get_checkpoint(s.tenant(), run_id, checkpoint_id)
        return found.model_dump_json(indent=1)

    @staticmethod
    async def run(run_id: str, ctx: Context[Any, Any]) -> str:
        """A run's state: objective, step_count, head_seq, episode, latest checkpoint."""
        s = services_of(ctx)
        found = await s.episodes.get_run(s.tenant(), run_id)
        return RunView.of(found).model_dump_json(indent=1)

    @staticmethod
    async def ledger(
        run_id: str, ctx: Context[Any, Any], cursor: str | None = None, limit: str | None = None
    ) -> str:
        """A page of the run's steps, oldest first; pass next_cursor to read on."""
        s = services_of(ctx)
        after = _int("cursor", cursor, 0)
        size = _int("limit", limit, 50)
        largest = s.settings.limits.max_page_size
        if not 1 <= size <= largest:
            # A URI parameter the caller chose: a bad argument (-32602), not a failure.
            raise InvalidArgumentError(
                f"limit must be between 1 and {largest} (limits.max_page_size)"
            )
        steps = await s.episodes.ledger(s.tenant(), run_id, after_seq=after, limit=size)
        next_cursor = str(steps[-1].seq) if len(steps) == size else None
        return _dump({
            "run_id": run_id,
            "steps": [step.model_dump(mode="json") for step in steps],
            "next_cursor": next_cursor,
        })

    @staticmethod
    async def checkpoints(
        run_id: str, ctx: Context[Any, Any], offset: str | None = None, limit: str | None = None
    ) -> str:
        """The run's checkpoints, newest first (JSON: id, number, the steps each covers,
        source, tokens, time, next actions); pass next_offset to read on. Read one whole at
        checkpoint://{run_id}/{checkpoint_id}."""
        s = services_of(ctx)
        start = _int("offset", offset, 0)
        size = _int("limit", limit, 50)
        largest = s.settings.limits.max_page_size
        if not 1 <= size <= largest or start < 0:
            raise InvalidArgumentError(
                f"limit must be between 1 and {largest} (limits.max_page_size) and offset "
                "must not be negative"
            )
        run = await s.episodes.get_run(s.tenant(), run_id)
        found = await s.store.list_checkpoints(s.tenant(), run.run_id, limit=size, offset=start)
        return _dump({
            "run_id": run.run_id,
            "checkpoint_count": run.checkpoint_count,
            "checkpoints": [
                {
                    "checkpoint_id": cp.checkpoint_id, "number": cp.number,
                    "parent_id": cp.parent_id, "through_seq": cp.through_seq,
                    "head_seq": cp.head_seq, "source": cp.source, "tokens": cp.tokens,
                    "created_at": cp.created_at.isoformat(),
                    "next_actions": cp.content.next_actions,
                    "uri": f"checkpoint://{run.run_id}/{cp.checkpoint_id}",
                }
                for cp in found
            ],
            "next_offset": start + size if len(found) == size else None,
        })

    @staticmethod
    async def memory(memory_id: str, ctx: Context[Any, Any]) -> str:
        """One long-term memory, whatever its status, with its provenance (JSON):
        ``provenance`` resolves each of its source_refs (``found``, or ``pruned`` when
        retention removed the step or checkpoint)."""
        s = services_of(ctx)
        found = await s.memory.get_memory(s.tenant(), memory_id)
        from mcp_checkpoint.core.retention import resolve_refs  # this resource only

        resolved = await resolve_refs(s.store, s.tenant(), found.source_refs)
        return _dump({
            **found.model_dump(mode="json"),
            "provenance": [ref.as_dict() for ref in resolved],
        })

    @staticmethod
    async def export(run_id: str, ctx: Context[Any, Any]) -> bytes:
        """A resume pack of the run (zip: manifest, run, steps, checkpoints, the memories it
        wrote); `mcp-checkpoint import` reads it. At most limits.max_export_resource_bytes."""
        s = services_of(ctx)
        return await export_run_pack(s, run_id)

    @staticmethod
    async def snapshot(run_id: str, checkpoint_id: str, ctx: Context[Any, Any]) -> str:
        """The workspace files a checkpoint kept (JSON: name, stage, notes, and each file's
        path, sha256, size and blob:// URI); ``latest`` is the newest checkpoint with files."""
        s = services_of(ctx)
        wanted = None if checkpoint_id == "latest" else checkpoint_id
        checkpoint, files = await s.episodes.snapshot(s.tenant(), run_id, wanted)
        content = checkpoint.content
        return _dump({
            "run_id": run_id,
            "checkpoint_id": checkpoint.checkpoint_id,
            "number": checkpoint.number,
            "name": content.name,
            "stage": content.stage,
            "notes": content.notes,
            "files": [{**f.model_dump(), "uri": f"blob://{f.sha256}"} for f in files],
        })

    @staticmethod
    async def blob(sha256: str, ctx: Context[Any, Any]) -> bytes:
        """A snapshot file's bytes by SHA-256 (application/octet-stream)."""
        if not _SHA256.fullmatch(sha256):
            raise InvalidArgumentError("a blob is named by 64 lowercase hex characters")
        s = services_of(ctx)
        return await s.episodes.blob(s.tenant(), sha256)

    @staticmethod
    async def schema(name: str, ctx: Context[Any, Any]) -> str:
        """The JSON Schema (Draft 2020-12) of a persisted artifact."""
        if not _NAME.fullmatch(name) or name not in SCHEMA_NAMES:
            raise NotFoundError(f"schema {name[:40]!r}; known: {', '.join(SCHEMA_NAMES)}")
        return (asset_dir("resources") / "schemas" / f"{name}.json").read_text(encoding="utf-8")


def _guide() -> str:
    return (asset_dir("resources") / "guide.md").read_text(encoding="utf-8")


def template_functions() -> list[tuple[str, str, Callable[..., Awaitable[str | bytes]]]]:
    """(URI template, name, guarded reader) of every resource template, in listing order."""
    templates: list[tuple[str, str, Callable[..., Awaitable[str | bytes]]]] = [
        # latest before {checkpoint_id}: the first registered template that matches wins.
        ("checkpoint://{run_id}/latest", "latest-checkpoint", Resources.latest_checkpoint),
        ("checkpoint://{run_id}/{checkpoint_id}", "checkpoint", Resources.checkpoint),
        ("run://{run_id}", "run", Resources.run),
        ("ledger://{run_id}{?cursor,limit}", "ledger", Resources.ledger),
        ("checkpoints://{run_id}{?offset,limit}", "checkpoints", Resources.checkpoints),
        ("memory://{memory_id}", "memory", Resources.memory),
        ("export://{run_id}", "export", Resources.export),
        ("snapshot://{run_id}/{checkpoint_id}", "snapshot", Resources.snapshot),
        ("blob://{sha256}", "blob", Resources.blob),
        ("schema://{name}", "schema", Resources.schema),
    ]
    return [(uri, name, guard_resource(fn)) for uri, name, fn in templates]


def register_resources(server: "MCPServer[Any]") -> None:
    """Add every resource and resource template to ``server`` (the templates with the
    argument schemas derived ahead of time: see ``server._prebuilt``)."""
    parameters = _prebuilt.load()["resource_templates"]
    for uri, name, fn in template_functions():
        _prebuilt.add_template(
            server,
            fn,
            uri,
            name=name,
            description=(fn.__doc__ or "").strip(),
            mime_type=MIME_TYPES.get(name, JSON),
            parameters=parameters[uri],
        )
    server.resource(
        "guide://protocol",
        name="protocol-guide",
        title="How to use mcp-checkpoint",
        description="The agent-facing protocol: when to record, checkpoint and rehydrate.",
        mime_type="text/markdown",
    )(_guide)
