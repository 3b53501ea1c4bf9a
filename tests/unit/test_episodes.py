"""The checkpoint loop on the in-memory reference store."""

from __future__ import annotations

import anyio
import pytest

from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.episodes import Episodes
from mcp_checkpoint.core.ledger import verify_chain
from mcp_checkpoint.core.models import CheckpointPatch, RunId, StepDraft
from mcp_checkpoint.errors import (
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    PayloadTooLargeError,
)
from mcp_checkpoint.storage.reference.store import ReferenceStore
from tests.unit.conftest import FakeClock, T, WordTokenizer

pytestmark = pytest.mark.anyio


def step(i: int, **kw: object) -> StepDraft:
    return StepDraft(
        tool=str(kw.pop("tool", "bash")),
        input=kw.pop("input", {"cmd": f"cat src/pkg/mod{i}.py"}),
        output=kw.pop("output", f"contents of mod{i} " * 5),
        **kw,  # type: ignore[arg-type]
    )


async def record(episodes: Episodes, run_id: str, n: int, start: int = 1) -> None:
    for i in range(start, start + n):
        await episodes.record_step(T, run_id, step(i))


# -- set_run (optimistic updates) ---------------------------------------------------------


async def test_set_run_with_the_version_read_applies_and_bumps_it(episodes: Episodes) -> None:
    run = await episodes.start_run(T, "x", run_id="r1")
    updated = await episodes.set_run(T, "r1", pinned=["a"], expected_version=run.version)
    assert (updated.version, updated.pinned) == (run.version + 1, ["a"])


async def test_set_run_with_a_stale_version_conflicts_naming_the_current_one(
    episodes: Episodes,
) -> None:
    await episodes.start_run(T, "x", run_id="r1")
    await episodes.set_run(T, "r1", status="completed", expected_version=1)
    with pytest.raises(ConflictError, match="run r1 is at version 2, not expected_version 1"):
        await episodes.set_run(T, "r1", pinned=["late"], expected_version=1)
    run = await episodes.get_run(T, "r1")
    assert (run.version, run.status, run.pinned) == (2, "completed", [])


async def test_set_run_expected_version_must_be_positive(episodes: Episodes) -> None:
    await episodes.start_run(T, "x", run_id="r1")
    with pytest.raises(InvalidArgumentError, match="expected_version"):
        await episodes.set_run(T, "r1", status="completed", expected_version=0)


async def test_set_run_without_a_version_applies_to_the_run_as_it_is(episodes: Episodes) -> None:
    await episodes.start_run(T, "x", run_id="r1")
    await episodes.set_run(T, "r1", pinned=["a"])
    assert (await episodes.set_run(T, "r1", pinned=["b"])).version == 3


# -- start_run ---------------------------------------------------------------------------


async def test_start_run_rejects_empty_objective_naming_the_field(episodes: Episodes) -> None:
    with pytest.raises(InvalidArgumentError, match="objective must not be empty"):
        await episodes.start_run(T, "   ")


async def test_start_run_rejects_bad_run_id_and_duplicates(episodes: Episodes) -> None:
    with pytest.raises(InvalidArgumentError, match="run_id may hold only"):
        await episodes.start_run(T, "x", run_id="../etc")
    await episodes.start_run(T, "x", run_id="r1")
    with pytest.raises(ConflictError, match="r1 already exists"):
        await episodes.start_run(T, "y", run_id="r1")


async def test_start_run_budget_outside_limits_names_the_setting(episodes: Episodes) -> None:
    with pytest.raises(InvalidArgumentError, match="limits.min_budget_tokens"):
        await episodes.start_run(T, "x", budget_tokens=1)
    with pytest.raises(PayloadTooLargeError, match="limits.max_budget_tokens"):
        await episodes.start_run(T, "x", budget_tokens=10**9)


async def test_start_run_oversized_list_names_the_limit(episodes: Episodes) -> None:
    with pytest.raises(PayloadTooLargeError, match="pinned has 201 items; limits.max_list_items"):
        await episodes.start_run(T, "x", pinned=["p"] * 201)


# -- record_step -------------------------------------------------------------------------


async def test_record_step_assigns_gap_free_seq_and_chains_hashes(
    episodes: Episodes, store: ReferenceStore
) -> None:
    await episodes.start_run(T, "x", run_id="r1")
    acks = [await episodes.record_step(T, "r1", step(i)) for i in range(1, 21)]
    assert [a.seq for a in acks] == list(range(1, 21))
    steps = await store.get_steps(T, RunId("r1"), limit=100)
    run = await store.get_run(T, RunId("r1"))
    assert verify_chain(RunId("r1"), steps) == run.head_hash


