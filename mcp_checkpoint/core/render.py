"""How runs, steps, checkpoints and memories read inside a context (Markdown text).

Rendering is deterministic: the same state always renders to the same text. Stored text is
data, never structure: every piece of it goes through ``neutralize`` (control and format
characters become a visible marker, odd spaces a space, line and paragraph separators a
newline). A step's multi-line reasoning, input or output goes in a fenced block whose fence
is longer than any backtick run inside it, so nothing inside can close it; other stored
text has its continuation lines indented by four spaces. Either way no stored text starts
a line where the context's own headings, list items and step headers do.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import JsonValue

from mcp_checkpoint.core.models import CheckpointContent, Memory, Step, StepDraft
from mcp_checkpoint.core.ports import Tokenizer

__all__ = [
    "CHECKPOINT_FIELDS",
    "block",
    "clip_middle",
    "fit",
    "neutralize",
    "render_checkpoint",
    "render_json",
    "render_memory",
    "render_step",
    "render_value",
    "step_tokens",
]

_MAX_CHARS_PER_TOKEN = 8
_INDENT = "    "
_HEAD_SHARE = 0.35  # of a cut step's room: its head (header, input); the rest is its tail

# Unicode categories Cc, Cf, Zl, Zp and Zs other than the space (Unicode 14), without tab,
# LF and the zero-width (non-)joiners that scripts and emoji sequences need.
_ODD = (
    "\x00-\x08\x0b-\x1f\x7f-\xa0\xad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2"
    "\u1680\u180e\u2000-\u200b\u200e-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000"
    "\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
_ODD_RUN_RE = re.compile(f"\r\n|[{_ODD}]+")
# The characters of _ODD (and CR) that ASCII holds: an ASCII text without them has nothing
# to neutralize, which this one-class scan tells far faster than the substitution.
_ODD_ASCII_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
_BACKTICKS_RE = re.compile("`+")
_SPACES = frozenset("\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
                    "\u200a\u202f\u205f\u3000")
_BREAKS = frozenset("\r\u2028\u2029\x85")

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


def _replace_odd(match: re.Match[str]) -> str:
    run = match.group()
    if run == "\r\n" or all(ch in _BREAKS for ch in run):
        return "\n" * (1 if run == "\r\n" else len(run))
    if all(ch in _SPACES for ch in run):
        return " " * len(run)
    return "\ufffd" if len(run) == 1 else f"[{len(run)} control characters]"


def neutralize(text: str) -> str:
    """``text`` without control or format characters: CR, CRLF and line/paragraph
    separators become LF, odd spaces a space, any other run of them ``�`` (one) or
    ``[N control characters]``."""
    if text.isascii() and _ODD_ASCII_RE.search(text) is None:
        return text
    return _ODD_RUN_RE.sub(_replace_odd, text)


def block(text: str) -> str:
    """Stored text made safe to place after a marker on a line: neutralized, with every
    continuation line indented by four spaces."""
    return neutralize(text).replace("\n", "\n" + _INDENT)


def fit(text: str, budget: int, tokenizer: Tokenizer) -> str:
    """``text`` if it is within ``budget`` tokens, else its longest prefix that is."""
    return text if tokenizer.count(text) <= budget else tokenizer.truncate(text, budget)


def clip_middle(text: str, max_tokens: int, tokenizer: Tokenizer) -> str:
    """``text`` if it is within ``max_tokens``, else its head and its tail (the head gets
    the larger part) around a `` … `` marker, within ``max_tokens``."""
    if tokenizer.count(text) <= max_tokens:
        return text
    marker = " … "
    room = max(max_tokens - tokenizer.count(marker), 0)
    head_room = room - room // 3
    head = tokenizer.truncate(text[: (head_room + 1) * _MAX_CHARS_PER_TOKEN], head_room)
    rest = text[len(head) :]
    tail = _tail(rest, room - tokenizer.count(head), tokenizer)
    clipped = head.rstrip() + marker + tail.lstrip()
    while tokenizer.count(clipped) > max_tokens and tail:
        tail = tail[len(tail) // 8 + 1 :]
        clipped = head.rstrip() + marker + tail.lstrip()
    return clipped if tokenizer.count(clipped) <= max_tokens else tokenizer.truncate(
        clipped, max_tokens
    )


def render_json(value: JsonValue | Any) -> str:
    """Strings as they are; anything else as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def render_value(value: JsonValue | Any) -> str:
    """A step's input or output as a reader sees it: a string as it is; a JSON object as
    ``key: value`` lines, its strings unescaped (a multi-line string after its ``key:``
    line, such strings last), other values as compact JSON; an empty object as nothing.
    A tool's structured input (``{"command": ...}``, ``{"file_path": ..., "new_string":
    ...}``) then reads as the text it carries, not as JSON escapes (``\\n`` glued to the
    next word)."""
    if not isinstance(value, dict):
        return render_json(value)
    short: list[str] = []
    long: list[str] = []
    for key, item in value.items():
        if isinstance(item, str):
            text = item.lstrip("\n").rstrip()  # a trailing newline is no second line
            if "\n" in text:
                long.append(f"{key}:\n{text}")
            else:
                short.append(f"{key}: {text.strip()}")
        else:
            short.append(f"{key}: {render_json(item)}")
    return "\n".join(short + long)


