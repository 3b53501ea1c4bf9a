"""MemoryStore (the port): proposals, commits, memories and lexical search."""

from __future__ import annotations

import pytest

from mcp_checkpoint.core.lexical import bm25_idf, bm25_weight
from mcp_checkpoint.core.models import (
    BatchId,
    Memory,
    MemoryId,
    ProposalAnalysis,
    ProposalItem,
    RelatedMemory,
    Tenant,
)
from mcp_checkpoint.core.ports import CommitPlan, MemoryStatusChange, MemoryUpdate, Store
from mcp_checkpoint.errors import ConflictError, NotFoundError

from .conftest import (
    T0,
    TENANT_A,
    TENANT_B,
    Clock,
    make_proposal,
    new_memory,
    seed_memories,
)

pytestmark = pytest.mark.anyio

M1 = MemoryId("m1")


def _update(memory_id: str, version: int, content: str) -> MemoryUpdate:
    return MemoryUpdate(
        memory_id=MemoryId(memory_id),
        expected_version=version,
        content=content,
        confidence=0.9,
        source_refs=["checkpoint:r1/c1"],
    )


async def _absent(store: Store, *memory_ids: str) -> bool:
    return await store.get_memories(TENANT_A, [MemoryId(i) for i in memory_ids]) == []


# -- proposals ----------------------------------------------------------------------------


async def test_add_proposal_stores_the_pending_batch(store: Store) -> None:
    proposal = make_proposal("b1", ["uses uv", "prefers ruff"]).model_copy(update={
        "items": [
            ProposalItem(content="uses uv", kind="preference", scope="project:x",
                         confidence=0.5, source_refs=["step:r1#3"]),
            ProposalItem(
                op="supersede", content="prefers ruff", target_id=M1, superseded_by="#0",
                analysis=ProposalAnalysis(
                    duplicates=[RelatedMemory(memory_id=M1, similarity=0.9, content="ruff")],
                    suggested_op="update",
                    note="close to m1",
                ),
            ),
        ],
    })

    added = await store.add_proposal(TENANT_A, proposal)

    assert added == proposal
    assert await store.get_proposal(TENANT_A, BatchId("b1")) == proposal


async def test_add_proposal_existing_batch_id_conflicts(store: Store) -> None:
    await store.add_proposal(TENANT_A, make_proposal("b1", ["first"]))

    with pytest.raises(ConflictError):
        await store.add_proposal(TENANT_A, make_proposal("b1", ["second"]))

    stored = await store.get_proposal(TENANT_A, BatchId("b1"))
    assert [item.content for item in stored.items] == ["first"]


async def test_get_proposal_unknown_or_another_tenants_is_not_found(store: Store) -> None:
    await store.add_proposal(TENANT_A, make_proposal("b1", ["x"]))

    with pytest.raises(NotFoundError):
        await store.get_proposal(TENANT_A, BatchId("nope"))
    with pytest.raises(NotFoundError):
        await store.get_proposal(TENANT_B, BatchId("b1"))


async def test_commit_proposal_inserts_memories_and_marks_the_batch_committed(
    store: Store, clock: Clock
) -> None:
    await store.add_proposal(TENANT_A, make_proposal("b1", ["uses uv", "no", "likes tea"]))
    now = clock()
    plan = CommitPlan(
        batch_id=BatchId("b1"),
        accepted=[0, 2],
        rejected=[1],
        inserts=[new_memory("m1", "uses uv", batch_id="b1"),
                 new_memory("m2", "likes tea", batch_id="b1", kind="preference")],
        memory_ids={0: MemoryId("m1"), 2: MemoryId("m2")},
    )

    committed = await store.commit_proposal(TENANT_A, plan, now=now)

    assert (committed.status, committed.committed_at) == ("committed", now)
    assert (committed.accepted, committed.rejected) == ([0, 2], [1])
    assert committed.memory_ids == {0: "m1", 2: "m2"}
    assert await store.get_proposal(TENANT_A, BatchId("b1")) == committed
    memory = await store.get_memory(TENANT_A, M1)
    assert (memory.content, memory.status, memory.version, memory.batch_id) == (
        "uses uv", "active", 1, "b1"
    )
    assert (memory.created_at, memory.updated_at, memory.confidence) == (now, now, 0.75)
    assert memory.source_refs == ["step:r1#1"]
    assert (await store.get_memory(TENANT_A, MemoryId("m2"))).kind == "preference"


