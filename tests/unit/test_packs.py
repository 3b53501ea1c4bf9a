"""Resume packs on the reference store: export -> import round trips, idempotency, id
collisions and --rename, and the export limits."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime

import pytest

from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.episodes import Episodes
from mcp_checkpoint.core.ledger import verify_run
from mcp_checkpoint.core.memory import MemoryService
from mcp_checkpoint.core.models import (
    CheckpointPatch,
    ProposalItem,
    RunId,
    StepDraft,
    Tenant,
)
from mcp_checkpoint.core.ports import ImportRecords
from mcp_checkpoint.errors import (
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    PayloadTooLargeError,
)
from mcp_checkpoint.packs import (
    FORMAT_VERSION,
    Pack,
    apply_import,
    export_pack,
    plan_import,
    read_pack,
)
from mcp_checkpoint.storage.reference.store import ReferenceStore
from tests.unit.conftest import FakeClock, T, WordTokenizer

pytestmark = pytest.mark.anyio

EXPORTED_AT = datetime(2026, 2, 1, 9, 30, tzinfo=UTC)


class World:
    """One store with the episodic and memory services over it."""

    def __init__(self, settings: Settings, clock: FakeClock) -> None:
        self.store = ReferenceStore()
        self.memory = MemoryService(self.store, settings, clock=clock)
        self.episodes = Episodes(
            self.store, WordTokenizer(), settings, memory=self.memory, clock=clock
        )


@pytest.fixture
def source(settings: Settings, clock: FakeClock) -> World:
    return World(settings, clock)


@pytest.fixture
def target(settings: Settings, clock: FakeClock) -> World:
    return World(settings, clock)


async def populate(world: World, run_id: str = "r1", steps: int = 12) -> None:
    """A run with keyed steps, an error, two checkpoints, and memories: one active, one
    superseded by another."""
    ep = world.episodes
    await ep.start_run(T, "Fix the flaky login test", run_id=run_id, pinned=["use pytest"])
    for i in range(1, steps + 1):
        await ep.record_step(T, run_id, StepDraft(
            tool="bash", input={"cmd": f"pytest tests/test_login.py -k case{i}"},
            output=f"case{i}: {'1 failed' if i == 5 else '1 passed'}",
            status="error" if i == 5 else "ok", idempotency_key=f"key-{i}",
        ))
        if i in (4, 9):
            await ep.checkpoint(T, run_id, CheckpointPatch(
                progress=[f"ran cases up to {i}"], next_actions=["fix the login retry"],
                state={"failing": "case5"},
            ))
    batch = await world.memory.propose(T, [
        ProposalItem(content="the login test is flaky because of a retry race", scope="proj"),
        ProposalItem(content="run pytest with -p no:randomly for the login suite",
                     scope="proj", kind="procedure"),
    ], run_id=run_id)
    await world.memory.commit(T, batch.batch_id)
    first = (await world.memory.get_proposal(T, batch.batch_id)).memory_ids[0]
    newer = await world.memory.propose(T, [
        ProposalItem(op="supersede", target_id=first, superseded_by="#1"),
        ProposalItem(content="the login retry race is fixed by a lock in auth.retry()",
                     scope="proj"),
    ], run_id=run_id)
    await world.memory.commit(T, newer.batch_id)


async def export_bytes(world: World, run_ids: list[str], **kw: object) -> bytes:
    buffer = io.BytesIO()
    await export_pack(
        world.store, T, run_ids, buffer, limits=kw.pop("limits", Settings().limits),  # type: ignore[arg-type]
        tool_version="test", created_at=EXPORTED_AT, **kw,  # type: ignore[arg-type]
    )
    return buffer.getvalue()


def read(data: bytes) -> Pack:
    return read_pack(io.BytesIO(data), Settings().limits)


async def import_into(
    world: World, data: bytes, *, rename: bool = False, tenant: Tenant = T
) -> list[str]:
    plan = await plan_import(world.store, tenant, read(data),
                             checkpoint_settings=Settings().checkpoint, rename=rename)
    await apply_import(world.store, plan)
    return plan.lines()


async def test_round_trip_into_an_empty_store_gives_the_same_rehydrate(
    source: World, target: World
) -> None:
    await populate(source)
    data = await export_bytes(source, ["r1"])

    await import_into(target, data)

    for args in ({}, {"budget_tokens": 300}, {"query": "login retry race"}):
        want = await source.episodes.rehydrate(T, "r1", **args)  # type: ignore[arg-type]
        got = await target.episodes.rehydrate(T, "r1", **args)  # type: ignore[arg-type]
        assert got == want
    assert want.memories_included  # the memories took part
    first_cp = (await source.store.get_checkpoint_by_number(T, RunId("r1"), 1))
    assert first_cp is not None
    old = await target.episodes.rehydrate(T, "r1", checkpoint_id=first_cp.checkpoint_id)
    assert old == await source.episodes.rehydrate(T, "r1", checkpoint_id=first_cp.checkpoint_id)
    assert await verify_run(target.store, T, RunId("r1")) == 12


async def test_round_trip_keeps_memory_status_supersession_and_provenance(
    source: World, target: World
) -> None:
    await populate(source)

    await import_into(target, await export_bytes(source, ["r1"]))

    want = await source.store.list_memories(T, status=None, limit=100)
    got = await target.store.list_memories(T, status=None, limit=100)
    assert got == want
    statuses = sorted(m.status for _, m in got)
    assert statuses == ["active", "active", "superseded"]
    for _, memory in got:
        assert memory.batch_id is not None
        assert await target.store.get_proposal(T, memory.batch_id) == (
            await source.store.get_proposal(T, memory.batch_id)
        )


async def test_a_retried_step_after_import_is_a_duplicate_not_a_new_step(
    source: World, target: World
) -> None:
    await populate(source)
    await import_into(target, await export_bytes(source, ["r1"]))
    retry = StepDraft(tool="bash", input={"cmd": "pytest tests/test_login.py -k case3"},
                      output="case3: 1 passed", idempotency_key="key-3")

    ack = await target.episodes.record_step(T, "r1", retry)

    assert ack.duplicate and ack.seq == 3
    assert ack == (await source.episodes.record_step(T, "r1", retry))
    assert (await target.store.get_run(T, RunId("r1"))).head_seq == 12


async def test_importing_twice_changes_nothing_and_says_so(
    source: World, target: World
) -> None:
    await populate(source)
    data = await export_bytes(source, ["r1"])
    await import_into(target, data)
    before = await target.store.list_memories(T, status=None, limit=100)

    plan = await plan_import(target.store, T, read(data),
                             checkpoint_settings=Settings().checkpoint)

    assert plan.nothing_to_do
    assert "run r1: already imported (identical), skipped" in plan.lines()
    await apply_import(target.store, plan)
    assert await target.store.list_memories(T, status=None, limit=100) == before


async def test_plan_import_is_a_dry_run(source: World, target: World) -> None:
    await populate(source)

    plan = await plan_import(target.store, T, read(await export_bytes(source, ["r1"])),
                             checkpoint_settings=Settings().checkpoint)

    assert "run r1: import, 12 steps, 2 checkpoints" in plan.lines()
    assert plan.summary()["memories"] == {"import": 3, "identical": 0}
    with pytest.raises(NotFoundError):
        await target.store.get_run(T, RunId("r1"))


async def test_a_taken_id_with_other_content_is_a_conflict_naming_it(
    source: World, target: World
) -> None:
    await populate(source)
    data = await export_bytes(source, ["r1"])
    await target.episodes.start_run(T, "something else entirely", run_id="r1")

    with pytest.raises(ConflictError, match=r"run r1; import with --rename"):
        await import_into(target, data)

    assert (await target.store.get_run(T, RunId("r1"))).objective == "something else entirely"
    assert await target.store.list_memories(T, status=None, limit=10) == []


async def test_rename_gives_new_ids_consistently_and_is_idempotent(
    source: World, target: World
) -> None:
    await populate(source)
    data = await export_bytes(source, ["r1"])
    await target.episodes.start_run(T, "something else entirely", run_id="r1")

    lines = await import_into(target, data, rename=True)

    renamed = [line for line in lines if line.startswith("run r1: import as ")]
    assert len(renamed) == 1
    new_id = renamed[0].split()[4]
    assert new_id.startswith("run_") and new_id != "r1"
    assert await verify_run(target.store, T, RunId(new_id)) == 12
    memories = [m for _, m in await target.store.list_memories(T, status=None, limit=10)]
    assert {m.run_id for m in memories} == {new_id}
    checkpoints = await target.store.list_checkpoints(T, RunId(new_id), limit=10, offset=0)
    assert all(c.run_id == new_id for c in checkpoints) and len(checkpoints) == 2
    context = await target.episodes.rehydrate(T, new_id)
    assert f"run {new_id}" in context.context
    again = await plan_import(target.store, T, read(data),
                              checkpoint_settings=Settings().checkpoint, rename=True)
    assert again.nothing_to_do


async def test_rename_of_a_memory_rewrites_every_reference(
    source: World, target: World
) -> None:
    await populate(source)
    data = await export_bytes(source, ["r1"])
    pack = read(data)
    superseded = next(m for m in pack.memories if m.status == "superseded")
    # The target already has a different memory under the superseded memory's id.
    other = next(m for m in pack.memories if m.status == "active")
    await target.store.import_records(T, ImportRecords(memories=[other.model_copy(update={
        "memory_id": superseded.memory_id, "content": "unrelated", "run_id": None,
    })]))

    await import_into(target, data, rename=True)

    stored = {m.memory_id: m for _, m in await target.store.list_memories(T, status=None,
                                                                          limit=10)}
    assert stored[superseded.memory_id].content == "unrelated"
    copies = [m for m in stored.values() if m.content == superseded.content]
    assert len(copies) == 1 and copies[0].memory_id != superseded.memory_id
    assert copies[0].status == "superseded" and copies[0].superseded_by == (
        superseded.superseded_by
    )
    batch = await target.store.get_proposal(T, superseded.batch_id)  # type: ignore[arg-type]
    assert copies[0].memory_id in batch.memory_ids.values()


async def test_export_chooses_memories_by_run_and_by_scope(
    source: World, settings: Settings
) -> None:
    await populate(source, "r1")
    await source.episodes.start_run(T, "another run", run_id="r2")
    loose = await source.memory.propose(T, [ProposalItem(content="ci runs on ubuntu",
                                                         scope="ops")])
    await source.memory.commit(T, loose.batch_id)

    only_run = read(await export_bytes(source, ["r2"]))
    with_scope = read(await export_bytes(source, ["r2"], scopes=["ops"]))
    everything = read(await export_bytes(source, ["r1", "r2"], scopes=["*"]))

    assert only_run.memories == [] and only_run.proposals == []
    assert [m.content for m in with_scope.memories] == ["ci runs on ubuntu"]
    assert len(everything.memories) == 4 and len(everything.proposals) == 3
    assert [r.run.run_id for r in everything.runs] == ["r1", "r2"]


async def test_the_manifest_describes_every_file(source: World) -> None:
    await populate(source)

    data = await export_bytes(source, ["r1"], embedding=("hashing-v1-256", 256))

    manifest = read(data).manifest
    assert manifest.format_version == FORMAT_VERSION
    assert (manifest.embedding_model, manifest.embedding_dimension) == ("hashing-v1-256", 256)
    run = await source.store.get_run(T, RunId("r1"))
    assert manifest.runs[0].head_hash == run.head_hash
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert sorted(names) == sorted([f.path for f in manifest.files] + ["manifest.json"])
    assert {f.path: f.records for f in manifest.files}["runs/0001/steps.jsonl"] == 12


async def test_export_of_an_unknown_run_is_not_found(source: World) -> None:
    with pytest.raises(NotFoundError, match="run nope"):
        await export_bytes(source, ["nope"])


async def test_a_run_compacted_by_retention_is_not_exported(
    source: World, clock: FakeClock
) -> None:
    await populate(source)
    await source.episodes.set_run(T, "r1", status="completed")
    pruned = await source.store.prune_run(
        T, RunId("r1"), keep_checkpoints=1, finished_before=datetime(2100, 1, 1, tzinfo=UTC),
        now=clock(),
    )
    assert pruned.steps_removed == 9
    with pytest.raises(InvalidArgumentError, match=r"run r1 was compacted by retention \(steps "
                       r"1-9 and 1 checkpoints removed\); a pack holds whole ledgers"):
        await export_bytes(source, ["r1"])


@pytest.mark.parametrize(
    ("limit", "value", "setting"),
    [
        pytest.param("max_pack_bytes", 4096, "limits.max_pack_bytes", id="pack-bytes"),
        pytest.param("max_pack_unpacked_bytes", 4096, "limits.max_pack_unpacked_bytes",
                     id="unpacked-bytes"),
        pytest.param("max_pack_entries", 8, "limits.max_pack_entries", id="entries"),
    ],
)
async def test_export_never_writes_a_pack_over_a_limit(
    source: World, limit: str, value: int, setting: str
) -> None:
    await populate(source, "r1", steps=40)
    for i in range(2, 5):
        await source.episodes.start_run(T, f"run {i}", run_id=f"r{i}")
    limits = Settings(limits={limit: value}).limits

    with pytest.raises(PayloadTooLargeError, match=setting):
        await export_bytes(source, ["r1", "r2", "r3", "r4"], limits=limits)


async def test_export_refuses_a_file_the_ratio_limit_would_refuse(source: World) -> None:
    await source.episodes.start_run(T, "repetitive", run_id="r1")
    for _ in range(3):
        await source.episodes.record_step(T, "r1", StepDraft(tool="cat", output="a" * 200_000))
    limits = Settings(limits={"max_pack_ratio": 50}).limits

    with pytest.raises(PayloadTooLargeError, match=r"limits.max_pack_ratio is 50"):
        await export_bytes(source, ["r1"], limits=limits)


async def test_export_is_a_snapshot_of_the_run_record(
    source: World, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await populate(source)
    original = source.store.list_checkpoints

    async def racing(*args: object, **kwargs: object) -> object:
        # Another client checkpoints between the export's reads of the run and of its
        # checkpoints.
        monkeypatch.setattr(source.store, "list_checkpoints", original)
        await source.episodes.record_step(T, "r1", StepDraft(tool="bash", input="late"))
        await source.episodes.checkpoint(T, "r1", CheckpointPatch(progress=["late"]))
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(source.store, "list_checkpoints", racing)
    pack = read(await export_bytes(source, ["r1"]))

    assert [c.number for c in pack.runs[0].checkpoints] == [1, 2]
    assert len(pack.runs[0].steps) == 12


async def test_snapshots_travel_in_the_pack_and_are_checked_on_the_way_in(
    source: World, target: World
) -> None:
    ep = source.episodes
    await ep.start_run(T, "Keep the workspace", run_id="r1")
    await ep.record_step(T, "r1", StepDraft(tool="edit", input="v1"))
    files = [("src/app.py", b"print('v1')\n"), ("data/raw.bin", bytes(range(256)))]
    done = await ep.checkpoint(T, "r1", CheckpointPatch(name="v1"), files=files)
    data = await export_bytes(source, ["r1"])
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert sum(n.startswith("blobs/") for n in names) == 3  # two files and their manifest

    await import_into(target, data)
    checkpoint, entries = await target.episodes.snapshot(T, "r1")
    assert checkpoint.checkpoint_id == done.checkpoint.checkpoint_id
    assert await target.episodes.snapshot_files(T, entries) == dict(files)

    # A pack whose blob was swapped, or that lost one, is refused before anything is written.
    blob = next(n for n in names if n.startswith("blobs/"))
    for change in ("swap", "drop"):
        buffer = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(data)) as old, zipfile.ZipFile(buffer, "w") as new:
            for info in old.infolist():
                if info.filename == blob and change == "drop":
                    continue
                payload = b"tampered" if info.filename == blob else old.read(info)
                new.writestr(info, payload)
        with pytest.raises(InvalidArgumentError, match="pack: "):
            read(buffer.getvalue())
