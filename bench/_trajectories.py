"""The SWE-agent trajectories the benchmarks replay, and our own extraction of the paths and
identifiers they name (independent of ``core/distill.py``, so a benchmark does not grade the
product with the product's own rules).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bench._client import BenchError
from mcp_checkpoint.core.models import StepDraft

__all__ = ["TrajStep", "Trajectory", "extract", "load_trajectories"]

_MAX_OBJECTIVE_CHARS = 4000  # well under the server's default limits.max_text_chars
_MAX_TOOL_CHARS = 64


@dataclass(frozen=True)
class TrajStep:
    """One SWE-agent step, as record_step arguments."""

    tool: str
    action: str
    observation: str
    thought: str

    def arguments(self) -> dict[str, Any]:
        """record_step's arguments (without run_id)."""
        return {
            "tool": self.tool,
            "input": self.action,
            "output": self.observation,
            "reasoning": self.thought,
        }

    def draft(self) -> StepDraft:
        """The same step as the core sees it."""
        return StepDraft(
            tool=self.tool, input=self.action, output=self.observation, reasoning=self.thought
        )


@dataclass(frozen=True)
class Trajectory:
    """A trajectory file: its objective and steps."""

    name: str
    objective: str
    objective_source: Literal["problem statement", "first thought"]
    steps: list[TrajStep]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # chat content as a list of {type, text} parts
        return "\n".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in value)
    return str(value)


def _problem_statement(doc: dict[str, Any]) -> str | None:
    """The task of a SWE-agent trajectory: an explicit ``problem_statement`` field if the
    file has one, else the first user message of ``history`` up to its INSTRUCTIONS."""
    for holder in (doc, doc.get("info") or {}, doc.get("environment") or {}):
        if isinstance(holder, dict) and isinstance(holder.get("problem_statement"), str):
            return holder["problem_statement"].strip() or None
    for message in doc.get("history") or []:
        if isinstance(message, dict) and message.get("role") == "user":
            text = _text(message.get("content"))
            text = re.split(r"\n\s*INSTRUCTIONS:", text, maxsplit=1)[0].strip()
            return text or None
    return None


def _tool_of(action: str) -> str:
    words = action.split()
    return words[0][:_MAX_TOOL_CHARS] if words else "(empty)"


