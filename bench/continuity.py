"""``bench continuity``: which facts of earlier work survive a context reset.

Each SWE-agent trajectory (``--data``, ``*.traj``) is replayed twice:

- **MCP path**: an in-memory MCP client against ``build_server`` — ``start_run``, a
  ``record_step`` per step, ``checkpoint`` (server-side distillation) whenever a step says
  one is due and once at the end; then the reset: ``rehydrate(budget_tokens=B)``, whose
  text block(s) are what the model reads;
- **hook path**: real ``mcp-checkpoint hook claude-code`` processes fed payloads built from
  Claude Code's documented hook schemas — ``UserPromptSubmit`` (the task), a
  ``PostToolUse`` per step (a Bash call: ``command`` = the action, ``stdout`` = the
  observation; ``PostToolUseFailure`` with ``error`` = ``Exit code 1`` and the
  observation when it shows an error line — the MCP path records those with status
  ``error``), ``Stop`` (the last thought), ``PreCompact`` (its ``transcript_path`` holds
  the thoughts as assistant messages); then the reset: ``SessionStart`` with
  ``--budget B``, whose ``additionalContext`` is what the model reads.

Facts are taken from the trajectory's actions and observations, the same way for every
file (nothing here knows the shared data):

- ``file``: paths the actions name (files opened, edited, created, run);
- ``error``: the last error line an observation showed (``...Error: ...``, ``FAILED ...``,
  ``Traceback``...; not warnings), as its text;
- ``identifier``: names written by edits (the body of a multi-line action, a heredoc or
  a redirect; without its terminator line, Python's builtins and the methods of its
  built-in types — ``''.join(``, ``b.decode(``, ``xs.sort(`` name nothing of the work
  that a model could not write back, and the product leaves them out as noise);
- ``commit``: hexadecimal commit ids in the output of git commands;
- ``url``: URLs the actions used.

A fact already in the objective is not counted (the objective is always shown). A fact
survives when it occurs, as a whole token, in the text the model reads. Every text block
is counted with the real o200k_base (bpe-openai, the dev/bench extra).
"""

from __future__ import annotations

import argparse
import builtins
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._client import BenchError
from bench._stats import write_json
from bench._trajectories import (
    Trajectory,
    _occurs,
    extract,
    load_trajectories,
)

__all__ = ["KINDS", "Facts", "add_arguments", "facts_of", "main"]

KINDS = ("file", "error", "identifier", "commit", "url")
BUDGETS = (500, 1000, 2000, 4000)
_URL = re.compile(r"\bhttps?://[^\s'\"<>()\[\]{}`]+")
_ERROR_LINE = re.compile(
    r"^\s*(?:\S*(?:Error|Exception)\b:?.*|FAILED\b.*|Traceback \(most recent call last\).*"
    r"|.*\b(?:error|fatal|panic)(?:\[\w+\])?:.*|.*Segmentation fault.*)$"
)
_WARNING = re.compile(r"^\s*\W*(?:warning|warn|deprecat)", re.IGNORECASE)
_BUILTINS = frozenset(dir(builtins)) | frozenset(
    name
    for kind in (str, bytes, bytearray, list, dict, set, frozenset, tuple, int, float, complex)
    for name in dir(kind)
    if not name.startswith("_")
)
_HEX = re.compile(r"(?<![0-9A-Za-z])[0-9a-f]{7,40}(?![0-9A-Za-z])")
_EDIT_FIRST_WORDS = {"edit", "create", "insert", "append", "str_replace", "write"}


@dataclass
class Facts:
    """The facts of one trajectory, by kind."""

    by_kind: dict[str, set[str]] = field(default_factory=lambda: {k: set() for k in KINDS})

    def total(self) -> int:
        """How many facts there are."""
        return sum(len(v) for v in self.by_kind.values())


