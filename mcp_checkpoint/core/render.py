"""How runs, steps, checkpoints and memories read inside a context (plain Markdown-ish text).

Rendering is deterministic: the same state always renders to the same text.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import JsonValue

from mcp_checkpoint.core.models import CheckpointContent, Memory, Step, StepDraft
from mcp_checkpoint.core.ports import Tokenizer

__all__ = [
    "CHECKPOINT_FIELDS",
    "render_checkpoint",
    "render_json",
    "render_memory",
    "render_step",
    "step_tokens",
]

_MAX_CHARS_PER_TOKEN = 8

# (field, heading) in display order.
CHECKPOINT_FIELDS: tuple[tuple[str, str], ...] = (
    ("progress", "Progress"),
    ("state", "State"),
    ("decisions", "Decisions"),
    ("errors", "Errors"),
    ("open_questions", "Open questions"),
    ("artifacts", "Artifacts"),
    ("auto_artifacts", "Found in the steps"),
    ("next_actions", "Next actions"),
)


def render_json(value: JsonValue | Any) -> str:
    """Strings as they are; anything else as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _step_text(
    seq: int | str, tool: str, status: str, reasoning: str | None, inp: Any, out: Any
) -> str:
    lines = [f"[#{seq}] {tool} ({status})"]
    if reasoning:
        lines.append(f"  why: {reasoning}")
    rendered_in = render_json(inp)
    if rendered_in:
        lines.append(f"  in: {rendered_in}")
    rendered_out = render_json(out)
    if rendered_out:
        lines.append(f"  out: {rendered_out}")
    return "\n".join(lines)


def step_tokens(draft: StepDraft, tokenizer: Tokenizer) -> int:
    """Tokens of a step rendered whole (the seq placeholder stands for up to 9 digits)."""
    text = _step_text(
        "000000000", draft.tool, draft.status, draft.reasoning, draft.input, draft.output
    )
    return tokenizer.count(text)


def render_step(step: Step, tokenizer: Tokenizer, max_tokens: int) -> tuple[str, int]:
    """A step as shown in a context, cut to ``max_tokens``; returns (text, tokens).

    An uncut step costs what ``record_step`` counted (``step.tokens``, an upper bound: it
    was counted with a 9-digit seq placeholder), so no text is counted twice.
    """
    text = _step_text(step.seq, step.tool, step.status, step.reasoning, step.input, step.output)
    if step.tokens <= max_tokens:
        return text, step.tokens
    marker = f"\n  … [step #{step.seq} cut; full text in the ledger]"
    room = max(max_tokens - tokenizer.count(marker) - 1, 0)
    # No token of this counter covers more than a few characters of ordinary text, so a
    # generous character prefix bounds the work of cutting a huge step.
    head = tokenizer.truncate(text[: (room + 1) * _MAX_CHARS_PER_TOKEN], room) + marker
    return head, tokenizer.count(head)


def render_checkpoint(content: CheckpointContent) -> dict[str, list[str]]:
    """Each non-empty field of a checkpoint as a list of lines, by field name."""
    out: dict[str, list[str]] = {}
    if content.progress:
        out["progress"] = [f"- {p}" for p in content.progress]
    if content.state:
        out["state"] = [f"- {k}: {render_json(v)}" for k, v in sorted(content.state.items())]
    if content.decisions:
        out["decisions"] = [f"- {d}" for d in content.decisions]
    if content.errors:
        out["errors"] = [f"- {e}" for e in content.errors]
    if content.open_questions:
        out["open_questions"] = [f"- {q}" for q in content.open_questions]
    if content.artifacts:
        out["artifacts"] = [f"- {a}" for a in content.artifacts]
    if content.auto_artifacts:
        out["auto_artifacts"] = [f"- {a.value}" for a in content.auto_artifacts]
    if content.next_actions:
        out["next_actions"] = [f"{i}. {a}" for i, a in enumerate(content.next_actions, 1)]
    return out


def render_memory(memory: Memory) -> str:
    """A memory as one line of a context."""
    return f"- [{memory.memory_id}] ({memory.kind}, {memory.scope}) {memory.content}"
