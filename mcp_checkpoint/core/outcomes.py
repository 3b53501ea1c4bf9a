"""What a step's output says happened: did it fail, which lines say how, and which earlier
errors and planned actions the later steps settle.

The rules hold for tool output in general, not for one tool: a failure shows as a
traceback ending in an exception line, test ids marked FAILED (pytest, cargo, go,
unittest), a compiler or package-manager error line, or a non-zero exit code; the line
that matters is the last exception line and the FAILED ids, which sit at the *end* of a
long output. An error is settled when a later step runs the same command, or shows the
same tests, passing. A planned action is done when a later step that did not fail does
what it says (commits, pushes, opens the pull request, installs, runs the tests, runs the
command it quotes, creates the file it names).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mcp_checkpoint.core.models import Step
from mcp_checkpoint.core.render import render_value

__all__ = [
    "ErrorNote",
    "Outcome",
    "command_of",
    "error_entry",
    "is_thought",
    "open_actions",
    "outcome",
    "parse_error",
    "unresolved",
]

_COMMAND_CHARS = 80
_LINE_CHARS = 200
_ERROR_CHARS = 400
_MAX_FAILED_IDS = 3
_MAX_LINE_CHARS = 2000
_HEAD_CHARS = 8_000
_TAIL_CHARS = 32_000

_TRACEBACK = re.compile(
    r"Traceback \(most recent call last\)|^[ \t]*File \"[^\"\n]+\", line \d+", re.M
)
_EXCEPTION_LINE = re.compile(
    r"^(?:E\s+)?((?:[A-Za-z_][\w]*\.)*[A-Z]\w*(?:Error|Exception|Exit|Interrupt|Failure|Fault"
    r"|Warning|Timeout|Refused|NotFound|Denied)(?::\s.*|:?)$)"
)
_PYTEST_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)(?: - (.*))?$")
_TEST_FAILED = re.compile(
    r"^test ([\w:]+) \.\.\. FAILED$"  # cargo / libtest
    r"|^[ \t]*--- FAIL: (\w+)"  # go test
    r"|^(?:FAIL|ERROR): (\w+ \([\w.]+\))"  # unittest
    r"|^[ \t]*(?:✕|×|✗) (.+?)(?: \(\d+ ?m?s\))?$"  # jest / vitest / mocha
)
_SUMMARY = re.compile(
    r"^=+ (.*\b\d+ (?:failed|passed|errors?)\b.*) =+$"  # pytest
    r"|^(test result: .*)$"  # cargo
    r"|^(Tests?:\s+.*\b(?:failed|passed)\b.*)$"  # jest
    r"|^((?:FAILED|OK) \((?:failures|errors|skipped)?.*\))$"  # unittest
    r"|^(Ran \d+ tests? in .*)$",
    re.I,
)
_SUMMARY_FAILED = re.compile(r"\b[1-9]\d* (?:failed|errors?)\b|\bFAILED\b|\bfailures=[1-9]", re.I)
_SUMMARY_PASSED = re.compile(r"\b[1-9]\d* passed\b|\bOK\b|test result: ok\b", re.I)
_TOOL_ERROR = re.compile(
    r"^(?:(?:error(?:\[E\d+\])?|fatal error|fatal|Error|ERROR|panic|FATAL|Segmentation fault)"
    r"\b|(?:npm )?ERR! \S|.*: command not found|.*: No such file or directory)"
)
_LOCATION = re.compile(r"^\s*--> \S+:\d+")
_EXIT = re.compile(
    r"(?:exit(?:ed)?(?: with)?(?: code| status)|exit code|returned non-zero exit status|"
    r"process completed with exit code)[ :=]*(-?\d+)",
    re.I,
)
_HINT = re.compile(r"^(?:hint|note|help|warning|npm WARN):", re.I)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TEST_RUN = re.compile(
    r"\b(?:pytest|py\.test|tox|nox|unittest|jest|vitest|mocha|rspec|phpunit|ctest)\b"
    r"|\b(?:cargo|go|npm|pnpm|yarn|bun|deno|dotnet|mix|make|gradle|mvn)\s+(?:run\s+)?test\b"
)
_THOUGHT_TOOLS = frozenset({"thought", "think", "thinking", "reasoning", "message", "note"})


def _clean(text: str) -> str:
    return _ANSI.sub("", text).strip()


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


_COMMAND_KEYS = ("command", "cmd", "script", "query", "code", "file_path", "path", "url")


def command_of(step: Step) -> str:
    """The step's input as one short line: its command for a shell step (also inside a
    JSON input such as ``{"command": ...}``), else the input itself."""
    value = step.input
    if isinstance(value, dict):
        value = next(
            (value[k] for k in _COMMAND_KEYS if isinstance(value.get(k), str)), value
        )
    rendered = render_value(value).strip()
    first = rendered.splitlines()[0] if rendered else ""
    return _cut(first, _COMMAND_CHARS)


@dataclass(frozen=True)
class Outcome:
    """What a step's output shows."""

    failed: bool
    lines: tuple[str, ...]  # the failing lines, or the line that says what happened
    failed_tests: tuple[str, ...]
    passed_tests: tuple[str, ...]
    tests_passed: bool  # a test summary that shows passes and no failure


