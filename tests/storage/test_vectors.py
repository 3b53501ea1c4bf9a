"""VectorIndex: what only one backend promises (SQLite: the store's own file and other
connections' writes; PostgreSQL: matrices shared between stores; Qdrant: a local folder),
and how the settings choose a backend."""

from __future__ import annotations

import contextlib
import gc
import sqlite3
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from qdrant_client import AsyncQdrantClient

from mcp_checkpoint.config import PostgresSettings, Settings, SqliteSettings, VectorSettings
from mcp_checkpoint.core.models import MemoryId, Tenant
from mcp_checkpoint.core.ports import VectorIndex
from mcp_checkpoint.errors import BackendError, ConfigError, InvalidArgumentError
from mcp_checkpoint.storage import make_store, make_vector_index
from mcp_checkpoint.storage.postgres import PostgresStore, PostgresVectorIndex
from mcp_checkpoint.storage.qdrant import QdrantVectorIndex, point_id
from mcp_checkpoint.storage.reference.store import ReferenceStore
from mcp_checkpoint.storage.reference.vectors import ReferenceVectorIndex
from mcp_checkpoint.storage.sqlite import SqliteStore
from mcp_checkpoint.storage.sqlite.vectors import SqliteVectorIndex
from tests.contract.conftest import TENANT_A, TENANT_B, sqlite_file
from tests.contract.test_vectors import (
    DIM,
    E1,
    E2,
    E3,
    MODEL,
    OTHER_MODEL,
    _qdrant_memory,
    ids,
    item,
)

pytestmark = pytest.mark.anyio


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
        pytest.param("memory://", "auto", ReferenceVectorIndex, id="auto-memory"),
        pytest.param(None, "sqlite", SqliteVectorIndex, id="sqlite"),
        pytest.param(None, "memory", ReferenceVectorIndex, id="memory"),
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
        make_vector_index(settings, ReferenceStore())


def test_vector_settings_resolve_the_qdrant_folder_inside_data_dir(tmp_path: Path) -> None:
    assert VectorSettings(qdrant_path="vec").qdrant_local_path(tmp_path) == str(tmp_path / "vec")
    assert VectorSettings(qdrant_path="/abs").qdrant_local_path(tmp_path) == "/abs"
    assert VectorSettings(qdrant_path=":memory:").qdrant_local_path(tmp_path) == ":memory:"
    assert VectorSettings().qdrant_local_path(tmp_path) == str(tmp_path / "qdrant")
    with pytest.raises(ValueError, match="not both"):
        VectorSettings(qdrant_url="http://127.0.0.1:6333", qdrant_path="x")
