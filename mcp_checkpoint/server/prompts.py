"""MCP prompts, with their text in ``prompts/*.md`` (front matter + a ``$name`` template).

The front matter names the prompt and describes it; the functions here fill the template
with live state (a rehydrated context, a batch to review), so a prompt is ready to use.
"""

# No ``from __future__ import annotations``: the SDK evaluates the text of every handler's
# annotations when it registers the handler, on every start.
import json
from dataclasses import dataclass
from string import Template
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS
from pydantic import Field

from mcp_checkpoint._assets import asset_dir
from mcp_checkpoint.errors import BackendError, CheckpointError, InvalidArgumentError
from mcp_checkpoint.server import _prebuilt
from mcp_checkpoint.server.services import services_of

if TYPE_CHECKING:
    from mcp.server import MCPServer


__all__ = ["PromptTemplate", "load_prompt", "prompt_functions", "register_prompts"]


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt file: its front matter and its body template."""

    name: str
    title: str
    description: str
    body: Template


def load_prompt(name: str) -> PromptTemplate:
    """Read ``prompts/<name>.md``: ``---`` front matter of ``key: value`` lines, then body."""
    text = (asset_dir("prompts") / f"{name}.md").read_text(encoding="utf-8")
    _, front, body = text.split("---\n", 2)
    meta: dict[str, str] = {}
    for line in front.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            meta[key.strip()] = value.strip()
    if meta.get("name") != name:
        raise ValueError(f"prompts/{name}.md names itself {meta.get('name')!r}")
    return PromptTemplate(
        name=name,
        title=meta.get("title", name),
        description=meta.get("description", ""),
        body=Template(body.strip()),
    )



def _fill(name: str, **values: str) -> str:
    return load_prompt(name).body.safe_substitute(values)


class Prompts:
    """Prompt renderers (registered in ``register_prompts``)."""

    @staticmethod
    async def resume_run(
        ctx: Context[Any, Any],
        run_id: Annotated[str, Field(description="The run to resume.")],
        budget_tokens: Annotated[
            str | None, Field(description="Context budget in tokens (default: the run's).")
        ] = None,
    ) -> str:
        """Resume a run after a context reset: its rehydrated context, ready to continue."""
        # Imported here: the rendering helpers are not needed to start the server.
        from mcp_checkpoint.core.render import block, fit

        s = services_of(ctx)
        budget: int | None = None
        if budget_tokens:
            try:
                budget = int(budget_tokens)
            except ValueError:
                raise InvalidArgumentError("budget_tokens must be an integer") from None
        # The whole message, instructions included, is what the model reads: the context
        # gets the budget minus the instructions, and the final text is checked again.
        frame = _fill("resume_run", run_id=block(run_id), context="")
        packed = await s.episodes.rehydrate(
            s.tenant(), run_id, budget_tokens=budget,
            reserve_tokens=s.tokenizer.count(frame) + 2,
        )
        text = _fill("resume_run", run_id=block(run_id), context=packed.context)
        return fit(text, packed.budget_tokens, s.tokenizer)

    @staticmethod
    async def checkpoint_now(
        ctx: Context[Any, Any],
        run_id: Annotated[str, Field(description="The run to checkpoint.")],
    ) -> str:
        """Ask the model to distil its working memory into a checkpoint now."""
        s = services_of(ctx)
        run = await s.episodes.get_run(s.tenant(), run_id)
        latest = await s.episodes.latest_checkpoint(s.tenant(), run)
        previous = latest.content.model_dump_json(indent=1) if latest else "(none yet)"
        return _fill(
            "checkpoint_now",
            run_id=run_id,
            objective=run.objective,
            working_steps=str(run.working_steps),
            working_tokens=str(run.working_tokens),
            head_seq=str(run.head_seq),
            previous=previous,
        )

    @staticmethod
    async def review_memory_batch(
        ctx: Context[Any, Any],
        batch_id: Annotated[str, Field(description="The batch from propose_memory.")],
    ) -> str:
        """Review a staged memory batch item by item before committing it."""
        s = services_of(ctx)
        batch = await s.memory.get_proposal(s.tenant(), batch_id)
        items = [
            {"index": i, **item.model_dump(mode="json", exclude_none=True)}
            for i, item in enumerate(batch.items)
        ]
        return _fill(
            "review_memory_batch",
            batch_id=batch_id,
            status=batch.status,
            items=json.dumps(items, ensure_ascii=False, indent=1),
        )

    @staticmethod
    async def agent_protocol(ctx: Context[Any, Any]) -> str:
        """How to use mcp-checkpoint: the record / checkpoint / rehydrate loop."""
        guide = (asset_dir("resources") / "guide.md").read_text(encoding="utf-8")
        return _fill("agent_protocol", guide=guide)


def _guarded(fn: Any) -> Any:
    import functools

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except CheckpointError as exc:
            # The SDK would report any other exception as "Error rendering prompt"; a
            # protocol error keeps our coded message.
            code = INVALID_PARAMS if not isinstance(exc, BackendError) else INTERNAL_ERROR
            raise MCPError(code=code, message=str(exc)) from exc

    return wrapper


def prompt_functions() -> dict[str, Any]:
    """Prompt name -> its guarded renderer, in listing order."""
    names = ("resume_run", "checkpoint_now", "review_memory_batch", "agent_protocol")
    return {name: _guarded(getattr(Prompts, name)) for name in names}


def register_prompts(server: "MCPServer[Any]") -> None:
    """Add every prompt to ``server`` (with the arguments derived ahead of time: see
    ``server._prebuilt``)."""
    arguments = _prebuilt.load()["prompts"]
    for name, fn in prompt_functions().items():
        meta = load_prompt(name)
        server.add_prompt(
            _prebuilt.prebuilt_prompt(
                fn,
                name=name,
                title=meta.title,
                description=meta.description,
                arguments=arguments[name],
            )
        )