async def test_commit_proposal_with_nothing_accepted_marks_the_batch_rejected(
    store: Store, clock: Clock
) -> None:
    await store.add_proposal(TENANT_A, make_proposal("b1", ["x", "y"]))

    result = await store.commit_proposal(
        TENANT_A, CommitPlan(batch_id=BatchId("b1"), accepted=[], rejected=[0, 1]), now=clock()
    )

    assert (result.status, result.rejected) == ("rejected", [0, 1])
    assert (await store.get_proposal(TENANT_A, BatchId("b1"))).status == "rejected"


async def test_commit_proposal_twice_conflicts_and_writes_nothing(
    store: Store, clock: Clock
) -> None:
    await seed_memories(store, [new_memory("m1", "first")], batch_id="b1")
    before = await store.get_proposal(TENANT_A, BatchId("b1"))
    again = CommitPlan(
        batch_id=BatchId("b1"), accepted=[0], rejected=[],
        inserts=[new_memory("m9", "second", batch_id="b1")],
        updates=[_update("m1", 1, "changed")],
        memory_ids={0: MemoryId("m9")},
    )

    with pytest.raises(ConflictError):
        await store.commit_proposal(TENANT_A, again, now=clock())

    assert await store.get_proposal(TENANT_A, BatchId("b1")) == before
    assert await _absent(store, "m9")
    assert (await store.get_memory(TENANT_A, M1)).content == "first"


async def test_commit_proposal_of_an_expired_batch_conflicts(store: Store, clock: Clock) -> None:
    await store.add_proposal(TENANT_A, make_proposal("b1", ["x"]))
    await store.expire_proposal(TENANT_A, BatchId("b1"), now=clock())
    plan = CommitPlan(
        batch_id=BatchId("b1"), accepted=[0], rejected=[], inserts=[new_memory("m1", "x")]
    )

    with pytest.raises(ConflictError):
        await store.commit_proposal(TENANT_A, plan, now=clock())

    assert await _absent(store, "m1")


async def test_commit_proposal_applies_updates_and_status_changes(
    store: Store, clock: Clock
) -> None:
    await seed_memories(store, [new_memory("m1", "old text"), new_memory("m2", "outdated"),
                                new_memory("m3", "replaced")])
    await store.add_proposal(TENANT_A, make_proposal("b2", ["new text", "-", "-", "better"]))
    now = clock()
    plan = CommitPlan(
        batch_id=BatchId("b2"),
        accepted=[0, 1, 2, 3],
        rejected=[],
        inserts=[new_memory("m4", "better", batch_id="b2")],
        updates=[_update("m1", 1, "new text")],
        status_changes=[
            MemoryStatusChange(memory_id=MemoryId("m2"), expected_version=1, status="deprecated"),
            MemoryStatusChange(memory_id=MemoryId("m3"), expected_version=1,
                               status="superseded", superseded_by=MemoryId("m4")),
        ],
        memory_ids={0: M1, 1: MemoryId("m2"), 2: MemoryId("m3"), 3: MemoryId("m4")},
    )

    await store.commit_proposal(TENANT_A, plan, now=now)

    m1, m2, m3, m4 = await store.get_memories(
        TENANT_A, [M1, MemoryId("m2"), MemoryId("m3"), MemoryId("m4")]
    )
    assert (m1.content, m1.confidence, m1.source_refs, m1.version, m1.status) == (
        "new text", 0.9, ["checkpoint:r1/c1"], 2, "active"
    )
    assert (m1.created_at, m1.updated_at) == (T0, now)
    assert (m2.status, m2.version, m2.superseded_by, m2.content) == (
        "deprecated", 2, None, "outdated"
    )
    assert (m3.status, m3.version, m3.superseded_by) == ("superseded", 2, "m4")
    assert (m4.status, m4.version) == ("active", 1)


