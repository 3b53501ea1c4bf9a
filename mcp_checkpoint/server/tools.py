"""MCP tools: thin adapters from validated arguments to the core services.

Each tool reaches the process-wide ``Services`` through its request context, calls one core
service, and returns a pydantic model (structured output with an output schema). Errors
pass through ``guard_tool``; nothing here contains storage or ranking logic.
"""

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp_types import (
    CallToolResult,
    TextContent,
    ToolAnnotations,
)
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from mcp_checkpoint.core.models import (
    Checkpoint,
    CheckpointPatch,
    MemoryKind,
    MemoryOp,
    MemoryStatus,
    ProposalItem,
    RunId,
    RunStatus,
    StepAck,
    StepDraft,
    StepStatus,
)
from mcp_checkpoint.core.models import (
    Context as PackedContext,
)
from mcp_checkpoint.core.ports import StepQuery
from mcp_checkpoint.errors import InvalidArgumentError
from mcp_checkpoint.server import _prebuilt
from mcp_checkpoint.server._files import FileIn, resolve_files
from mcp_checkpoint.server._sampling import Sampled, _input_required_flow, _sample_legacy
from mcp_checkpoint.server.errors import guard_tool
from mcp_checkpoint.server.services import services_of
from mcp_checkpoint.server.views import (
    CheckpointResultView,
    CommitResult,
    DeleteRunResult,
    ForgetResult,
    Hit,
    MemoryList,
    MemoryView,
    ProposalView,
    RunList,
    RunView,
    SearchResultView,
    StepHitView,
    StepSearchView,
)

if TYPE_CHECKING:
    from mcp.server.mcpserver.tools import Tool


__all__ = ["build_tools", "tool_functions"]

logger = logging.getLogger("mcp_checkpoint.server")

RunIdArg = Annotated[str, Field(description="The run's id (from start_run or list_runs).")]


