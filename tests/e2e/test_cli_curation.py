"""The curation commands against a real SQLite data directory: runs log/export/
checkpoints/delete, memories list/forget, unique id prefixes, and stored text that cannot
drive the terminal."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import anyio
import pytest

from mcp_checkpoint.cli import main
from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.episodes import Episodes
from mcp_checkpoint.core.memory import MemoryService
from mcp_checkpoint.core.models import CheckpointPatch, ProposalItem, StepDraft, Tenant
from mcp_checkpoint.core.tokens import HeuristicTokenizer
from mcp_checkpoint.storage import make_store

T = Tenant("local")
HOSTILE = "\x1b[2J\x1b]0;pwned\x07<b>hi</b>\rfake"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MCP_CHECKPOINT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MCP_CHECKPOINT_STORE_URL", raising=False)
    return tmp_path / "data"


def seed(data_dir: Path) -> dict[str, str]:
    settings = Settings(data_dir=data_dir)

    async def body() -> dict[str, str]:
        store = make_store(settings)
        await store.open()
        try:
            episodes = Episodes(store, HeuristicTokenizer(), settings)
            memory = MemoryService(store, settings)
            await episodes.start_run(T, "Fix the login " + HOSTILE, run_id="run_alpha1")
            await episodes.start_run(T, "second", run_id="run_alpha2")
            await episodes.start_run(T, "third", run_id="run_beta")
            cps = []
            for i in range(1, 7):
                await episodes.record_step(T, "run_alpha1", StepDraft(
                    tool="bash", input=f"pytest -k case{i}", output=f"case{i} " + HOSTILE,
                    status="error" if i == 5 else "ok"))
                if i % 3 == 0:
                    result = await episodes.checkpoint(T, "run_alpha1", CheckpointPatch(
                        decisions=[f"decided at {i}"], next_actions=[f"go on from {i}"]))
                    cps.append(result.checkpoint.checkpoint_id)
            batch = await memory.propose(T, [
                ProposalItem(content="login needs a 5 s timeout", scope="project:web"),
                ProposalItem(content="prefers tabs " + HOSTILE, kind="preference",
                             scope="user"),
            ])
            done = await memory.commit(T, batch.batch_id)
            return {"cp1": cps[0], "cp2": cps[1], "m0": done.memory_ids[0],
                    "m1": done.memory_ids[1]}
        finally:
            await store.close()

    return anyio.run(body)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_runs_log_is_a_readable_timeline_with_checkpoints(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = seed(data_dir)
    code, out, _ = run_cli(["runs", "log", "run_alpha1"], capsys)
    assert code == 0
    lines = out.splitlines()
    steps = [line for line in lines if line.startswith("#")]
    assert len(steps) == 6
    assert steps[4].split()[4] == "error"
    assert any(f"checkpoint 1 ({ids['cp1']}" in line for line in lines)
    after = lines.index(steps[2])
    assert "checkpoint 1" in lines[after + 1]  # right after the step it was taken at
    code, out, _ = run_cli(["runs", "log", "run_alpha1", "--since", "4"], capsys)
    assert [line.split()[0] for line in out.splitlines() if line.startswith("#")] == [
        "#5", "#6"]


def test_cli_output_neutralises_control_characters(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(data_dir)
    for args in (["runs", "log", "run_alpha1"], ["runs", "show", "run_alpha1"],
                 ["runs", "list"], ["memories", "list"],
                 ["runs", "export", "run_alpha1"]):
        code, out, _ = run_cli(args, capsys)
        assert code == 0, args
        assert "\x1b" not in out and "\x07" not in out and "\r" not in out, args
        assert "\\x1b[2J" in out, args


def test_cli_unique_prefixes_and_ambiguous_ones(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(data_dir)
    code, out, _ = run_cli(["runs", "show", "run_b"], capsys)
    assert code == 0 and out.startswith("run run_beta (active)")
    code, out, err = run_cli(["runs", "show", "run_alpha"], capsys)
    assert code != 0
    assert "ambiguous" in err and "run_alpha1" in err and "run_alpha2" in err
    code, out, err = run_cli(["runs", "show", "run_zzz"], capsys)
    assert code != 0
    assert "no run id starts with it" in err
    code, out, _ = run_cli(["runs", "verify", "run_alpha1"], capsys)
    assert code == 0 and "ok" in out


def test_cli_runs_checkpoints_and_markdown_export(
    data_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ids = seed(data_dir)
    code, out, _ = run_cli(["runs", "checkpoints", "run_alpha1"], capsys)
    assert code == 0
    rows = [line for line in out.splitlines()[1:] if line.strip()]
    assert [row.split()[1] for row in rows] == [ids["cp2"], ids["cp1"]]  # newest first
    assert "go on from 6" in rows[0]
    target = tmp_path / "run.md"
    code, _, _ = run_cli(["runs", "export", "run_alpha1", "--format", "markdown", "-o",
                          str(target)], capsys)
    assert code == 0
    text = target.read_text(encoding="utf-8")
    assert text.startswith("# Run run_alpha1")
    assert "decided at 3" in text and "decided at 6" in text
    assert "### 5. bash (error)" in text


def test_cli_runs_delete_asks_and_removes_every_row(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(data_dir)
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # not a terminal: never asked
    code, out, err = run_cli(["runs", "delete", "run_alpha1"], capsys)
    assert code == 1 and "pass --yes" in err and "nothing deleted" in out
    code, out, _ = run_cli(["runs", "delete", "run_alpha1", "run_b", "--yes"], capsys)
    assert code == 0
    assert "deleted run_alpha1: 6 steps, 2 checkpoints" in out
    db = sqlite3.connect(data_dir / "mcp-checkpoint.db")
    try:
        for table in ("steps", "checkpoints", "steps_fts", "pruned_checkpoints"):
            sql = f"SELECT count(*) FROM {table} WHERE run_id IN ('run_alpha1', 'run_beta')"  # noqa: S608
            left = db.execute(sql).fetchone()[0]
            assert left == 0, table
        assert [r[0] for r in db.execute("SELECT run_id FROM runs")] == ["run_alpha2"]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()


def test_cli_memories_list_and_forget(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = seed(data_dir)
    code, out, _ = run_cli(["memories", "list", "--scope", "user"], capsys)
    assert code == 0
    assert ids["m1"] in out and ids["m0"] not in out
    code, out, _ = run_cli(["memories", "list", "--kind", "fact", "--json"], capsys)
    assert ids["m0"] in out and ids["m1"] not in out
    code, out, _ = run_cli(["memories", "forget", ids["m1"][:-3], "--yes"], capsys)
    assert code == 0 and f"forgot {ids['m1']}" in out
    code, out, _ = run_cli(["memories", "list", "--status", "any"], capsys)
    assert ids["m1"] not in out and ids["m0"] in out
