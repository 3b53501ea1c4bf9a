"""Retention and resume packs through the command line on PostgreSQL: ``runs prune`` on a
PostgreSQL store, and a pack exported from SQLite imported into PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from mcp import Client, StdioServerParameters

from mcp_checkpoint.cli import main
from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.episodes import Episodes
from mcp_checkpoint.core.memory import MemoryService
from mcp_checkpoint.core.models import CheckpointId, CheckpointPatch, StepDraft, Tenant
from mcp_checkpoint.core.ports import Store
from mcp_checkpoint.core.tokens import HeuristicTokenizer
from mcp_checkpoint.storage import make_store
from tests.e2e.conftest import SERVER, server_env
from tests.e2e.test_cli_packs import seed as seed_pack_source

pytestmark = pytest.mark.e2e

T = Tenant("local")


def on_store(settings: Settings, body: Callable[[Store, Episodes], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        store = make_store(settings)
        await store.open()
        try:
            memory = MemoryService(store, settings)
            return await body(store, Episodes(store, HeuristicTokenizer(), settings, memory=memory))
        finally:
            await store.close()

    return anyio.run(run)


def test_cli_runs_prune_on_postgres_removes_old_steps_and_keeps_the_run_usable(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("MCP_CHECKPOINT_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MCP_CHECKPOINT_STORE_URL", postgres_url)
    settings = Settings(data_dir=data_dir, store_url=postgres_url,
                        checkpoint={"trigger_steps": 1000})

    async def seed(_: Store, episodes: Episodes) -> list[str]:
        ids: list[str] = []
        for run_id in ("r1", "r2"):
            await episodes.start_run(T, f"Objective of {run_id}", run_id=run_id)
            for i in range(1, 71):
                await episodes.record_step(T, run_id, StepDraft(
                    tool="bash", input=f"cmd {i}", output="o" * 400,
                    idempotency_key=f"{run_id}-k{i}",
                ))
                if i % 20 == 0:
                    made = await episodes.checkpoint(
                        T, run_id, CheckpointPatch(progress=[f"{run_id} reached {i}"])
                    )
                    if run_id == "r1":
                        ids.append(made.checkpoint.checkpoint_id)
        await episodes.set_run(T, "r1", status="completed")
        return ids

    r1_checkpoints: list[str] = on_store(settings, seed)
    assert len(r1_checkpoints) == 3

    assert main(["runs", "prune", "--older-than", "0s"]) == 0
    out = capsys.readouterr().out
    assert "r1: would remove 60 steps (through seq 60) and 2 checkpoints" in out
    assert "nothing was removed" in out and "r2" not in out  # active runs are not listed

    assert main(["runs", "prune", "--older-than", "0s", "--keep-checkpoints", "2", "--apply",
                 "--vacuum", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dry_run"] is False
    assert report["runs"] == [{
        "tenant": "local", "run_id": "r1", "skipped": None, "steps_removed": 40,
        "pruned_through_seq": 40, "checkpoints_removed": [r1_checkpoints[0]],
    }]
    assert report["file_bytes"] is None  # --vacuum is SQLite's; PostgreSQL autovacuums

    with psycopg.connect(postgres_url) as conn:
        steps = dict(conn.execute("SELECT run_id, count(*) FROM steps GROUP BY run_id"))
        tombstones = conn.execute(
            "SELECT checkpoint_id, run_id, number, through_seq FROM pruned_checkpoints"
        ).fetchall()
    assert steps == {"r1": 30, "r2": 70}
    assert tombstones == [(r1_checkpoints[0], "r1", 1, 20)]

    # Pruning again removes nothing more.
    assert main(["runs", "prune", "--older-than", "0s", "--keep-checkpoints", "2",
                 "--apply"]) == 0
    assert "removed 0 steps and 0 checkpoints from 0 of 1 finished runs" in (
        capsys.readouterr().out
    )
    assert main(["runs", "verify", "r1"]) == 0
    assert "ok — 30 steps (1–40 pruned)" in capsys.readouterr().out

    async def after_prune(store: Store, episodes: Episodes) -> None:
        gone = await store.find_checkpoint(T, CheckpointId(r1_checkpoints[0]))
        kept = await store.find_checkpoint(T, CheckpointId(r1_checkpoints[1]))
        assert gone is not None and gone.pruned and gone.number == 1
        assert kept is not None and not kept.pruned and kept.number == 2
        # The run goes on: a pruned step's key is forgotten, a kept one still answers.
        await episodes.set_run(T, "r1", status="active")
        again = await episodes.record_step(
            T, "r1", StepDraft(tool="bash", input="cmd 50", output="o" * 400,
                               idempotency_key="r1-k50"),
        )
        assert again.duplicate and again.seq == 50
        fresh = await episodes.record_step(
            T, "r1", StepDraft(tool="bash", input="cmd 1", output="o" * 400,
                               idempotency_key="r1-k1"),
        )
        assert not fresh.duplicate and fresh.seq == 71
        made = await episodes.checkpoint(T, "r1", CheckpointPatch(progress=["r1 reached 71"]))
        assert made.checkpoint.number == 4

    on_store(settings, after_prune)

    # A real server on the same database rehydrates the pruned run.
    async def rehydrate() -> tuple[dict[str, Any], dict[str, Any]]:
        params = StdioServerParameters(
            command=str(SERVER), args=["serve"],
            env=server_env(data_dir, MCP_CHECKPOINT_STORE_URL=postgres_url),
        )
        async with Client(params) as client:
            latest = await client.call_tool("rehydrate", {"run_id": "r1"})
            run = json.loads((await client.read_resource("run://r1")).contents[0].text)  # type: ignore[union-attr]
            assert latest.structured_content is not None and not latest.is_error
            return latest.structured_content, run

    context, run = anyio.run(rehydrate)
    assert "r1 reached 20" in str(context["context"])  # merged from the pruned checkpoint
    assert "r1 reached 71" in str(context["context"])
    assert run["pruned_seq"] == 40
    assert (run["head_seq"], run["step_count"], run["covered_seq"]) == (71, 71, 71)


def test_a_pack_exported_from_sqlite_imports_into_postgres_with_identical_rehydrate(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = tmp_path / "source"
    monkeypatch.delenv("MCP_CHECKPOINT_STORE_URL", raising=False)
    monkeypatch.setenv("MCP_CHECKPOINT_DATA_DIR", str(source))
    seed_pack_source(source)
    pack = tmp_path / "r1.zip"
    assert main(["export", "r1", "-o", str(pack)]) == 0
    capsys.readouterr()

    monkeypatch.setenv("MCP_CHECKPOINT_DATA_DIR", str(tmp_path / "target"))
    monkeypatch.setenv("MCP_CHECKPOINT_STORE_URL", postgres_url)
    assert main(["import", str(pack), "--apply"]) == 0
    assert "imported 1 runs, 1 memory batches and 1 memories" in capsys.readouterr().out
    assert main(["runs", "verify", "r1"]) == 0
    assert "ok — 60 steps" in capsys.readouterr().out

    async def read(store: Store, episodes: Episodes) -> dict[str, Any]:
        hits = await store.search_lexical(T, "flaky tmp dir", limit=5)
        retry = await episodes.record_step(T, "r1", StepDraft(
            tool="bash", input="pytest tests/test_io.py -k case59", output="case59 passed",
            idempotency_key="k59",
        ))
        return {
            "rehydrate": [
                await episodes.rehydrate(T, "r1", budget_tokens=budget)
                for budget in (300, 8000)
            ],
            "run": await store.get_run(T, "r1"),
            "steps": await store.get_steps(T, "r1", limit=100),
            "checkpoints": await store.list_checkpoints(T, "r1", limit=10, offset=0),
            "memories": [memory.content for memory, _ in hits],
            "retry": (retry.duplicate, retry.seq),
        }

    # The retry is a duplicate on both (the key came with the pack), so nothing moved.
    on_sqlite = on_store(Settings(data_dir=source), read)
    on_postgres = on_store(
        Settings(data_dir=tmp_path / "target", store_url=postgres_url), read
    )
    assert on_postgres["rehydrate"] == on_sqlite["rehydrate"]
    assert on_postgres["run"] == on_sqlite["run"]
    assert on_postgres["steps"] == on_sqlite["steps"]
    assert on_postgres["checkpoints"] == on_sqlite["checkpoints"]
    assert on_postgres["memories"] == on_sqlite["memories"] == [
        "test_io is flaky when the tmp dir is shared"
    ]
    assert on_postgres["retry"] == on_sqlite["retry"] == (True, 60)

    # Importing the same pack again finds everything there.
    assert main(["import", str(pack), "--apply"]) == 0
    assert "nothing to do: everything in the pack is already imported" in (
        capsys.readouterr().out
    )
