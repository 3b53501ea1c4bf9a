"""End to end: ``python -m bench loop --quick`` over the shared SWE-agent trajectories.

The benchmark spawns its own server over stdio (``mcp-checkpoint serve`` plus the
benchmark's ``noop`` tool); here it runs from the checkout, exactly as a developer runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

# The evaluation data lives beside the repository (never inside it).
DATA = Path(__file__).parents[2].parent / "shared" / "data" / "trajectories"


ROOT = Path(__file__).resolve().parents[2]


def _bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    # Our own settings must not leak in from the caller's environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_CHECKPOINT_")}
    return subprocess.run(
        [sys.executable, "-m", "bench", "loop", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def test_bench_loop_quick_reports_every_figure_within_budget(tmp_path: Path) -> None:
    assert DATA.is_dir(), f"the evaluation data is missing: {DATA}"
    trajectories = sorted(DATA.glob("*.traj"))
    out = tmp_path / "loop.json"

    done = _bench("--data", str(DATA), "--quick", "--server-times", "--json", str(out),
                  timeout=120)

    assert done.returncode == 0, done.stderr[-3000:]
    assert "targets" in done.stdout
    assert "NO content" in done.stdout  # the table says the server distilled by rules

    report = json.loads(out.read_text(encoding="utf-8"))
    assert {
        "replay",
        "distillation",
        "latency_ms",
        "record_vs_noop",
        "scale",
        "compression",
        "budget",
        "survival",
        "runs",
        "targets",
        "server",
    } <= report.keys()
    assert report["profile"] == "quick"

    # Every trajectory was replayed, through SQLite, with rule-distilled checkpoints.
    assert report["replay"]["trajectories"] == len(trajectories)
    assert len(report["runs"]) == len(trajectories)
    assert report["replay"]["steps"] == sum(r["steps"] for r in report["runs"])
    assert report["server"]["store"]["steps"] >= report["replay"]["steps"] + 11_000
    assert set(report["distillation"]["sources"]) == {"rules"}

    for tool in ("record_step", "noop", "record_step_minimal", "noop_minimal", "checkpoint",
                 "rehydrate"):
        figures = report["latency_ms"][tool]
        assert figures["n"] > 0, tool
        assert 0 < figures["p50"] <= figures["p99"], tool
    assert report["latency_ms"]["record_step"]["n"] == report["latency_ms"]["noop"]["n"]
    assert report["record_vs_noop"]["p50_ratio"] > 0
    minimal = report["latency_ms"]["record_step_minimal"]["n"]
    assert minimal == report["latency_ms"]["noop_minimal"]["n"] == 150
    assert report["record_vs_noop"]["minimal_p50_ratio"] > 0
    assert "minimal record_step / noop" in done.stdout
    # --server-times: every tool call also timed inside the server, the minimal ones apart.
    inside = report["server_ms"]
    assert {"record_step", "record_step (minimal)", "noop", "noop (minimal)", "checkpoint",
            "rehydrate"} <= inside.keys()
    assert inside["record_step (minimal)"]["n"] == inside["noop (minimal)"]["n"] == 150
    for name, figures in inside.items():
        assert 0 < figures["p50"] <= figures["p99"], name
    assert inside["record_step"]["p50"] < report["latency_ms"]["record_step"]["p50"]

    scale = report["scale"]
    assert [run["steps"] for run in scale["runs"]] == [1_000, 10_000]
    for run in scale["runs"]:
        assert run["rehydrate_ms"]["n"] >= 20
        assert run["rehydrate_ms"]["p50"] > 0
    assert scale["median_ratio"] > 0

    budget = report["budget"]
    assert budget["rehydrates"] > 0
    assert budget["violations"] == 0
    assert budget["recount_violations"] == 0

    for kind in ("paths", "identifiers"):
        share = report["survival"][kind]["final_share"]
        assert report["survival"][kind]["distinct"] > 0
        assert 0 <= share <= 1

    assert len(report["targets"]) == 4
    for target in report["targets"]:
        assert {"name", "target", "value", "pass"} <= target.keys()


def test_bench_loop_without_trajectories_fails_clearly(tmp_path: Path) -> None:
    done = _bench("--data", str(tmp_path), "--quick", timeout=60)

    assert done.returncode == 1
    assert "no *.traj files" in done.stderr