def load_trajectories(folder: Path) -> list[Trajectory]:
    """Every ``*.traj`` file in ``folder``, by name. BenchError when there is none or a
    file is not a trajectory."""
    if not folder.is_dir():
        raise BenchError(f"--data {folder} is not a folder")
    found: list[Trajectory] = []
    for path in sorted(folder.glob("*.traj")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BenchError(f"cannot read {path}: {exc}") from exc
        raw = doc.get("trajectory") if isinstance(doc, dict) else None
        if not isinstance(raw, list) or not raw:
            raise BenchError(f"{path} has no 'trajectory' list of steps")
        steps = [
            TrajStep(
                tool=_tool_of(_text(s.get("action"))),
                action=_text(s.get("action")),
                observation=_text(s.get("observation")),
                thought=_text(s.get("thought")),
            )
            for s in raw
            if isinstance(s, dict)
        ]
        statement = _problem_statement(doc)
        source: Literal["problem statement", "first thought"] = "problem statement"
        if statement is None:
            statement, source = steps[0].thought.strip() or path.stem, "first thought"
        found.append(Trajectory(path.stem, statement[:_MAX_OBJECTIVE_CHARS], source, steps))
    if not found:
        raise BenchError(f"no *.traj files in {folder}")
    return found


# -- our own extraction of paths and identifiers ---------------------------------------

_EXTENSIONS = (
    "py|pyc|ipynb|c|h|cc|cpp|hpp|rs|go|js|mjs|ts|tsx|jsx|java|kt|rb|php|pl|sh|bash|zsh|"
    "txt|md|rst|json|jsonl|yaml|yml|toml|ini|cfg|conf|xml|html|htm|css|csv|tsv|log|out|"
    "enc|bin|elf|so|o|a|exe|dll|zip|tar|gz|tgz|bz2|xz|7z|pcap|pcapng|png|jpg|jpeg|gif|"
    "bmp|pdf|mp3|mp4|mpeg|m4v|avi|wav|db|sqlite|sql|pem|key|crt|der|pub|asm|s|patch|diff|"
    "lock|traj"
)
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()\[\]{}`]+")
_SLASHED = re.compile(
    r"(?<![\w.~/-])(?:~|\.{1,2})?/?[\w.+@-]+(?:/[\w.+@-]+)+/?"  # a/b, /a/b, ./a, ~/a
    r"|(?<![\w.~/-])/[\w.+@-]+"  # /a (kept only with a file extension)
)
_FILE = re.compile(
    rf"(?<![\w./-])[\w+-]+(?:\.[\w+-]+)*\.(?:{_EXTENSIONS})(?![\w/-])", re.IGNORECASE
)
_HAS_EXT = re.compile(rf"\.(?:{_EXTENSIONS})$", re.IGNORECASE)
_SNAKE = re.compile(r"(?<!\w)[A-Za-z_][A-Za-z0-9]*_[A-Za-z0-9_]*(?!\w)")
_CAMEL = re.compile(r"(?<!\w)[a-z][a-z0-9]*(?:[A-Z][a-z0-9]+)+(?!\w)")
_PASCAL = re.compile(r"(?<!\w)[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]+)+(?!\w)")
_CALL = re.compile(r"(?<!\w)([A-Za-z_]\w{2,})\(")
_TRAILING = ".,;:!?'\")]}"
_MAX_ITEM_CHARS = 100


def _keep_path(candidate: str) -> bool:
    """Slash-separated words are a path when absolute (or ./, ../, ~/) with two segments,
    or with a file extension, or with at least three segments ('n/a', 'and/or', '1/2' and
    HTML closing tags are not paths)."""
    if not re.search(r"[A-Za-z]", candidate):
        return False
    segments = [s for s in candidate.strip("/").split("/") if s not in ("", ".", "..", "~")]
    if _HAS_EXT.search(candidate):
        return True
    rooted = candidate.startswith(("/", "./", "../", "~/"))
    return len(segments) >= 3 or (rooted and len(segments) >= 2)


def extract(text: str) -> tuple[set[str], set[str]]:
    """(paths, identifiers) named in ``text``. Paths: URLs, slashed paths, file names with
    a known extension. Identifiers: snake_case, camelCase, PascalCase with two humps, and
    names called as ``name(``; at least 3 characters, outside the paths found."""
    paths: set[str] = set()
    rest = text
    for pattern in (_URL, _SLASHED, _FILE):
        found: list[str] = []
        for match in pattern.finditer(rest):
            item = match.group(0).rstrip(_TRAILING)
            if pattern is _URL or pattern is _FILE or _keep_path(item):
                found.append(item.rstrip("/") if len(item) > 1 else item)
        paths.update(p for p in found if 3 <= len(p) <= _MAX_ITEM_CHARS)
        rest = pattern.sub(" ", rest)
    names: set[str] = set()
    for pattern in (_SNAKE, _CAMEL, _PASCAL, _CALL):
        for match in pattern.finditer(rest):
            name = match.group(1) if pattern is _CALL else match.group(0)
            if 3 <= len(name) <= _MAX_ITEM_CHARS and re.search(r"[A-Za-z]", name):
                names.add(name)
    return paths, names


def _occurs(item: str, text: str) -> bool:
    """``item`` appears in ``text`` as a whole token (not inside a longer word)."""
    start = text.find(item)
    while start != -1:
        end = start + len(item)
        before = text[start - 1] if start > 0 else " "
        after = text[end] if end < len(text) else " "
        if not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_"):
            return True
        start = text.find(item, start + 1)
    return False


def _kept(items: Iterable[str], text: str) -> set[str]:
    return {item for item in items if _occurs(item, text)}
