"""Two-phase semantic memory on the in-memory reference store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mcp_checkpoint.core.memory import MemoryService
from mcp_checkpoint.core.models import MemoryId, ProposalItem
from mcp_checkpoint.errors import (
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    PayloadTooLargeError,
)
from mcp_checkpoint.storage.reference.store import ReferenceStore
from tests.unit.conftest import FakeClock, T

pytestmark = pytest.mark.anyio


def add(content: str, **kw: object) -> ProposalItem:
    return ProposalItem(op="add", content=content, **kw)  # type: ignore[arg-type]


async def commit_one(memory: MemoryService, content: str, **kw: object) -> MemoryId:
    batch = await memory.propose(T, [add(content, **kw)])
    done = await memory.commit(T, batch.batch_id)
    return done.memory_ids[0]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        pytest.param(ProposalItem(op="add"), "items[0].content is required", id="add-no-content"),
        pytest.param(ProposalItem(op="update", content="x"), "items[0].target_id is required",
                     id="update-no-target"),
        pytest.param(ProposalItem(op="supersede", target_id=MemoryId("m")),
                     "superseded_by is required", id="supersede-no-replacement"),
        pytest.param(ProposalItem(op="deprecate", target_id=MemoryId("m"), content="why"),
                     "content must be empty for op 'deprecate'", id="deprecate-with-content"),
        pytest.param(ProposalItem(op="add", content="x", scope="bad scope!"),
                     "items[0].scope may hold only", id="bad-scope"),
    ],
)
async def test_propose_rejects_malformed_items_naming_the_field(
    memory: MemoryService, item: ProposalItem, message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message.replace("[", r"\[").replace("]", r"\]")):
        await memory.propose(T, [item])


async def test_propose_limits_batch_size_naming_the_setting(memory: MemoryService) -> None:
    with pytest.raises(PayloadTooLargeError, match="limits.max_batch_items is 100"):
        await memory.propose(T, [add(f"fact {i}") for i in range(101)])
    with pytest.raises(InvalidArgumentError, match="at least one item"):
        await memory.propose(T, [])


async def test_propose_unknown_target_is_not_found(memory: MemoryService) -> None:
    with pytest.raises(NotFoundError, match="memory m_missing"):
        await memory.propose(T, [ProposalItem(op="deprecate", target_id=MemoryId("m_missing"))])


async def test_propose_stages_without_writing_memories(
    memory: MemoryService, store: ReferenceStore
) -> None:
    batch = await memory.propose(T, [add("The CI runs on two cores")])
    assert batch.status == "pending"
    assert (await memory.search(T, "CI cores")).hits == []
    assert (await store.get_proposal(T, batch.batch_id)).items[0].content == batch.items[0].content


async def test_propose_flags_stored_and_in_batch_duplicates(memory: MemoryService) -> None:
    stored = await commit_one(memory, "The project uses pytest for its tests")
    batch = await memory.propose(T, [
        add("The project uses pytest for its tests."),
        add("Deploys happen on Fridays"),
        add("Deploys happen on Fridays!"),
    ])
    first, second, third = (item.analysis for item in batch.items)
    assert first is not None and second is not None and third is not None
    assert first.suggested_op == "skip" and first.duplicates[0].memory_id == stored
    assert second.suggested_op == "add"
    assert third.suggested_op == "skip" and third.duplicates[0].item_index == 1


async def test_propose_flags_likely_conflicts(memory: MemoryService) -> None:
    stored = await commit_one(memory, "The API rate limit is 100 requests per minute")
    batch = await memory.propose(T, [add("The API rate limit is 250 requests per minute")])
    analysis = batch.items[0].analysis
    assert analysis is not None
    assert [c.memory_id for c in analysis.conflicts] == [stored]
    assert analysis.suggested_op == "supersede"


async def test_commit_applies_accepted_items_only(memory: MemoryService) -> None:
    batch = await memory.propose(T, [add("alpha fact"), add("beta fact"), add("gamma fact")])
    done = await memory.commit(T, batch.batch_id, reject=[1])
    assert done.status == "committed" and done.accepted == [0, 2] and done.rejected == [1]
    found = {h.memory.content for h in (await memory.search(T, "fact", k=10)).hits}
    assert found == {"alpha fact", "gamma fact"}


async def test_commit_twice_is_a_conflict_and_writes_nothing(memory: MemoryService) -> None:
    batch = await memory.propose(T, [add("only once")])
    await memory.commit(T, batch.batch_id)
    with pytest.raises(ConflictError, match="already committed"):
        await memory.commit(T, batch.batch_id)
    assert len((await memory.search(T, "only once", k=10)).hits) == 1


async def test_commit_rejects_bad_indexes(memory: MemoryService) -> None:
    batch = await memory.propose(T, [add("a"), add("b")])
    with pytest.raises(InvalidArgumentError, match="accept holds 5"):
        await memory.commit(T, batch.batch_id, accept=[5])
    with pytest.raises(InvalidArgumentError, match="both accepted and rejected"):
        await memory.commit(T, batch.batch_id, accept=[0], reject=[0])


async def test_commit_expired_batch_is_a_conflict(
    memory: MemoryService, clock: FakeClock
) -> None:
    batch = await memory.propose(T, [add("too late")])
    clock.advance(86_401)
    with pytest.raises(ConflictError, match="expired"):
        await memory.commit(T, batch.batch_id)
    with pytest.raises(ConflictError, match="already expired"):
        await memory.commit(T, batch.batch_id)


async def test_supersede_and_deprecate_change_status_and_leave_search(
    memory: MemoryService,
) -> None:
    old = await commit_one(memory, "The staging host is stage-1.example")
    stale = await commit_one(memory, "The release branch is called release-old")
    batch = await memory.propose(T, [
        add("The staging host is stage-2.example"),
        ProposalItem(op="supersede", target_id=old, superseded_by="#0",
                     rationale="host moved"),
        ProposalItem(op="deprecate", target_id=stale),
    ])
    done = await memory.commit(T, batch.batch_id)
    new_id = done.memory_ids[0]
    replaced = await memory.get_memory(T, old)
    assert replaced.status == "superseded" and replaced.superseded_by == new_id
    assert replaced.content == "The staging host is stage-1.example"  # never rewritten
    assert (await memory.get_memory(T, stale)).status == "deprecated"
    hits = (await memory.search(T, "staging host release branch", k=10)).hits
    assert [h.memory.memory_id for h in hits] == [new_id]


async def test_commit_of_a_stale_target_is_a_conflict_with_nothing_written(
    memory: MemoryService,
) -> None:
    target = await commit_one(memory, "Port is 8080")
    first = await memory.propose(T, [
        add("brand new fact"), ProposalItem(op="update", target_id=target, content="Port is 9090"),
    ])
    second = await memory.propose(T, [ProposalItem(op="deprecate", target_id=target)])
    await memory.commit(T, second.batch_id)
    with pytest.raises(ConflictError, match="is deprecated"):
        await memory.commit(T, first.batch_id)
    assert (await memory.search(T, "brand new fact")).hits == []


async def test_commit_over_a_target_updated_since_the_proposal_is_a_conflict(
    memory: MemoryService,
) -> None:
    # Found by tests/fuzz: the later commit used to overwrite the earlier one's update.
    target = await commit_one(memory, "Port is 8080")
    first = await memory.propose(T, [
        add("brand new fact"), ProposalItem(op="update", target_id=target, content="Port is 9090"),
    ])
    second = await memory.propose(T, [
        ProposalItem(op="update", target_id=target, content="Port is 7070")
    ])
    assert first.items[1].target_version == 1
    await memory.commit(T, second.batch_id)
    with pytest.raises(ConflictError, match=r"changed since the batch was proposed \(version 1"):
        await memory.commit(T, first.batch_id)
    assert (await memory.get_memory(T, target)).content == "Port is 7070"
    assert (await memory.search(T, "brand new fact")).hits == []
    assert (await memory.get_proposal(T, first.batch_id)).status == "pending"


async def test_propose_refuses_two_changes_of_one_memory(memory: MemoryService) -> None:
    target = await commit_one(memory, "Port is 8080")
    with pytest.raises(InvalidArgumentError, match=r"items\[1\].target_id .* items\[0\]"):
        await memory.propose(T, [
            ProposalItem(op="update", target_id=target, content="Port is 9090"),
            ProposalItem(op="deprecate", target_id=target),
        ])


async def test_search_empty_result_says_what_it_searched(memory: MemoryService) -> None:
    await commit_one(memory, "scoped fact", scope="project:a")
    result = await memory.search(T, "nothing like it", scope="project:a", kind="lesson")
    assert result.hits == []
    assert "project:a" in result.note and "lesson" in result.note and result.scope == "project:a"


async def test_search_filters_by_scope_and_kind_and_carries_provenance(
    memory: MemoryService,
) -> None:
    await commit_one(memory, "deploy with make release", scope="project:a", kind="procedure",
                     source_refs=["step:r1:12"])
    await commit_one(memory, "deploy with the web console", scope="project:b", kind="procedure")
    result = await memory.search(T, "deploy", scope="project:a")
    assert [h.memory.content for h in result.hits] == ["deploy with make release"]
    hit = result.hits[0]
    assert hit.memory.source_refs == ["step:r1:12"] and hit.memory.batch_id is not None
    assert hit.scores["lexical_rank"] == 1


async def test_search_validates_its_arguments(memory: MemoryService) -> None:
    with pytest.raises(InvalidArgumentError, match="query must not be empty"):
        await memory.search(T, "  ")
    with pytest.raises(InvalidArgumentError, match="k is 0"):
        await memory.search(T, "x", k=0)
    with pytest.raises(PayloadTooLargeError, match="limits.max_query_chars"):
        await memory.search(T, "x" * 2001)


async def test_tenants_do_not_see_each_other(memory: MemoryService) -> None:
    from mcp_checkpoint.core.models import Tenant

    mid = await commit_one(memory, "tenant a secret")
    other = Tenant("b")
    assert (await memory.search(other, "secret")).hits == []
    with pytest.raises(NotFoundError):
        await memory.get_memory(other, mid)


def test_lookup_words_prefers_rare_words_and_leaves_out_unheld_ones() -> None:
    from mcp_checkpoint.core.proposals import counted_words, lookup_words

    words = counted_words("Priya: the staging deploy of kestrel moved to port 8080")
    held = {"priya": 3, "staging": 900, "deploy": 900, "kestrel": 12, "moved": 40,
            "port": 70, "8080": 0}

    found = lookup_words(words, held, per_word=64)

    assert "the" not in words and "of" not in words  # stopwords are not counted
    assert found.rare == ["priya", "kestrel", "moved"]  # fewest holders first, under 64
    assert found.all_of == ["priya", "kestrel", "moved", "port"]  # 8080: held by none
    assert counted_words("Nate: You too!") == ["nate", "you", "too"]  # nothing but these


async def _old_and_new(memory: MemoryService, clock: FakeClock, new: int) -> datetime:
    """Three long memories about the parser, then (a day later) ``new`` short ones that
    rank above them for "parser note"; returns the moment between the two."""
    for i, topic in enumerate(("staging deploys", "nightly builds", "release notes")):
        await commit_one(memory, f"the parser module handles {topic} for team {i} and also "
                         f"keeps many other unrelated words about {topic} in this memory")
    clock.advance(86_400)
    cutoff = clock()
    for start in range(0, new, 100):
        batch = await memory.propose(T, [add(f"parser note {n}") for n in
                                         range(start, min(start + 100, new))])
        await memory.commit(T, batch.batch_id)
    return cutoff


async def test_search_with_a_time_window_finds_matches_ranked_below_the_first_candidates(
    memory: MemoryService, clock: FakeClock
) -> None:
    cutoff = await _old_and_new(memory, clock, 150)
    # Without the window, the 150 newer notes outrank the three older memories.
    top = await memory.search(T, "parser note", k=50)
    assert all(hit.memory.created_at >= cutoff for hit in top.hits)
    found = await memory.search(T, "parser note", k=3, until=cutoff)
    assert len(found.hits) == 3
    assert all("the parser module handles" in hit.memory.content for hit in found.hits)
    assert "created before " in found.note
    later = await memory.search(T, "parser note", k=5, since=cutoff)
    assert [h.memory.created_at >= cutoff for h in later.hits] == [True] * 5


async def test_search_with_a_time_window_says_when_it_stopped_at_its_depth(
    memory: MemoryService, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mcp_checkpoint.core.memory as memory_module

    cutoff = await _old_and_new(memory, clock, 150)
    monkeypatch.setattr(memory_module, "WINDOW_DEPTH", 100)
    found = await memory.search(T, "parser note", k=3, until=cutoff)
    assert found.hits == []
    assert "only the 100 best matches were searched for the window" in found.note


async def test_search_window_must_be_ordered(memory: MemoryService) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidArgumentError, match="since must be before until"):
        await memory.search(T, "parser", since=now, until=now)