async def test_record_step_retry_with_key_returns_first_answer_and_writes_nothing(
    episodes: Episodes, store: ReferenceStore
) -> None:
    await episodes.start_run(T, "x", run_id="r1")
    first = await episodes.record_step(T, "r1", step(1, idempotency_key="k1"))
    await episodes.record_step(T, "r1", step(2))
    again = await episodes.record_step(T, "r1", step(1, idempotency_key="k1"))
    assert again.duplicate and not first.duplicate
    assert again.model_dump(exclude={"duplicate"}) == first.model_dump(exclude={"duplicate"})
    assert (await store.get_run(T, RunId("r1"))).step_count == 2


async def test_record_step_same_key_different_content_is_a_conflict(episodes: Episodes) -> None:
    await episodes.start_run(T, "x", run_id="r1")
    await episodes.record_step(T, "r1", step(1, idempotency_key="k1"))
    with pytest.raises(ConflictError, match="idempotency_key k1"):
        await episodes.record_step(T, "r1", step(2, idempotency_key="k1"))


async def test_record_step_unknown_run_is_not_found(episodes: Episodes) -> None:
    with pytest.raises(NotFoundError, match="run nope"):
        await episodes.record_step(T, "nope", step(1))


async def test_record_step_oversized_payload_names_the_limit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(store_url="memory://", data_dir=tmp_path, limits={"max_step_bytes": 2048})
    episodes = Episodes(ReferenceStore(), WordTokenizer(), settings)
    await episodes.start_run(T, "x", run_id="r1")
    with pytest.raises(PayloadTooLargeError, match="limits.max_step_bytes is 2048"):
        await episodes.record_step(T, "r1", step(1, output="x" * 5000))


@pytest.mark.parametrize(
    ("overrides", "drafts", "reason"),
    [
        pytest.param({"trigger_steps": 3}, [step(1), step(2), step(3)], "steps", id="steps"),
        pytest.param({}, [step(1, status="error")], "error", id="error"),
        pytest.param({"trigger_token_share": 0.1}, [step(1, output="y" * 400)], "tokens",
                     id="tokens"),
    ],
)
async def test_record_step_reports_why_a_checkpoint_is_due(
    tmp_path, overrides: dict[str, object], drafts: list[StepDraft], reason: str  # type: ignore[no-untyped-def]
) -> None:
    settings = Settings(store_url="memory://", data_dir=tmp_path, checkpoint=overrides)
    episodes = Episodes(ReferenceStore(), WordTokenizer(), settings)
    await episodes.start_run(T, "x", run_id="r1", budget_tokens=1000)
    acks = [await episodes.record_step(T, "r1", d) for d in drafts]
    assert [a.checkpoint_due for a in acks[:-1]] == [False] * (len(acks) - 1)
    assert acks[-1].checkpoint_due and acks[-1].due_reason == reason


async def test_record_step_working_memory_resets_after_checkpoint(episodes: Episodes) -> None:
    await episodes.start_run(T, "x", run_id="r1")
    await record(episodes, "r1", 5)
    await episodes.checkpoint(T, "r1", CheckpointPatch(progress=["five steps"]))
    ack = await episodes.record_step(T, "r1", step(6))
    assert ack.working_steps == 1 and ack.episode == 2
    assert 0 < ack.working_tokens < 200


# -- checkpoint --------------------------------------------------------------------------


async def test_checkpoint_merges_model_content_with_the_previous(episodes: Episodes) -> None:
    await episodes.start_run(T, "x", run_id="r1")
    await record(episodes, "r1", 2)
    await episodes.checkpoint(T, "r1", CheckpointPatch(
        progress=["a"], state={"branch": "main", "bug": "off by one"},
        next_actions=["n1"], decisions=["d1"],
    ))
    await record(episodes, "r1", 2, start=3)
    second = await episodes.checkpoint(T, "r1", CheckpointPatch(
        progress=["b"], state={"bug": None, "test": "fails"}, next_actions=["n2"],
    ))
    content = second.checkpoint.content
    assert content.progress == ["a", "b"]
    assert content.state == {"branch": "main", "test": "fails"}
    assert content.next_actions == ["n2"]
    assert content.decisions == ["d1"]
    assert second.checkpoint.number == 2 and second.checkpoint.parent_id is not None


