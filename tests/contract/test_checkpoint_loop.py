"""The checkpoint loop's rules that rest on what a store keeps, on every backend: the
error trigger stays due until a checkpoint, and a checkpoint with nothing new to distil
returns the latest one instead of making another."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.episodes import Episodes
from mcp_checkpoint.core.models import CheckpointPatch, RunId, StepDraft
from mcp_checkpoint.core.ports import Store
from mcp_checkpoint.core.tokens import HeuristicTokenizer

from .conftest import TENANT_A, Clock

pytestmark = pytest.mark.anyio


def episodes_over(store: Store, tmp_path: Path, clock: Clock) -> Episodes:
    settings = Settings(store_url="memory://", data_dir=tmp_path)
    return Episodes(store, HeuristicTokenizer(), settings, clock=clock)


def ok(n: int) -> StepDraft:
    return StepDraft(tool="bash", input=f"echo {n}", output=str(n))


async def test_the_error_trigger_stays_due_until_a_checkpoint(
    store: Store, tmp_path: Path, clock: Clock
) -> None:
    episodes = episodes_over(store, tmp_path, clock)
    await episodes.start_run(TENANT_A, "x", run_id="r1")
    assert not (await episodes.record_step(TENANT_A, "r1", ok(1))).checkpoint_due
    failed = StepDraft(tool="bash", input="pytest", output="1 failed", status="error")
    assert (await episodes.record_step(TENANT_A, "r1", failed)).due_reason == "error"
    later = await episodes.record_step(TENANT_A, "r1", ok(3))
    assert later.checkpoint_due and later.due_reason == "error"
    assert (await store.get_run(TENANT_A, RunId("r1"))).error_seq == 2
    await episodes.checkpoint(TENANT_A, "r1", CheckpointPatch(progress=["looked at it"]))
    after = await episodes.record_step(TENANT_A, "r1", ok(4))
    assert not after.checkpoint_due and after.due_reason is None


async def test_a_checkpoint_with_no_new_steps_returns_the_latest_unchanged(
    store: Store, tmp_path: Path, clock: Clock
) -> None:
    episodes = episodes_over(store, tmp_path, clock)
    await episodes.start_run(TENANT_A, "x", run_id="r1")
    await episodes.record_step(TENANT_A, "r1", ok(1))
    first = await episodes.checkpoint(TENANT_A, "r1", CheckpointPatch())
    again = await episodes.checkpoint(TENANT_A, "r1", CheckpointPatch())
    assert first.created and not again.created
    assert again.checkpoint == first.checkpoint
    assert "no steps since checkpoint 1" in (again.distill_note or "")
    run = await store.get_run(TENANT_A, RunId("r1"))
    assert run.checkpoint_count == 1
    assert len(await store.list_checkpoints(TENANT_A, RunId("r1"), limit=10, offset=0)) == 1
    # Content the model writes is still a new checkpoint, new steps or not.
    written = await episodes.checkpoint(TENANT_A, "r1", CheckpointPatch(next_actions=["ship"]))
    assert written.created and written.checkpoint.number == 2