def _edit_body(action: str) -> str:
    """The text an action writes into a file, if it is an edit: the lines after the first
    of a multi-line edit command, a heredoc's body, or what a redirect writes."""
    lines = action.strip("\n").split("\n")
    first = lines[0].split()
    if not first:
        return ""
    if len(lines) > 1 and (first[0] in _EDIT_FIRST_WORDS or "<<" in lines[0]):
        body = lines[1:]
        heredoc = re.search(r"<<-?\s*['\"]?(\w+)", lines[0])
        last = body[-1].strip()
        # the terminator of the edit (a heredoc's delimiter, SWE-agent's end_of_edit)
        if (heredoc and last == heredoc.group(1)) or re.fullmatch(r"end_of_\w+|EOF", last):
            body = body[:-1]
        return "\n".join(body)
    if re.search(r"(?:^|\s)(?:>>?|tee)\s+\S", lines[0]) and first[0] in ("echo", "printf"):
        return lines[0]
    if first[0] == "sed" and "-i" in first:
        return lines[0]
    return ""


def facts_of(traj: Trajectory) -> Facts:
    """The facts of earlier work in ``traj`` (see the module docstring)."""
    facts = Facts()
    last_error: str | None = None
    for step in traj.steps:
        action, observation = step.action, step.observation
        paths, _ = extract(action)
        facts.by_kind["file"].update(p for p in paths if not _URL.match(p))
        body = _edit_body(action)
        if body:
            _, names = extract(body)
            facts.by_kind["identifier"].update(n for n in names if n not in _BUILTINS)
        for line in observation.splitlines():
            if (
                len(line) < 400 and _ERROR_LINE.match(line) and not _WARNING.match(line)
                and re.search(r"[A-Za-z]{3}", line)
            ):
                last_error = " ".join(line.split())
        if re.search(r"\bgit\b", action):
            facts.by_kind["commit"].update(
                h for h in _HEX.findall(observation) if re.search(r"[a-f]", h)
                and re.search(r"[0-9]", h)
            )
        facts.by_kind["url"].update(u.rstrip(".,;:!?'\")]}") for u in _URL.findall(action))
    if last_error:
        facts.by_kind["error"].add(last_error[:160])
    for kind in KINDS:
        facts.by_kind[kind] = {
            f for f in facts.by_kind[kind] if not _occurs(f, traj.objective)
        }
    return facts


def failed(observation: str) -> bool:
    """Whether a step's command failed, as its client would report it (the trajectories
    carry no exit status): its output shows an error line (not a warning)."""
    return any(
        _ERROR_LINE.match(line) and not _WARNING.match(line) and re.search(r"[A-Za-z]{3}", line)
        for line in observation.splitlines()
        if len(line) < 400
    )


def survived(facts: Facts, text: str) -> dict[str, tuple[int, int]]:
    """(present, total) per kind in ``text``; an error counts when its line's text occurs
    (whitespace runs normalised)."""
    flat = " ".join(text.split())
    out: dict[str, tuple[int, int]] = {}
    for kind, items in facts.by_kind.items():
        hay = flat if kind == "error" else text
        out[kind] = (sum(1 for f in items if _occurs(f, hay)), len(items))
    return out


# -- the two paths ------------------------------------------------------------------------


async def mcp_contexts(
    traj: Trajectory, budgets: Sequence[int], data_dir: Path
) -> dict[int, list[str]]:
    """The text blocks of ``rehydrate`` after replaying ``traj`` through MCP tools."""
    from mcp import Client
    from mcp_types import TextContent

    from mcp_checkpoint.config import Settings
    from mcp_checkpoint.server.app import build_server

    # No memories are written: the embedder would only cost time.
    settings = Settings(store_url="memory://", data_dir=data_dir, embeddings={"provider": "none"})
    async with Client(build_server(settings)) as client:

        async def call(tool: str, args: dict[str, Any]) -> Any:
            result = await client.call_tool(tool, args)
            if result.is_error:
                text = " ".join(c.text for c in result.content if isinstance(c, TextContent))
                raise BenchError(f"{tool}: {text}")
            return result

        run = (await call("start_run", {"objective": traj.objective})).structured_content
        run_id = run["run_id"]
        for step in traj.steps:
            arguments = {"run_id": run_id, **step.arguments()}
            if failed(step.observation):
                arguments["status"] = "error"
            ack = await call("record_step", arguments)
            if ack.structured_content.get("checkpoint_due"):
                await call("checkpoint", {"run_id": run_id})
        await call("checkpoint", {"run_id": run_id})
        out: dict[int, list[str]] = {}
        for budget in budgets:
            result = await call("rehydrate", {"run_id": run_id, "budget_tokens": budget})
            out[budget] = [c.text for c in result.content if isinstance(c, TextContent)]
        return out


