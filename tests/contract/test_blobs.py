"""BlobStore: content-addressed bytes per tenant, on every backend."""

from __future__ import annotations

import hashlib

import pytest

from mcp_checkpoint.config import SnapshotSettings
from mcp_checkpoint.core.models import CheckpointContent, CheckpointId, RunId
from mcp_checkpoint.core.ports import Store
from mcp_checkpoint.core.snapshots import Snapshots
from tests.contract.conftest import T0, TENANT_A, TENANT_B, Clock, make_run

pytestmark = pytest.mark.anyio


def blob(data: bytes) -> tuple[str, bytes]:
    return hashlib.sha256(data).hexdigest(), data


async def test_put_blobs_stores_each_name_once_and_counts_the_new(store: Store) -> None:
    a, b = blob(b"alpha"), blob(b"\x00binary\xff" * 1000)
    assert await store.put_blobs(TENANT_A, dict([a, b]), now=T0) == 2
    assert await store.put_blobs(TENANT_A, dict([a]), now=T0) == 0
    assert await store.get_blobs(TENANT_A, [a[0], b[0], "f" * 64]) == dict([a, b])
    assert await store.missing_blobs(TENANT_A, [a[0], "f" * 64]) == {"f" * 64}
    assert await store.list_blobs(TENANT_A) == {a[0], b[0]}


async def test_blobs_are_per_tenant(store: Store) -> None:
    a = blob(b"secret of A")
    await store.put_blobs(TENANT_A, dict([a]), now=T0)
    assert await store.get_blobs(TENANT_B, [a[0]]) == {}
    assert await store.missing_blobs(TENANT_B, [a[0]]) == {a[0]}
    assert await store.delete_blobs(TENANT_B, [a[0]]) == 0
    assert await store.get_blobs(TENANT_A, [a[0]]) == dict([a])


async def test_delete_blobs_removes_only_the_names_given(store: Store) -> None:
    a, b = blob(b"a"), blob(b"b")
    await store.put_blobs(TENANT_A, dict([a, b]), now=T0)
    assert await store.delete_blobs(TENANT_A, [a[0], "0" * 64]) == 1
    assert await store.list_blobs(TENANT_A) == {b[0]}
    assert await store.delete_blobs(TENANT_A, []) == 0


async def test_snapshots_dedup_list_their_manifests_and_collect_garbage(
    store: Store, clock: Clock
) -> None:
    snapshots = Snapshots(store, SnapshotSettings())
    await store.create_run(TENANT_A, make_run("r1"))
    files = [(f"src/f{i}.py", f"print({i})\n".encode()) for i in range(10)]
    first = await snapshots.store(TENANT_A, files, now=clock())
    assert (first.files, first.new_blobs) == (10, 10)
    changed = [*files[:9], ("src/f9.py", b"print('changed')\n")]
    second = await snapshots.store(TENANT_A, changed, now=clock())
    assert second.new_blobs == 1  # nine files were kept already
    for n, ref in enumerate((first, second), start=1):
        await store.add_checkpoint(
            TENANT_A, RunId("r1"), checkpoint_id=CheckpointId(f"cp{n}"),
            parent_id=None if n == 1 else CheckpointId("cp1"), through_seq=None,
            content=CheckpointContent(snapshot=ref), source="model", tokens=1, now=clock(),
        )
    assert await store.snapshot_manifests(TENANT_A) == {first.manifest, second.manifest}
    assert await store.snapshot_manifests(TENANT_B) == set()
    entries = await snapshots.manifest(TENANT_A, second)
    assert [e.path for e in entries] == sorted(p for p, _ in changed)
    assert (await snapshots.read(TENANT_A, entries))["src/f9.py"] == b"print('changed')\n"
    # An orphan (written, then its checkpoint never came) is collected; referenced ones stay.
    await store.put_blobs(TENANT_A, dict([blob(b"orphan")]), now=clock())
    assert await snapshots.collect_garbage(TENANT_A) == 1
    assert len(await store.list_blobs(TENANT_A)) == 11 + 2  # 11 distinct files, 2 manifests


async def test_deleting_a_run_removes_the_blobs_only_its_snapshots_kept(
    store: Store, clock: Clock
) -> None:
    from mcp_checkpoint.config import Settings
    from mcp_checkpoint.core.curation import Curation
    from mcp_checkpoint.core.episodes import Episodes
    from mcp_checkpoint.core.models import CheckpointPatch, StepDraft
    from mcp_checkpoint.core.tokens import HeuristicTokenizer

    episodes = Episodes(store, HeuristicTokenizer(), Settings(), clock=clock)
    for run_id, mine in (("r1", b"only r1 keeps this"), ("r2", b"only r2 keeps this")):
        await episodes.start_run(TENANT_A, "snapshots", run_id=run_id)
        await episodes.record_step(TENANT_A, run_id, StepDraft(tool="edit"))
        await episodes.checkpoint(TENANT_A, run_id, CheckpointPatch(),
                                  files=[("shared.txt", b"both keep this"), ("own.txt", mine)])
    assert len(await store.list_blobs(TENANT_A)) == 3 + 2  # shared, two own, two manifests

    await Curation(store).delete_run(TENANT_A, "r1")

    left = await store.list_blobs(TENANT_A)
    assert len(left) == 3  # r2's manifest, the shared file and r2's own file
    _, files = await episodes.snapshot(TENANT_A, "r2")
    assert (await episodes.snapshot_files(TENANT_A, files))["shared.txt"] == b"both keep this"
