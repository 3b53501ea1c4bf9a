"""VectorIndex: one suite for the in-memory reference, SQLite, PostgreSQL and Qdrant (local
mode).

Each test checks a sentence of the ``VectorIndex`` docstrings in ``core/ports.py``; what
only one backend promises is checked in ``tests/storage/test_vectors.py``.
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from qdrant_client import AsyncQdrantClient

from mcp_checkpoint.config import PostgresSettings, SqliteSettings
from mcp_checkpoint.core.models import MemoryId, MemoryKind, Tenant
from mcp_checkpoint.core.ports import VectorIndex, VectorItem
from mcp_checkpoint.errors import InvalidArgumentError
from mcp_checkpoint.storage.postgres import PostgresStore, PostgresVectorIndex
from mcp_checkpoint.storage.qdrant import QdrantVectorIndex
from mcp_checkpoint.storage.reference.vectors import ReferenceVectorIndex
from mcp_checkpoint.storage.sqlite import SqliteStore
from mcp_checkpoint.storage.sqlite.vectors import SqliteVectorIndex

from .conftest import TENANT_A, TENANT_B, sqlite_file

pytestmark = pytest.mark.anyio

MODEL = "test-model@1"
OTHER_MODEL = "other-model@1"
DIM = 4


def _qdrant_memory() -> QdrantVectorIndex:
    return QdrantVectorIndex(lambda: AsyncQdrantClient(location=":memory:"), local=True)


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("sqlite", id="sqlite"),
        pytest.param("qdrant", id="qdrant"),
        pytest.param("postgres", id="postgres"),
    ]
)
async def index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorIndex]:
    """An opened, empty vector index of each backend, closed after the test."""
    store: SqliteStore | PostgresStore | None = None
    backend: VectorIndex
    if request.param == "memory":
        backend = ReferenceVectorIndex()
    elif request.param == "sqlite":
        store = SqliteStore(sqlite_file(tmp_path), SqliteSettings())
        await store.open()
        backend = SqliteVectorIndex(store)
    elif request.param == "postgres":
        store = PostgresStore(request.getfixturevalue("postgres_url"), PostgresSettings())
        await store.open()
        backend = PostgresVectorIndex(store)
    else:
        backend = _qdrant_memory()
    await backend.open()
    await backend.open()  # idempotent
    try:
        yield backend
    finally:
        await backend.close()
        await backend.close()  # idempotent
        if store is not None:
            await store.close()


def item(
    memory_id: str,
    vector: Sequence[float],
    *,
    scope: str = "global",
    kind: MemoryKind = "fact",
) -> VectorItem:
    """A VectorItem of ``vector`` (not necessarily unit length)."""
    return VectorItem(MemoryId(memory_id), list(vector), scope, kind)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def ids(hits: list[tuple[MemoryId, float]]) -> list[str]:
    return [memory_id for memory_id, _ in hits]


E1 = [1.0, 0.0, 0.0, 0.0]
E2 = [0.0, 1.0, 0.0, 0.0]
E3 = [0.0, 0.0, 1.0, 0.0]


async def _query(index: VectorIndex, vector: Sequence[float], **kw: object) -> list[str]:
    return ids(await index.query(TENANT_A, MODEL, vector, limit=10, **kw))  # type: ignore[arg-type]


# -- space --------------------------------------------------------------------------------


async def test_space_is_none_when_the_index_holds_no_vectors(index: VectorIndex) -> None:
    assert await index.space() is None


async def test_space_is_the_model_and_dimension_of_the_stored_vectors(index: VectorIndex) -> None:
    await index.upsert(TENANT_A, MODEL, [item("m1", E1), item("m2", E2)])

    assert await index.space() == (MODEL, DIM)


async def test_space_is_none_again_once_every_vector_is_deleted(index: VectorIndex) -> None:
    await index.upsert(TENANT_A, MODEL, [item("m1", E1)])

    await index.delete(TENANT_A, [MemoryId("m1")])

    assert await index.space() is None
    await index.upsert(TENANT_A, OTHER_MODEL, [item("m1", [1.0, 2.0])])  # a new space is fine
    assert await index.space() == (OTHER_MODEL, 2)


# -- upsert -------------------------------------------------------------------------------


async def test_upsert_stores_vectors_that_query_finds(index: VectorIndex) -> None:
    await index.upsert(TENANT_A, MODEL, [item("m1", E1), item("m2", E2), item("m3", E3)])

    hits = await index.query(TENANT_A, MODEL, E2, limit=1)

    assert ids(hits) == ["m2"]
    assert hits[0][1] == pytest.approx(1.0, abs=1e-5)


async def test_upsert_replaces_a_memorys_vector_and_filter_fields(index: VectorIndex) -> None:
    await index.upsert(TENANT_A, MODEL, [item("m1", E1), item("m2", E2)])
    assert await _query(index, E1) == ["m1", "m2"]  # cached, for the backends that cache

    await index.upsert(TENANT_A, MODEL, [item("m1", E3, scope="project:x", kind="lesson")])

    hits = await index.query(TENANT_A, MODEL, E3, limit=10)
    assert ids(hits) == ["m1", "m2"]
    assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
    assert hits[1][1] == pytest.approx(0.0, abs=1e-5)
    assert await _query(index, E3, scope="project:x", kind="lesson") == ["m1"]
    assert await _query(index, E3, scope="global") == ["m2"]


async def test_upsert_with_the_same_id_twice_in_one_call_keeps_the_last(
    index: VectorIndex,
) -> None:
    await index.upsert(TENANT_A, MODEL, [item("m1", E1), item("m1", E2)])

    hits = await index.query(TENANT_A, MODEL, E2, limit=10)

    assert ids(hits) == ["m1"]
    assert hits[0][1] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("model_id", "vector"),
    [
        pytest.param(OTHER_MODEL, E3, id="other-model"),
        pytest.param(MODEL, [0.0, 0.0, 1.0], id="other-dimension"),
        pytest.param(OTHER_MODEL, [0.0, 0.0, 1.0], id="other-model-and-dimension"),
    ],
)
async def test_upsert_into_another_space_is_refused_and_writes_nothing(
    index: VectorIndex, model_id: str, vector: list[float]
) -> None:
    await index.upsert(TENANT_A, MODEL, [item("m1", E1), item("m2", E2)])

    with pytest.raises(InvalidArgumentError):
        # m1 would be replaced and m9 added, were the call accepted.
        await index.upsert(TENANT_A, model_id, [item("m1", vector), item("m9", vector)])

    assert await index.space() == (MODEL, DIM)
    assert await index.indexed(TENANT_A, MODEL, [MemoryId("m1"), MemoryId("m9")]) == {"m1"}
    assert await index.indexed(TENANT_A, model_id, [MemoryId("m9")]) == set()
    assert await _query(index, E1) == ["m1", "m2"]


async def test_upsert_mixing_dimensions_in_one_call_is_refused_and_writes_nothing(
    index: VectorIndex,
) -> None:
    with pytest.raises(InvalidArgumentError):
        await index.upsert(TENANT_A, MODEL, [item("m1", E1), item("m2", [1.0, 0.0, 0.0])])

    assert await index.space() is None
    assert await index.indexed(TENANT_A, MODEL, [MemoryId("m1"), MemoryId("m2")]) == set()


async def test_upsert_in_another_space_is_refused_for_every_tenant(index: VectorIndex) -> None:
    await index.upsert(TENANT_A, MODEL, [item("m1", E1)])

    with pytest.raises(InvalidArgumentError):
        await index.upsert(TENANT_B, OTHER_MODEL, [item("m1", E1)])

    assert await index.indexed(TENANT_B, OTHER_MODEL, [MemoryId("m1")]) == set()


async def test_upsert_of_nothing_in_another_model_is_refused(index: VectorIndex) -> None:
    await index.upsert(TENANT_A, MODEL, [])
    assert await index.space() is None
    await index.upsert(TENANT_A, MODEL, [item("m1", E1)])

    with pytest.raises(InvalidArgumentError):
        await index.upsert(TENANT_A, OTHER_MODEL, [])
    await index.upsert(TENANT_A, MODEL, [])

    assert await index.space() == (MODEL, DIM)


@pytest.mark.parametrize(
    "vector",
    [
        pytest.param([], id="empty"),
        pytest.param([0.0, 0.0, 0.0, 0.0], id="zeros"),
        pytest.param([1.0, float("nan"), 0.0, 0.0], id="nan"),
        pytest.param([1.0, float("inf"), 0.0, 0.0], id="inf"),
        pytest.param([1.0, 1e39, 0.0, 0.0], id="beyond-float32"),
    ],
)
async def test_upsert_or_query_of_a_vector_without_direction_is_refused(
    index: VectorIndex, vector: list[float]
) -> None:
    with pytest.raises(InvalidArgumentError):
        await index.upsert(TENANT_A, MODEL, [item("m1", E1), item("m2", vector)])
    assert await index.space() is None
    await index.upsert(TENANT_A, MODEL, [item("m1", E1)])

    with pytest.raises(InvalidArgumentError):
        await index.query(TENANT_A, MODEL, vector, limit=5)


# -- query --------------------------------------------------------------------------------


async def test_query_orders_by_cosine_similarity_best_first(index: VectorIndex) -> None:
    rng = random.Random(7)
    vectors = {f"m{i:02d}": [rng.uniform(-1, 1) for _ in range(DIM)] for i in range(30)}
    await index.upsert(TENANT_A, MODEL, [item(i, v) for i, v in vectors.items()])
    query = [0.3, -0.2, 0.9, 0.1]

    hits = await index.query(TENANT_A, MODEL, query, limit=30)

    expected = sorted(vectors, key=lambda i: -cosine(vectors[i], query))
    assert ids(hits) == expected
    for memory_id, score in hits:
        assert score == pytest.approx(cosine(vectors[memory_id], query), abs=1e-5)


async def test_query_orders_equal_scores_by_memory_id(index: VectorIndex) -> None:
    tied = ["m-d", "m-b", "m-e", "m-a", "m-c"]
    await index.upsert(
        TENANT_A, MODEL, [item("best", [1.0, 0.1, 0.0, 0.0])] + [item(i, E2) for i in tied]
    )

    everything = await index.query(TENANT_A, MODEL, E2, limit=10)
    cut = await index.query(TENANT_A, MODEL, E2, limit=3)

    assert ids(everything) == ["m-a", "m-b", "m-c", "m-d", "m-e", "best"]
    assert ids(cut) == ["m-a", "m-b", "m-c"]


async def test_query_returns_at_most_limit(index: VectorIndex) -> None:
    await index.upsert(TENANT_A, MODEL, [item(f"m{i}", [1.0, i, 0.0, 0.0]) for i in range(8)])

    assert len(await index.query(TENANT_A, MODEL, E1, limit=3)) == 3
    assert ids(await index.query(TENANT_A, MODEL, E1, limit=1)) == ["m0"]
    assert await index.query(TENANT_A, MODEL, E1, limit=0) == []


async def test_query_filters_scope_and_kind_exactly(index: VectorIndex) -> None:
    await index.upsert(TENANT_A, MODEL, [
        item("m1", E1, scope="project:a", kind="procedure"),
        item("m2", E1, scope="project:ab", kind="procedure"),
        item("m3", E1, scope="project:a", kind="lesson"),
        item("m4", E1, scope="Project:A", kind="fact"),
    ])

    assert await _query(index, E1, scope="project:a") == ["m1", "m3"]
    assert await _query(index, E1, kind="procedure") == ["m1", "m2"]
    assert await _query(index, E1, scope="project:a", kind="lesson") == ["m3"]
    assert await _query(index, E1, scope="project:") == []
    assert await _query(index, E1, scope="project:ab", kind="lesson") == []
    assert await _query(index, E1) == ["m1", "m2", "m3", "m4"]


async def test_query_sees_only_the_tenants_vectors(index: VectorIndex) -> None:
    await index.upsert(TENANT_A, MODEL, [item("secret", E1), item("shared-id", E1)])
    await index.upsert(TENANT_B, MODEL, [item("shared-id", E2), item("b-only", E3)])

    b_hits = await index.query(TENANT_B, MODEL, E1, limit=10)
    a_hits = await index.query(TENANT_A, MODEL, E1, limit=10)

    assert ids(b_hits) == ["b-only", "shared-id"]
    assert all(score == pytest.approx(0.0, abs=1e-5) for _, score in b_hits)
    assert ids(a_hits) == ["secret", "shared-id"]
    assert await index.query(Tenant("tenant-c"), MODEL, E1, limit=10) == []


async def test_query_on_an_empty_index_returns_nothing(index: VectorIndex) -> None:
    assert await index.query(TENANT_A, MODEL, E1, limit=5) == []
    assert await index.query(TENANT_A, OTHER_MODEL, [1.0, 2.0], limit=5) == []


@pytest.mark.parametrize(
    ("model_id", "vector"),
    [
        pytest.param(OTHER_MODEL, E1, id="other-model"),
        pytest.param(MODEL, [1.0, 0.0, 0.0], id="other-dimension"),
    ],
)
async def test_query_in_another_space_is_invalid(
    index: VectorIndex, model_id: str, vector: list[float]
) -> None:
    await index.upsert(TENANT_A, MODEL, [item("m1", E1)])

    with pytest.raises(InvalidArgumentError):
        await index.query(TENANT_A, model_id, vector, limit=5)
    with pytest.raises(InvalidArgumentError):  # also for a tenant with no vectors
        await index.query(TENANT_B, model_id, vector, limit=5)


# -- similarities -------------------------------------------------------------------------


async def test_similarities_equal_the_query_score_of_each_memory(index: VectorIndex) -> None:
    rng = random.Random(7)
    vectors = {f"m{i}": [rng.uniform(-1.0, 1.0) for _ in range(DIM)] for i in range(12)}
    await index.upsert(TENANT_A, MODEL, [item(key, vector) for key, vector in vectors.items()])
    probe = [0.3, -0.7, 0.2, 0.9]

    ranked = dict(await index.query(TENANT_A, MODEL, probe, limit=len(vectors)))
    scores = await index.similarities(TENANT_A, MODEL, probe, [MemoryId(k) for k in vectors])

    assert set(scores) == set(vectors) == set(ranked)
    for key, vector in vectors.items():
        assert scores[MemoryId(key)] == pytest.approx(ranked[MemoryId(key)], abs=1e-6)
        assert scores[MemoryId(key)] == pytest.approx(cosine(probe, vector), abs=1e-5)
    # Beyond a query's limit too: the memory ranked last gets the same score.
    last_id, last_score = (await index.query(TENANT_A, MODEL, probe, limit=12))[-1]
    alone = await index.similarities(TENANT_A, MODEL, probe, [last_id])
    assert alone == {last_id: pytest.approx(last_score, abs=1e-6)}


async def test_similarities_leave_out_ids_without_a_vector(index: VectorIndex) -> None:
    await index.upsert(TENANT_A, MODEL, [item("m1", E1), item("m2", E2)])

    scores = await index.similarities(
        TENANT_A, MODEL, E1, [MemoryId("m1"), MemoryId("ghost"), MemoryId("m1")]
    )

    assert scores == {"m1": pytest.approx(1.0, abs=1e-6)}
    assert await index.similarities(TENANT_A, MODEL, E1, []) == {}
    await index.delete(TENANT_A, [MemoryId("m2")])
    assert await index.similarities(TENANT_A, MODEL, E1, [MemoryId("m2")]) == {}


async def test_similarities_see_only_the_tenants_vectors(index: VectorIndex) -> None:
    await index.upsert(TENANT_A, MODEL, [item("secret", E1), item("shared-id", E1)])
    await index.upsert(TENANT_B, MODEL, [item("shared-id", E2)])
    asked = [MemoryId("secret"), MemoryId("shared-id")]

    b_scores = await index.similarities(TENANT_B, MODEL, E1, asked)
    a_scores = await index.similarities(TENANT_A, MODEL, E1, asked)

    assert b_scores == {"shared-id": pytest.approx(0.0, abs=1e-5)}
    assert a_scores == {
        "secret": pytest.approx(1.0, abs=1e-6), "shared-id": pytest.approx(1.0, abs=1e-6)
    }
    assert await index.similarities(Tenant("tenant-c"), MODEL, E1, asked) == {}


@pytest.mark.parametrize(
    ("model_id", "vector"),
    [
        pytest.param(OTHER_MODEL, E1, id="other-model"),
        pytest.param(MODEL, [1.0, 0.0, 0.0], id="other-dimension"),
    ],
)
async def test_similarities_in_another_space_are_invalid(
    index: VectorIndex, model_id: str, vector: list[float]
) -> None:
    await index.upsert(TENANT_A, MODEL, [item("m1", E1)])

    with pytest.raises(InvalidArgumentError):
        await index.similarities(TENANT_A, model_id, vector, [MemoryId("m1")])
    with pytest.raises(InvalidArgumentError):  # also for a tenant with no vectors
        await index.similarities(TENANT_B, model_id, vector, [MemoryId("m1")])
    with pytest.raises(InvalidArgumentError):  # and when no id is asked
        await index.similarities(TENANT_A, model_id, vector, [])


async def test_similarities_on_an_empty_index_are_empty(index: VectorIndex) -> None:
    assert await index.similarities(TENANT_A, MODEL, E1, [MemoryId("m1")]) == {}
    assert await index.similarities(TENANT_A, OTHER_MODEL, [1.0, 2.0], [MemoryId("m1")]) == {}


# -- delete / indexed / reset -------------------------------------------------------------


async def test_delete_removes_vectors_and_ignores_unknown_ids(index: VectorIndex) -> None:
    await index.upsert(TENANT_A, MODEL, [item("m1", E1), item("m2", E2), item("m3", E3)])
    await index.upsert(TENANT_B, MODEL, [item("m1", E1)])
    assert await _query(index, E1) == ["m1", "m2", "m3"]

    await index.delete(TENANT_A, [MemoryId("m1"), MemoryId("ghost"), MemoryId("m3")])
    await index.delete(TENANT_A, [MemoryId("never-there")])
    await index.delete(TENANT_A, [])

    assert await _query(index, E1) == ["m2"]
    assert ids(await index.query(TENANT_B, MODEL, E1, limit=5)) == ["m1"]


async def test_delete_cannot_touch_another_tenants_vectors(index: VectorIndex) -> None:
    await index.upsert(TENANT_A, MODEL, [item("m1", E1)])

    await index.delete(TENANT_B, [MemoryId("m1")])

    assert await _query(index, E1) == ["m1"]


async def test_indexed_reports_which_ids_have_a_vector_of_the_model(index: VectorIndex) -> None:
    await index.upsert(TENANT_A, MODEL, [item("m1", E1), item("m2", E2)])
    await index.upsert(TENANT_B, MODEL, [item("m3", E3)])
    asked = [MemoryId(i) for i in ("m1", "m2", "m3", "ghost")]

    assert await index.indexed(TENANT_A, MODEL, asked) == {"m1", "m2"}
    assert await index.indexed(TENANT_A, OTHER_MODEL, asked) == set()
    assert await index.indexed(TENANT_B, MODEL, asked) == {"m3"}
    assert await index.indexed(TENANT_A, MODEL, []) == set()


async def test_indexed_on_an_empty_index_is_empty(index: VectorIndex) -> None:
    assert await index.indexed(TENANT_A, MODEL, [MemoryId("m1")]) == set()


async def test_reset_removes_every_tenants_vectors_then_accepts_a_new_space(
    index: VectorIndex,
) -> None:
    await index.upsert(TENANT_A, MODEL, [item("m1", E1), item("m2", E2)])
    await index.upsert(TENANT_B, MODEL, [item("m3", E3)])
    assert await _query(index, E1) == ["m1", "m2"]

    await index.reset()

    assert await index.space() is None
    assert await index.query(TENANT_A, MODEL, E1, limit=5) == []
    assert await index.indexed(TENANT_B, MODEL, [MemoryId("m3")]) == set()
    await index.upsert(TENANT_A, OTHER_MODEL, [item("m1", [0.0, 1.0]), item("m4", [1.0, 0.0])])
    assert await index.space() == (OTHER_MODEL, 2)
    assert ids(await index.query(TENANT_A, OTHER_MODEL, [1.0, 0.1], limit=5)) == ["m4", "m1"]
    with pytest.raises(InvalidArgumentError):
        await index.query(TENANT_A, MODEL, E1, limit=5)
    await index.reset()
    await index.reset()  # nothing left: still fine