def _hook(payload: dict[str, Any], env: dict[str, str], *args: str) -> str:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "mcp_checkpoint", "hook", "claude-code", *args],
        input=json.dumps(payload).encode(), env=env, capture_output=True, timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"hook exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return done.stdout.decode()


def wait_drained(data_dir: Path) -> None:
    """Wait until no hook event waits in the spool and no drainer applies one (the hook
    processes apply their events in the background)."""
    import fcntl

    hooks = data_dir / "hooks"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        spool = hooks / "spool.jsonl"
        busy = (spool.exists() and spool.stat().st_size > 0) or any(
            hooks.glob("draining-*.jsonl")
        )
        if not busy:
            fd = os.open(hooks / "drain.lock", os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            finally:
                os.close(fd)
        time.sleep(0.05)
    raise BenchError("the hook spool was not drained within 300 s")


def hook_contexts(
    traj: Trajectory, budgets: Sequence[int], data_dir: Path, index: int
) -> tuple[dict[int, list[str]], list[float], float]:
    """The ``additionalContext`` of ``SessionStart(resume)`` for each budget after
    replaying ``traj`` as Claude Code hook events through real hook processes; each
    PostToolUse hook's wall time, and the SessionStart(compact) hook's, in milliseconds."""
    env = {**os.environ, "MCP_CHECKPOINT_DATA_DIR": str(data_dir),
           "MCP_CHECKPOINT_EMBEDDINGS__PROVIDER": "none"}
    env.pop("MCP_CHECKPOINT_STORE_URL", None)
    project = f"/work/project-{index}"
    env["CLAUDE_PROJECT_DIR"] = project
    session = f"bench-{index}-{os.getpid()}"
    transcript = data_dir / f"{session}.jsonl"
    common = {"session_id": session, "transcript_path": str(transcript), "cwd": project,
              "permission_mode": "default"}
    _hook({**common, "hook_event_name": "SessionStart", "source": "startup"}, env)
    _hook({**common, "hook_event_name": "UserPromptSubmit", "prompt": traj.objective}, env)
    times: list[float] = []
    with transcript.open("w", encoding="utf-8") as log:
        for n, step in enumerate(traj.steps):
            if step.thought.strip():
                log.write(json.dumps({"type": "assistant", "uuid": f"{session}-{n}", "message": {
                    "role": "assistant", "content": [{"type": "text", "text": step.thought}]}})
                    + "\n")
                log.flush()
            payload: dict[str, Any] = {
                **common, "hook_event_name": "PostToolUse", "tool_name": "Bash",
                "tool_input": {"command": step.action, "description": step.tool},
                "tool_response": {"stdout": step.observation, "stderr": "",
                                  "interrupted": False, "isImage": False},
                "tool_use_id": f"toolu_{index:02d}_{n:04d}",
            }
            if failed(step.observation):  # as Claude Code reports a command that failed
                del payload["tool_response"]
                payload["hook_event_name"] = "PostToolUseFailure"
                payload["error"] = f"Exit code 1\n{step.observation}"
                payload["is_interrupt"] = False
            start = time.perf_counter()
            _hook(payload, env)
            times.append((time.perf_counter() - start) * 1000.0)
    last = next((s.thought for s in reversed(traj.steps) if s.thought.strip()), "")
    _hook({**common, "hook_event_name": "Stop", "stop_hook_active": False,
           "last_assistant_message": last}, env)
    wait_drained(data_dir)
    _hook({**common, "hook_event_name": "PreCompact", "trigger": "auto",
           "custom_instructions": None}, env)
    start = time.perf_counter()
    compact = _hook({**common, "hook_event_name": "SessionStart", "source": "compact"}, env)
    compact_ms = (time.perf_counter() - start) * 1000.0
    if not compact:
        raise BenchError(f"{traj.name}: SessionStart(compact) printed nothing")
    out: dict[int, list[str]] = {}
    for budget in budgets:
        raw = _hook({**common, "hook_event_name": "SessionStart", "source": "resume"}, env,
                    "--budget", str(budget))
        text = json.loads(raw)["hookSpecificOutput"]["additionalContext"] if raw else ""
        out[budget] = [text]
    return out, times, compact_ms


# -- report -------------------------------------------------------------------------------


def _o200k() -> Any:
    try:
        import bpe_openai
    except ImportError as exc:
        raise BenchError(
            'bench continuity counts with the real o200k_base: pip install "mcp-checkpoint[dev]"'
        ) from exc
    encoding = bpe_openai.get_encoding("o200k_base")
    too_long = bpe_openai.TokenLimitError

    def count(text: str) -> int:
        try:
            return len(encoding.encode_ordinary(text))
        except too_long as exc:
            return int(exc.token_count)

    return count


def _add(tally: dict[str, list[int]], kind: str, present: int, total: int) -> None:
    cell = tally.setdefault(kind, [0, 0])
    cell[0] += present
    cell[1] += total


def _timing(values: Sequence[float]) -> dict[str, float]:
    return {"p50": round(_percentile(values, 50), 1), "p90": round(_percentile(values, 90), 1),
            "n": len(values)}


def hook_latency(steps: Sequence[Any], n: int) -> dict[str, list[float]]:
    """Wall time of ``n`` PostToolUse hook processes (the trajectories' steps, cycled, in
    one session), each paired with a ``python -c pass`` right after it, so that both see
    the same machine load."""
    import subprocess

    times: dict[str, list[float]] = {"hook": [], "pass": []}
    with tempfile.TemporaryDirectory(prefix="mcp-continuity-") as tmp:
        env = {**os.environ, "MCP_CHECKPOINT_DATA_DIR": tmp,
               "MCP_CHECKPOINT_EMBEDDINGS__PROVIDER": "none"}
        env.pop("MCP_CHECKPOINT_STORE_URL", None)
        for i in range(n):
            step = steps[i % len(steps)]
            payload = {
                "session_id": "latency", "transcript_path": f"{tmp}/t.jsonl",
                "cwd": "/work/latency", "permission_mode": "default",
                "hook_event_name": "PostToolUse", "tool_name": "Bash",
                "tool_input": {"command": step.action},
                "tool_response": {"stdout": step.observation, "stderr": "",
                                  "interrupted": False, "isImage": False},
                "tool_use_id": f"toolu_latency_{i:05d}",
            }
            start = time.perf_counter()
            _hook(payload, env)
            times["hook"].append((time.perf_counter() - start) * 1000.0)
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            times["pass"].append((time.perf_counter() - start) * 1000.0)
        wait_drained(Path(tmp))
    return times


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(int(q / 100 * len(ordered)), len(ordered) - 1)]