def _fence(text: str) -> str:
    """A backtick fence longer than any backtick run in ``text`` (so it cannot close it)."""
    if "`" not in text:
        return "```"
    longest = max((len(run) for run in _BACKTICKS_RE.findall(text)), default=0)
    return "`" * max(3, longest + 1)


def _step_parts(
    seq: int | str, tool: str, status: str, reasoning: str | None, inp: Any, out: Any
) -> tuple[str, str]:
    """A step's text and the fence of its multi-line fields (one fence for the step,
    longer than any backtick run in any field)."""
    # Blank lines around a field and a field of whitespace alone say nothing: a command
    # ending in a newline stays on its label's line instead of opening a fenced block.
    shown = (
        (label, neutralize(value).lstrip("\n").rstrip())
        for label, value in (("why", reasoning or ""), ("in", render_value(inp)),
                             ("out", render_value(out)))
    )
    fields = [(label, value) for label, value in shown if value.strip()]
    fence = _fence("".join(value for _, value in fields))
    lines = [f"[#{seq}] {block(tool)} ({status})"]
    for label, value in fields:
        if "\n" in value:
            lines.append(f"  {label}:\n{fence}\n{value}\n{fence}")
        else:
            lines.append(f"  {label}: {value}")
    return "\n".join(lines), fence


def _step_text(
    seq: int | str, tool: str, status: str, reasoning: str | None, inp: Any, out: Any
) -> str:
    return _step_parts(seq, tool, status, reasoning, inp, out)[0]


def step_tokens(draft: StepDraft, tokenizer: Tokenizer) -> int:
    """Tokens of a step rendered whole (the seq placeholder stands for up to 9 digits)."""
    text = _step_text(
        "000000000", draft.tool, draft.status, draft.reasoning, draft.input, draft.output
    )
    return tokenizer.count(text)


def _tail(text: str, max_tokens: int, tokenizer: Tokenizer) -> str:
    """The longest suffix of ``text`` within ``max_tokens``, starting at a line if one
    starts in its first half."""
    if max_tokens <= 0:
        return ""
    window = text[-(max_tokens + 1) * _MAX_CHARS_PER_TOKEN :]
    lo, hi = 0, len(window)  # smallest start whose suffix fits
    while lo < hi:
        mid = (lo + hi) // 2
        if tokenizer.count(window[mid:]) <= max_tokens:
            hi = mid
        else:
            lo = mid + 1
    suffix = window[lo:]
    newline = suffix.find("\n")
    if 0 <= newline < len(suffix) // 2:
        suffix = suffix[newline + 1 :]
    return suffix