async def test_checkpoint_keeps_steps_after_through_seq_in_working_memory(
    episodes: Episodes,
) -> None:
    await episodes.start_run(T, "x", run_id="r1")
    await record(episodes, "r1", 10)
    result = await episodes.checkpoint(T, "r1", CheckpointPatch(progress=["p"]), through_seq=6)
    assert result.checkpoint.through_seq == 6
    assert result.working_steps == 4
    context = await episodes.rehydrate(T, "r1")
    assert context.steps_included == [7, 8, 9, 10]


async def test_checkpoint_through_seq_out_of_range_is_invalid(episodes: Episodes) -> None:
    await episodes.start_run(T, "x", run_id="r1")
    await record(episodes, "r1", 3)
    with pytest.raises(InvalidArgumentError, match="through_seq is 9"):
        await episodes.checkpoint(T, "r1", CheckpointPatch(progress=["p"]), through_seq=9)
    await episodes.checkpoint(T, "r1", CheckpointPatch(progress=["p"]), through_seq=2)
    with pytest.raises(InvalidArgumentError, match="through_seq is 1"):
        await episodes.checkpoint(T, "r1", CheckpointPatch(progress=["p"]), through_seq=1)


async def test_checkpoint_without_content_distils_by_rules(episodes: Episodes) -> None:
    await episodes.start_run(T, "x", run_id="r1")
    await record(episodes, "r1", 4)
    await episodes.record_step(
        T, "r1", step(5, status="error", output="Traceback: KeyError in src/pkg/mod5.py")
    )
    result = await episodes.checkpoint(T, "r1", CheckpointPatch())
    content = result.checkpoint.content
    assert result.checkpoint.source == "rules"
    assert content.progress[0].startswith("Steps 1–5: 5 steps (bash×5), 1 failed")
    found = {a.value: a.kind for a in content.auto_artifacts}
    assert found["src/pkg/mod1.py"] == "file" and found["src/pkg/mod5.py"] == "file"
    assert content.artifacts == []  # no model wrote any
    assert content.errors == [
        "#5 bash `cat src/pkg/mod5.py`: Traceback: KeyError in src/pkg/mod5.py"
    ]


async def test_checkpoint_model_content_still_keeps_touched_paths(episodes: Episodes) -> None:
    await episodes.start_run(T, "x", run_id="r1")
    await record(episodes, "r1", 3)
    result = await episodes.checkpoint(
        T, "r1", CheckpointPatch(artifacts=["notes.md", "src/pkg/mod1.py"])
    )
    content = result.checkpoint.content
    assert content.artifacts == ["notes.md", "src/pkg/mod1.py"]
    found = [a.value for a in content.auto_artifacts]
    assert "src/pkg/mod3.py" in found
    assert "src/pkg/mod1.py" not in found  # the model wrote it: not repeated as extracted


async def test_checkpoint_sampled_answer_cannot_write_extracted_artifacts(
    episodes: Episodes,
) -> None:
    await episodes.start_run(T, "x", run_id="r1")
    await record(episodes, "r1", 2)
    answer = (
        '{"artifacts": ["plan.md"], '
        '"auto_artifacts": [{"kind": "file", "value": "made/up.py"}]}'
    )
    result = await episodes.checkpoint(T, "r1", CheckpointPatch(), sampled=answer)
    content = result.checkpoint.content
    assert result.checkpoint.source == "sampling"
    assert content.artifacts == ["plan.md"]
    found = [a.value for a in content.auto_artifacts]
    assert "made/up.py" not in found and "src/pkg/mod2.py" in found


async def test_checkpoint_uses_the_sampled_answer_of_the_clients_model(
    episodes: Episodes,
) -> None:
    await episodes.start_run(T, "fix the bug", run_id="r1")
    await record(episodes, "r1", 3)
    request = await episodes.sampling_request(T, "r1")
    assert request is not None
    assert "Objective: fix the bug" in request.text and "[#3] bash" in request.text
    assert request == await episodes.sampling_request(T, "r1")  # stable across retries
    answer = 'Sure: {"progress": ["read the modules"], "next_actions": ["fix mod2"]}'
    result = await episodes.checkpoint(T, "r1", CheckpointPatch(), sampled=answer)
    assert result.checkpoint.source == "sampling"
    assert result.checkpoint.content.next_actions == ["fix mod2"]
    assert await episodes.sampling_request(T, "r1") is None  # nothing left to distil


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        pytest.param("I could not do that.", "no JSON object", id="no-json"),
        pytest.param('{"progress": "not a list"}', "not a checkpoint", id="wrong-shape"),
        pytest.param('{"progress": ["x"], "bogus": 1}', "not a checkpoint", id="extra-key"),
    ],
)
async def test_checkpoint_falls_back_to_rules_on_an_unusable_answer(
    episodes: Episodes, answer: str, why: str
) -> None:
    await episodes.start_run(T, "x", run_id="r1")
    await record(episodes, "r1", 2)
    result = await episodes.checkpoint(T, "r1", CheckpointPatch(), sampled=answer)
    assert result.checkpoint.source == "rules"
    assert why in (result.distill_note or "")
    assert result.checkpoint.content.progress[0].startswith("Steps 1–2")


