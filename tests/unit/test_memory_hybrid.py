"""Hybrid search, indexing on commit and reindexing, on in-memory fakes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.fusion import CANDIDATES, fuse
from mcp_checkpoint.core.memory import MemoryService
from mcp_checkpoint.core.models import MemoryId, ProposalItem, Tenant
from mcp_checkpoint.embeddings.hashing import HashingEmbedder
from mcp_checkpoint.storage.reference.store import ReferenceStore
from mcp_checkpoint.storage.reference.vectors import ReferenceVectorIndex
from tests.unit.conftest import FakeClock, T

pytestmark = pytest.mark.anyio


class SlowEmbedder(HashingEmbedder):
    """An embedder whose model has not finished loading."""

    @property
    def ready(self) -> bool:
        return False


def service(
    settings: Settings, clock: FakeClock, embedder: HashingEmbedder | None = None
) -> tuple[MemoryService, ReferenceStore, ReferenceVectorIndex]:
    store, vectors = ReferenceStore(), ReferenceVectorIndex()
    memory = MemoryService(
        store, settings, embedder=embedder or HashingEmbedder(64), vectors=vectors, clock=clock
    )
    return memory, store, vectors


async def add(memory: MemoryService, *contents: str, tenant: Tenant = T) -> list[MemoryId]:
    batch = await memory.propose(tenant, [ProposalItem(content=c) for c in contents])
    done = await memory.commit(tenant, batch.batch_id)
    return [done.memory_ids[i] for i in range(len(contents))]


def test_fuse_without_vectors_is_exactly_the_lexical_ranking() -> None:
    lexical = [("b", 9.0), ("a", 3.0), ("c", 1.0)]
    assert [(f.memory_id, f.score) for f in fuse(lexical, None)] == lexical


def test_fuse_blends_normalised_scores_and_breaks_ties_by_lexical_rank() -> None:
    fused = fuse([("a", 10.0), ("b", 5.0)], [("c", 0.9), ("b", 0.8), ("a", 0.1)])
    by_id = {f.memory_id: f for f in fused}
    assert by_id["a"].score == pytest.approx(0.5)  # best lexically, worst by vector
    assert by_id["b"].score == pytest.approx(0.5 * 0.5 + 0.5 * 0.875)
    assert [f.memory_id for f in fused] == ["b", "a", "c"]
    assert by_id["c"].lexical is None and by_id["c"].vector_rank == 1


def test_fuse_scores_lexical_candidates_beyond_the_vector_list_by_their_extra_score() -> None:
    lexical = [("a", 10.0), ("b", 5.0), ("d", 2.0), ("e", 0.0)]
    vector = [("c", 0.9), ("b", 0.8), ("a", 0.1)]
    # b is ranked (its ranked score wins), z is no lexical candidate: both ignored.
    extra = {"d": 0.95, "b": 0.0, "z": 0.5}

    fused = fuse(lexical, vector, extra_vector_scores=extra)

    by_id = {f.memory_id: f for f in fused}
    assert set(by_id) == {"a", "b", "c", "d", "e"}
    # Vector scores normalised over a .1, b .8, c .9, d .95 (exact), e .1 (the floor).
    assert by_id["d"].score == pytest.approx(0.5 * 0.2 + 0.5 * 1.0)
    assert by_id["d"].vector == 0.95 and by_id["d"].vector_rank is None
    assert by_id["b"].score == pytest.approx(0.5 * 0.5 + 0.5 * 0.7 / 0.85)
    assert by_id["b"].vector == 0.8 and by_id["b"].vector_rank == 2
    assert by_id["e"].score == pytest.approx(0.0)
    assert by_id["e"].vector is None and by_id["e"].vector_rank is None
    assert [f.memory_id for f in fused] == ["b", "d", "a", "c", "e"]
    # Without the extra score d falls to the floor, as before.
    assert {f.memory_id: f for f in fuse(lexical, vector)}["d"].score == pytest.approx(0.1)
    # And without vectors the extra scores change nothing.
    assert fuse(lexical, None, extra_vector_scores=extra) == fuse(lexical, None)


async def test_commit_indexes_memories_and_search_turns_hybrid(
    settings: Settings, clock: FakeClock
) -> None:
    memory, _, vectors = service(settings, clock)
    ids = await add(memory, "deploy with make release", "lunch is at noon")
    assert await vectors.indexed(T, "hashing-v1-64", ids) == set(ids)
    result = await memory.search(T, "how do we deploy a release")
    assert result.mode == "hybrid"
    assert result.hits[0].memory.memory_id == ids[0]
    assert {"lexical", "vector", "fused"} <= set(result.hits[0].scores)


async def test_search_scores_lexical_candidates_beyond_the_vector_list_by_exact_cosine(
    settings: Settings, clock: FakeClock
) -> None:
    memory, _, vectors = service(settings, clock)
    # Short memories win lexically, long ones share more hashed features with the query.
    contents = [
        "deploy " + " ".join(f"w{i}x{j}" for j in range(1 + i % 30)) for i in range(4 * CANDIDATES)
    ]
    ids = [i for start in range(0, len(contents), 50) for i in await add(
        memory, *contents[start:start + 50]
    )]
    query = "deploy the w1x0 w7x3"

    result = await memory.search(T, query, k=CANDIDATES)

    unranked = [h for h in result.hits if h.scores.get("vector_rank") is None]
    assert result.mode == "hybrid" and unranked  # some lexical hits beyond the vector top-N
    [qvec] = await HashingEmbedder(64).embed([query])
    exact = await vectors.similarities(T, "hashing-v1-64", qvec, ids)
    for hit in unranked:
        assert hit.scores["vector"] == pytest.approx(exact[hit.memory.memory_id], abs=1e-6)


async def test_search_falls_back_to_lexical_and_says_why(
    settings: Settings, clock: FakeClock
) -> None:
    memory, _, _ = service(settings, clock, embedder=SlowEmbedder(64))
    await add(memory, "deploy with make release")
    result = await memory.search(T, "deploy")
    assert result.mode == "lexical" and len(result.hits) == 1
    assert "still loading" in result.note


async def test_retired_memories_leave_the_vector_index(
    settings: Settings, clock: FakeClock
) -> None:
    memory, _, vectors = service(settings, clock)
    [old] = await add(memory, "the staging host is stage-1")
    batch = await memory.propose(T, [ProposalItem(op="deprecate", target_id=old)])
    await memory.commit(T, batch.batch_id)
    assert await vectors.indexed(T, "hashing-v1-64", [old]) == set()
    assert (await memory.search(T, "staging host")).hits == []


async def test_sync_vectors_catches_up_and_rebuilds_after_a_model_change(
    settings: Settings, clock: FakeClock
) -> None:
    memory, store, vectors = service(settings, clock, embedder=SlowEmbedder(64))
    ids = await add(memory, "alpha fact", "beta fact")
    await add(memory, "gamma fact", tenant=Tenant("other"))
    assert await vectors.space() is None  # the model was loading: nothing indexed yet
    ready = MemoryService(store, settings, embedder=HashingEmbedder(64), vectors=vectors,
                          clock=clock)
    seen: list[int] = []
    assert await ready.sync_vectors(progress=seen.append) == 3
    assert sum(seen) == 3
    assert await vectors.indexed(T, "hashing-v1-64", ids) == set(ids)
    assert await ready.sync_vectors() == 0  # nothing missing
    bigger = MemoryService(store, settings, embedder=HashingEmbedder(128), vectors=vectors,
                           clock=clock)
    assert await bigger.sync_vectors() == 3  # another space: reset, then re-embed all
    assert await vectors.space() == ("hashing-v1-128", 128)


async def test_search_with_vectors_of_another_model_stays_lexical(
    settings: Settings, clock: FakeClock
) -> None:
    memory, store, vectors = service(settings, clock)
    await add(memory, "deploy with make release")
    other = MemoryService(store, settings, embedder=HashingEmbedder(32), vectors=vectors,
                          clock=clock)
    result = await other.search(T, "deploy")
    assert result.mode == "lexical" and "reindex" in result.note
    assert len(result.hits) == 1


async def test_sync_vectors_without_an_embedder_is_a_config_error(
    settings: Settings, clock: FakeClock
) -> None:
    from mcp_checkpoint.errors import ConfigError

    plain = MemoryService(ReferenceStore(), settings, clock=clock)
    with pytest.raises(ConfigError, match="embeddings"):
        await plain.sync_vectors()


async def test_propose_analysis_uses_vector_similarity_when_live(
    settings: Settings, clock: FakeClock
) -> None:
    memory, _, _ = service(settings, clock)
    [stored] = await add(memory, "the api rate limit is 100 requests per minute")
    batch = await memory.propose(T, [
        ProposalItem(content="the api rate limit is 100 requests per minute"),
        ProposalItem(content="lunch is served at noon in the cafeteria"),
        ProposalItem(content="lunch is served at noon in the cafeteria"),
    ])
    first, second, third = (item.analysis for item in batch.items)
    assert first is not None and second is not None and third is not None
    assert first.suggested_op == "skip" and first.duplicates[0].memory_id == stored
    assert first.duplicates[0].similarity == pytest.approx(1.0)
    assert "cosine similarity (hashing-v1-64)" in first.note
    assert second.suggested_op == "add"
    assert third.suggested_op == "skip" and third.duplicates[0].item_index == 1


class RendezvousStore(ReferenceStore):
    """A store whose lexical search finishes only once the query is being embedded."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding_started = anyio.Event()

    async def search_lexical(self, *args: Any, **kwargs: Any) -> Any:
        with anyio.fail_after(5):
            await self.embedding_started.wait()
        return await super().search_lexical(*args, **kwargs)