async def test_commit_proposal_with_a_stale_memory_version_conflicts_and_writes_nothing(
    store: Store, clock: Clock
) -> None:
    await seed_memories(store, [new_memory("m1", "v1 text"), new_memory("m2", "keep")])
    # Another batch moved m1 on to version 2 after this one was proposed.
    await store.add_proposal(TENANT_A, make_proposal("b-stale", ["a", "b", "c"]))
    await store.add_proposal(TENANT_A, make_proposal("b-winner", ["v2 text"]))
    await store.commit_proposal(TENANT_A, CommitPlan(
        batch_id=BatchId("b-winner"), accepted=[0], rejected=[],
        updates=[_update("m1", 1, "v2 text")], memory_ids={0: M1},
    ), now=clock())
    stale = CommitPlan(
        batch_id=BatchId("b-stale"),
        accepted=[0, 1, 2],
        rejected=[],
        inserts=[new_memory("m-new", "brand new", batch_id="b-stale")],
        updates=[_update("m1", 1, "stale text")],
        status_changes=[
            MemoryStatusChange(memory_id=MemoryId("m2"), expected_version=1, status="deprecated")
        ],
        memory_ids={0: MemoryId("m-new"), 1: M1, 2: MemoryId("m2")},
    )

    with pytest.raises(ConflictError):
        await store.commit_proposal(TENANT_A, stale, now=clock())

    assert await _absent(store, "m-new")
    m1 = await store.get_memory(TENANT_A, M1)
    assert (m1.content, m1.version) == ("v2 text", 2)
    m2 = await store.get_memory(TENANT_A, MemoryId("m2"))
    assert (m2.status, m2.version) == ("active", 1)
    assert (await store.get_proposal(TENANT_A, BatchId("b-stale"))).status == "pending"
    assert await store.search_lexical(TENANT_A, "brand", limit=5) == []


async def test_commit_proposal_missing_target_is_not_found_and_writes_nothing(
    store: Store, clock: Clock
) -> None:
    await store.add_proposal(TENANT_A, make_proposal("b1", ["a", "b"]))
    plan = CommitPlan(
        batch_id=BatchId("b1"), accepted=[0, 1], rejected=[],
        inserts=[new_memory("m-new", "brand new", batch_id="b1")],
        updates=[_update("ghost", 1, "text")],
    )

    with pytest.raises(NotFoundError):
        await store.commit_proposal(TENANT_A, plan, now=clock())

    assert await _absent(store, "m-new")
    assert (await store.get_proposal(TENANT_A, BatchId("b1"))).status == "pending"


async def test_commit_proposal_unknown_batch_is_not_found(store: Store, clock: Clock) -> None:
    plan = CommitPlan(
        batch_id=BatchId("nope"), accepted=[0], rejected=[], inserts=[new_memory("m1", "x")]
    )

    with pytest.raises(NotFoundError):
        await store.commit_proposal(TENANT_A, plan, now=clock())

    assert await _absent(store, "m1")


async def test_commit_proposal_of_another_tenants_batch_is_not_found_and_stays_pending(
    store: Store, clock: Clock
) -> None:
    await store.add_proposal(TENANT_A, make_proposal("b1", ["x"]))
    plan = CommitPlan(
        batch_id=BatchId("b1"), accepted=[0], rejected=[], inserts=[new_memory("m1", "x")]
    )

    with pytest.raises(NotFoundError):
        await store.commit_proposal(TENANT_B, plan, now=clock())

    assert (await store.get_proposal(TENANT_A, BatchId("b1"))).status == "pending"
    assert await store.get_memories(TENANT_B, [M1]) == []


async def test_commit_proposal_cannot_target_another_tenants_memory(
    store: Store, clock: Clock
) -> None:
    await seed_memories(store, [new_memory("m1", "tenant a's")])
    await store.add_proposal(TENANT_B, make_proposal("b2", ["hijack"]))
    plan = CommitPlan(
        batch_id=BatchId("b2"), accepted=[0], rejected=[], updates=[_update("m1", 1, "hijack")]
    )

    with pytest.raises(NotFoundError):
        await store.commit_proposal(TENANT_B, plan, now=clock())

    memory = await store.get_memory(TENANT_A, M1)
    assert (memory.content, memory.version) == ("tenant a's", 1)


async def test_expire_proposal_marks_a_pending_batch_expired(store: Store, clock: Clock) -> None:
    await store.add_proposal(TENANT_A, make_proposal("b1", ["x"]))

    await store.expire_proposal(TENANT_A, BatchId("b1"), now=clock())

    assert (await store.get_proposal(TENANT_A, BatchId("b1"))).status == "expired"


async def test_expire_proposal_is_a_no_op_once_not_pending(store: Store, clock: Clock) -> None:
    committed = await seed_memories(store, [new_memory("m1", "x")], batch_id="b1")

    await store.expire_proposal(TENANT_A, BatchId("b1"), now=clock())

    assert await store.get_proposal(TENANT_A, BatchId("b1")) == committed


