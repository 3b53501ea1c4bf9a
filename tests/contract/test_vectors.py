"""VectorIndex: one suite for the in-memory reference, SQLite and Qdrant (local mode).

Each test checks a sentence of the ``VectorIndex`` docstrings in ``core/ports.py``; the
tests at the end check what only one backend promises (SQLite: the store's own file and
other connections' writes; Qdrant: a local folder).
"""

from __future__ import annotations

import contextlib
import gc
import math
import random
import sqlite3
import warnings
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio
import pytest
from qdrant_client import AsyncQdrantClient

from mcp_checkpoint.config import PostgresSettings, Settings, SqliteSettings, VectorSettings
from mcp_checkpoint.core.models import MemoryId, MemoryKind, Tenant
from mcp_checkpoint.core.ports import VectorIndex, VectorItem
from mcp_checkpoint.errors import BackendError, ConfigError, InvalidArgumentError
from mcp_checkpoint.storage import make_store, make_vector_index
from mcp_checkpoint.storage.memory import MemoryStore
from mcp_checkpoint.storage.postgres import PostgresStore, PostgresVectorIndex
from mcp_checkpoint.storage.qdrant import QdrantVectorIndex, point_id
from mcp_checkpoint.storage.sqlite import SqliteStore
from mcp_checkpoint.storage.sqlite.vectors import SqliteVectorIndex
from mcp_checkpoint.storage.vectors_memory import MemoryVectorIndex

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
        backend = MemoryVectorIndex()
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


# -- SQLite only --------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
async def two_indexes(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[VectorIndex, VectorIndex]]:
    """Two indexes on the same file or database through two stores (as two processes
    would have): the backends that keep matrices in memory must see each other's writes."""
    stores: list[SqliteStore | PostgresStore]
    indexes: list[VectorIndex]
    if request.param == "sqlite":
        sqlite_stores = [SqliteStore(sqlite_file(tmp_path), SqliteSettings()) for _ in range(2)]
        stores, indexes = list(sqlite_stores), [SqliteVectorIndex(s) for s in sqlite_stores]
    else:
        url = request.getfixturevalue("postgres_url")
        pg_stores = [PostgresStore(url, PostgresSettings()) for _ in range(2)]
        stores, indexes = list(pg_stores), [PostgresVectorIndex(s) for s in pg_stores]
    for store in stores:
        await store.open()
    try:
        yield indexes[0], indexes[1]
    finally:
        for store in stores:
            await store.close()


async def test_sqlite_vectors_live_in_the_stores_file_as_float32(tmp_path: Path) -> None:
    store = SqliteStore(sqlite_file(tmp_path), SqliteSettings())
    await store.open()
    index = SqliteVectorIndex(store)
    await index.open()
    await index.upsert(TENANT_A, MODEL, [item("m1", [0.5, -0.25, 2.0, 0.0], scope="s")])
    await index.close()
    await store.close()

    with contextlib.closing(sqlite3.connect(sqlite_file(tmp_path))) as conn:
        row = conn.execute(
            "SELECT tenant, memory_id, model_id, dim, scope, kind, vector FROM vectors"
        ).fetchone()
    assert row[:6] == (TENANT_A, "m1", MODEL, DIM, "s", "fact")
    assert row[6] == b"".join(
        value.to_bytes(4, "little") for value in (0x3F000000, 0xBE800000, 0x40000000, 0)
    )


