"""A store seeded with what a person would look at: a run with steps and checkpoints, a
run whose objective is hostile markup, committed memories with provenance and a
supersession, and a pending batch."""

from __future__ import annotations

from dataclasses import dataclass

from mcp_checkpoint.core.models import CheckpointPatch, ProposalItem, StepDraft, Tenant
from mcp_checkpoint.ui import Backend

HOSTILE = "<script>alert(1)</script> \x1b[31mred\x1b[0m <img src=x onerror=alert(2)>"


@dataclass(frozen=True)
class Seeded:
    run_id: str
    hostile_run_id: str
    checkpoint_ids: list[str]
    memory_id: str
    superseded_id: str
    batch_id: str
    steps: int


async def seed(backend: Backend, tenant: str = "local", steps: int = 30) -> Seeded:
    t = Tenant(tenant)
    episodes, memory = backend.episodes, backend.memory
    run = await episodes.start_run(
        t, "Fix the flaky login test", acceptance_criteria=["CI is green three times"],
        budget_tokens=2000, run_id="run_ui_main",
    )
    checkpoints: list[str] = []
    for seq in range(1, steps + 1):
        await episodes.record_step(t, run.run_id, StepDraft(
            tool="bash" if seq % 3 else "edit_file",
            input={"cmd": f"pytest tests/test_login.py -k case{seq}"},
            output=f"{seq} passed" + (" but the login timed out" if seq % 7 == 0 else ""),
            status="error" if seq % 7 == 0 else "ok",
        ))
        if seq % 10 == 0:
            result = await episodes.checkpoint(t, run.run_id, CheckpointPatch(
                progress=[f"ran the login tests up to case {seq}"],
                decisions=[f"decision {seq}: retry the login once"],
                next_actions=[f"look at case {seq + 1}"],
                state={"cases_done": seq},
            ))
            checkpoints.append(result.checkpoint.checkpoint_id)
    hostile = await episodes.start_run(t, HOSTILE, run_id="run_ui_hostile")
    await episodes.record_step(t, hostile.run_id, StepDraft(
        tool="<b>bold</b>", input=HOSTILE, output={"html": "</pre><script>alert(3)</script>"},
    ))
    first = await memory.propose(t, [
        ProposalItem(content="The login test needs a 5 s timeout", kind="fact", scope="project:web",
                     source_refs=[f"step:{run.run_id}:7", f"checkpoint:{checkpoints[0]}"]),
        ProposalItem(content=HOSTILE, kind="lesson", scope="global"),
    ], run_id=run.run_id)
    committed = await memory.commit(t, first.batch_id)
    old_id = committed.memory_ids[0]
    second = await memory.propose(t, [
        ProposalItem(content="The login test needs a 10 s timeout on CI", kind="fact",
                     scope="project:web", source_refs=[f"step:{run.run_id}:14"]),
        ProposalItem(op="supersede", target_id=old_id, superseded_by="#0"),
    ], run_id=run.run_id)
    replaced = await memory.commit(t, second.batch_id)
    pending = await memory.propose(t, [
        ProposalItem(content="Use the staging database for login tests", kind="procedure",
                     scope="project:web", rationale="seen in step 21"),
        ProposalItem(content="The login test needs a 10 s timeout on CI", kind="fact",
                     scope="project:web"),
    ], run_id=run.run_id)
    return Seeded(
        run_id=run.run_id, hostile_run_id=hostile.run_id, checkpoint_ids=checkpoints,
        memory_id=replaced.memory_ids[0], superseded_id=old_id, batch_id=pending.batch_id,
        steps=steps,
    )