def _lines(text: str) -> list[str]:
    """The non-empty lines of ``text`` that could say something (a line of thousands of
    characters is data, not a message)."""
    return [
        line.rstrip()
        for line in _clean(text).splitlines()
        if line.strip() and len(line) <= _MAX_LINE_CHARS
    ]


def outcome(step: Step) -> Outcome:
    """Read a step's output: whether it failed, and the lines that say so (the last
    exception line, FAILED ids, a tool's error line, a non-zero exit code)."""
    text = render_value(step.output)
    if len(text) > _HEAD_CHARS + _TAIL_CHARS:  # what a failure says sits at the end
        text = text[:_HEAD_CHARS] + "\n" + text[-_TAIL_CHARS:]
    lines = _lines(text)
    failed_ids: list[str] = []
    key: list[str] = []
    passed_ids = re.findall(r"^(\S{1,300}::\S{1,300}) PASSED\b", text, re.M)
    passed_ids += re.findall(r"^test ([\w:]+) \.\.\. ok$", text, re.M)
    passed_ids += re.findall(r"^[ \t]*--- PASS: (\w+)", text, re.M)
    summary = ""
    for line in lines:
        found = _PYTEST_FAILED.match(line)
        if found:
            failed_ids.append(found.group(1))
            if len(key) < _MAX_FAILED_IDS:
                key.append(_cut(line, _LINE_CHARS))
            continue
        other = _TEST_FAILED.match(line)
        if other:
            test = next(g for g in other.groups() if g)
            failed_ids.append(test)
            if len(key) < _MAX_FAILED_IDS:
                key.append(_cut(line.strip(), _LINE_CHARS))
            continue
        stats = _SUMMARY.match(line.strip())
        if stats:
            summary = next(g for g in stats.groups() if g)
    if len(failed_ids) > _MAX_FAILED_IDS:
        key.append(f"… {len(failed_ids) - _MAX_FAILED_IDS} more failed")
    summary_failed = bool(summary and _SUMMARY_FAILED.search(summary))
    tests_passed = bool(summary and _SUMMARY_PASSED.search(summary) and not summary_failed)
    if summary_failed:
        key.append(_cut(summary, _LINE_CHARS))
    # The last exception line of a traceback (or of pytest's E lines).
    if not failed_ids and (_TRACEBACK.search(text) or step.status == "error"):
        for line in reversed(lines):
            found = _EXCEPTION_LINE.match(line.strip())
            if found:
                key.append(_cut(found.group(1), _LINE_CHARS))
                break
    if not key:
        errors = [i for i, line in enumerate(lines) if _TOOL_ERROR.match(line.strip())]
        if errors:
            first = errors[0]
            key.append(_cut(lines[first].strip(), _LINE_CHARS))
            nxt = lines[first + 1] if first + 1 < len(lines) else ""
            if _LOCATION.match(nxt):
                key.append(_cut(nxt.strip(), _LINE_CHARS))
            last = errors[-1]
            if last != first and not lines[last].lstrip().startswith(("npm ERR!", "ERR!")):
                key.append(_cut(lines[last].strip(), _LINE_CHARS))
    exit_code = next((m for m in _EXIT.findall(text) if m not in ("0", "-0")), None)
    if exit_code is not None:
        key.append(f"exit code {exit_code}")
    failed = step.status == "error" or bool(failed_ids) or summary_failed or bool(
        key and (exit_code is not None or _TRACEBACK.search(text))
    )
    if failed and not key:
        tail = [line for line in lines if not _HINT.match(line.strip())]
        key.append(_cut(tail[-1].strip(), _LINE_CHARS) if tail else "failed")
    if not failed:
        key = [_success_line(step, lines, summary)]
    return Outcome(
        failed=failed,
        lines=tuple(k for k in key if k),
        failed_tests=tuple(dict.fromkeys(failed_ids)),
        passed_tests=tuple(dict.fromkeys(passed_ids)),
        tests_passed=tests_passed,
    )


