"""Distillation: merging model-written checkpoints, and distilling steps when the model
did not write one — through MCP sampling when the client offers it (the server sends
``sampling_prompt`` and hands the answer to ``parse_patch``), else by rules.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import JsonValue, ValidationError

from mcp_checkpoint.config import CheckpointSettings
from mcp_checkpoint.core.artifacts import GIT_COMMAND, Finder, merge_ranked, select
from mcp_checkpoint.core.models import (
    Artifact,
    CheckpointContent,
    CheckpointPatch,
    Run,
    Step,
)
from mcp_checkpoint.core.outcomes import (
    Outcome,
    command_of,
    error_entry,
    is_thought,
    open_actions,
    outcome,
    parse_error,
    unresolved,
)
from mcp_checkpoint.core.ports import Tokenizer
from mcp_checkpoint.core.render import render_step, render_value

__all__ = [
    "SAMPLING_SYSTEM_PROMPT",
    "DistillError",
    "RulesDistiller",
    "carry_over",
    "check_sampled",
    "extract_artifacts",
    "merge_auto_artifacts",
    "merge_checkpoint",
    "parse_patch",
    "sampling_prompt",
    "settle_errors",
]

_MAX_ERRORS = 5
_THOUGHT_CHARS = 300
_FAILURE_CHARS = 240  # the newest earlier failure in a progress summary

class DistillError(Exception):
    """A distiller could not produce content (the caller falls back to rules)."""


def _accumulate(previous: list[str], new: Iterable[str], keep: int) -> list[str]:
    seen = set(previous)
    merged = list(previous)
    for entry in new:
        if entry not in seen:
            merged.append(entry)
            seen.add(entry)
    return merged[-keep:]


def merge_auto_artifacts(
    previous: Sequence[Artifact],
    new: Sequence[Artifact],
    model_written: Sequence[str],
    keep: int,
) -> list[Artifact]:
    """The extracted artifacts of a new checkpoint: within each kind ``new`` (best first)
    before ``previous``, without repeats or values a model already wrote, each kind within
    its share of ``keep`` (see ``core.artifacts.select``)."""
    return merge_ranked(new, previous, model_written, keep)


def merge_checkpoint(
    previous: CheckpointContent | None, patch: CheckpointPatch, limits: CheckpointSettings
) -> CheckpointContent:
    """The content of a new checkpoint: ``previous`` with ``patch`` applied.

    progress, decisions and artifacts accumulate (exact repeats dropped, oldest beyond the
    configured caps dropped); state keys update and a ``null`` deletes one; next_actions,
    open_questions and errors replace the previous lists when given; ``auto_artifacts``
    merge as ``merge_auto_artifacts`` says; name, stage and notes belong to the new
    checkpoint alone (never inherited).
    """
    prev = previous or CheckpointContent()
    artifacts = _accumulate(prev.artifacts, patch.artifacts or [], limits.max_artifacts)
    state: dict[str, JsonValue] = dict(prev.state)
    for key, value in (patch.state or {}).items():
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    return CheckpointContent(
        progress=_accumulate(prev.progress, patch.progress or [], limits.max_progress_items),
        state=state,
        decisions=_accumulate(prev.decisions, patch.decisions or [], limits.max_decisions),
        next_actions=prev.next_actions if patch.next_actions is None else patch.next_actions,
        open_questions=(
            prev.open_questions if patch.open_questions is None else patch.open_questions
        ),
        errors=prev.errors if patch.errors is None else patch.errors,
        artifacts=artifacts,
        auto_artifacts=merge_auto_artifacts(
            prev.auto_artifacts, patch.auto_artifacts or [], artifacts, limits.max_artifacts
        ),
        name=patch.name,
        stage=patch.stage,
        notes=patch.notes,
    )


def extract_artifacts(
    steps: Sequence[Step], limit: int, results: Sequence[Outcome] | None = None
) -> list[Artifact]:
    """The files, commits, URLs, test ids, tickets and identifiers ``steps`` name, ranked
    (see ``core.artifacts``), at most ``limit``; ``results`` (each step's ``outcome``)
    marks the failing lines, which rank higher."""
    finder = Finder()
    for index, step in enumerate(steps):
        command = _strings(step.input, typed=True)
        git = bool(GIT_COMMAND.search(command))
        finder.add_text(command, step.seq, typed=True, git=git)
        finder.add_text(step.reasoning or "", step.seq, typed=True)
        finder.add_text(_strings(step.output), step.seq, git=git)
        if results is not None and results[index].failed:
            finder.add_text("\n".join(results[index].lines), step.seq, failing=True)
    return select(finder.ranked(), limit)


# The last line of a multi-line command that is a lone word closes what the command wrote
# (a heredoc's ``EOF``, an editor's ``end_of_edit``): a delimiter, not a name of the work.
_TERMINATOR = re.compile(r"(?<=\n)[ \t]*[A-Za-z_]\w*[ \t]*\n*\Z")


def _strings(value: Any, *, typed: bool = False) -> str:
    """The text a JSON value carries, one string per line: its strings unescaped, its
    numbers; not its keys (``file_path``, ``tool_use_id`` name the client's fields, not
    the work). ``typed``: what the agent wrote, each string without its closing word."""
    if isinstance(value, str):
        return _TERMINATOR.sub("", value) if typed else value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return "\n".join(filter(None, (_strings(v, typed=typed) for v in value)))
    return "" if value is None or isinstance(value, bool) else str(value)


def _outcome_line(step: Step, result: Outcome) -> str:
    """A progress entry for one step: what it ran and what came of it; a thought (or a
    step with reasoning and no output) keeps its reasoning."""
    reasoning = " ".join((step.reasoning or "").split())
    if is_thought(step) or (not render_value(step.output).strip() and reasoning):
        said = reasoning or render_value(step.input)
        return f"#{step.seq} {step.tool}: {_cut(said, _THOUGHT_CHARS)}"
    command = command_of(step)
    head = f"#{step.seq} {step.tool}"
    if command and command != step.tool:
        head += " `" + command.replace("`", "'") + "`"
    said = " | ".join(result.lines) or "(no output)"
    return f"{head}: {'failed: ' if result.failed else ''}{said}"


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


class RulesDistiller:
    """Deterministic distillation: tools used, the last outcomes (a thought keeps its
    reasoning), the errors no later step settled (their failing lines), the planned
    actions the steps did not yet do, and the files, commits, URLs, tests, tickets and
    names the steps touched. Never fails; needs no model.
    """

    name = "rules"

    def __init__(self, limits: CheckpointSettings, artifacts_per_checkpoint: int = 60) -> None:
        self._limits = limits
        self._artifacts = artifacts_per_checkpoint

    async def distill(
        self,
        run: Run,
        previous: CheckpointContent | None,
        steps: Sequence[Step],
        omitted_steps: int,
    ) -> CheckpointPatch:
        """A patch summarising ``steps``; see the class docstring."""
        if not steps:
            return CheckpointPatch()
        ordered = sorted(steps, key=lambda s: s.seq)
        results = [outcome(step) for step in ordered]
        first, last = ordered[0].seq - omitted_steps, ordered[-1].seq
        tools = Counter(step.tool for step in ordered)
        failed = sum(1 for r in results if r.failed)
        used = ", ".join(f"{tool}×{n}" for tool, n in tools.most_common(6))
        summary = f"Steps {first}–{last}: {len(ordered) + omitted_steps} steps ({used})"
        if failed:
            summary += f", {failed} failed"
            # The newest failure before the steps listed below: what went wrong last stays
            # in the history even once a later step settled it.
            earlier = [
                (s, r) for s, r in zip(ordered[:-3], results[:-3], strict=True) if r.failed
            ]
            if earlier:
                summary += f" (the last: {_cut(error_entry(*earlier[-1]), _FAILURE_CHARS)})"
        progress = [summary]
        progress += [_outcome_line(s, r) for s, r in zip(ordered[-3:], results[-3:], strict=True)]
        errors = settle_errors(previous.errors if previous else [], ordered, results)
        patch = CheckpointPatch(
            progress=progress,
            state={"last_seq": last, "last_tool": ordered[-1].tool},
            errors=errors if errors or (previous and previous.errors) else None,
            auto_artifacts=extract_artifacts(ordered, self._artifacts, results),
        )
        planned = previous.next_actions if previous else []
        remaining = open_actions(planned, ordered, results)
        if remaining != planned:
            patch = patch.model_copy(update={"next_actions": remaining})
        return patch


def settle_errors(
    previous: Sequence[str], steps: Sequence[Step], results: Sequence[Outcome] | None = None
) -> list[str]:
    """``previous`` errors and the failures among ``steps`` (their failing lines), minus
    what a later step settled (the same command or tests passing), newest last, at most
    five."""
    results = list(results) if results is not None else [outcome(s) for s in steps]
    notes = [parse_error(text) for text in previous]
    notes += [
        parse_error(error_entry(s, r)) for s, r in zip(steps, results, strict=True) if r.failed
    ]
    return [note.text for note in unresolved(notes, steps, results)][-_MAX_ERRORS:]


def carry_over(
    patch: CheckpointPatch,
    previous: CheckpointContent | None,
    steps: Sequence[Step],
    ruled: CheckpointPatch,
) -> CheckpointPatch:
    """``patch`` (whoever wrote it) with the rules' extracted artifacts, and, for the lists
    it leaves as they were, what ``steps`` settled taken out: the previous errors a later
    step settled, the previous next actions the steps did."""
    update: dict[str, object] = {"auto_artifacts": ruled.auto_artifacts}
    if patch.next_actions is None and ruled.next_actions is not None:
        update["next_actions"] = ruled.next_actions
    if patch.errors is None and previous is not None and previous.errors:
        ordered = sorted(steps, key=lambda s: s.seq)
        results = [outcome(step) for step in ordered]
        notes = [parse_error(text) for text in previous.errors]
        kept = [n.text for n in unresolved(notes, ordered, results)]
        if kept != previous.errors:
            update["errors"] = kept
    return patch.model_copy(update=update)


def check_sampled(
    patch: CheckpointPatch,
    steps: Sequence[Step],
    ruled: CheckpointPatch,
) -> CheckpointPatch:
    """The error check of rules distillation, applied to a client model's distillation:
    the errors it lists that a later step settled are dropped, and the rules' errors stand
    in when it lists none. (``carry_over`` then applies to it as to any content.)"""
    ordered = sorted(steps, key=lambda s: s.seq)
    results = [outcome(step) for step in ordered]
    update: dict[str, object] = {}
    if patch.errors is None:
        update["errors"] = ruled.errors
    else:
        notes = [parse_error(text) for text in patch.errors]
        update["errors"] = [n.text for n in unresolved(notes, ordered, results)]
    return patch.model_copy(update=update)


SAMPLING_SYSTEM_PROMPT = (
    "You distill an AI agent's working memory into a checkpoint so that it can continue "
    "after its context is reset. Answer with one JSON object and nothing else, with these "
    "optional keys: progress (list of short strings: what was done), state (object: current "
    "facts by key; null deletes a key), decisions (list: choices made and why), next_actions "
    "(list, in order), open_questions (list), errors (list: errors still relevant), artifacts "
    "(list: file paths, ids, URLs that matter). Be specific: keep exact paths, names, numbers."
)


def sampling_prompt(
    run: Run,
    previous: CheckpointContent | None,
    steps: Sequence[Step],
    tokenizer: Tokenizer,
    max_input_tokens: int,
) -> str:
    """The user message asking the client's model to distil: the objective, the previous
    checkpoint, and the newest steps that fit ``max_input_tokens`` (deterministic)."""
    head = [f"Objective: {run.objective}"]
    if previous is not None:
        head.append("Previous checkpoint: " + previous.model_dump_json())
    head.append("Steps since then (oldest first):")
    room = max_input_tokens - tokenizer.count("\n".join(head))
    shown: list[str] = []
    for step in sorted(steps, key=lambda s: s.seq, reverse=True):
        text, tokens = render_step(step, tokenizer, max(room // 4, 64))
        cost = tokens + 1
        if cost > room:
            break
        shown.append(text)
        room -= cost
    return "\n".join([*head, *reversed(shown)])


def parse_patch(answer: str) -> CheckpointPatch:
    """The first JSON object in a model's answer, validated as a CheckpointPatch (the
    model writes no ``auto_artifacts``: those are the server's own)."""
    start = answer.find("{")
    end = answer.rfind("}")
    if start < 0 or end <= start:
        raise DistillError("the model's answer holds no JSON object")
    try:
        data = json.loads(answer[start : end + 1])
        if isinstance(data, dict):
            data.pop("auto_artifacts", None)
        return CheckpointPatch.model_validate(data)
    except (json.JSONDecodeError, ValidationError) as exc:
        raise DistillError(f"the model's answer is not a checkpoint: {exc}") from exc