def run(
    data: Path, budgets: Sequence[int], paths: Iterable[str], events_n: int = 200
) -> dict[str, Any]:
    """Replay every trajectory through the chosen paths; the report."""
    import anyio

    count = _o200k()
    trajectories = load_trajectories(data)
    report: dict[str, Any] = {"data": str(data), "trajectories": len(trajectories),
                              "budgets": list(budgets), "paths": {}}
    facts = [facts_of(t) for t in trajectories]
    report["facts"] = {k: sum(len(f.by_kind[k]) for f in facts) for k in KINDS}
    for path in paths:
        per_budget: dict[int, dict[str, list[int]]] = {b: {} for b in budgets}
        worst: dict[int, float] = dict.fromkeys(budgets, 0.0)
        over: dict[int, int] = dict.fromkeys(budgets, 0)
        hook_ms: list[float] = []
        compact_ms: list[float] = []
        for index, (traj, fact) in enumerate(zip(trajectories, facts, strict=True)):
            sys.stderr.write(f"continuity: {path} {index + 1}/{len(trajectories)} {traj.name}\n")
            with tempfile.TemporaryDirectory(prefix="mcp-continuity-") as tmp:
                if path == "mcp":
                    contexts = anyio.run(mcp_contexts, traj, budgets, Path(tmp))
                else:
                    contexts, times, compact = hook_contexts(traj, budgets, Path(tmp), index)
                    hook_ms += times
                    compact_ms.append(compact)
            for budget, blocks in contexts.items():
                for block in blocks:
                    ratio = count(block) / budget
                    worst[budget] = max(worst[budget], ratio)
                    over[budget] += ratio > 1.0
                for kind, (present, total) in survived(fact, "\n".join(blocks)).items():
                    _add(per_budget[budget], kind, present, total)
        section: dict[str, Any] = {}
        for budget in budgets:
            tally = per_budget[budget]
            present = sum(v[0] for v in tally.values())
            total = sum(v[1] for v in tally.values())
            section[str(budget)] = {
                "survival": round(present / total, 3) if total else None,
                "by_kind": {k: round(v[0] / v[1], 3) if v[1] else None
                            for k, v in tally.items()},
                "max_tokens_over_budget": round(worst[budget], 3),
                "contexts_over_budget": over[budget],
            }
        if hook_ms:
            section["replay_post_tool_use_ms"] = _timing(hook_ms)
            section["session_start_compact_ms"] = _timing(compact_ms)
            events = [s for t in trajectories for s in t.steps]
            paired = hook_latency(events, events_n)
            section["post_tool_use_ms"] = _timing(paired["hook"])
            section["python_pass_ms"] = _timing(paired["pass"])
        report["paths"][path] = section
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``bench continuity``."""
    parser.add_argument("--data", required=True, type=Path, help="folder of SWE-agent *.traj")
    parser.add_argument("--budgets", default=",".join(map(str, BUDGETS)),
                        help="comma-separated rehydrate budgets (default 500,1000,2000,4000)")
    parser.add_argument("--paths", default="mcp,hook", help="mcp, hook or mcp,hook")
    parser.add_argument("--hook-events", type=int, default=200,
                        help="PostToolUse hook processes timed, each paired with a "
                        "'python -c pass' (default 200)")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")


def main(args: argparse.Namespace) -> int:
    """Run the benchmark and print its report."""
    budgets = [int(b) for b in str(args.budgets).split(",") if b.strip()]
    paths = [p.strip() for p in str(args.paths).split(",") if p.strip()]
    if not budgets or any(b < 128 for b in budgets):
        raise SystemExit("--budgets: comma-separated budgets of at least 128 tokens")
    if not paths or any(p not in ("mcp", "hook") for p in paths):
        raise SystemExit("--paths: mcp, hook or mcp,hook")
    try:
        report = run(args.data, budgets, paths, max(int(args.hook_events), 1))
    except BenchError as exc:
        sys.stderr.write(f"bench continuity: {exc}\n")
        return 1
    print_report(report)
    write_json(report, args.json)
    return 0


def print_report(report: dict[str, Any]) -> None:
    """The report as tables on stdout."""
    facts = report["facts"]
    sys.stdout.write(
        f"{report['trajectories']} trajectories from {report['data']}; facts: "
        + ", ".join(f"{k} {facts[k]}" for k in KINDS) + "\n"
    )
    for path, section in report["paths"].items():
        sys.stdout.write(f"\n{path} path\n")
        sys.stdout.write(f"{'budget':>7} {'survival':>9} " + " ".join(f"{k:>10}" for k in KINDS)
                         + f" {'max tok/budget':>15} {'over':>5}\n")
        for budget in report["budgets"]:
            row = section[str(budget)]
            kinds = " ".join(
                f"{row['by_kind'].get(k) if row['by_kind'].get(k) is not None else '-':>10}"
                for k in KINDS
            )
            sys.stdout.write(f"{budget:>7} {row['survival']!s:>9} {kinds} "
                             f"{row['max_tokens_over_budget']:>15} "
                             f"{row['contexts_over_budget']:>5}\n")
        for key, label in (("post_tool_use_ms", "PostToolUse hook"),
                           ("replay_post_tool_use_ms", "PostToolUse hook (replay)"),
                           ("session_start_compact_ms", "SessionStart(compact) hook"),
                           ("python_pass_ms", "python -c pass")):
            if key in section:
                ms = section[key]
                sys.stdout.write(f"{label} wall time: p50 {ms['p50']} ms, p90 {ms['p90']} ms "
                                 f"(n={ms['n']})\n")