async def test_expire_proposal_cannot_touch_another_tenants_batch(
    store: Store, clock: Clock
) -> None:
    await store.add_proposal(TENANT_A, make_proposal("b1", ["x"]))

    with pytest.raises(NotFoundError):
        await store.expire_proposal(TENANT_B, BatchId("b1"), now=clock())

    assert (await store.get_proposal(TENANT_A, BatchId("b1"))).status == "pending"


# -- memories -----------------------------------------------------------------------------


async def test_get_memory_returns_it_whatever_its_status(store: Store, clock: Clock) -> None:
    await seed_memories(store, [new_memory("m1", "old")])
    await store.add_proposal(TENANT_A, make_proposal("b2", ["-"]))
    await store.commit_proposal(TENANT_A, CommitPlan(
        batch_id=BatchId("b2"), accepted=[0], rejected=[],
        status_changes=[MemoryStatusChange(memory_id=M1, expected_version=1, status="deprecated")],
    ), now=clock())

    assert (await store.get_memory(TENANT_A, M1)).status == "deprecated"


async def test_get_memory_unknown_or_another_tenants_is_not_found(store: Store) -> None:
    await seed_memories(store, [new_memory("m1", "x")])

    with pytest.raises(NotFoundError):
        await store.get_memory(TENANT_A, MemoryId("nope"))
    with pytest.raises(NotFoundError):
        await store.get_memory(TENANT_B, M1)


async def test_get_memories_returns_those_that_exist_in_the_order_asked(store: Store) -> None:
    await seed_memories(store, [new_memory(f"m{i}", f"text {i}") for i in range(1, 4)])
    await seed_memories(store, [new_memory("mb", "b's")], batch_id="bb", tenant=TENANT_B)

    found = await store.get_memories(
        TENANT_A, [MemoryId(i) for i in ("m3", "ghost", "m1", "mb", "m2")]
    )

    assert [m.memory_id for m in found] == ["m3", "m1", "m2"]
    assert await store.get_memories(TENANT_A, []) == []


# -- search -------------------------------------------------------------------------------


async def test_search_lexical_ranks_the_more_relevant_memory_first(store: Store) -> None:
    await seed_memories(store, [
        new_memory("m-weather", "the weather was sunny and warm along the coast all week, "
                   "with a light breeze; the hotel had a sqlite guest book"),
        new_memory("m-sqlite", "sqlite runs in wal mode; sqlite wal keeps readers unblocked"),
        new_memory("m-garden", "tomatoes need sun and water"),
    ])

    hits = await store.search_lexical(TENANT_A, "SQLite WAL mode", limit=10)

    assert [m.memory_id for m, _ in hits] == ["m-sqlite", "m-weather"]
    scores = [score for _, score in hits]
    assert scores[0] > scores[1] > 0


async def test_search_lexical_respects_the_limit(store: Store) -> None:
    await seed_memories(store, [new_memory(f"m{i}", f"python tip number {i}") for i in range(8)])

    hits = await store.search_lexical(TENANT_A, "python", limit=3)

    assert len(hits) == 3


async def test_search_lexical_filters_scope_and_kind_exactly(store: Store) -> None:
    await seed_memories(store, [
        new_memory("m1", "deploy with docker", scope="project:a", kind="procedure"),
        new_memory("m2", "deploy with docker compose", scope="project:ab", kind="procedure"),
        new_memory("m3", "deploy on fridays is bad", scope="project:a", kind="lesson"),
    ])

    by_scope = await store.search_lexical(TENANT_A, "deploy", limit=10, scope="project:a")
    by_kind = await store.search_lexical(TENANT_A, "deploy", limit=10, kind="procedure")
    both = await store.search_lexical(
        TENANT_A, "deploy", limit=10, scope="project:a", kind="lesson"
    )

    assert sorted(m.memory_id for m, _ in by_scope) == ["m1", "m3"]
    assert sorted(m.memory_id for m, _ in by_kind) == ["m1", "m2"]
    assert [m.memory_id for m, _ in both] == ["m3"]