class SignallingEmbedder(HashingEmbedder):
    """Counts embed calls and tells the store when one starts."""

    def __init__(self, store: RendezvousStore) -> None:
        super().__init__(64)
        self.store = store
        self.calls = 0

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        self.store.embedding_started.set()
        await anyio.sleep(0.01)
        return await super().embed(texts)


async def test_search_embeds_the_query_while_the_lexical_search_runs(
    settings: Settings, clock: FakeClock
) -> None:
    store = RendezvousStore()
    embedder = SignallingEmbedder(store)
    memory = MemoryService(
        store, settings, embedder=embedder, vectors=ReferenceVectorIndex(), clock=clock
    )
    store.embedding_started.set()  # commits embed too; let them through
    await add(memory, "the deploy script lives in ops/deploy.sh", "lunch is at noon")
    store.embedding_started = anyio.Event()

    # Sequential code would wait for the lexical side before embedding: fail_after trips.
    found = await memory.search(T, "where is the deploy script?", k=2)

    assert found.mode == "hybrid"
    assert found.hits[0].memory.content == "the deploy script lives in ops/deploy.sh"
    calls = embedder.calls
    await memory.search(T, "where is the deploy script?", k=2)  # a repeated query
    assert embedder.calls == calls  # its vector came from the cache


async def test_hybrid_search_with_a_time_window_looks_past_the_first_candidates(
    settings: Settings, clock: FakeClock
) -> None:
    memory, _, vectors = service(settings, clock)
    [old] = await add(
        memory, "our deploy runbook lives in the wiki under ops, beside the oncall rota"
    )
    clock.advance(86_400)
    cutoff = clock()
    for start in range(0, 2 * CANDIDATES, 50):
        await add(memory, *(f"deploy checklist item {n}" for n in range(start, start + 50)))
    assert len(vectors._vectors) > CANDIDATES  # the index holds them all
    top = await memory.search(T, "deploy checklist", k=CANDIDATES)
    assert old not in {h.memory.memory_id for h in top.hits} and top.mode == "hybrid"
    found = await memory.search(T, "deploy checklist", k=1, until=cutoff)
    assert [h.memory.memory_id for h in found.hits] == [old]
    assert found.mode == "hybrid"