async def test_checkpoint_concurrent_checkpoints_both_land_in_a_chain(episodes: Episodes) -> None:
    await episodes.start_run(T, "x", run_id="r1")
    await record(episodes, "r1", 4)
    results = []

    async def take(label: str) -> None:
        results.append(await episodes.checkpoint(T, "r1", CheckpointPatch(progress=[label])))

    async with anyio.create_task_group() as tg:
        tg.start_soon(take, "a")
        tg.start_soon(take, "b")
    numbers = sorted(r.checkpoint.number for r in results)
    assert numbers == [1, 2]
    last = max(results, key=lambda r: r.checkpoint.number).checkpoint
    assert sorted(last.content.progress) == ["a", "b"]


# -- rehydrate ---------------------------------------------------------------------------


async def test_rehydrate_packs_objective_pinned_checkpoint_and_newest_steps(
    episodes: Episodes,
) -> None:
    await episodes.start_run(T, "Fix the parser", run_id="r1", pinned=["never force-push"])
    await record(episodes, "r1", 5)
    await episodes.checkpoint(T, "r1", CheckpointPatch(next_actions=["run the tests"]))
    await record(episodes, "r1", 2, start=6)
    context = await episodes.rehydrate(T, "r1")
    text = context.context
    assert text.startswith("# Resume: run r1")
    assert "Objective: Fix the parser" in text and "never force-push" in text
    assert "1. run the tests" in text
    assert context.steps_included == [6, 7]
    assert text.index("[#6]") < text.index("[#7]")
    assert context.tokens <= context.budget_tokens and context.dropped == []


async def test_rehydrate_never_exceeds_the_budget_and_reports_drops(episodes: Episodes) -> None:
    await episodes.start_run(T, "objective " * 20, run_id="r1", pinned=["pin " * 30] * 5)
    await record(episodes, "r1", 60)
    for budget in (128, 200, 333, 700, 1500, 5000):
        context = await episodes.rehydrate(T, "r1", budget_tokens=budget)
        assert WordTokenizer().count(context.context) == context.tokens <= budget
    small = await episodes.rehydrate(T, "r1", budget_tokens=300)
    dropped = {d.section: d for d in small.dropped}
    assert dropped["steps"].items > 0 and dropped["steps"].tokens > 0
    assert small.steps_included == list(range(61 - len(small.steps_included), 61))


async def test_rehydrate_cuts_an_objective_larger_than_the_budget(episodes: Episodes) -> None:
    await episodes.start_run(T, "long objective " * 400, run_id="r1")
    context = await episodes.rehydrate(T, "r1", budget_tokens=128)
    assert context.tokens <= 128
    assert any(d.reason == "cut to fit the budget" for d in context.dropped)


async def test_rehydrate_is_deterministic(episodes: Episodes) -> None:
    await episodes.start_run(T, "x", run_id="r1")
    await record(episodes, "r1", 30)
    await episodes.checkpoint(T, "r1", CheckpointPatch(), through_seq=20)
    first = await episodes.rehydrate(T, "r1", budget_tokens=600)
    second = await episodes.rehydrate(T, "r1", budget_tokens=600)
    assert first == second


async def test_rehydrate_at_an_older_checkpoint_travels_back(episodes: Episodes) -> None:
    await episodes.start_run(T, "x", run_id="r1")
    await record(episodes, "r1", 5)
    first = await episodes.checkpoint(T, "r1", CheckpointPatch(next_actions=["old plan"]))
    await record(episodes, "r1", 5, start=6)
    await episodes.checkpoint(T, "r1", CheckpointPatch(next_actions=["new plan"]))
    await record(episodes, "r1", 2, start=11)
    old = await episodes.rehydrate(T, "r1", checkpoint_id=first.checkpoint.checkpoint_id)
    assert "old plan" in old.context and "new plan" not in old.context
    assert old.steps_included == [6, 7, 8, 9, 10]
    latest = await episodes.rehydrate(T, "r1")
    assert "new plan" in latest.context and latest.steps_included == [11, 12]