async def test_search_lexical_returns_only_the_asked_status(store: Store, clock: Clock) -> None:
    await seed_memories(store, [new_memory("m1", "coffee at nine"),
                                new_memory("m2", "coffee at ten")])
    await store.add_proposal(TENANT_A, make_proposal("b2", ["-"]))
    await store.commit_proposal(TENANT_A, CommitPlan(
        batch_id=BatchId("b2"), accepted=[0], rejected=[],
        status_changes=[MemoryStatusChange(memory_id=M1, expected_version=1, status="deprecated")],
    ), now=clock())

    active = await store.search_lexical(TENANT_A, "coffee", limit=10)
    deprecated = await store.search_lexical(TENANT_A, "coffee", limit=10, status="deprecated")

    assert [m.memory_id for m, _ in active] == ["m2"]
    assert [m.memory_id for m, _ in deprecated] == ["m1"]


async def test_search_lexical_finds_updated_content_only(store: Store, clock: Clock) -> None:
    await seed_memories(store, [new_memory("m1", "postgres is the database")])
    await store.add_proposal(TENANT_A, make_proposal("b2", ["sqlite is the database"]))
    await store.commit_proposal(TENANT_A, CommitPlan(
        batch_id=BatchId("b2"), accepted=[0], rejected=[],
        updates=[_update("m1", 1, "sqlite is the database")],
    ), now=clock())

    assert await store.search_lexical(TENANT_A, "postgres", limit=10) == []
    ((memory, _),) = await store.search_lexical(TENANT_A, "sqlite", limit=10)
    assert (memory.memory_id, memory.version) == ("m1", 2)


async def test_search_lexical_asked_again_sees_every_change_since(
    store: Store, clock: Clock
) -> None:
    # The same words searched before and after each change (a store may keep what it
    # learnt about a word between searches; a change must never leave it stale).
    await seed_memories(store, [new_memory("m1", "coffee at nine"),
                                new_memory("m2", "tea at ten"),
                                new_memory("f1", "walk the dog"),
                                new_memory("f2", "read a book"),
                                new_memory("f3", "call the bank")])

    async def ids(query: str) -> list[str]:
        return [m.memory_id for m, _ in await store.search_lexical(TENANT_A, query, limit=10)]

    async def scores(query: str) -> list[float]:
        return [s for _, s in await store.search_lexical(TENANT_A, query, limit=10)]

    assert await ids("coffee") == ["m1"]
    assert await ids("tea") == ["m2"]
    assert await scores("coffee") == [pytest.approx(bm25_weight(bm25_idf(5, 1), 1))]

    await seed_memories(store, [new_memory("m3", "coffee and tea")], batch_id="b2")
    assert await ids("coffee") == ["m1", "m3"]
    # The word's weight is recomputed too: 2 of 6 memories hold it now, not 1 of 5.
    assert await scores("coffee") == [pytest.approx(bm25_weight(bm25_idf(6, 2), 1))] * 2

    await store.add_proposal(TENANT_A, make_proposal("b3", ["coffee at noon"]))
    await store.commit_proposal(TENANT_A, CommitPlan(
        batch_id=BatchId("b3"), accepted=[0], rejected=[],
        updates=[_update("m2", 1, "coffee at noon")],
    ), now=clock())
    assert await ids("tea") == ["m3"]
    assert sorted(await ids("coffee")) == ["m1", "m2", "m3"]

    await store.add_proposal(TENANT_A, make_proposal("b4", ["-"]))
    await store.commit_proposal(TENANT_A, CommitPlan(
        batch_id=BatchId("b4"), accepted=[0], rejected=[],
        status_changes=[MemoryStatusChange(memory_id=M1, expected_version=1, status="deprecated")],
    ), now=clock())
    assert sorted(await ids("coffee")) == ["m2", "m3"]


async def test_search_lexical_sees_only_the_tenants_memories(store: Store) -> None:
    await seed_memories(store, [new_memory("m1", "secret plan alpha")])
    await seed_memories(store, [new_memory("m2", "public plan beta")], batch_id="bb",
                        tenant=TENANT_B)

    hits = await store.search_lexical(TENANT_B, "plan alpha", limit=10)

    assert [m.memory_id for m, _ in hits] == ["m2"]


