"""``mcp-checkpoint export`` / ``import`` between two real SQLite data directories."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

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


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.delenv("MCP_CHECKPOINT_STORE_URL", raising=False)
    monkeypatch.setenv("MCP_CHECKPOINT_DATA_DIR", str(tmp_path / "source"))
    return tmp_path / "source", tmp_path / "target"


def use(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.setenv("MCP_CHECKPOINT_DATA_DIR", str(data_dir))


def on_store(data_dir: Path, body: Any) -> Any:
    settings = Settings(data_dir=data_dir)

    async def run() -> Any:
        store = make_store(settings)
        await store.open()
        try:
            memory = MemoryService(store, settings)
            episodes = Episodes(store, HeuristicTokenizer(), settings, memory=memory)
            return await body(episodes, memory)
        finally:
            await store.close()

    return anyio.run(run)


def seed(data_dir: Path, run_id: str = "r1", steps: int = 60) -> None:
    async def body(episodes: Episodes, memory: MemoryService) -> None:
        await episodes.start_run(T, "Fix the flaky test in tests/test_io.py", run_id=run_id)
        for i in range(steps):
            await episodes.record_step(T, run_id, StepDraft(
                tool="bash", input=f"pytest tests/test_io.py -k case{i}",
                output=f"case{i} passed", idempotency_key=f"k{i}",
            ))
            if i % 25 == 24:
                await episodes.checkpoint(T, run_id, CheckpointPatch(next_actions=["rerun"]))
        batch = await memory.propose(T, [
            ProposalItem(content="test_io is flaky when the tmp dir is shared"),
        ], run_id=run_id)
        await memory.commit(T, batch.batch_id)

    on_store(data_dir, body)


def rehydrate(data_dir: Path, run_id: str) -> Any:
    async def body(episodes: Episodes, _: MemoryService) -> Any:
        return [
            await episodes.rehydrate(T, run_id, budget_tokens=budget)
            for budget in (300, 8000)
        ]

    return on_store(data_dir, body)


def test_export_then_import_round_trips_between_data_dirs(
    dirs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source, target = dirs
    seed(source)
    pack = tmp_path / "out" / "r1.zip"
    pack.parent.mkdir()

    assert main(["export", "r1", "-o", str(pack)]) == 0
    assert "exported 1 runs (60 steps), 1 memories and 1 memory batches" in (
        capsys.readouterr().out
    )
    assert sorted(p.name for p in pack.parent.iterdir()) == ["r1.zip"]  # no partial file left
    assert zipfile.ZipFile(pack).testzip() is None

    use(monkeypatch, target)
    assert main(["import", str(pack)]) == 0
    dry = capsys.readouterr().out
    assert "run r1: import, 60 steps, 2 checkpoints" in dry
    assert "dry run: nothing written" in dry
    assert main(["runs", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []

    assert main(["import", str(pack), "--apply"]) == 0
    assert "imported 1 runs, 1 memory batches and 1 memories" in capsys.readouterr().out
    assert rehydrate(target, "r1") == rehydrate(source, "r1")
    assert main(["runs", "verify", "r1"]) == 0
    assert "ok — 60 steps" in capsys.readouterr().out

    assert main(["import", str(pack), "--apply"]) == 0
    again = capsys.readouterr().out
    assert "nothing to do: everything in the pack is already imported" in again
    assert main(["import", str(pack), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["nothing_to_do"] and plan["runs"][0]["action"] == "identical"


def test_import_collision_is_an_error_unless_renamed(
    dirs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source, target = dirs
    seed(source)
    pack = tmp_path / "r1.zip"
    assert main(["export", "r1", "-o", str(pack)]) == 0
    seed(target, steps=3)  # another r1 and another memory
    use(monkeypatch, target)
    capsys.readouterr()

    assert main(["import", str(pack), "--apply"]) == 1
    assert "conflict: these ids exist with other content: run r1" in capsys.readouterr().err
    assert main(["import", str(pack), "--apply", "--rename", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    new_id = plan["runs"][0]["run_id"]
    assert plan["runs"][0]["pack_id"] == "r1" and new_id.startswith("run_")
    assert main(["runs", "verify", new_id]) == 0
    assert main(["runs", "verify", "r1"]) == 0
    context = rehydrate(target, new_id)[1]
    assert f"run {new_id}" in context.context and context.steps_included[-1] == 60


def test_export_refuses_to_overwrite_and_reports_progress_when_asked(
    dirs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, _ = dirs
    seed(source)
    pack = tmp_path / "r1.zip"
    pack.write_bytes(b"keep me")

    assert main(["export", "r1", "-o", str(pack)]) == 1
    assert "r1.zip exists; pass --force" in capsys.readouterr().err
    assert pack.read_bytes() == b"keep me"

    assert main(["export", "r1", "-o", str(pack), "--force", "--progress"]) == 0
    assert "exporting steps: [" in capsys.readouterr().err
    assert main(["import", str(pack), "--progress"]) == 0
    assert "reading: [" in capsys.readouterr().err


def test_export_of_an_unknown_run_writes_nothing(
    dirs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "nope", "-o", str(tmp_path / "x.zip")]) == 1
    assert "not_found: run nope" in capsys.readouterr().err
    assert not any(p.name.endswith((".zip", ".partial")) for p in tmp_path.iterdir())


def test_import_of_a_hostile_pack_fails_cleanly(
    dirs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack = tmp_path / "evil.zip"
    with zipfile.ZipFile(pack, "w") as archive:
        archive.writestr("../../etc/cron.d/evil", "* * * * * root sh")

    assert main(["import", str(pack), "--apply"]) == 1
    assert "invalid_argument: pack: unsafe file name '../../etc/cron.d/evil'" in (
        capsys.readouterr().err
    )


def test_unreadable_pack_and_unwritable_output_are_clear_errors(
    dirs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, _ = dirs
    seed(source, steps=2)

    assert main(["import", str(tmp_path / "missing.zip")]) == 1
    assert "invalid_argument: cannot read the pack 'missing.zip'" in capsys.readouterr().err
    assert main(["import", str(tmp_path)]) == 1
    assert "invalid_argument: cannot read the pack" in capsys.readouterr().err
    assert main(["export", "r1", "-o", str(tmp_path / "no" / "such" / "dir.zip")]) == 1
    assert "invalid_argument: cannot write dir.zip there" in capsys.readouterr().err
