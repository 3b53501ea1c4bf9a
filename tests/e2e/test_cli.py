"""The command line against a real SQLite data directory."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from mcp_checkpoint.cli import main
from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.episodes import Episodes
from mcp_checkpoint.core.models import CheckpointPatch, StepDraft, Tenant
from mcp_checkpoint.core.tokens import HeuristicTokenizer
from mcp_checkpoint.storage import make_store

T = Tenant("local")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MCP_CHECKPOINT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MCP_CHECKPOINT_STORE_URL", raising=False)
    return tmp_path / "data"


def seed(data_dir: Path, steps: int = 5) -> None:
    settings = Settings(data_dir=data_dir)

    async def body() -> None:
        store = make_store(settings)
        await store.open()
        try:
            episodes = Episodes(store, HeuristicTokenizer(), settings)
            await episodes.start_run(T, "Fix the flaky test in tests/test_io.py", run_id="r1")
            for i in range(steps):
                await episodes.record_step(T, "r1", StepDraft(tool="bash", input=f"cmd {i}"))
            await episodes.checkpoint(T, "r1", CheckpointPatch(next_actions=["rerun pytest"]))
        finally:
            await store.close()

    anyio.run(body)


def test_cli_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("mcp-checkpoint ")


def test_cli_doctor_creates_the_data_dir_and_reports_the_schema(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not data_dir.exists()
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert data_dir.is_dir() and (data_dir / "mcp-checkpoint.db").is_file()
    assert report["schema_version"] >= 1 and report["integrity"] == "ok"
    assert set(report["extras"]) == {"embeddings", "postgres", "qdrant"}
    assert report["problems"] == []


def test_cli_doctor_reports_an_unusable_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    monkeypatch.setenv("MCP_CHECKPOINT_DATA_DIR", str(blocker / "sub"))
    assert main(["doctor"]) == 1
    assert "PROBLEMS" in capsys.readouterr().out


def test_cli_runs_list_show_and_verify(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(data_dir)
    assert main(["runs", "list"]) == 0
    listing = capsys.readouterr().out
    assert "r1" in listing and "Fix the flaky test" in listing
    assert main(["runs", "show", "r1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["run"]["step_count"] == 5
    assert shown["latest_checkpoint"]["content"]["next_actions"] == ["rerun pytest"]
    assert main(["runs", "verify", "r1"]) == 0
    assert "ok — 5 steps" in capsys.readouterr().out


def test_cli_runs_verify_detects_a_tampered_ledger(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(data_dir)
    with sqlite3.connect(data_dir / "mcp-checkpoint.db") as db:
        changed = db.execute(
            "UPDATE steps SET input = ? WHERE run_id = 'r1' AND seq = 3", ('"rm -rf /"',)
        ).rowcount
    assert changed == 1
    assert main(["runs", "verify", "r1"]) == 1
    assert "BROKEN" in capsys.readouterr().out


def test_cli_unknown_run_is_a_clear_error(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs", "show", "nope"]) == 1
    assert "not_found: run nope" in capsys.readouterr().err


def test_cli_invalid_configuration_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MCP_CHECKPOINT_LIMITS__MAX_STEP_BYTES", "not-a-number")
    assert main(["doctor"]) == 2
    assert "invalid configuration" in capsys.readouterr().err


def test_cli_module_entry_point_runs(data_dir: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mcp_checkpoint", "--version"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    assert out.stdout.startswith("mcp-checkpoint ")


def test_cli_reindex_embeds_missing_memories_and_rebuilds_after_a_model_change(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mcp_checkpoint.core.memory import MemoryService
    from mcp_checkpoint.core.models import ProposalItem

    monkeypatch.setenv("MCP_CHECKPOINT_EMBEDDINGS__PROVIDER", "none")
    settings = Settings(data_dir=data_dir)

    async def body() -> None:  # memories committed while no model was installed
        store = make_store(settings)
        await store.open()
        try:
            memory = MemoryService(store, settings)
            batch = await memory.propose(T, [ProposalItem(content=f"fact {i}") for i in range(5)])
            await memory.commit(T, batch.batch_id)
        finally:
            await store.close()

    anyio.run(body)
    assert main(["reindex"]) == 1
    assert "no embedding model" in capsys.readouterr().out

    monkeypatch.setenv("MCP_CHECKPOINT_EMBEDDINGS__PROVIDER", "hashing")
    assert main(["reindex"]) == 0
    first = capsys.readouterr()
    assert "embedded 5 memories; vectors: hashing-v1-256" in first.out
    assert "memories checked" in first.err
    assert main(["reindex"]) == 0
    assert "embedded 0 memories" in capsys.readouterr().out

    monkeypatch.setenv("MCP_CHECKPOINT_EMBEDDINGS__HASHING_DIMENSION", "64")
    assert main(["reindex"]) == 0
    assert "embedded 5 memories; vectors: hashing-v1-64" in capsys.readouterr().out
