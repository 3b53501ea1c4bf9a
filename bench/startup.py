"""``python -m bench startup``: how long the server takes to answer ``initialize``, against a
bare ``MCPServer`` with one tool in the same interpreter, and how long ``--version`` takes.

Each sample is a new process: the clock starts before the spawn and stops when the first
line (the ``initialize`` result) arrives on its stdout; then stdin is closed and the process
waits for. Server and bare samples alternate so that machine load hits both alike; one
unmeasured warm-up of each comes first (it also creates the SQLite file, so the measured
starts open an existing store, as a client's restart does). Reported: the median of
``--runs`` samples of each, and their ratio. ``--python`` measures another environment,
e.g. a venv without the embeddings extra::

    python -m bench startup --runs 10
    python -m bench startup --runs 10 --python /tmp/lean/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._stats import emit, ratio

__all__ = ["add_arguments", "main"]

TARGET_WITHOUT_EXTRA = 1.15
TARGET_WITH_EXTRA = 1.25
TARGET_VERSION_MS = 150.0

BARE = """
from mcp.server.mcpserver import MCPServer

server = MCPServer("bare")


@server.tool()
def ping() -> str:
    \"\"\"Answer pong.\"\"\"
    return "pong"


server.run("stdio")
"""

INITIALIZE = json.dumps({
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {},
               "clientInfo": {"name": "bench-startup", "version": "0"}},
}) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bench startup``."""
    parser.add_argument("--runs", type=int, default=10, help="samples of each (default 10)")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter whose environment is measured (default: this)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")


def _env(data_dir: Path) -> dict[str, str]:
    # PYTHONDONTWRITEBYTECODE is dropped: an installed package has its bytecode compiled
    # (pip compiles at install), as the SDK the bare server imports has; the warm-up run
    # writes it for a checkout, so both sides start from bytecode, not from source.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MCP_CHECKPOINT_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["MCP_CHECKPOINT_DATA_DIR"] = str(data_dir)
    return env


# The processes run in an empty folder, so that ``-m mcp_checkpoint`` imports what the
# interpreter and PYTHONPATH name, not a package that happens to lie in the current one.
_CWD = tempfile.gettempdir()


def _initialize_ms(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall ms to the ``initialize`` result, CPU ms of the whole process): the process
    gets end-of-input right after the request, so it answers and exits; its CPU time
    counts the start, the answer and the shutdown, and is the figure that machine load
    does not move."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, env=env, cwd=_CWD)
    if process.stdin is None or process.stdout is None:  # pragma: no cover - PIPE given
        raise RuntimeError("no pipes")
    process.stdin.write(INITIALIZE.encode())
    process.stdin.flush()
    line = process.stdout.readline()
    elapsed = (time.perf_counter() - start) * 1000.0
    process.stdin.close()
    _, _, usage = os.wait4(process.pid, 0)
    process.returncode = 0
    answer = json.loads(line) if line.strip() else {}
    if "result" not in answer:
        raise SystemExit(f"bench startup: {command[:3]} did not initialize: {line[:200]!r}")
    return elapsed, (usage.ru_utime + usage.ru_stime) * 1000.0


def _run_ms(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=env, cwd=_CWD)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"bench startup: {command} exited {process.returncode}")
    return (time.perf_counter() - start) * 1000.0, (usage.ru_utime + usage.ru_stime) * 1000.0


def _has_extra(python: str, env: dict[str, str]) -> bool:
    probe = "import importlib.util as u; print(u.find_spec('sentence_transformers') is not None)"
    done = subprocess.run([python, "-c", probe], env=env, capture_output=True, text=True,
                          check=True, timeout=60, cwd=_CWD)
    return done.stdout.strip() == "True"


def main(args: argparse.Namespace) -> int:
    """Measure and print; 0 (the targets are reported, not enforced)."""
    if args.runs < 1:
        sys.stderr.write("bench startup: --runs must be positive\n")
        return 2
    python = args.python
    server = [python, "-m", "mcp_checkpoint", "serve"]
    bare = [python, "-c", BARE]
    version = [python, "-m", "mcp_checkpoint", "--version"]
    with tempfile.TemporaryDirectory(prefix="mcpck-startup-") as tmp:
        env = _env(Path(tmp) / "data")
        extra = _has_extra(python, env)
        _initialize_ms(server, env)  # warm-up: creates the store, fills the page cache
        _initialize_ms(bare, env)
        _run_ms(version, env)
        samples: dict[str, list[tuple[float, float]]] = {"server": [], "bare": [],
                                                          "version": []}
        for i in range(args.runs):
            pair = [("server", server), ("bare", bare)]
            for name, command in pair if i % 2 == 0 else pair[::-1]:
                samples[name].append(_initialize_ms(command, env))
            samples["version"].append(_run_ms(version, env))
    wall = {k: statistics.median(v[0] for v in vs) for k, vs in samples.items()}
    cpu = {k: statistics.median(v[1] for v in vs) for k, vs in samples.items()}
    target = TARGET_WITH_EXTRA if extra else TARGET_WITHOUT_EXTRA
    load = os.getloadavg()
    report: dict[str, Any] = {
        "python": python,
        "embeddings_extra_installed": extra,
        "runs": args.runs,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_average": load},
        "median_wall_ms": {k: round(v, 1) for k, v in wall.items()},
        "median_cpu_ms": {k: round(v, 1) for k, v in cpu.items()},
        "samples": {k: [[round(w, 1), round(c, 1)] for w, c in vs]
                    for k, vs in samples.items()},
        "server_vs_bare_wall": ratio(wall["server"], wall["bare"]),
        "server_vs_bare_cpu": ratio(cpu["server"], cpu["bare"]),
        "target_server_vs_bare": target,
        "target_version_ms": TARGET_VERSION_MS,
    }
    rw, rc = report["server_vs_bare_wall"], report["server_vs_bare_cpu"]

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    lines = [
        f"bench startup: {args.runs} cold starts each, {python} "
        f"(embeddings extra {'installed' if extra else 'not installed'}; "
        f"load {load[0]:.1f} on {os.cpu_count()} cpus)",
        f"  {'median ms':<38}{'wall':>9}{'cpu':>9}",
        f"  {'initialize, mcp-checkpoint serve':<38}{wall['server']:>9.1f}{cpu['server']:>9.1f}",
        f"  {'initialize, bare MCPServer + 1 tool':<38}{wall['bare']:>9.1f}{cpu['bare']:>9.1f}",
        f"  {'ratio (target <= ' + str(target) + 'x)':<38}{rw:>8.3f}x{rc:>8.3f}x  "
        f"{verdict(rw is not None and rw <= target)}",
        f"  {'mcp-checkpoint --version (<= 150 ms)':<38}{wall['version']:>9.1f}"
        f"{cpu['version']:>9.1f}  {verdict(wall['version'] <= TARGET_VERSION_MS)}",
    ]
    emit("\n".join(lines), report, Path(args.json) if args.json else None)
    return 0