def _success_line(step: Step, lines: Sequence[str], summary: str) -> str:
    if summary:
        return _cut(summary, _LINE_CHARS)
    if lines:
        return _cut(lines[0].strip(), _LINE_CHARS)
    if step.reasoning:
        return _cut(step.reasoning, _LINE_CHARS)
    return ""


def is_thought(step: Step) -> bool:
    """A step that records thinking rather than a tool call."""
    return step.tool.strip().lower() in _THOUGHT_TOOLS


# -- errors that later steps settle -------------------------------------------------------


@dataclass(frozen=True)
class ErrorNote:
    """An entry of a checkpoint's ``errors``, read back: which step, which command, which
    tests."""

    text: str
    seq: int
    command: str
    tests: tuple[str, ...]


_ENTRY = re.compile(r"^#(\d+) (\S+)(?: `([^`]*)`)?: ")
_TEST_ID = re.compile(r"(?<![\w./-])((?:[\w.-]+/)*[\w.-]+\.py::[\w.:\[\]-]+)")


def parse_error(text: str) -> ErrorNote:
    """Read an errors entry (``#12 bash `pytest -q`: FAILED t.py::test_x - ...``); a
    free-form entry (a model's) has seq 0 and no command, and keeps the test ids it names."""
    found = _ENTRY.match(text)
    seq = int(found.group(1)) if found else 0
    command = (found.group(3) or "") if found else ""
    tests = tuple(dict.fromkeys(_TEST_ID.findall(text)))
    return ErrorNote(text, seq, command, tests)


def error_entry(step: Step, result: Outcome) -> str:
    """How an error reads in a checkpoint: the step, its command, the failing lines."""
    command = command_of(step)
    head = f"#{step.seq} {step.tool}"
    if command and command != step.tool:
        head += " `" + command.replace("`", "'") + "`"
    return _cut(f"{head}: {' | '.join(result.lines) or 'failed'}", _ERROR_CHARS)


def _settles(note: ErrorNote, step: Step, result: Outcome) -> bool:
    if result.failed or step.seq <= note.seq:
        return False
    if note.command and command_of(step) == note.command:
        return True
    if note.tests:
        command = render_value(step.input)
        shown = set(result.passed_tests)
        for test in note.tests:
            if test in shown:
                continue
            ran = test in command or test.split("::")[0] in command or not command.strip()
            if not (result.tests_passed and ran and _TEST_RUN.search(command)):
                return False
        return True
    return False


def unresolved(
    notes: Sequence[ErrorNote], steps: Sequence[Step], results: Sequence[Outcome]
) -> list[ErrorNote]:
    """The errors no later step settles; of several failures of one command, the newest."""
    kept: list[ErrorNote] = []
    for note in notes:
        if any(_settles(note, s, r) for s, r in zip(steps, results, strict=True)):
            continue
        if note.command:
            kept = [k for k in kept if k.command != note.command or k.seq > note.seq]
            if any(k.command == note.command and k.seq > note.seq for k in kept):
                continue
        kept.append(note)
    return kept