async def test_search_lexical_weighs_words_by_the_searched_memories_alone(store: Store) -> None:
    # In scope s1 "alice" is in most memories and says little; "green tea" is what tells
    # them apart. Elsewhere (another tenant, another scope) green tea is everywhere and
    # nobody is called alice: word statistics from there must not leak into s1's ranking.
    contents = ["alice went hiking", "alice likes green tea", "alice read a book",
                "bob likes green tea", "alice cooked dinner"]
    await seed_memories(store, [new_memory(f"m{i}", text, scope="s1")
                                for i, text in enumerate(contents, 1)])
    await seed_memories(store, [new_memory(f"b{i}", f"green tea number {i} of the day")
                                for i in range(40)], batch_id="bb", tenant=TENANT_B)
    await seed_memories(store, [new_memory(f"x{i}", f"green tea shop {i}", scope="s2")
                                for i in range(40)], batch_id="bx")

    hits = await store.search_lexical(TENANT_A, "alice green tea", limit=10, scope="s1")

    assert [m.memory_id for m, _ in hits[:2]] == ["m2", "m4"]
    assert {m.memory_id for m, _ in hits} == {"m1", "m2", "m3", "m4", "m5"}


async def test_search_lexical_scores_by_bm25_without_length_normalisation(store: Store) -> None:
    # A long memory (over 127 words: a multi-byte length in SQLite's FTS5 records) that
    # says "tea" three times, one that repeats "tea" beside "cake", a short one that says
    # "tea" once, six without either.
    long_text = " ".join(["tea"] * 3 + [f"filler{i}" for i in range(200)])
    await seed_memories(store, [
        new_memory("m-long", long_text),
        new_memory("m-mixed", "tea, more tea and a cake"),
        new_memory("m-short", "green tea"),
        *(new_memory(f"m{i}", f"coffee number {i}") for i in range(6)),
    ])

    hits = await store.search_lexical(TENANT_A, "tea cake", limit=10)

    tea, cake = bm25_idf(9, 3), bm25_idf(9, 1)
    assert [(m.memory_id, score) for m, score in hits] == [
        ("m-mixed", pytest.approx(bm25_weight(tea, 2) + bm25_weight(cake, 1))),
        ("m-long", pytest.approx(bm25_weight(tea, 3))),
        ("m-short", pytest.approx(bm25_weight(tea, 1))),
    ]


async def test_search_lexical_does_not_rank_a_memory_down_for_its_length(store: Store) -> None:
    await seed_memories(store, [
        new_memory("m-full", "we moved the team offsite to a lake house in the mountains "
                   "for three days of planning, hiking and board games"),
        new_memory("m-brief", "lake house booked"),
        *(new_memory(f"m{i}", f"standup notes {i}") for i in range(3)),
    ])

    hits = await store.search_lexical(TENANT_A, "lake house", limit=10)

    assert {m.memory_id for m, _ in hits} == {"m-full", "m-brief"}
    assert hits[0][1] == pytest.approx(hits[1][1])


@pytest.mark.parametrize(
    "query",
    [
        pytest.param('"AND OR NOT * ( ) \\" : ^ -` NEAR', id="operators"),
        pytest.param("NEAR(coffee tea, 2)", id="near"),
        pytest.param("content:coffee", id="column-filter"),
        pytest.param("{content}: coffee", id="column-set"),
        pytest.param('coffee" OR "1"="1', id="quote-injection"),
        pytest.param("coffee*", id="prefix"),
        pytest.param("^coffee -tea +milk", id="initial-token"),
        pytest.param("'; DROP TABLE memories; --", id="sql"),
        pytest.param("coffee AND", id="dangling-and"),
        pytest.param("( ( (", id="parens"),
        pytest.param("café naïve Ünïcödé 東京 🚀", id="unicode"),
        pytest.param(" ".join(["coffee"] * 300 + [f"w{i}" for i in range(300)]), id="long"),
    ],
)
async def test_search_lexical_accepts_any_text(store: Store, query: str) -> None:
    await seed_memories(store, [new_memory("m1", "coffee with milk, no tea")])

    hits = await store.search_lexical(TENANT_A, query, limit=10)

    assert all(memory.memory_id == "m1" and score > 0 for memory, score in hits)
    if "coffee" in query:
        assert [m.memory_id for m, _ in hits] == ["m1"]


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("", id="empty"),
        pytest.param("   \t\n", id="blank"),
        pytest.param("!!! ??? ... ---", id="punctuation"),
        pytest.param('* ( ) " : ^', id="operators-only"),
        pytest.param("_ __ ___", id="underscores"),
    ],
)
async def test_search_lexical_without_a_word_returns_nothing(store: Store, query: str) -> None:
    await seed_memories(store, [new_memory("m1", "anything at all ! ? * ...")])

    assert await store.search_lexical(TENANT_A, query, limit=10) == []