def render_step(step: Step, tokenizer: Tokenizer, max_tokens: int) -> tuple[str, int]:
    """A step as shown in a context, cut to ``max_tokens``; returns (text, tokens).

    A step over ``max_tokens`` keeps its head (header, reasoning, input) and its tail (the
    end of its output, where a failing run reports what failed), with a marker between.
    An uncut step costs what ``record_step`` counted (``step.tokens``, an upper bound: it
    was counted with a 9-digit seq placeholder), so no text is counted twice.
    """
    text, fence = _step_parts(
        step.seq, step.tool, step.status, step.reasoning, step.input, step.output
    )
    if step.tokens <= max_tokens:
        return text, step.tokens
    marker = f"\n… [step #{step.seq} cut here; full text in the ledger] …\n"
    room = max(max_tokens - tokenizer.count(f"\n{fence}{marker}{fence}\n") - 2, 0)
    head_room = int(room * _HEAD_SHARE)
    # No token of this counter covers more than a few characters of ordinary text, so a
    # generous character prefix bounds the work of cutting a huge step.
    head = tokenizer.truncate(text[: (head_room + 1) * _MAX_CHARS_PER_TOKEN], head_room)
    rest = text[len(head) :]
    tail = _tail(rest, room - tokenizer.count(head), tokenizer)

    def fences_in(part: str) -> int:
        # Only the step's own fence lines consist of that many backticks.
        return sum(1 for line in part.split("\n") if line == fence)

    def join(tail: str) -> str:
        # The marker sits outside any fence: close the head's open block, reopen the
        # block the tail starts inside.
        closes = "\n" + fence if fences_in(head) % 2 else ""
        reopens = fence + "\n" if fences_in(text[: len(text) - len(tail)]) % 2 else ""
        return head.rstrip("\n") + closes + marker + reopens + tail

    cut = join(tail)
    while tokenizer.count(cut) > max_tokens and tail:
        tail = tail[len(tail) // 8 + 1 :]
        cut = join(tail)
    if tokenizer.count(cut) > max_tokens:
        cut = tokenizer.truncate(cut, max_tokens)
    return cut, tokenizer.count(cut)


def render_checkpoint(content: CheckpointContent) -> dict[str, list[str]]:
    """Each non-empty field of a checkpoint as a list of lines, by field name."""
    out: dict[str, list[str]] = {}
    if content.progress:
        out["progress"] = [f"- {block(p)}" for p in content.progress]
    if content.state:
        out["state"] = [
            f"- {block(k)}: {block(render_json(v))}" for k, v in sorted(content.state.items())
        ]
    if content.decisions:
        out["decisions"] = [f"- {block(d)}" for d in content.decisions]
    if content.errors:
        out["errors"] = [f"- {block(e)}" for e in content.errors]
    if content.open_questions:
        out["open_questions"] = [f"- {block(q)}" for q in content.open_questions]
    if content.artifacts:
        out["artifacts"] = [f"- {block(a)}" for a in content.artifacts]
    if content.auto_artifacts:
        # Imported here: its patterns are only needed once a checkpoint holds artifacts.
        from mcp_checkpoint.core.artifacts import render_artifacts

        out["auto_artifacts"] = render_artifacts(content.auto_artifacts, show=block)
    if content.next_actions:
        out["next_actions"] = [
            f"{i}. {block(a)}" for i, a in enumerate(content.next_actions, 1)
        ]
    return out


def render_memory(memory: Memory) -> str:
    """A memory as one line of a context: its content, its kind unless a fact, its scope
    unless global. Ids (random hex, a dozen tokens each) stay out of the text: the
    context lists them in ``memories_included``, in the order of the lines."""
    kind = "" if memory.kind == "fact" else f"({memory.kind}) "
    scope = "" if memory.scope == "global" else f" [{block(memory.scope)}]"
    return f"- {kind}{block(memory.content)}{scope}"