class MemoryItemIn(BaseModel):
    """One proposed change to long-term memory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    op: MemoryOp = Field(
        "add",
        description="add a memory; update a memory's text; supersede (replace) or deprecate one.",
    )
    content: str | None = Field(None, description="The memory's text (add, update).")
    kind: MemoryKind = "fact"
    scope: str = Field("global", description="e.g. global, project:NAME, user, run:ID.")
    confidence: float = Field(0.8, ge=0, le=1)
    rationale: str | None = Field(None, description="Why this change is right.")
    source_refs: list[str] = Field(
        default=[], description="Where it comes from: step:RUN:SEQ, checkpoint:ID, url..."
    )
    target_id: str | None = Field(
        None, description="The memory an update/supersede/deprecate targets."
    )
    superseded_by: str | None = Field(
        None, description="supersede: the replacing memory id, or '#N' for item N of this batch."
    )


class Tools:
    """The tool implementations (methods, built into tools in ``build_tools``)."""

    @staticmethod
    async def start_run(
        ctx: Context[Any, Any],
        objective: Annotated[str, Field(description="What the run must achieve.")],
        acceptance_criteria: Annotated[
            list[str] | None, Field(description="How to tell it is done.")
        ] = None,
        constraints: Annotated[list[str] | None, Field(description="Rules to respect.")] = None,
        pinned: Annotated[
            list[str] | None, Field(description="Facts every rehydrated context must show.")
        ] = None,
        run_id: Annotated[
            str | None, Field(description="Your own id for the run (default: generated).")
        ] = None,
        budget_tokens: Annotated[
            int | None, Field(description="Context budget for rehydrate and triggers.")
        ] = None,
        project: Annotated[
            str | None,
            Field(description="The project it belongs to (e.g. the working directory)."),
        ] = None,
    ) -> RunView:
        """Start a run: the task whose steps you will record and checkpoint."""
        s = services_of(ctx)
        run = await s.episodes.start_run(
            s.tenant(),
            objective,
            acceptance_criteria=acceptance_criteria,
            constraints=constraints,
            pinned=pinned,
            run_id=run_id,
            budget_tokens=budget_tokens,
            project=project,
        )
        return RunView.of(run)

    @staticmethod
    async def record_step(
        ctx: Context[Any, Any],
        run_id: RunIdArg,
        tool: Annotated[str, Field(description="The tool you called (or 'thought', 'message').")],
        input: Annotated[JsonValue, Field(description="Its arguments (any JSON).")] = None,
        output: Annotated[JsonValue, Field(description="What it returned (any JSON).")] = None,
        reasoning: Annotated[str | None, Field(description="Why you took this step.")] = None,
        status: Annotated[Literal["ok", "error"], Field(description="Did it fail?")] = "ok",
        idempotency_key: Annotated[
            str | None,
            Field(description="Retry-safe key: a retried call returns the first answer."),
        ] = None,
    ) -> StepAck:
        """Record one step durably; says when a checkpoint is due."""
        s = services_of(ctx)
        draft = StepDraft(
            tool=tool,
            input=input,
            output=output,
            reasoning=reasoning,
            status=status,
            idempotency_key=idempotency_key,
        )
        return await s.episodes.record_step(s.tenant(), run_id, draft)

    @staticmethod
    async def checkpoint(
        ctx: Context[Any, Any],
        run_id: RunIdArg,
        through_seq: Annotated[
            int | None, Field(description="Last step this checkpoint covers (default: newest).")
        ] = None,
        progress: Annotated[
            list[str] | None, Field(description="What was done (appended).")
        ] = None,
        state: Annotated[
            dict[str, JsonValue] | None,
            Field(description="Current facts by key (merged; null deletes a key)."),
        ] = None,
        decisions: Annotated[
            list[str] | None, Field(description="Choices made and why (appended).")
        ] = None,
        next_actions: Annotated[
            list[str] | None, Field(description="What to do next, in order (replaces).")
        ] = None,
        open_questions: Annotated[
            list[str] | None, Field(description="What is still unknown (replaces).")
        ] = None,
        errors: Annotated[
            list[str] | None, Field(description="Errors still relevant (replaces).")
        ] = None,
        artifacts: Annotated[
            list[str] | None, Field(description="Files, ids, URLs that matter (appended).")
        ] = None,
        name: Annotated[
            str | None, Field(description="A name for this checkpoint (e.g. 'tests green').")
        ] = None,
        stage: Annotated[
            str | None, Field(description="The stage of the work it marks.")
        ] = None,
        notes: Annotated[
            str | None, Field(description="Notes for a person reading it later.")
        ] = None,
        files: Annotated[
            list[FileIn] | None,
            Field(
                description="Workspace files to keep with this checkpoint (restorable with "
                "'mcp-checkpoint restore'): {path, content} or {path, content_base64}; on a "
                "local server {path} alone is read from inside your roots."
            ),
        ] = None,
        sampled: Sampled = None,
    ) -> CheckpointResultView:
        """Distil working memory into a checkpoint. Pass your own distillation; with no
        content the server distils (your client's model via sampling if offered, else rules).
        Steps after through_seq stay in working memory."""
        s = services_of(ctx)
        patch = CheckpointPatch(
            progress=progress,
            state=state,
            decisions=decisions,
            next_actions=next_actions,
            open_questions=open_questions,
            errors=errors,
            artifacts=artifacts,
            name=name,
            stage=stage,
            notes=notes,
        )
        snapshot = (
            await resolve_files(ctx, files, remote=s.remote, settings=s.settings.snapshots)
            if files is not None
            else None
        )
        answer: str | None = None
        note: str | None = None
        if patch.is_empty():
            caps = ctx.client_capabilities
            if sampled is not None and isinstance(sampled.content, TextContent):
                answer = sampled.content.text
            elif sampled is not None:
                note = "the client's model answered without text"
            elif not s.settings.sampling.enabled:
                note = "sampling is disabled (sampling.enabled=false)"
            elif not _input_required_flow(ctx):
                answer, note = await _sample_legacy(ctx, s, run_id, through_seq)
            elif caps is None or caps.sampling is None:
                note = "the client does not offer sampling"
        result = await s.episodes.checkpoint(
            s.tenant(), run_id, patch, through_seq=through_seq, sampled=answer,
            sampling_note=note, files=snapshot,
        )
        cp: Checkpoint = result.checkpoint
        if result.created:
            await s.subscriptions.checkpoint_created(ctx, s.tenant(), cp.run_id)
        return CheckpointResultView(
            checkpoint_id=cp.checkpoint_id,
            run_id=cp.run_id,
            number=cp.number,
            through_seq=cp.through_seq,
            source=cp.source,
            tokens=cp.tokens,
            working_steps=result.working_steps,
            working_tokens=result.working_tokens,
            content=cp.content,
            note=result.distill_note,
            created=result.created,
        )

    @staticmethod
    async def rehydrate(
        ctx: Context[Any, Any],
        run_id: RunIdArg,
        checkpoint_id: Annotated[
            str | None,
            Field(description="Resume at this (older) checkpoint instead of the latest."),
        ] = None,
        budget_tokens: Annotated[
            int | None, Field(description="Largest context to return (default: the run's).")
        ] = None,
        query: Annotated[
            str | None, Field(description="What memories to look for (default: the objective).")
        ] = None,
    ) -> Annotated[CallToolResult, PackedContext]:
        """A fresh context for the run, never larger than the budget: objective, pinned
        items, the checkpoint, relevant memories and the newest steps since it."""
        s = services_of(ctx)
        packed = await s.episodes.rehydrate(
            s.tenant(), run_id, checkpoint_id=checkpoint_id, budget_tokens=budget_tokens,
            query=query,
        )
        # The text block is what most clients hand the model: the context itself, within
        # the budget; the metadata (tokens, dropped, ids) is structured content only.
        return CallToolResult(
            content=[TextContent(type="text", text=packed.context)],
            structured_content=packed.model_dump(mode="json"),
        )

    @staticmethod
    async def list_runs(
        ctx: Context[Any, Any],
        status: Annotated[RunStatus | None, Field(description="Only runs in this status.")] = None,
        limit: Annotated[int, Field(description="Page size.")] = 20,
        offset: Annotated[int, Field(description="Runs to skip.")] = 0,
        project: Annotated[
            str | None, Field(description="Only runs of this project.")
        ] = None,
        since: Annotated[
            datetime | None, Field(description="Only runs updated at or after this time.")
        ] = None,
        until: Annotated[
            datetime | None, Field(description="Only runs updated before this time.")
        ] = None,
    ) -> RunList:
        """Your runs, most recently updated first (find a run to rehydrate)."""
        s = services_of(ctx)
        if since is None and until is None:
            runs = await s.episodes.list_runs(
                s.tenant(), status=status, limit=limit, offset=offset, project=project
            )
        else:
            from mcp_checkpoint.core.curation import RunFilter  # with the curation service

            runs, _ = await s.curation.find_runs(
                s.tenant(),
                RunFilter(status=status, project=project, since=_aware(since),
                          until=_aware(until)),
                limit=limit, offset=offset,
            )
        return RunList(
            runs=[RunView.of(r) for r in runs],
            next_offset=offset + limit if len(runs) == limit else None,
        )

    @staticmethod
    async def update_run(
        ctx: Context[Any, Any],
        run_id: RunIdArg,
        status: Annotated[RunStatus | None, Field(description="New status.")] = None,
        pinned: Annotated[
            list[str] | None, Field(description="Replace the pinned items.")
        ] = None,
        expected_version: Annotated[
            int | None,
            Field(
                description="The run's version you last read (run://, list_runs, a previous "
                "update_run): a run changed since is a conflict naming its current version, "
                "and nothing changes. Omit to apply to the run as it is now."
            ),
        ] = None,
    ) -> RunView:
        """Finish, fail or abandon a run, or change what is pinned in every context."""
        s = services_of(ctx)
        run = await s.episodes.set_run(
            s.tenant(), run_id, status=status, pinned=pinned, expected_version=expected_version
        )
        return RunView.of(run)

    @staticmethod
    async def propose_memory(
        ctx: Context[Any, Any],
        items: Annotated[list[MemoryItemIn], Field(description="The changes to stage.")],
        run_id: Annotated[
            str | None, Field(description="The run these memories come from.")
        ] = None,
    ) -> ProposalView:
        """Stage changes to long-term memory. Each item comes back with its near duplicates,
        likely conflicts and a suggested op; nothing is stored until commit_memory."""
        s = services_of(ctx)
        staged = [ProposalItem.model_validate(item.model_dump()) for item in items]
        return ProposalView.of(await s.memory.propose(s.tenant(), staged, run_id=run_id))

    @staticmethod
    async def commit_memory(
        ctx: Context[Any, Any],
        batch_id: Annotated[str, Field(description="The batch from propose_memory.")],
        accept: Annotated[
            list[int] | None,
            Field(description="Item indexes to apply (default: all not rejected)."),
        ] = None,
        reject: Annotated[list[int] | None, Field(description="Item indexes to drop.")] = None,
    ) -> CommitResult:
        """Apply a staged batch atomically. Committing it twice is a conflict."""
        s = services_of(ctx)
        done = await s.memory.commit(s.tenant(), batch_id, accept=accept, reject=reject)
        return CommitResult(
            batch_id=done.batch_id,
            status=done.status,
            accepted=done.accepted,
            rejected=done.rejected,
            memory_ids={str(i): m for i, m in done.memory_ids.items()},
        )

    @staticmethod
    async def search_memory(
        ctx: Context[Any, Any],
        query: Annotated[str, Field(description="What you are looking for.")],
        scope: Annotated[str | None, Field(description="Only this scope.")] = None,
        kind: Annotated[MemoryKind | None, Field(description="Only this kind.")] = None,
        k: Annotated[int, Field(description="How many hits at most.")] = 5,
        since: Annotated[
            datetime | None, Field(description="Only memories created at or after this time.")
        ] = None,
        until: Annotated[
            datetime | None, Field(description="Only memories created before this time.")
        ] = None,
    ) -> SearchResultView:
        """Search active long-term memories; every hit carries its provenance."""
        s = services_of(ctx)
        found = await s.memory.search(s.tenant(), query, scope=scope, kind=kind, k=k,
                                      since=_aware(since), until=_aware(until))
        return SearchResultView(
            hits=[
                Hit(
                    memory_id=h.memory.memory_id,
                    content=h.memory.content,
                    score=h.score,
                    kind=h.memory.kind,
                    scope=h.memory.scope,
                    status=h.memory.status,
                    confidence=h.memory.confidence,
                    source_refs=h.memory.source_refs,
                    batch_id=h.memory.batch_id,
                    run_id=h.memory.run_id,
                    created_at=h.memory.created_at,
                    scores=h.scores,
                )
                for h in found.hits
            ],
            scope=found.scope,
            mode=found.mode,
            note=found.note,
        )


def _aware(moment: datetime | None) -> datetime | None:
    """A time the caller gave, in UTC (a naive time is taken as UTC)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class CurationTools:
    """Find, browse and delete (registered with the loop's tools)."""

    @staticmethod
    async def search_steps(
        ctx: Context[Any, Any],
        query: Annotated[str, Field(description="Words to find in steps (tool, reasoning, "
                                    "input, output).")],
        run_id: Annotated[str | None, Field(description="Only this run's steps.")] = None,
        tool: Annotated[str | None, Field(description="Only steps of this tool.")] = None,
        status: Annotated[StepStatus | None, Field(description="Only ok or error steps.")
                          ] = None,
        since: Annotated[datetime | None, Field(description="Recorded at or after.")] = None,
        until: Annotated[datetime | None, Field(description="Recorded before.")] = None,
        k: Annotated[int, Field(description="How many hits at most.")] = 10,
    ) -> StepSearchView:
        """Search what was done: the step ledgers of your runs, best match first. Each hit
        names its run and seq with a short snippet."""
        s = services_of(ctx)
        hits = await s.curation.search_steps(
            s.tenant(),
            StepQuery(query, run_id=None if run_id is None else RunId(run_id), tool=tool,
                      status=status, since=_aware(since), until=_aware(until)),
            k=k,
        )
        note = f"{len(hits)} steps found" if hits else "no step matched the query"
        return StepSearchView(
            hits=[StepHitView(run_id=h.run_id, seq=h.seq, episode=h.episode, tool=h.tool,
                              status=h.status, created_at=h.created_at, score=h.score,
                              snippet=h.snippet) for h in hits],
            note=note,
        )

    @staticmethod
    async def list_memories(
        ctx: Context[Any, Any],
        scope: Annotated[str | None, Field(description="Only this scope.")] = None,
        kind: Annotated[MemoryKind | None, Field(description="Only this kind.")] = None,
        status: Annotated[
            MemoryStatus | Literal["any"], Field(description="Only this status.")
        ] = "active",
        after: Annotated[
            str | None, Field(description="next_after of the previous page.")
        ] = None,
        limit: Annotated[int, Field(description="Page size.")] = 20,
    ) -> MemoryList:
        """Browse long-term memories without a query, oldest first, by scope, kind and
        status."""
        s = services_of(ctx)
        found, nxt = await s.curation.browse_memories(
            s.tenant(), status=None if status == "any" else status, scope=scope, kind=kind,
            after=after, limit=limit,
        )
        return MemoryList(
            memories=[MemoryView.model_validate(m.model_dump(exclude={"version"}))
                      for m in found],
            next_after=nxt,
        )

    @staticmethod
    async def delete_run(ctx: Context[Any, Any], run_id: RunIdArg) -> DeleteRunResult:
        """Delete a run for good: its steps, checkpoints and search index. Memories it
        wrote stay. Cannot be undone (export it first if in doubt)."""
        s = services_of(ctx)
        done = await s.curation.delete_run(s.tenant(), run_id)
        return DeleteRunResult(run_id=done.run_id, steps_deleted=done.steps,
                               checkpoints_deleted=done.checkpoints)

    @staticmethod
    async def forget_memory(
        ctx: Context[Any, Any],
        memory_id: Annotated[str, Field(description="The memory to delete.")],
    ) -> ForgetResult:
        """Delete a memory for good (not deprecate): it is no longer found or listed.
        Cannot be undone."""
        s = services_of(ctx)
        if not memory_id:
            raise InvalidArgumentError("memory_id must not be empty")
        await s.memory.forget(s.tenant(), memory_id)
        return ForgetResult(memory_id=memory_id, forgotten=True)


def _ann(*, read_only: bool, destructive: bool, idempotent: bool, title: str) -> ToolAnnotations:
    return ToolAnnotations(
        title=title,
        read_only_hint=read_only,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=False,
    )


# name -> (title, readOnly, destructive, idempotent). Truthful: record_step is idempotent
# only with a key, so it is not advertised as idempotent; checkpoint replaces next_actions
# (destructive of the previous list); commit_memory may supersede memories.
TOOL_ANNOTATIONS: dict[str, tuple[str, bool, bool, bool]] = {
    "start_run": ("Start a run", False, False, False),
    "record_step": ("Record a step", False, False, False),
    "checkpoint": ("Checkpoint working memory", False, True, False),
    "rehydrate": ("Rehydrate a context", True, False, True),
    "list_runs": ("List runs", True, False, True),
    "update_run": ("Update a run", False, True, True),
    "propose_memory": ("Propose memories", False, False, False),
    "commit_memory": ("Commit a memory batch", False, True, False),
    "search_memory": ("Search memories", True, False, True),
    "search_steps": ("Search steps", True, False, True),
    "list_memories": ("List memories", True, False, True),
    "delete_run": ("Delete a run", False, True, True),
    "forget_memory": ("Forget a memory", False, True, True),
}


def tool_functions() -> dict[str, Callable[..., Any]]:
    """Tool name -> its guarded implementation, in the order the tools are listed."""
    return {
        name: guard_tool(getattr(Tools, name, None) or getattr(CurationTools, name))
        for name in TOOL_ANNOTATIONS
    }


def build_tools() -> "list[Tool]":
    """Every tool, guarded and annotated, with the schemas derived ahead of time (see
    ``server._prebuilt``)."""
    schemas = _prebuilt.load()["tools"]
    tools = []
    for name, fn in tool_functions().items():
        title, read_only, destructive, idempotent = TOOL_ANNOTATIONS[name]
        tools.append(_prebuilt.prebuilt_tool(
            fn,
            name=name,
            title=title,
            description=(fn.__doc__ or "").strip(),
            annotations=_ann(
                read_only=read_only, destructive=destructive, idempotent=idempotent, title=title
            ),
            schemas=schemas[name],
        ))
    return tools