async def test_commit_proposal_inserting_an_existing_memory_id_conflicts_and_writes_nothing(
    store: Store, clock: Clock
) -> None:
    await seed_memories(store, [new_memory("m1", "first")], batch_id="b1")
    await store.add_proposal(TENANT_A, make_proposal("b2", ["other", "again"]))
    plan = CommitPlan(
        batch_id=BatchId("b2"), accepted=[0, 1], rejected=[],
        inserts=[new_memory("m7", "other", batch_id="b2"), new_memory("m1", "again")],
        memory_ids={0: MemoryId("m7"), 1: MemoryId("m1")},
    )

    with pytest.raises(ConflictError):
        await store.commit_proposal(TENANT_A, plan, now=clock())

    assert (await store.get_memory(TENANT_A, M1)).content == "first"
    assert await _absent(store, "m7")
    assert (await store.get_proposal(TENANT_A, BatchId("b2"))).status == "pending"


# -- listing ------------------------------------------------------------------------------


async def test_list_memories_pages_by_tenant_and_memory_id_with_a_status_filter(
    store: Store, clock: Clock
) -> None:
    await seed_memories(store, [new_memory(i, f"a {i}") for i in ("m3", "m1", "m4", "m2")])
    await seed_memories(store, [new_memory(i, f"b {i}") for i in ("m2", "m0")], batch_id="bb",
                        tenant=TENANT_B)
    await store.add_proposal(TENANT_A, make_proposal("b2", ["-"]))
    await store.commit_proposal(TENANT_A, CommitPlan(
        batch_id=BatchId("b2"), accepted=[0], rejected=[],
        status_changes=[MemoryStatusChange(memory_id=MemoryId("m4"), expected_version=1,
                                           status="deprecated")],
    ), now=clock())

    def keys(page: list[tuple[Tenant, Memory]]) -> list[tuple[str, str]]:
        return [(tenant, memory.memory_id) for tenant, memory in page]

    a_active = await store.list_memories(TENANT_A, limit=10)
    assert keys(a_active) == [(TENANT_A, "m1"), (TENANT_A, "m2"), (TENANT_A, "m3")]
    assert a_active[0][1] == await store.get_memory(TENANT_A, M1)
    assert keys(await store.list_memories(TENANT_A, status=None, limit=10)) == [
        (TENANT_A, "m1"), (TENANT_A, "m2"), (TENANT_A, "m3"), (TENANT_A, "m4")
    ]
    assert keys(await store.list_memories(TENANT_A, status="deprecated", limit=10)) == [
        (TENANT_A, "m4")
    ]
    everyone = [(TENANT_A, "m1"), (TENANT_A, "m2"), (TENANT_A, "m3"),
                (TENANT_B, "m0"), (TENANT_B, "m2")]
    assert keys(await store.list_memories(None, limit=10)) == everyone
    # Paging with the last key of each page crosses from one tenant into the next.
    pages: list[tuple[str, str]] = []
    after: tuple[Tenant, MemoryId] | None = None
    while page := await store.list_memories(None, after=after, limit=2):
        assert len(page) <= 2
        pages += keys(page)
        after = (page[-1][0], page[-1][1].memory_id)
    assert pages == everyone
    assert keys(await store.list_memories(TENANT_B, after=(TENANT_A, M1), limit=10)) == [
        (TENANT_B, "m0"), (TENANT_B, "m2")
    ]
    assert keys(await store.list_memories(TENANT_A, after=(TENANT_A, MemoryId("m2")),
                                          limit=10)) == [(TENANT_A, "m3")]
    assert await store.list_memories(None, limit=0) == []
    assert await store.list_memories(Tenant("tenant-c"), limit=10) == []


async def test_search_lexical_ignores_stopwords_unless_the_query_has_nothing_else(
    store: Store,
) -> None:
    await seed_memories(store, [
        new_memory("m1", "what is it that you want from me"),
        new_memory("m2", "the cache lives in redis"),
    ])

    found = await store.search_lexical(TENANT_A, "what is the cache", limit=5)
    only_stopwords = await store.search_lexical(TENANT_A, "what is it", limit=5)

    assert [m.memory_id for m, _ in found] == ["m2"]
    assert [m.memory_id for m, _ in only_stopwords] == ["m1"]