async def test_query_sees_what_another_process_wrote(
    two_indexes: tuple[VectorIndex, VectorIndex],
) -> None:
    reader, writer = two_indexes
    await writer.upsert(TENANT_A, MODEL, [item("m1", E1), item("m2", E2)])
    assert ids(await reader.query(TENANT_A, MODEL, E3, limit=5)) == ["m1", "m2"]  # cached

    await writer.upsert(TENANT_A, MODEL, [item("m3", E3)])
    assert ids(await reader.query(TENANT_A, MODEL, E3, limit=1)) == ["m3"]

    await writer.upsert(TENANT_A, MODEL, [item("m3", E1, scope="moved")])
    assert await reader.query(TENANT_A, MODEL, E3, limit=5, scope="global") == [
        (MemoryId("m1"), 0.0), (MemoryId("m2"), 0.0)
    ]

    await writer.delete(TENANT_A, [MemoryId("m1")])
    assert ids(await reader.query(TENANT_A, MODEL, E1, limit=5)) == ["m3", "m2"]

    await writer.reset()
    assert await reader.query(TENANT_A, MODEL, E1, limit=5) == []
    await writer.upsert(TENANT_A, OTHER_MODEL, [item("m9", [1.0, 0.0])])
    with pytest.raises(InvalidArgumentError):
        await reader.query(TENANT_A, MODEL, E1, limit=5)
    assert ids(await reader.query(TENANT_A, OTHER_MODEL, [1.0, 0.0], limit=5)) == ["m9"]


async def test_another_process_cannot_start_a_second_space(
    two_indexes: tuple[VectorIndex, VectorIndex],
) -> None:
    first, second = two_indexes
    await first.upsert(TENANT_A, MODEL, [item("m1", E1)])

    with pytest.raises(InvalidArgumentError):
        await second.upsert(TENANT_B, OTHER_MODEL, [item("m2", E1)])

    assert await first.space() == (MODEL, DIM)


async def test_query_after_unrelated_writes_elsewhere_stays_correct(
    two_indexes: tuple[VectorIndex, VectorIndex],
) -> None:
    reader, writer = two_indexes
    await writer.upsert(TENANT_A, MODEL, [item("m1", E1)])
    assert ids(await reader.query(TENANT_A, MODEL, E1, limit=5)) == ["m1"]

    await writer.upsert(TENANT_B, MODEL, [item("m2", E1)])  # another tenant's write

    assert ids(await reader.query(TENANT_A, MODEL, E1, limit=5)) == ["m1"]
    assert ids(await reader.query(TENANT_B, MODEL, E1, limit=5)) == ["m2"]


