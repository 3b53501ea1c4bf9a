"""``bench hooks``: wall time of client hook processes, from process start to exit.

Each timed event is one real process running the command ``mcp-checkpoint install`` writes
into the client's settings (the absolute path of the console script, ``hook <client>``),
fed on stdin a payload built from the client's documented hook schema, exactly as the
client would run it. Each is paired with a ``python -c pass`` of the same interpreter
right after it, so that both see the same machine load; CPU time (user + system) of both
is taken from ``getrusage``. The load average is read before and after.

- ``PostToolUse`` (``--events``, default 200): one session, tool calls of several kinds
  and sizes (Bash with short and long output, Edit, Read, Grep), a failure now and then;
  the detached drainer applies them in the background, as in a real session;
- ``SessionStart(compact)`` (``--sessions``, default 10): per session a prompt, 20 tool
  calls, ``Stop``, ``PreCompact`` (timed too), then the ``SessionStart`` with source
  ``compact`` that Claude Code runs right after compacting;
- other clients (``--client``): their per-tool-call event and their context-injecting
  event on compaction or start, where they have one.

Bytecode: an installed wheel ships compiled ``.pyc`` files; a checkout run with
``PYTHONDONTWRITEBYTECODE`` would compile every module on every hook. By default the hook
processes get a private ``PYTHONPYCACHEPREFIX`` (warmed before timing); ``--no-bytecode``
measures the compile-every-time case.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench._client import BenchError
from bench._stats import write_json
from bench.continuity import wait_drained

__all__ = ["add_arguments", "main", "payloads"]

_PROJECT = "/home/dev/shop"


def _common(client: str, session: str, data_dir: Path) -> dict[str, Any]:
    if client == "gemini-cli":  # hooks reference: base input schema
        return {"session_id": session, "transcript_path": f"{data_dir}/{session}.json",
                "cwd": _PROJECT, "timestamp": _now()}
    if client == "codex":  # generated hook schemas: common fields
        return {"session_id": session, "transcript_path": None, "cwd": _PROJECT,
                "model": "gpt-5-codex", "turn_id": f"turn-{session}",
                "permission_mode": "default"}
    return {"session_id": session, "transcript_path": f"{data_dir}/{session}.jsonl",
            "cwd": _PROJECT, "permission_mode": "default"}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 10**9:09d}Z"


def _claude_tool_call(i: int, session: str, data_dir: Path) -> dict[str, Any]:
    """The ``i``-th PostToolUse / PostToolUseFailure payload of a session (hooks reference:
    ``tool_name``, ``tool_input``, ``tool_response``, ``tool_use_id``)."""
    base = {**_common("claude-code", session, data_dir), "hook_event_name": "PostToolUse",
            "tool_use_id": f"toolu_{session}_{i:05d}"}
    kind = i % 8
    if kind in (0, 1, 2):
        lines = (3, 60, 600)[kind]
        out = "\n".join(f"tests/test_mod{n}.py::test_case_{n} PASSED" for n in range(lines))
        return {**base, "tool_name": "Bash",
                "tool_input": {"command": f"pytest -q tests -k case_{i}",
                               "description": "Run the tests"},
                "tool_response": {"stdout": out, "stderr": "", "interrupted": False,
                                  "isImage": False}}
    if kind == 3:
        return {**base, "tool_name": "Edit",
                "tool_input": {"file_path": f"{_PROJECT}/src/cart_{i}.py",
                               "old_string": "return total",
                               "new_string": f"return apply_discount_{i}(total)"},
                "tool_response": {"filePath": f"{_PROJECT}/src/cart_{i}.py",
                                  "oldString": "return total",
                                  "newString": f"return apply_discount_{i}(total)",
                                  "structuredPatch": []}}
    if kind == 4:
        body = "\n".join(f"{n:>6}\tdef function_{n}(x):  return x + {n}" for n in range(200))
        return {**base, "tool_name": "Read",
                "tool_input": {"file_path": f"{_PROJECT}/src/util_{i}.py"},
                "tool_response": {"type": "text", "file": {
                    "filePath": f"{_PROJECT}/src/util_{i}.py", "content": body,
                    "numLines": 200, "startLine": 1, "totalLines": 200}}}
    if kind == 5:
        return {**base, "tool_name": "Grep",
                "tool_input": {"pattern": "apply_discount", "path": _PROJECT},
                "tool_response": {"mode": "files_with_matches", "numFiles": 3,
                                  "filenames": [f"{_PROJECT}/src/cart_{n}.py" for n in range(3)]}}
    if kind == 6:
        return {**base, "hook_event_name": "PostToolUseFailure", "tool_name": "Bash",
                "tool_input": {"command": "pytest -q tests/test_cart.py"},
                "error": "Exit code 1\nFAILED tests/test_cart.py::test_total - AssertionError",
                "is_interrupt": False}
    return {**base, "tool_name": "Bash",
            "tool_input": {"command": "git status --short"},
            "tool_response": {"stdout": " M src/cart.py\n?? notes.txt", "stderr": "",
                              "interrupted": False, "isImage": False}}


def _other_tool_call(client: str) -> Callable[[int, str, Path], dict[str, Any]]:
    """Tool calls of Gemini CLI (AfterTool: ``tool_response`` with ``llmContent``,
    ``returnDisplay``, ``error`` on failure) or Codex (PostToolUse, Claude Code's fields)
    with the same mix of sizes as Claude Code's."""

    def build(i: int, session: str, data_dir: Path) -> dict[str, Any]:
        claude = _claude_tool_call(i, session, data_dir)
        base = _common(client, session, data_dir)
        response = claude.get("tool_response") or {"error": claude.get("error")}
        text = json.dumps(response) if not isinstance(response, str) else response
        if client == "gemini-cli":
            tool = {"Bash": "run_shell_command", "Edit": "replace", "Read": "read_file",
                    "Grep": "search_file_content"}[claude["tool_name"]]
            out: dict[str, Any] = {"llmContent": text, "returnDisplay": text[:200]}
            if "error" in claude:
                out["error"] = claude["error"]
            return {**base, "hook_event_name": "AfterTool", "tool_name": tool,
                    "tool_input": claude["tool_input"], "tool_response": out}
        return {**base, "hook_event_name": "PostToolUse", "tool_name": claude["tool_name"],
                "tool_input": claude["tool_input"], "tool_response": text,
                "tool_use_id": f"call_{session}_{i:05d}"}

    return build


def payloads(client: str) -> dict[str, Callable[..., dict[str, Any]]]:
    """The payload builders of ``client``: ``tool`` (i, session, data_dir), ``prompt``,
    ``stop``, ``compact`` and ``start_after_compact`` (session, data_dir)."""
    if client not in _LABELS:
        raise BenchError(f"no hook payloads for the client {client!r}")

    def event(name: str, **fields: Any) -> Callable[[str, Path], dict[str, Any]]:
        return lambda session, data_dir: {
            **_common(client, session, data_dir), "hook_event_name": name, **fields}

    if client == "gemini-cli":
        return {
            "tool": _other_tool_call(client),
            "prompt": event("BeforeAgent", prompt="Add a discount to the cart total"),
            "stop": event("AfterAgent", prompt="Add a discount to the cart total",
                          prompt_response="The discount is applied; tests pass.",
                          stop_hook_active=False),
            "compact": event("PreCompress", trigger="auto"),
            "start_after_compact": event("BeforeAgent", prompt="Now the docs"),
        }
    if client == "codex":
        return {
            "tool": _other_tool_call(client),
            "prompt": event("UserPromptSubmit", prompt="Add a discount to the cart total"),
            "stop": event("Stop", stop_hook_active=False,
                          last_assistant_message="The discount is applied; tests pass."),
            "compact": event("PreCompact", trigger="auto"),
            "start_after_compact": event("UserPromptSubmit", prompt="Now the docs"),
        }

    return {
        "tool": _claude_tool_call,
        "prompt": event("UserPromptSubmit", prompt="Add a discount to the cart total"),
        "stop": event("Stop", stop_hook_active=False,
                      last_assistant_message="The discount is applied; tests pass."),
        "compact": event("PreCompact", trigger="auto", custom_instructions=""),
        "start_after_compact": event("SessionStart", source="compact"),
    }


class _Runner:
    """Runs hook processes and ``python -c pass`` in one environment; times both."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv = argv
        self.env = env
        self.data_dir = Path(env["MCP_CHECKPOINT_DATA_DIR"])

    def _timed(self, argv: list[str], stdin: bytes) -> tuple[float, float, bytes]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(argv, input=stdin, env=self.env, capture_output=True,
                              timeout=120, check=False)
        wall = (time.perf_counter() - start) * 1000.0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000.0
        if done.returncode != 0:
            raise BenchError(f"{shlex.join(argv)} exited {done.returncode}: "
                             f"{done.stderr.decode()[-500:]}")
        return wall, cpu, done.stdout

    def hook(self, payload: dict[str, Any]) -> tuple[float, float, bytes]:
        return self._timed(self.argv, json.dumps(payload).encode())

    def baseline(self) -> tuple[float, float, bytes]:
        return self._timed([sys.executable, "-c", "pass"], b"")

    def drained(self) -> None:
        """Wait until no event waits in the spool and no drainer applies one."""
        wait_drained(self.data_dir)


def _stats(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}

    def pct(q: float) -> float:
        return round(ordered[min(int(q / 100 * len(ordered)), len(ordered) - 1)], 1)

    return {"p50": pct(50), "p95": pct(95), "n": len(ordered)}


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def run(client: str, events: int, sessions: int, command: str | None,
        bytecode: bool) -> dict[str, Any]:
    """Time the hooks of ``client``; the report."""
    from mcp_checkpoint.adapters.install import claude_code_command

    argv = [*claude_code_command(command), "hook", client]
    build = payloads(client)
    report: dict[str, Any] = {
        "client": client, "command": shlex.join(argv), "python": sys.executable,
        "bytecode": "cached (private PYTHONPYCACHEPREFIX)" if bytecode else "compiled per run",
        "cpus": os.cpu_count(), "load_before": _load(),
    }
    with tempfile.TemporaryDirectory(prefix="mcp-bench-hooks-") as tmp:
        env = {**os.environ, "MCP_CHECKPOINT_DATA_DIR": f"{tmp}/data",
               "MCP_CHECKPOINT_EMBEDDINGS__PROVIDER": "none"}
        env.pop("MCP_CHECKPOINT_STORE_URL", None)
        if bytecode:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = f"{tmp}/pycache"
        else:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        runner = _Runner(argv, env)
        # Warm-up: compile the bytecode of the hook and the drainer, create the store.
        for i in range(3):
            runner.hook(build["tool"](i, "warmup", runner.data_dir))
            runner.baseline()
        runner.drained()

        times: dict[str, list[float]] = {k: [] for k in (
            "tool_wall", "tool_cpu", "pass_wall", "pass_cpu", "compact_wall", "compact_cpu",
            "start_wall", "start_cpu")}
        session = "latency"
        runner.hook(build["prompt"](session, runner.data_dir))
        for i in range(events):
            wall, cpu, _ = runner.hook(build["tool"](i, session, runner.data_dir))
            times["tool_wall"].append(wall)
            times["tool_cpu"].append(cpu)
            wall, cpu, _ = runner.baseline()
            times["pass_wall"].append(wall)
            times["pass_cpu"].append(cpu)
        runner.drained()
        report["load_after_tool_calls"] = _load()

        injected = 0
        for s in range(sessions):
            session = f"compact-{s}"
            runner.hook(build["prompt"](session, runner.data_dir))
            for i in range(20):
                runner.hook(build["tool"](i, session, runner.data_dir))
            if "stop" in build:
                runner.hook(build["stop"](session, runner.data_dir))
            runner.drained()
            if "compact" in build:
                wall, cpu, _ = runner.hook(build["compact"](session, runner.data_dir))
                times["compact_wall"].append(wall)
                times["compact_cpu"].append(cpu)
            wall, cpu, out = runner.hook(build["start_after_compact"](session, runner.data_dir))
            times["start_wall"].append(wall)
            times["start_cpu"].append(cpu)
            injected += bool(out.strip())
        runner.drained()
    report["load_after"] = _load()
    report["tool_call"] = {"wall_ms": _stats(times["tool_wall"]),
                           "cpu_ms": _stats(times["tool_cpu"])}
    report["python_pass"] = {"wall_ms": _stats(times["pass_wall"]),
                             "cpu_ms": _stats(times["pass_cpu"])}
    if times["compact_wall"]:
        report["compact"] = {"wall_ms": _stats(times["compact_wall"]),
                             "cpu_ms": _stats(times["compact_cpu"])}
    report["start_after_compact"] = {"wall_ms": _stats(times["start_wall"]),
                                     "cpu_ms": _stats(times["start_cpu"]),
                                     "injected": injected}
    if sessions and not injected:
        raise BenchError("the start after compaction injected no context")
    return report


_LABELS = {
    "claude-code": ("PostToolUse", "PreCompact", "SessionStart(compact)"),
    "gemini-cli": ("AfterTool", "PreCompress", "BeforeAgent after it"),
    "codex": ("PostToolUse", "PreCompact", "UserPromptSubmit after it"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``bench hooks``."""
    parser.add_argument("--client", default="claude-code", choices=list(_LABELS),
                        help="whose hooks (default claude-code)")
    parser.add_argument("--events", type=int, default=200,
                        help="per-tool-call hook processes timed (default 200)")
    parser.add_argument("--sessions", type=int, default=10,
                        help="sessions compacted, each timing its start after compaction "
                             "(default 10)")
    parser.add_argument("--command", default=None,
                        help="how the client starts mcp-checkpoint (default: what install "
                             "writes, the absolute path of the console script)")
    parser.add_argument("--no-bytecode", action="store_true",
                        help="compile every module on every run (PYTHONDONTWRITEBYTECODE)")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")


def main(args: argparse.Namespace) -> int:
    """Run the benchmark and print its report."""
    try:
        report = run(args.client, max(int(args.events), 1), max(int(args.sessions), 0),
                     args.command, not args.no_bytecode)
    except BenchError as exc:
        sys.stderr.write(f"bench hooks: {exc}\n")
        return 1
    print_report(report)
    write_json(report, args.json)
    return 0


def print_report(report: dict[str, Any]) -> None:
    """The report as a table on stdout."""
    tool, compact, start = _LABELS.get(report["client"], ("tool call", "compaction",
                                                          "start after compaction"))
    w = sys.stdout.write
    w(f"{report['command']}  ({report['bytecode']}; {report['cpus']} CPUs)\n")
    w(f"load average before {report['load_before']}, after the tool calls "
      f"{report['load_after_tool_calls']}, at the end {report['load_after']}\n")
    w(f"{'event':<28} {'wall p50':>9} {'wall p95':>9} {'cpu p50':>8} {'n':>5}\n")
    rows = [(tool, report["tool_call"]),
            ("python -c pass (paired)", report["python_pass"])]
    if "compact" in report:
        rows.append((compact, report["compact"]))
    rows.append((start, report["start_after_compact"]))
    for label, row in rows:
        wall, cpu = row["wall_ms"], row["cpu_ms"]
        if not wall.get("n"):
            continue
        w(f"{label:<28} {wall['p50']:>9} {wall['p95']:>9} {cpu['p50']:>8} {wall['n']:>5}\n")