# -- near-duplicate lookups (bounded) -------------------------------------------------------


async def test_word_counts_are_capped_and_cover_every_word(store: Store, clock: Clock) -> None:
    await seed_memories(store, [new_memory(f"m{i}", f"alpha kiwi note {i}") for i in range(5)]
                        + [new_memory("m9", "mango alpha")])
    await seed_memories(store, [new_memory("m1", "mango")], batch_id="b-other",
                        tenant=TENANT_B)

    counts = await store.word_counts(TENANT_A, ["alpha", "kiwi", "mango", "papaya"], cap=3)

    assert set(counts) == {"alpha", "kiwi", "mango", "papaya"}
    assert counts["alpha"] == 3 and counts["kiwi"] == 3  # 6 and 5 holders, counted to 3
    # at least the tenant's own holders; a shared index may count tenant B's too
    assert 1 <= counts["mango"] <= 2
    assert counts["papaya"] == 0
    assert await store.word_counts(TENANT_A, ["alpha"], cap=0) == {"alpha": 0}


async def test_sharing_words_ranks_by_words_shared_and_reads_only_the_newest_holders(
    store: Store, clock: Clock
) -> None:
    await seed_memories(store, [
        new_memory("m0", "alpha beta gamma"),
        new_memory("m1", "alpha beta"),
        new_memory("m2", "alpha"),
        new_memory("m3", "alpha"),
        new_memory("m4", "delta"),
    ])
    await seed_memories(store, [new_memory("m9", "alpha beta gamma")], batch_id="b-other",
                        tenant=TENANT_B)

    every = await store.sharing_words(TENANT_A, ["alpha", "beta", "gamma"], per_word=10,
                                      limit=10)
    newest = await store.sharing_words(TENANT_A, ["alpha", "beta", "gamma"], per_word=2,
                                       limit=10)

    assert [m.memory_id for m in every] == ["m0", "m1", "m3", "m2"]
    # alpha is read among its two newest holders only (m3, m2), so m1 shares beta alone
    # and m0 beta and gamma; ties go to the newest
    assert [m.memory_id for m in newest] == ["m0", "m3", "m2", "m1"]
    assert [m.memory_id for m in await store.sharing_words(
        TENANT_A, ["alpha"], per_word=2, limit=10)] == ["m3", "m2"]
    assert [m.memory_id for m in await store.sharing_words(
        TENANT_A, ["alpha", "beta", "gamma"], per_word=10, limit=1)] == ["m0"]
    assert await store.sharing_words(TENANT_A, [], per_word=10, limit=10) == []


async def test_sharing_words_and_holding_all_skip_inactive_memories(
    store: Store, clock: Clock
) -> None:
    await seed_memories(store, [new_memory("m1", "alpha beta"), new_memory("m2", "alpha beta")])
    await store.add_proposal(TENANT_A, make_proposal("b2", ["-"]))
    await store.commit_proposal(TENANT_A, CommitPlan(
        batch_id=BatchId("b2"), accepted=[0], rejected=[],
        status_changes=[MemoryStatusChange(memory_id=M1, expected_version=1, status="deprecated")],
    ), now=clock())

    shared = await store.sharing_words(TENANT_A, ["alpha"], per_word=10, limit=10)
    both = await store.holding_all(TENANT_A, ["alpha", "beta"], limit=10)

    assert [m.memory_id for m in shared] == ["m2"]
    assert [m.memory_id for m in both] == ["m2"]


async def test_holding_all_finds_the_newest_memories_holding_every_word(
    store: Store, clock: Clock
) -> None:
    await seed_memories(store, [
        new_memory("m0", "alpha beta gamma"),
        new_memory("m1", "alpha gamma"),
        new_memory("m2", "gamma beta alpha delta"),
        new_memory("m3", "beta"),
    ])
    await seed_memories(store, [new_memory("m9", "alpha beta gamma")], batch_id="b-other",
                        tenant=TENANT_B)

    found = await store.holding_all(TENANT_A, ["alpha", "beta", "gamma"], limit=10)

    assert [m.memory_id for m in found] == ["m2", "m0"]
    assert [m.memory_id for m in await store.holding_all(
        TENANT_A, ["alpha", "beta", "gamma"], limit=1)] == ["m2"]
    assert await store.holding_all(TENANT_A, [], limit=10) == []