# -- planned actions that later steps did -------------------------------------------------

_GIT = r"(?<![\w-])git\s+(?:-\S+\s+){0,6}"
_INTENTS: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = (
    (
        re.compile(r"\b(?:open|create|submit|file|raise|send|make|push)\b.{0,200}\b(?:PR|pull "
                   r"request|merge request|MR)\b|\b(?:PR|pull request)\b", re.I),
        re.compile(r"\bgh\s+pr\s+create\b|\bglab\s+mr\s+create\b|/pull/\d+|/merge_requests/\d+"),
    ),
    (
        re.compile(r"\bcommit\b(?!\s+(?:hash|id|sha|message)\b)", re.I),
        re.compile(_GIT + r"commit\b"),
    ),
    (re.compile(r"\bpush\b", re.I), re.compile(_GIT + r"push\b")),
    (re.compile(r"\btag\b", re.I), re.compile(_GIT + r"tag\b")),
    (
        re.compile(r"\bmerge\b(?!\s+request)", re.I),
        re.compile(_GIT + r"merge\b|\bgh\s+pr\s+merge\b"),
    ),
    (
        re.compile(r"\binstall\b", re.I),
        re.compile(r"\b(?:pip3?|uv(?: pip)?|poetry|npm|yarn|pnpm|bun|cargo|apt(?:-get)?|brew"
                   r"|gem|go)\s+(?:install|add|get|i)\b"),
    ),
)
_COMMIT_AND = re.compile(r"\b(?:commit|push)\b.{0,200}?\b(?:and|then)\b", re.I)
_RUN_TESTS = re.compile(
    r"\b(?:run|rerun|re-run|execute|check)\b.{0,200}?\b(?:tests?|test suite|pytest|specs?)\b",
    re.I,
)
_QUOTED = re.compile(r"`([^`]{3,})`")
_CREATE = re.compile(r"\b(?:create|add|write|new)\b", re.I)
_WRITE_TOOL = re.compile(r"(?i)write|create|touch|edit|str_replace|insert|tee|save|>")


def _done(action: str, steps: Sequence[Step], results: Sequence[Outcome]) -> bool:
    done_steps = [(s, r) for s, r in zip(steps, results, strict=True) if not r.failed]
    if not done_steps:
        return False
    commands = [render_value(s.input) for s, _ in done_steps]
    outputs = [
        c + "\n" + render_value(s.output) for c, (s, _) in zip(commands, done_steps, strict=True)
    ]
    wanted: list[bool] = []
    pr_intent = _INTENTS[0][0].search(action) is not None
    for index, (says, does) in enumerate(_INTENTS):
        if not says.search(action):
            continue
        if index in (1, 2) and pr_intent and not _COMMIT_AND.search(action):
            continue  # "push a PR" / "open a PR" is the PR intent, not a bare push
        haystack = outputs if index == 0 else commands  # a PR shows in the output (its URL)
        wanted.append(any(does.search(t) for t in haystack))
    if _RUN_TESTS.search(action):
        wanted.append(any(
            _TEST_RUN.search(c) and r.tests_passed
            for c, (_, r) in zip(commands, done_steps, strict=True)
        ))
    quoted = [q.strip() for q in _QUOTED.findall(action) if " " in q.strip()]  # commands
    wanted += [any(q in c for c in commands) for q in quoted]
    if _CREATE.search(action):
        paths = re.findall(r"(?<![\w/.-])((?:[\w.-]+/)*[\w-]+\.[A-Za-z0-9]{1,8})\b", action)
        wanted += [
            any(
                path in c and bool(_WRITE_TOOL.search(s.tool) or _WRITE_TOOL.search(c))
                for c, (s, _) in zip(commands, done_steps, strict=True)
            )
            for path in paths
        ]
    return bool(wanted) and all(wanted)


def open_actions(
    actions: Sequence[str], steps: Sequence[Step], results: Sequence[Outcome]
) -> list[str]:
    """The planned actions that ``steps`` (which came after the plan) did not yet do."""
    return [a for a in actions if not _done(a, steps, results)]
