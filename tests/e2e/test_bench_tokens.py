"""End to end: ``mcp-checkpoint bench tokens --quick`` over the shared data.

The benchmark compares the offline counter with the real o200k_base (bpe-openai, the
``bench`` extra, which the ``dev`` extra includes); here it runs as a subprocess of the
installed console script, exactly as a user runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

# The evaluation data lives beside the repository (never inside it).
DATA = Path(__file__).parents[2].parent / "shared" / "data"


def _cli() -> str:
    beside = Path(sys.executable).with_name("mcp-checkpoint")
    found = str(beside) if beside.exists() else shutil.which("mcp-checkpoint")
    assert found, "the mcp-checkpoint console script is not installed"
    return found


def _env() -> dict[str, str]:
    # Our own settings must not leak in from the caller's environment.
    return {k: v for k, v in os.environ.items() if not k.startswith("MCP_CHECKPOINT_")}


def _run(command: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=_env(), check=False
    )


def test_bench_tokens_quick_overcounts_every_corpus_and_every_pack(tmp_path: Path) -> None:
    assert DATA.is_dir(), f"the evaluation data is missing: {DATA}"
    out = tmp_path / "tokens.json"

    done = _run([_cli(), "bench", "tokens", "--data", str(DATA), "--quick", "--json", str(out)])

    assert done.returncode == 0, done.stderr[-3000:]
    assert "total h/r" in done.stdout
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["profile"] == "quick"
    assert report["reference"]["encoding"] == "o200k_base"

    corpora = report["corpora"]
    assert {"traj_fields", "traj_steps", "locomo_turns", "locomo_sessions"} <= corpora.keys()
    assert {name for name in corpora if name.startswith("syn_")} == {
        "syn_hex",
        "syn_base64",
        "syn_json",
        "syn_unicode",
        "syn_whitespace",
        "syn_numbers",
        "syn_random",
    }
    # --quick measures a sample, and a sample of something.
    assert any(c["texts"] < c["available"] for c in corpora.values())
    for name, c in corpora.items():
        assert 0 < c["texts"] <= c["available"], name
        assert c["real_tokens"] > 0, name
        # The counter is biased high: in aggregate it never counts fewer tokens than o200k.
        assert c["total_ratio"] >= 1.0, (name, c)

    # A context packed by summing section counts (+1 per join) never exceeds its estimate.
    packed = report["packed"]["corpora"]
    assert packed, "no packed contexts were checked"
    for name, p in packed.items():
        assert p["packs"] > 0, name
        assert p["under"] == 0, (name, p)

    assert report["truncate"]["checks"] > 0
    assert report["truncate"]["violations"] == 0

    assert report["concatenation"]["random_cuts"]["pairs"] > 0
    assert report["throughput"]["heuristic_warm_mb_s"] > 0


def test_bench_tokens_without_the_data_fails_clearly(tmp_path: Path) -> None:
    done = _run([_cli(), "bench", "tokens", "--data", str(tmp_path), "--quick"], timeout=60)

    assert done.returncode == 1
    assert "no trajectories/*.traj" in done.stderr


def test_bench_tokens_without_the_reference_says_what_to_install() -> None:
    # A None entry in sys.modules makes `import bpe_openai` fail, as if it were missing.
    program = (
        "import sys; sys.modules['bpe_openai'] = None; "
        "from mcp_checkpoint.cli import main; "
        f"sys.exit(main(['bench', 'tokens', '--data', {str(DATA)!r}, '--quick']))"
    )
    done = _run([sys.executable, "-c", program], timeout=60)

    assert done.returncode == 2
    assert 'pip install -e ".[bench]"' in done.stderr
    assert done.stdout == ""