async def test_postgres_keeps_a_tenants_matrix_until_its_vectors_change(
    tmp_path: Path, postgres_url: str
) -> None:
    stores = [PostgresStore(postgres_url, PostgresSettings()) for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        reader, writer = PostgresVectorIndex(stores[0]), PostgresVectorIndex(stores[1])
        await writer.upsert(TENANT_A, MODEL, [item("m1", E1)])
        await reader.query(TENANT_A, MODEL, E1, limit=5)
        kept = reader._cache[(TENANT_A, MODEL)]

        await writer.upsert(TENANT_B, MODEL, [item("m2", E1)])  # another tenant's write
        assert ids(await reader.query(TENANT_A, MODEL, E2, limit=5)) == ["m1"]
        assert reader._cache[(TENANT_A, MODEL)] is kept  # not read again

        await writer.delete(TENANT_A, [MemoryId("m1")])
        assert await reader.query(TENANT_A, MODEL, E1, limit=5) == []
        assert reader._cache[(TENANT_A, MODEL)] is not kept
    finally:
        for store in stores:
            await store.close()


# -- Qdrant only --------------------------------------------------------------------------


async def test_qdrant_local_folder_keeps_vectors_across_reopening(tmp_path: Path) -> None:
    def make() -> QdrantVectorIndex:
        return QdrantVectorIndex(lambda: AsyncQdrantClient(path=str(tmp_path)), local=True)

    first = make()
    await first.open()
    await first.upsert(TENANT_A, MODEL, [item("m1", E1), item("m2", E2, kind="lesson")])
    await first.close()

    again = make()
    await again.open()
    try:
        assert await again.space() == (MODEL, DIM)
        assert ids(await again.query(TENANT_A, MODEL, E2, limit=1, kind="lesson")) == ["m2"]
    finally:
        await again.close()


async def test_qdrant_local_folder_in_use_is_a_backend_error_without_the_path(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "secret-location"
    holder = QdrantVectorIndex(lambda: AsyncQdrantClient(path=str(folder)), local=True)
    await holder.open()
    intruder = QdrantVectorIndex(lambda: AsyncQdrantClient(path=str(folder)), local=True)
    # qdrant-client leaves the lock file of the client it refuses open: its ResourceWarning
    # is expected here, so collect that client here rather than in whichever test is next.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            with pytest.raises(BackendError) as caught:
                await intruder.open()
            message = str(caught.value)
            del caught
            gc.collect()
        finally:
            await holder.close()
    assert "secret-location" not in message
    assert "one process" in message


async def test_qdrant_calls_before_open_are_a_backend_error() -> None:
    with pytest.raises(BackendError):
        await _qdrant_memory().space()


def test_qdrant_point_ids_are_stable_uuids_per_tenant_and_memory() -> None:
    a = point_id(TENANT_A, MemoryId("m1"))

    assert a == point_id(TENANT_A, MemoryId("m1"))
    assert a != point_id(TENANT_B, MemoryId("m1"))
    assert point_id(Tenant("a"), MemoryId("b:c")) != point_id(Tenant("a:b"), MemoryId("c"))
    assert len(a) == 36


# -- the factory --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("store_url", "backend", "expected"),
    [
        pytest.param(None, "auto", SqliteVectorIndex, id="auto-sqlite"),
        pytest.param("memory://", "auto", MemoryVectorIndex, id="auto-memory"),
        pytest.param(None, "sqlite", SqliteVectorIndex, id="sqlite"),
        pytest.param(None, "memory", MemoryVectorIndex, id="memory"),
        pytest.param("memory://", "qdrant", QdrantVectorIndex, id="qdrant"),
    ],
)
async def test_make_vector_index_follows_the_settings(
    tmp_path: Path, store_url: str | None, backend: str, expected: type
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        store_url=store_url,
        vectors=VectorSettings.model_validate({"backend": backend}),
    )
    store = make_store(settings)
    await store.open()
    index = make_vector_index(settings, store)
    await index.open()
    try:
        assert isinstance(index, expected)
        await index.upsert(TENANT_A, MODEL, [item("m1", E1)])
        assert ids(await index.query(TENANT_A, MODEL, E1, limit=1)) == ["m1"]
    finally:
        await index.close()
        await store.close()
    if expected is QdrantVectorIndex:
        assert (tmp_path / "qdrant").is_dir()  # local mode in data_dir by default


async def test_make_vector_index_keeps_vectors_in_the_postgres_store_by_default(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = Settings(data_dir=tmp_path, store_url=postgres_url)
    store = make_store(settings)
    await store.open()
    index = make_vector_index(settings, store)
    try:
        assert isinstance(store, PostgresStore)
        assert isinstance(index, PostgresVectorIndex)
        await index.upsert(TENANT_A, MODEL, [item("m1", E1)])
        # Another process (another store on the same database) sees the same vectors.
        other = PostgresStore(postgres_url, PostgresSettings())
        await other.open()
        try:
            hits = await PostgresVectorIndex(other).query(TENANT_A, MODEL, E1, limit=1)
            assert ids(hits) == ["m1"]
        finally:
            await other.close()
    finally:
        await index.close()
        await store.close()
    # Nothing written to the data directory.
    assert [path async for path in anyio.Path(tmp_path).iterdir()] == []


def test_make_vector_index_sqlite_without_the_sqlite_store_is_a_config_error(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, vectors=VectorSettings(backend="sqlite"))

    with pytest.raises(ConfigError):
        make_vector_index(settings, MemoryStore())


def test_vector_settings_resolve_the_qdrant_folder_inside_data_dir(tmp_path: Path) -> None:
    assert VectorSettings(qdrant_path="vec").qdrant_local_path(tmp_path) == str(tmp_path / "vec")
    assert VectorSettings(qdrant_path="/abs").qdrant_local_path(tmp_path) == "/abs"
    assert VectorSettings(qdrant_path=":memory:").qdrant_local_path(tmp_path) == ":memory:"
    assert VectorSettings().qdrant_local_path(tmp_path) == str(tmp_path / "qdrant")
    with pytest.raises(ValueError, match="not both"):
        VectorSettings(qdrant_url="http://127.0.0.1:6333", qdrant_path="x")
