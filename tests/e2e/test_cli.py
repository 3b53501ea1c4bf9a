"""The command line against a real SQLite data directory."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from mcp_checkpoint.cli import main
from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.episodes import Episodes
from mcp_checkpoint.core.models import CheckpointPatch, StepDraft, Tenant
from mcp_checkpoint.core.tokens import HeuristicTokenizer
from mcp_checkpoint.storage import make_store
from tests.e2e.conftest import SERVER, server_env

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


def test_cli_bench_hands_over_to_the_checkouts_benchmarks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith("usage: python -m bench") and "loop" in shown


def test_cli_bench_without_a_checkout_says_where_the_benchmarks_are() -> None:
    # A None entry in sys.modules makes `import bench` fail, as in an installed wheel.
    program = (
        "import sys; sys.modules['bench'] = None; "
        "from mcp_checkpoint.cli import main; sys.exit(main(['bench', 'loop', '--quick']))"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert "run from a source checkout" in done.stderr and "python -m bench" in done.stderr
    assert done.stdout == ""


def test_cli_a_retired_variable_is_ignored_with_a_note(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MCP_CHECKPOINT_BENCH_NOOP_TOOL", "1")
    assert main(["runs", "list"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "no runs"
    assert "MCP_CHECKPOINT_BENCH_NOOP_TOOL is ignored" in captured.err


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


def seed_finished(data_dir: Path, *, steps: int = 70, every: int = 20) -> None:
    """A completed run r1 with a checkpoint every ``every`` steps (and big outputs), and an
    active run r2 with a checkpoint."""
    settings = Settings(data_dir=data_dir, checkpoint={"trigger_steps": 1000})

    async def body() -> None:
        store = make_store(settings)
        await store.open()
        try:
            episodes = Episodes(store, HeuristicTokenizer(), settings)
            for run_id in ("r1", "r2"):
                await episodes.start_run(T, f"Objective of {run_id}", run_id=run_id)
                for i in range(1, steps + 1):
                    await episodes.record_step(
                        T, run_id, StepDraft(tool="bash", input=f"cmd {i}", output="o" * 4000)
                    )
                    if i % every == 0:
                        await episodes.checkpoint(
                            T, run_id, CheckpointPatch(progress=[f"{run_id} reached {i}"])
                        )
            await episodes.set_run(T, "r1", status="completed")
        finally:
            await store.close()

    anyio.run(body)


def test_cli_runs_prune_is_a_dry_run_until_applied_and_keeps_runs_usable(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_finished(data_dir)
    db = data_dir / "mcp-checkpoint.db"

    assert main(["runs", "prune"]) == 2  # no age given, none configured
    assert "--older-than" in capsys.readouterr().err

    assert main(["runs", "prune", "--older-than", "0s"]) == 0
    out = capsys.readouterr().out
    assert "r1: would remove 60 steps (through seq 60) and 2 checkpoints" in out
    assert "unchanged for 0s, keeping 1 checkpoint(s) each" in out
    assert "nothing was removed" in out and "r2" not in out  # active runs are not listed
    assert main(["runs", "show", "r1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run"]["pruned_seq"] == 0

    monkeypatch.setenv("MCP_CHECKPOINT_RETENTION__FINISHED_RUNS_DAYS", "1")
    assert main(["runs", "prune", "--apply"]) == 0  # the setting: r1 is too recent
    assert "removed 0 steps and 0 checkpoints from 0 of 0 finished runs" in (
        capsys.readouterr().out
    )

    assert main(["runs", "prune", "--older-than", "0s", "--keep-checkpoints", "2", "--apply",
                 "--vacuum", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dry_run"] is False
    assert report["runs"] == [{
        "tenant": "local", "run_id": "r1", "skipped": None, "steps_removed": 40,
        "pruned_through_seq": 40, "checkpoints_removed": report["runs"][0]["checkpoints_removed"],
    }]
    assert len(report["runs"][0]["checkpoints_removed"]) == 1
    assert report["file_bytes"]["after"] < report["file_bytes"]["before"]
    assert report["file_bytes"]["after"] == db.stat().st_size

    assert main(["runs", "verify", "r1"]) == 0
    assert "ok — 30 steps (1–40 pruned)" in capsys.readouterr().out
    with sqlite3.connect(db) as conn:
        counts = dict(conn.execute("SELECT run_id, count(*) FROM steps GROUP BY run_id"))
    assert counts == {"r1": 30, "r2": 70}

    # A real server rehydrates the pruned run (and time-travels to a kept checkpoint).
    async def rehydrate() -> tuple[dict[str, object], dict[str, object]]:
        params = StdioServerParameters(
            command=str(SERVER), args=["serve"], env=server_env(data_dir)
        )
        async with Client(params) as client:
            latest = await client.call_tool("rehydrate", {"run_id": "r1"})
            run = json.loads((await client.read_resource("run://r1")).contents[0].text)
            structured = latest.structured_content
            assert structured is not None and not latest.is_error
            return structured, run

    context, run = anyio.run(rehydrate)
    assert "r1 reached 20" in str(context["context"])  # merged from a pruned checkpoint
    assert "r1 reached 60" in str(context["context"])
    included = context["steps_included"]
    assert isinstance(included, list) and included[-1] == 70 and min(included) > 60
    assert run["pruned_seq"] == 40 and run["head_seq"] == 70


def test_cli_runs_list_and_show_print_stored_control_characters_as_escapes(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = "Fix it\x1b[2J\x1b]0;owned\x07\rREAD THIS\x9b31m"
    settings = Settings(data_dir=data_dir)

    async def body() -> None:
        store = make_store(settings)
        await store.open()
        try:
            episodes = Episodes(store, HeuristicTokenizer(), settings)
            await episodes.start_run(T, hostile, run_id="r1")
            await episodes.record_step(T, "r1", StepDraft(tool="bash", input="x"))
            await episodes.checkpoint(T, "r1", CheckpointPatch(next_actions=[hostile]))
        finally:
            await store.close()

    anyio.run(body)
    for argv in (["runs", "list"], ["runs", "show", "r1"]):
        assert main(argv) == 0
        shown = capsys.readouterr().out
        assert not any(c in shown for c in "\x1b\x07\r\x9b"), argv
        assert "Fix it\\x1b[2J\\x1b]0;owned\\x07\\x0dREAD THIS" in shown


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_serve_on_a_corrupt_database_exits_with_one_clean_line(
    tmp_path: Path, transport: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "mcp-checkpoint.db").write_bytes(b"not a database, " * 512)
    done = subprocess.run(
        [str(SERVER), "serve", "--transport", transport, "--port", "0"],
        env=server_env(data, MCP_CHECKPOINT_LOG_LEVEL="WARNING"),
        input=b"", capture_output=True, timeout=60, check=False,
    )
    err = done.stderr.decode("utf-8")
    assert done.returncode == 1, err
    assert "Traceback" not in err
    assert err.strip().splitlines() == [
        "mcp-checkpoint: backend_unavailable: the SQLite store failed (SQLITE_NOTADB)"
    ]


def test_an_old_zero_byte_database_is_refused_not_taken_for_a_new_store(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir.mkdir(parents=True)
    db = data_dir / "mcp-checkpoint.db"
    db.touch()
    hour_ago = db.stat().st_mtime - 3600
    os.utime(db, (hour_ago, hour_ago))
    assert main(["runs", "list"]) == 1
    assert "is an empty file (0 bytes), not a store" in capsys.readouterr().err
    assert db.stat().st_size == 0  # nothing was written into it


def test_a_zero_byte_database_being_created_right_now_is_opened(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Another process that just created the file and has not written its schema yet.
    data_dir.mkdir(parents=True)
    (data_dir / "mcp-checkpoint.db").touch()
    assert main(["runs", "list"]) == 0
    assert capsys.readouterr().out.strip() == "no runs"
