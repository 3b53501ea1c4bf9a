"""Distillation: merging model-written checkpoints, and distilling steps when the model
did not write one — through MCP sampling when the client offers it (the server sends
``sampling_prompt`` and hands the answer to ``parse_patch``), else by rules.
"""

from __future__ import annotations

import builtins
import json
import keyword
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from pydantic import JsonValue, ValidationError

from mcp_checkpoint.config import CheckpointSettings
from mcp_checkpoint.core.models import (
    Artifact,
    CheckpointContent,
    CheckpointPatch,
    Run,
    Step,
)
from mcp_checkpoint.core.ports import Tokenizer
from mcp_checkpoint.core.render import render_json, render_step

__all__ = [
    "SAMPLING_SYSTEM_PROMPT",
    "DistillError",
    "RulesDistiller",
    "extract_artifacts",
    "merge_auto_artifacts",
    "merge_checkpoint",
    "parse_patch",
    "sampling_prompt",
]

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
    """The extracted artifacts of a new checkpoint: ``new`` (best first) before
    ``previous``, without repeats or values a model already wrote, at most ``keep``."""
    seen = set(model_written)
    merged: list[Artifact] = []
    for artifact in (*new, *previous):
        if artifact.value not in seen:
            seen.add(artifact.value)
            merged.append(artifact)
    return merged[:keep]


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


# A path with a directory part (a/b.py, /x/y, ./z) or a bare file name with a known extension.
_PATH = re.compile(
    r"(?<![\w/.:-])(?:\.{0,2}/)?(?:[\w.@+-]+/)+[\w.@+-]*\w"
    r"|(?<![\w/.-])[\w-]+\.(?:py|pyi|js|jsx|ts|tsx|md|rst|txt|json|ya?ml|toml|cfg|ini|c|h|cc|cpp"
    r"|hpp|rs|go|java|kt|rb|php|sh|sql|html|css|lock|csv)\b"
)
# Identifiers that are names, not words: snake_case with an underscore, camelCase, CamelCase
# with an inner capital, or dotted.paths.
_IDENT = re.compile(
    r"\b(?:[A-Za-z_]\w*_\w+|[a-z]+[A-Z]\w*|[A-Z][a-z0-9]+[A-Z]\w*|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)\b"
)


# A name the agent's own code or commands call (``Solver(``, ``.decode(``), builtins aside.
_CALL = re.compile(r"(?<!\w)([A-Za-z_]\w{2,})\(")
_NOT_NAMES = frozenset(dir(builtins)) | frozenset(keyword.kwlist)
_URL = re.compile(r"\bhttps?://[^\s'\"<>()\[\]{}`\\]+")
# A path is a name, not prose like "and/or", "Y/n" or "it/s": rooted (/, ./, ../, ~/), at
# least two slashes deep, or ending in a file extension.
_PATHLIKE = re.compile(r"^(?:\.{0,2}/|~/)|/.*/|\.[A-Za-z]\w*$")


def extract_artifacts(
    texts: Iterable[str], limit: int, primary: Iterable[str] = ()
) -> list[Artifact]:
    """File paths, URLs and code identifiers mentioned in ``primary`` and ``texts`` (and
    the names ``primary`` calls): paths
    first, then URLs, then identifiers; within each kind, those ``primary`` (what the
    agent acted on: its commands, edits, requests) names first, then by frequency, then
    first seen; at most ``limit``, deterministic order.
    """
    first = list(primary)
    everything = [*first, *texts]
    paths: Counter[str] = Counter()
    urls: Counter[str] = Counter()
    idents: Counter[str] = Counter()
    first_seen: dict[str, int] = {}
    position = 0
    acted: set[str] = set()
    for n, text in enumerate(everything):
        if n == len(first):
            acted = {*paths, *urls, *idents}
        for match in _URL.finditer(text):
            token = match.group(0).rstrip(".,;:!?'\")]}")
            urls[token] += 1
            first_seen.setdefault(token, position)
            position += 1
        for match in _PATH.finditer(text):
            token = match.group(0).rstrip(".")
            if len(token) > 2 and "://" not in token and _PATHLIKE.search(token):
                paths[token] += 1
                first_seen.setdefault(token, position)
                position += 1
        names = [m.group(0) for m in _IDENT.finditer(text) if len(m.group(0)) > 3]
        if n < len(first):
            names += [m.group(1) for m in _CALL.finditer(text) if m.group(1) not in _NOT_NAMES]
        for token in names:
            if token not in paths:
                idents[token] += 1
                first_seen.setdefault(token, position)
                position += 1
    if len(everything) == len(first):
        acted = {*paths, *urls, *idents}

    def ranked(found: Counter[str]) -> list[str]:
        return sorted(found, key=lambda t: (t not in acted, -found[t], first_seen[t]))

    ranked_paths = ranked(paths)
    ranked_idents = [t for t in ranked(idents) if not any(t in p for p in (*paths, *urls))]
    found = [Artifact(kind="file", value=p) for p in ranked_paths]
    found += [Artifact(kind="url", value=u) for u in ranked(urls)]
    found += [Artifact(kind="identifier", value=i) for i in ranked_idents]
    return found[:limit]


# A line that reports an error (not a warning): ``...Error: ...``, ``FAILED ...``,
# ``error: ...``, ``fatal: ...``.
_ERROR_LINE = re.compile(
    r"^\s*(?:\S*(?:Error|Exception)\b:?.*|FAILED\b.*"
    r"|.*\b(?:error|fatal|panic)(?:\[\w+\])?:.*|.*Segmentation fault.*)$"
)


def _error_line(value: JsonValue, width: int = 160) -> str:
    """The last line of a failed step's output that reports an error (where a traceback
    or a test run says what failed), else its first line."""
    text = render_json(value).strip()
    for line in reversed(text.splitlines()[-200:]):
        if len(line) < 400 and _ERROR_LINE.match(line) and re.search(r"[A-Za-z]{3}", line):
            line = " ".join(line.split())
            return line if len(line) <= width else line[: width - 1] + "…"
    return _first_line(value, width)


def _first_line(value: JsonValue, width: int = 160) -> str:
    text = render_json(value).strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 1] + "…"


class RulesDistiller:
    """Deterministic distillation: tools used, files and identifiers touched, errors, and
    the last outcomes. Never fails; needs no model.
    """

    name = "rules"

    def __init__(self, limits: CheckpointSettings, artifacts_per_checkpoint: int = 30) -> None:
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
        first, last = ordered[0].seq - omitted_steps, ordered[-1].seq
        tools = Counter(step.tool for step in ordered)
        failed = [step for step in ordered if step.status == "error"]
        used = ", ".join(f"{tool}×{n}" for tool, n in tools.most_common(6))
        summary = f"Steps {first}–{last}: {len(ordered) + omitted_steps} steps ({used})"
        if failed:
            summary += f", {len(failed)} failed"
        progress = [summary]
        for step in ordered[-3:]:
            outcome = _first_line(step.output) or "(no output)"
            progress.append(f"#{step.seq} {step.tool}: {outcome}")
        inputs = [render_json(step.input) for step in ordered]
        texts = [
            part for step in ordered for part in (render_json(step.output), step.reasoning or "")
        ]
        errors = [f"#{s.seq} {s.tool}: {_error_line(s.output) or 'failed'}" for s in failed[-5:]]
        return CheckpointPatch(
            progress=progress,
            state={"last_seq": last, "last_tool": ordered[-1].tool},
            errors=errors if errors else None,
            auto_artifacts=extract_artifacts(texts, self._artifacts, primary=inputs),
        )


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
