"""``mcp-checkpoint bench continuity`` on a small synthetic trajectory, both paths, as a user
runs it; and the fact definitions on the same trajectory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench._trajectories import load_trajectories
from bench.continuity import facts_of, survived

pytestmark = pytest.mark.e2e

TRAJ = {
    "history": [{"role": "user", "content": "Fix the discount bug in the shop.\n"
                 "INSTRUCTIONS: ..."}],
    "trajectory": [
        {"action": "open src/shop/cart.py\n", "observation": "[File: src/shop/cart.py]",
         "thought": "Look at the cart."},
        {"action": "python -m pytest tests/test_cart.py\n",
         "observation": "FAILED tests/test_cart.py::test_discount - KeyError: 'SAVE10'\n"
                        "1 failed", "thought": "The code is missing."},
        {"action": "edit 3:3\ndef apply_discount(cart, code):\n    return lookup_rate(code)\n"
                   "end_of_edit\n", "observation": "File updated.", "thought": "Add it."},
        {"action": "git commit -am 'discounts'\n",
         "observation": "[main 3f9a2c1d] discounts\n 1 file changed",
         "thought": "Commit."},
        {"action": "curl -s https://api.example.com/rates?code=SAVE10\n",
         "observation": "{\"rate\": 0.1}", "thought": "Check the rates API."},
    ],
}


def test_facts_are_taken_from_actions_and_observations(tmp_path: Path) -> None:
    (tmp_path / "shop.traj").write_text(json.dumps(TRAJ))
    [traj] = load_trajectories(tmp_path)

    facts = facts_of(traj).by_kind

    assert facts["file"] >= {"src/shop/cart.py", "tests/test_cart.py"}
    assert facts["error"] == {"FAILED tests/test_cart.py::test_discount - KeyError: 'SAVE10'"}
    assert facts["identifier"] == {"apply_discount", "lookup_rate"}
    assert facts["commit"] == {"3f9a2c1d"}
    assert facts["url"] == {"https://api.example.com/rates?code=SAVE10"}
    assert survived(facts_of(traj), "see src/shop/cart.py and apply_discount")["file"][0] == 1


def test_bench_continuity_runs_both_paths_within_budget(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "shop.traj").write_text(json.dumps(TRAJ))
    out = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_CHECKPOINT_")}

    done = subprocess.run(
        [sys.executable, "-m", "bench", "continuity", "--data", str(data),
         "--budgets", "500,2000", "--hook-events", "5", "--json", str(out)],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=600,
        env=env, check=False,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["paths"]) == {"mcp", "hook"}
    for path in ("mcp", "hook"):
        for budget in ("500", "2000"):
            row = report["paths"][path][budget]
            assert set(row["by_kind"]) == {"file", "error", "identifier", "commit", "url"}
            assert row["max_tokens_over_budget"] > 0  # measured by o200k, not assumed
        assert report["paths"][path]["2000"]["survival"] == 1.0
    # what the hook injects is within its budget by o200k
    assert [report["paths"]["hook"][b]["contexts_over_budget"] for b in ("500", "2000")] == [0, 0]
    assert report["paths"]["hook"]["post_tool_use_ms"]["n"] == 5
    assert "PostToolUse hook wall time" in done.stdout
