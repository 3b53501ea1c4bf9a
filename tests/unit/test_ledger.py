"""The ledger's hash chain detects edits, deletions and reordering."""

from __future__ import annotations

import pytest

from mcp_checkpoint.core.ledger import ChainBreak, genesis_hash, verify_chain
from mcp_checkpoint.core.models import RunId, Step, StepDraft
from mcp_checkpoint.storage.reference.store import ReferenceStore
from tests.unit.conftest import T

pytestmark = pytest.mark.anyio


async def _steps(episodes, n: int) -> list[Step]:  # type: ignore[no-untyped-def]
    await episodes.start_run(T, "x", run_id="r1")
    for i in range(n):
        await episodes.record_step(T, "r1", StepDraft(tool="t", input={"i": i}, output="é" * i))
    store: ReferenceStore = episodes._store
    return await store.get_steps(T, RunId("r1"), limit=100)


async def test_verify_chain_accepts_an_untouched_ledger(episodes) -> None:  # type: ignore[no-untyped-def]
    steps = await _steps(episodes, 5)
    assert verify_chain(RunId("r1"), steps) == steps[-1].hash
    assert steps[0].prev_hash == genesis_hash(RunId("r1"))


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda s: [s[0], s[1].model_copy(update={"output": "forged"}), *s[2:]],
                     id="edited-output"),
        pytest.param(lambda s: [s[0], *s[2:]], id="deleted-step"),
        pytest.param(lambda s: [s[0], s[2], s[1], *s[3:]], id="reordered"),
        pytest.param(lambda s: [s[0], s[1].model_copy(update={"tool": "other"}), *s[2:]],
                     id="edited-tool"),
    ],
)
async def test_verify_chain_detects_tampering(episodes, tamper) -> None:  # type: ignore[no-untyped-def]
    steps = await _steps(episodes, 5)
    with pytest.raises(ChainBreak):
        verify_chain(RunId("r1"), tamper(steps))
