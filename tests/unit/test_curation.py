"""Read models for people: run filters, the timeline, the working-memory curve, checkpoint
diffs, memory browsing, and the neutralising of control characters."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mcp_checkpoint._text import neutralise, one_line
from mcp_checkpoint.core.curation import Curation, RunFilter, diff_checkpoints
from mcp_checkpoint.core.episodes import Episodes
from mcp_checkpoint.core.memory import MemoryService
from mcp_checkpoint.core.models import CheckpointPatch, ProposalItem, StepDraft
from mcp_checkpoint.errors import InvalidArgumentError
from tests.unit.conftest import FakeClock, T

pytestmark = pytest.mark.anyio


async def test_curation_find_runs_filters_by_text_status_and_dates(
    episodes: Episodes, store, clock: FakeClock  # type: ignore[no-untyped-def]
) -> None:
    start = clock.now
    for i in range(12):
        await episodes.start_run(T, f"task {i} {'LOGIN' if i % 3 == 0 else 'other'}",
                                 run_id=f"r{i:02d}")
        clock.advance(3600)
    await episodes.set_run(T, "r03", status="completed")
    curation = Curation(store)
    found, more = await curation.find_runs(T, RunFilter(text="login"), limit=2)
    # Newest update first (r03's status change is its newest), case-insensitive.
    assert [r.run_id for r in found] == ["r03", "r09"]
    assert more
    found, more = await curation.find_runs(T, RunFilter(text="login"), limit=2, offset=2)
    assert [r.run_id for r in found] == ["r06", "r00"]
    assert not more
    done, _ = await curation.find_runs(T, RunFilter(status="completed"), limit=10)
    assert [r.run_id for r in done] == ["r03"]
    window = RunFilter(since=start + timedelta(hours=4), until=start + timedelta(hours=7))
    found, _ = await curation.find_runs(T, window, limit=10)
    assert [r.run_id for r in found] == ["r06", "r05", "r04"]
    with pytest.raises(InvalidArgumentError):
        await curation.find_runs(T, RunFilter(), limit=0)


async def test_curation_timeline_pages_newest_first(
    episodes: Episodes, store  # type: ignore[no-untyped-def]
) -> None:
    run = await episodes.start_run(T, "long", run_id="r1")
    for i in range(25):
        await episodes.record_step(T, "r1", StepDraft(tool=f"t{i}"))
    run = await episodes.get_run(T, "r1")
    curation = Curation(store)
    first = await curation.timeline(T, run, before_seq=None, limit=10)
    assert [s.seq for s in first] == list(range(25, 15, -1))
    second = await curation.timeline(T, run, before_seq=first[-1].seq, limit=10)
    assert [s.seq for s in second] == list(range(15, 5, -1))
    assert await curation.timeline(T, run, before_seq=1, limit=10) == []


async def test_curation_token_curve_drops_at_each_checkpoint(
    episodes: Episodes, store  # type: ignore[no-untyped-def]
) -> None:
    await episodes.start_run(T, "curve", run_id="r1", budget_tokens=1000)
    for i in range(1, 31):
        await episodes.record_step(T, "r1", StepDraft(tool="bash", output="x" * 40))
        if i in (10, 20):
            await episodes.checkpoint(T, "r1", CheckpointPatch(progress=[f"to {i}"]))
    run = await episodes.get_run(T, "r1")
    curve = await Curation(store).token_curve(T, run, samples=100)
    assert [m.head_seq for m in curve.marks] == [10, 20]
    assert not curve.sampled
    values = dict(curve.points)
    assert values[9] > values[1] > 0  # grows within an episode
    assert values[11] < values[9]  # and drops after the checkpoint
    assert (10, 0) in curve.points  # right after checkpoint 1, nothing is in working memory
    assert values[30] == run.working_tokens
    sampled = await Curation(store).token_curve(T, run, samples=5)
    assert sampled.sampled
    assert len({s for s, _ in sampled.points}) <= 5 + len(sampled.marks)


async def test_curation_diff_shows_added_and_removed_lines(
    episodes: Episodes,
) -> None:
    await episodes.start_run(T, "diff", run_id="r1")
    await episodes.record_step(T, "r1", StepDraft(tool="a"))
    a = await episodes.checkpoint(T, "r1", CheckpointPatch(
        decisions=["use sqlite"], next_actions=["write tests"], state={"k": 1}))
    await episodes.record_step(T, "r1", StepDraft(tool="b"))
    b = await episodes.checkpoint(T, "r1", CheckpointPatch(
        decisions=["add postgres"], next_actions=["ship it"], state={"k": 2}))
    fields = {f.name: f for f in diff_checkpoints(a.checkpoint, b.checkpoint)}
    assert fields["decisions"].added == ["- add postgres"]
    assert fields["decisions"].removed == []
    assert fields["decisions"].kept == 1
    assert fields["next_actions"].removed == ["1. write tests"]
    assert fields["next_actions"].added == ["1. ship it"]
    assert fields["state"].added == ["- k: 2"]
    assert diff_checkpoints(b.checkpoint, b.checkpoint) == []


async def test_curation_browse_memories_filters_and_pages(
    memory: MemoryService, store  # type: ignore[no-untyped-def]
) -> None:
    items = [
        ProposalItem(content=f"fact number {i} about {'web' if i % 2 else 'db'}",
                     kind="fact" if i % 3 else "lesson", scope="web" if i % 2 else "db")
        for i in range(12)
    ]
    batch = await memory.propose(T, items)
    await memory.commit(T, batch.batch_id)
    curation = Curation(store)
    web, cursor = await curation.browse_memories(T, status="active", scope="web", limit=4)
    assert len(web) == 4 and all(m.scope == "web" for m in web)
    assert cursor is not None
    rest, end = await curation.browse_memories(T, status="active", scope="web", after=cursor,
                                               limit=4)
    assert len(rest) == 2 and end is None
    assert {m.memory_id for m in web}.isdisjoint(m.memory_id for m in rest)
    lessons, _ = await curation.browse_memories(T, status=None, kind="lesson", limit=50)
    assert len(lessons) == 4


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        pytest.param("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m", id="ansi"),
        pytest.param("a\rb", "a\\x0db", id="carriage-return"),
        pytest.param("x\u202ey", "x\\u202ey", id="bidi-override"),
        pytest.param("keep\nlines\tand tabs", "keep\nlines\tand tabs", id="lines"),
        pytest.param("c1\x9bcsi", "c1\\x9bcsi", id="c1"),
    ],
)
def test_text_neutralise_makes_controls_visible(raw: str, shown: str) -> None:
    assert neutralise(raw) == shown


def test_text_one_line_flattens_and_cuts() -> None:
    assert one_line("a\nb\tc\x07") == "a b c\\x07"
    assert one_line("abcdefgh", 5) == "abcd…"
