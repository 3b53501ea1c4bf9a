"""``mcp-checkpoint restore``: a checkpoint's workspace files back on disk — verified,
atomic, never outside the target, never over a changed file without --force."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import anyio
import pytest

from mcp_checkpoint.cli import main
from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.episodes import Episodes
from mcp_checkpoint.core.models import CheckpointPatch, StepDraft, Tenant
from mcp_checkpoint.core.tokens import HeuristicTokenizer
from mcp_checkpoint.storage import make_store

pytestmark = pytest.mark.e2e

T = Tenant("local")
FIRST = {
    "README.md": b"# demo\n", "src/app.py": b"print('v1')\n", "data/blob.bin": b"\x00\xff" * 50
}
SECOND = {**FIRST, "src/app.py": b"print('v2')\n"}


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MCP_CHECKPOINT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MCP_CHECKPOINT_STORE_URL", raising=False)
    return tmp_path / "data"


def seed(data_dir: Path) -> list[str]:
    """A run with two snapshot checkpoints (v1, then v2 of src/app.py); their ids."""
    settings = Settings(data_dir=data_dir)
    ids: list[str] = []

    async def body() -> None:
        store = make_store(settings)
        await store.open()
        try:
            episodes = Episodes(store, HeuristicTokenizer(), settings)
            await episodes.start_run(T, "Ship the demo", run_id="r1")
            for n, files in enumerate((FIRST, SECOND), start=1):
                await episodes.record_step(T, "r1", StepDraft(tool="edit", input=f"v{n}"))
                done = await episodes.checkpoint(
                    T, "r1", CheckpointPatch(name=f"v{n}"), files=sorted(files.items())
                )
                ids.append(done.checkpoint.checkpoint_id)
        finally:
            await store.close()

    anyio.run(body)
    return ids


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_restore_writes_the_latest_snapshot_and_a_dry_run_writes_nothing(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(data_dir)
    target = tmp_path / "out"
    assert main(["restore", "r1", "--target", str(target), "--dry-run"]) == 0
    assert "would restore 3" in capsys.readouterr().out
    assert not target.exists()
    assert main(["restore", "r1", "--target", str(target)]) == 0
    assert tree(target) == SECOND
    assert "restored 3, unchanged 0" in capsys.readouterr().out
    assert main(["restore", "r1", "--target", str(target)]) == 0  # again: nothing to do
    assert "restored 0, unchanged 3" in capsys.readouterr().out


def test_restore_an_older_checkpoint_leaves_changed_files_alone_unless_forced(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, _ = seed(data_dir)
    target = tmp_path / "out"
    assert main(["restore", "r1", "--target", str(target)]) == 0
    (target / "notes.txt").write_bytes(b"mine")  # not in the snapshot: never touched
    capsys.readouterr()
    assert main(["restore", "r1", "--checkpoint", first, "--target", str(target),
                 "--json"]) == 1
    plan = json.loads(capsys.readouterr().out)
    assert plan["files"] == {"README.md": "unchanged", "data/blob.bin": "unchanged",
                             "src/app.py": "conflict"}
    assert (target / "src/app.py").read_bytes() == SECOND["src/app.py"]
    assert main(["restore", "r1", "--checkpoint", first, "--target", str(target),
                 "--force"]) == 0
    assert tree(target) == {**FIRST, "notes.txt": b"mine"}


def test_restore_never_writes_through_a_link_out_of_the_target(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(data_dir)
    target, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    target.mkdir()
    elsewhere.mkdir()
    (target / "src").symlink_to(elsewhere, target_is_directory=True)
    assert main(["restore", "r1", "--target", str(target), "--force"]) == 1
    assert "src is a link; not written through" in capsys.readouterr().out
    assert list(elsewhere.iterdir()) == []
    assert (target / "README.md").read_bytes() == FIRST["README.md"]


def test_restore_verifies_every_blob_before_writing_anything(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(data_dir)
    tampered = hashlib.sha256(SECOND["src/app.py"]).hexdigest()
    with sqlite3.connect(data_dir / "mcp-checkpoint.db") as db:
        db.execute("UPDATE blobs SET data = ? WHERE name = ?", (b"print('evil')\n", tampered))
    target = tmp_path / "out"
    assert main(["restore", "r1", "--target", str(target)]) != 0
    assert "src/app.py fails its SHA-256 check" in capsys.readouterr().err
    assert not target.exists() or tree(target) == {}


def test_restore_of_an_unknown_run_or_a_checkpoint_without_files_says_so(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(data_dir)
    assert main(["restore", "nope", "--target", str(tmp_path / "x")]) == 1
    assert capsys.readouterr().err == (
        "mcp-checkpoint: not_found: run nope (no run id starts with it)\n"
    )
    settings = Settings(data_dir=data_dir)

    async def plain() -> str:
        store = make_store(settings)
        await store.open()
        try:
            episodes = Episodes(store, HeuristicTokenizer(), settings)
            done = await episodes.checkpoint(T, "r1", CheckpointPatch(progress=["no files"]))
            return done.checkpoint.checkpoint_id
        finally:
            await store.close()

    bare = anyio.run(plain)
    assert main(["restore", "r1", "--checkpoint", bare, "--target", str(tmp_path / "x")]) == 1
    assert f"checkpoint {bare} kept no files" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_runs_checkpoints_lists_names_and_snapshot_sizes(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = seed(data_dir)
    assert main(["runs", "checkpoints", "r1"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert [(row[1], row[-2], row[-1]) for row in rows] == [(second, "3", "v2"), (first, "3", "v1")]


def test_runs_show_gives_stats_by_tool_and_status(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(data_dir)
    assert main(["runs", "show", "r1"]) == 0
    text = capsys.readouterr().out
    assert "steps by tool and status:" in text and "2  edit (ok)" in text
    assert ", 3 episodes, " in text  # two checkpoints: the third episode runs
    assert main(["runs", "show", "r1", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)["stats"]
    assert stats["steps_by_tool_and_status"][0] == {
        "tool": "edit", "status": "ok", "steps": 2, "tokens": stats["tokens"]}
    assert stats["checkpoints"] == 2 and stats["duration_seconds"] >= 0