async def test_rehydrate_reads_o_budget_rows_whatever_the_run_length(
    settings: Settings, clock: FakeClock
) -> None:
    class CountingStore(ReferenceStore):
        rows = 0

        async def get_steps(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            found = await super().get_steps(*args, **kwargs)
            CountingStore.rows += len(found)
            return found

    reads = []
    for n in (200, 4000):
        store = CountingStore()
        episodes = Episodes(store, WordTokenizer(), settings, clock=clock)
        await episodes.start_run(T, "x", run_id="r1")
        await record(episodes, "r1", n)
        CountingStore.rows = 0
        await episodes.rehydrate(T, "r1", budget_tokens=800)
        reads.append(CountingStore.rows)
    assert reads[0] == reads[1] < 100


async def test_rehydrate_includes_relevant_memories(episodes: Episodes, memory) -> None:  # type: ignore[no-untyped-def]
    from mcp_checkpoint.core.models import ProposalItem

    batch = await memory.propose(T, [
        ProposalItem(content="The parser lives in src/parse.py and uses recursive descent"),
        ProposalItem(content="Lunch is at noon"),
    ])
    await memory.commit(T, batch.batch_id)
    await episodes.start_run(T, "Fix the parser crash", run_id="r1")
    context = await episodes.rehydrate(T, "r1")
    assert "recursive descent" in context.context
    assert len(context.memories_included) == 1


async def test_rehydrate_spends_spare_budget_on_the_newest_covered_steps(
    episodes: Episodes,
) -> None:
    await episodes.start_run(T, "x", run_id="r1")
    await record(episodes, "r1", 40)
    await episodes.checkpoint(T, "r1", CheckpointPatch(next_actions=["go on"]), through_seq=38)
    roomy = await episodes.rehydrate(T, "r1", budget_tokens=5000)
    assert roomy.steps_included == [39, 40]
    assert roomy.covered_steps_included == list(range(1, 39))
    assert roomy.context.index("## Earlier steps") < roomy.context.index("## Steps since")
    tight = await episodes.rehydrate(T, "r1", budget_tokens=300)
    assert tight.steps_included == [39, 40]
    covered = tight.covered_steps_included
    assert covered == list(range(39 - len(covered), 39))  # the newest ones, contiguous
    assert len(covered) < 38 and tight.tokens <= 300
    assert all(d.section != "earlier" for d in tight.dropped)


async def test_rehydrate_fills_spare_budget_with_memories_by_relevance(
    episodes: Episodes, memory  # type: ignore[no-untyped-def]
) -> None:
    from mcp_checkpoint.core.models import ProposalItem

    items = [ProposalItem(content=f"The parser fact number {i} about parser crashes")
             for i in range(30)]
    batch = await memory.propose(T, items)
    await memory.commit(T, batch.batch_id)
    await episodes.start_run(T, "Fix the parser crash", run_id="r1")

    roomy = await episodes.rehydrate(T, "r1", budget_tokens=2000)
    tight = await episodes.rehydrate(T, "r1", budget_tokens=150)

    # Not a fixed count: with no steps or checkpoint, memories take the whole budget.
    assert len(roomy.memories_included) == 30
    assert roomy.tokens <= 2000
    assert 0 < len(tight.memories_included) < 30
    assert tight.memories_included == roomy.memories_included[: len(tight.memories_included)]
    assert tight.tokens <= 150


async def test_rehydrate_trims_extracted_artifacts_before_what_a_model_wrote(
    episodes: Episodes,
) -> None:
    await episodes.start_run(T, "x", run_id="r1")
    await record(episodes, "r1", 30)
    written = [f"PR https://example.org/pr/{i}" for i in range(8)]
    await episodes.checkpoint(
        T, "r1", CheckpointPatch(artifacts=written, next_actions=["merge the PR"]),
        through_seq=28,
    )

    shown_extracted = 0
    for budget in range(130, 700, 10):
        ctx = await episodes.rehydrate(T, "r1", budget_tokens=budget)
        if "### Found in the steps" in ctx.context:
            shown_extracted += 1
            # An extracted artifact is shown only when all a model wrote is.
            assert all(w in ctx.context for w in written), budget
            assert "merge the PR" in ctx.context, budget
    assert shown_extracted > 0


async def test_rules_errors_keep_the_last_error_line_of_a_failed_step(
    episodes: Episodes,
) -> None:
    await episodes.start_run(T, "x", run_id="r1")
    out = "Traceback (most recent call last):\n  File \"x.py\", line 3\nKeyError: 'k'\ndone"
    await episodes.record_step(T, "r1", step(1, status="error", output=out))
    result = await episodes.checkpoint(T, "r1", CheckpointPatch())
    assert result.checkpoint.content.errors == ["#1 bash `cat src/pkg/mod1.py`: KeyError: 'k'"]


async def test_rehydrate_shows_extracted_artifacts_before_raw_steps_of_a_rules_checkpoint(
    episodes: Episodes,
) -> None:
    await episodes.start_run(T, "x", run_id="r1")
    await record(episodes, "r1", 6)
    await episodes.checkpoint(T, "r1", CheckpointPatch())  # by rules
    bulky = StepDraft(tool="bash", input={"cmd": "make"}, output="compiler noise " * 60)
    for _ in range(3):
        await episodes.record_step(T, "r1", bulky)

    ctx = await episodes.rehydrate(T, "r1", budget_tokens=160)
    assert ctx.tokens <= 160
    # The compact list of touched paths (one line, comma-separated) outranks step bodies.
    found = ctx.context.split("### Found in the steps\n")[1].split("\n")[0]
    assert "src/pkg/mod1.py, " in found or "src/pkg/mod6.py, " in found
    shown = [i for i in range(1, 7) if f"src/pkg/mod{i}.py" in found]
    assert len(shown) >= 4


async def test_rehydrate_keeps_head_and_tail_of_a_long_objective_within_a_share(
    episodes: Episodes,
) -> None:
    objective = "START of the task " + "background detail " * 100 + "the END"
    await episodes.start_run(T, objective, run_id="r1")
    await record(episodes, "r1", 20)
    ctx = await episodes.rehydrate(T, "r1", budget_tokens=500)
    head = ctx.context.split("\n\n")[0]
    assert "START of the task" in head and "the END" in head and " … " in head
    assert episodes._tok.count(head) <= 0.2 * 500 + 30  # the share, plus the header line
    assert ctx.steps_included  # the rest of the budget went to the work
    assert any(d.section == "objective" for d in ctx.dropped)
    roomy = await episodes.rehydrate(T, "r1", budget_tokens=4000)
    assert objective in " ".join(roomy.context.split())


async def test_rehydrate_fills_a_rules_checkpoints_progress_after_extracted_and_steps(
    episodes: Episodes,
) -> None:
    await episodes.start_run(T, "x", run_id="r1")
    for start in range(1, 40, 3):  # many rules checkpoints: a long progress history
        await record(episodes, "r1", 3, start=start)
        await episodes.checkpoint(T, "r1", CheckpointPatch())
    await record(episodes, "r1", 1, start=40)

    ctx = await episodes.rehydrate(T, "r1", budget_tokens=300)
    assert ctx.tokens <= 300, ctx.context
    assert ctx.steps_included == [40], ctx.context  # the newest step outranks old progress
    found = ctx.context.split("### Found in the steps\n")[1].split("\n")[0]
    assert len(found.split(", ")) >= 8
    progress = ctx.context.split("### Progress\n")[1].split("\n\n")[0].splitlines()
    assert 0 < len(progress) < 13 * 4  # some, within its share: not the whole history


async def test_declarative_triggers_make_a_checkpoint_due_by_tool_or_output(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path, checkpoint={
        "trigger_tools": ["git_commit"], "trigger_output_patterns": [r"^\d+ passed"],
    })
    episodes = Episodes(ReferenceStore(), WordTokenizer(), settings, clock=FakeClock())
    await episodes.start_run(T, "x", run_id="r1")
    plain = await episodes.record_step(T, "r1", step(1))
    committed = await episodes.record_step(T, "r1", StepDraft(tool="git_commit", input="-m fix"))
    passed = await episodes.record_step(
        T, "r1", StepDraft(tool="bash", output="collected 3 items\n3 passed in 0.1s"))
    structured = await episodes.record_step(
        T, "r1", StepDraft(tool="bash", output={"log": "12 passed"}))
    assert (plain.checkpoint_due, plain.due_reason) == (False, None)
    assert (committed.due_reason, passed.due_reason) == ("trigger", "trigger")
    assert structured.due_reason is None  # JSON output: the pattern's ^ sees '{"log"...'
    with pytest.raises(ValueError, match="not a regular expression"):
        Settings(data_dir=tmp_path, checkpoint={"trigger_output_patterns": ["(unclosed"]})
