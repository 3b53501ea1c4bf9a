"""Hostile and damaged packs: each is refused with an error naming the problem, and the
store (and the disk) are left exactly as they were."""

from __future__ import annotations

import io
import json
import sqlite3
import stat
import struct
import warnings
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from mcp_checkpoint.config import Settings, SqliteSettings
from mcp_checkpoint.core.episodes import Episodes
from mcp_checkpoint.core.memory import MemoryService
from mcp_checkpoint.core.models import CheckpointPatch, ProposalItem, StepDraft
from mcp_checkpoint.errors import CheckpointError, InvalidArgumentError, PayloadTooLargeError
from mcp_checkpoint.packs import apply_import, export_pack, plan_import, read_pack
from mcp_checkpoint.storage.reference.store import ReferenceStore
from mcp_checkpoint.storage.sqlite import SqliteStore
from tests.unit.conftest import FakeClock, T, WordTokenizer

pytestmark = pytest.mark.anyio

Entries = list[tuple[zipfile.ZipInfo, bytes]]


# -- a valid pack, and ways to break it ------------------------------------------------------


async def valid_pack(settings: Settings, clock: FakeClock) -> bytes:
    store = ReferenceStore()
    memory = MemoryService(store, settings, clock=clock)
    episodes = Episodes(store, WordTokenizer(), settings, memory=memory, clock=clock)
    await episodes.start_run(T, "Fix the flaky login test", run_id="r1")
    for i in range(6):
        await episodes.record_step(T, "r1", StepDraft(
            tool="bash", input={"cmd": f"pytest -k case{i}"}, output=f"case{i} passed",
            idempotency_key=f"k{i}",
        ))
        if i == 3:
            await episodes.checkpoint(T, "r1", CheckpointPatch(next_actions=["go on"]))
    batch = await memory.propose(T, [ProposalItem(content="login retries race")], run_id="r1")
    await memory.commit(T, batch.batch_id)
    out = io.BytesIO()
    await export_pack(store, T, ["r1"], out, limits=settings.limits, tool_version="test",
                      created_at=clock())
    return out.getvalue()


def entries(data: bytes) -> Entries:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info, archive.read(info)) for info in archive.infolist()]


def build(items: Entries) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names we want
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for info, content in items:
                archive.writestr(info, content)
    return out.getvalue()


def file_info(name: str, *, mode: int = stat.S_IFREG | 0o644) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3
    info.external_attr = mode << 16
    return info


def replace_file(items: Entries, name: str, content: bytes, *, fix: bool = True) -> Entries:
    """``name`` with new content; the manifest's sha256 and size updated when ``fix``."""
    out = [(info, content if info.filename == name else data) for info, data in items]
    return fix_manifest(out) if fix else out


def fix_manifest(items: Entries) -> Entries:
    import hashlib

    contents = {info.filename: data for info, data in items}
    manifest = json.loads(contents["manifest.json"])
    for described in manifest["files"]:
        if described["path"] in contents:
            data = contents[described["path"]]
            described["sha256"] = hashlib.sha256(data).hexdigest()
            described["size"] = len(data)
    return edit_manifest(items, lambda m: m.update(files=manifest["files"]))


def edit_manifest(items: Entries, change: Callable[[dict[str, Any]], Any]) -> Entries:
    out: Entries = []
    for info, data in items:
        if info.filename == "manifest.json":
            manifest = json.loads(data)
            change(manifest)
            data = json.dumps(manifest).encode()
        out.append((info, data))
    return out


def edit_lines(items: Entries, name: str, change: Callable[[list[bytes]], Any]) -> Entries:
    content = {i.filename: d for i, d in items}[name]
    lines = content.split(b"\n")[:-1]
    change(lines)
    return replace_file(items, name, b"".join(line + b"\n" for line in lines))


def edit_record(items: Entries, name: str, index: int,
                change: Callable[[dict[str, Any]], Any]) -> Entries:
    def apply(lines: list[bytes]) -> None:
        record = json.loads(lines[index])
        change(record)
        lines[index] = json.dumps(record).encode()

    return edit_lines(items, name, apply)


def renamed(items: Entries, old: str, new: str) -> Entries:
    out: Entries = []
    for info, data in items:
        if info.filename == old:
            info = file_info(new)
        out.append((info, data))
    return out


def with_file(items: Entries, name: str, data: bytes, **kw: int) -> Entries:
    return [*items, (file_info(name, **kw), data)]


def without(items: Entries, name: str) -> Entries:
    return [(info, data) for info, data in items if info.filename != name]


def patch_headers(data: bytes, name: str, fmt: str, local: int, central: int,
                  value: Callable[[int], int]) -> bytes:
    """The zip with one field of ``name``'s local and central headers rewritten."""
    raw = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(name)
        start = archive.start_dir  # type: ignore[attr-defined]
    for offset in (info.header_offset + local,):
        struct.pack_into(fmt, raw, offset, value(struct.unpack_from(fmt, raw, offset)[0]))
    offset = start
    while raw[offset:offset + 4] == b"PK\x01\x02":
        n, m, k = struct.unpack_from("<HHH", raw, offset + 28)
        if raw[offset + 46:offset + 46 + n].decode() == name:
            field = offset + central
            struct.pack_into(fmt, raw, field, value(struct.unpack_from(fmt, raw, field)[0]))
        offset += 46 + n + m + k
    return bytes(raw)


def lying_size(data: bytes, name: str, claimed: int) -> bytes:
    """The zip with ``name``'s uncompressed size in both headers replaced by ``claimed``."""
    return patch_headers(data, name, "<I", 22, 24, lambda _: claimed)


def encrypted(data: bytes, name: str) -> bytes:
    """The zip with ``name`` flagged as encrypted in both headers."""
    return patch_headers(data, name, "<H", 6, 8, lambda flags: flags | 0x1)


def noise(size: int) -> bytes:
    """Incompressible bytes."""
    import hashlib

    return b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(size // 32))


STEPS = "runs/0001/steps.jsonl"
CHECKPOINTS = "runs/0001/checkpoints.jsonl"
RUN = "runs/0001/run.json"

Case = Callable[[Entries, bytes], bytes]


def via(change: Callable[[Entries], Entries]) -> Case:
    return lambda items, _: build(change(items))


CASES: list[Any] = [
    # names
    pytest.param(via(lambda e: with_file(e, "../evil.json", b"{}")), {},
                 InvalidArgumentError, r"unsafe file name '../evil.json'", id="dotdot"),
    pytest.param(via(lambda e: with_file(e, "runs/0001/../../evil", b"{}")), {},
                 InvalidArgumentError, r"unsafe file name", id="dotdot-inside"),
    pytest.param(via(lambda e: with_file(e, "/tmp/evil.json", b"{}")), {},
                 InvalidArgumentError, r"\(absolute path\)", id="absolute"),
    pytest.param(via(lambda e: with_file(e, "C:/evil.json", b"{}")), {},
                 InvalidArgumentError, r"\(absolute path\)", id="drive-letter"),
    pytest.param(via(lambda e: renamed(e, RUN, "runs\\0001\\run.json")), {},
                 InvalidArgumentError, r"\(backslash or NUL\)", id="backslash"),
    pytest.param(via(lambda e: with_file(e, "runs/", b"")), {},
                 InvalidArgumentError, r"unexpected directory entry", id="directory"),
    pytest.param(
        via(lambda e: [*without(e, RUN),
                       (file_info(RUN, mode=stat.S_IFLNK | 0o777), b"/etc/passwd")]),
        {}, InvalidArgumentError, r"'runs/0001/run.json' is a symbolic link", id="symlink"),
    pytest.param(via(lambda e: with_file(e, "fifo", b"", mode=stat.S_IFIFO | 0o644)), {},
                 InvalidArgumentError, r"is not a regular file", id="fifo"),
    pytest.param(via(lambda e: [*e, e[0]]), {},
                 InvalidArgumentError, r"duplicate file name", id="duplicate"),
    pytest.param(via(lambda e: with_file(e, "MANIFEST.json", b"{}")), {},
                 InvalidArgumentError, r"duplicate file name 'MANIFEST.json'",
                 id="duplicate-by-case"),
    pytest.param(lambda e, d: encrypted(d, STEPS), {}, InvalidArgumentError, r"is encrypted",
                 id="encrypted"),
    # sizes
    pytest.param(via(lambda e: with_file(e, "big.bin", noise(8192))), {"max_pack_bytes": 4096},
                 PayloadTooLargeError, r"limits.max_pack_bytes is 4096", id="file-size"),
    pytest.param(via(lambda e: [*e, *((file_info(f"x{i}"), b"") for i in range(3))]),
                 {"max_pack_entries": 8},
                 PayloadTooLargeError, r"pack holds 9 files; limits.max_pack_entries is 8",
                 id="entries"),
    pytest.param(lambda e, d: d, {"max_pack_unpacked_bytes": 4096},
                 PayloadTooLargeError, r"limits.max_pack_unpacked_bytes is 4096",
                 id="unpacked-size"),
    pytest.param(via(lambda e: with_file(e, "bomb.bin", bytes(20_000_000))), {},
                 PayloadTooLargeError, r"'bomb.bin' decompresses more than 200:1",
                 id="ratio-bomb"),
    pytest.param(
        via(lambda e: edit_record(e, STEPS, 0, lambda r: r.update(output="x" * 3000))),
        {"max_step_bytes": 1024}, PayloadTooLargeError, r"limits.max_step_bytes is 1024",
        id="step-over-limit"),
    # the manifest
    pytest.param(via(lambda e: without(e, "manifest.json")), {},
                 InvalidArgumentError, r"manifest.json is missing", id="no-manifest"),
    pytest.param(via(lambda e: edit_manifest(e, lambda m: m.update(format_version=99))), {},
                 InvalidArgumentError, r"unknown format_version 99; this mcp-checkpoint reads 1, 2",
                 id="format-version"),
    pytest.param(via(lambda e: edit_manifest(e, lambda m: m.update(schema_version=7))), {},
                 InvalidArgumentError, r"unknown schema_version 7", id="schema-version"),
    pytest.param(via(lambda e: edit_manifest(e, lambda m: m.update(format="tarball"))), {},
                 InvalidArgumentError, r"does not describe an mcp-checkpoint pack",
                 id="other-format"),
    pytest.param(via(lambda e: edit_manifest(e, lambda m: m["files"][0].pop("sha256"))), {},
                 InvalidArgumentError, r"field 'files.0.sha256': Field required",
                 id="missing-hash"),
    pytest.param(
        via(lambda e: edit_manifest(e, lambda m: m["files"][1].update(sha256="0" * 64))), {},
        InvalidArgumentError, r"does not match its sha256", id="wrong-hash-in-manifest"),
    pytest.param(via(lambda e: replace_file(e, STEPS, b"", fix=False)), {},
                 InvalidArgumentError, r"steps.jsonl is 0 bytes; the manifest says",
                 id="wrong-size"),
    pytest.param(
        via(lambda e: replace_file(e, STEPS, {i.filename: d for i, d in e}[STEPS]
                                   .replace(b"pytest", b"pyTest"), fix=False)), {},
        InvalidArgumentError, r"steps.jsonl does not match its sha256", id="tampered-file"),
    pytest.param(via(lambda e: with_file(e, "notes.txt", b"hello")), {},
                 InvalidArgumentError, r"files not listed in the manifest: \['notes.txt'\]",
                 id="extra-file"),
    pytest.param(via(lambda e: without(e, "memories.jsonl")), {},
                 InvalidArgumentError, r"files listed in the manifest are missing",
                 id="missing-file"),
    pytest.param(via(lambda e: edit_manifest(e, lambda m: m["runs"][0].update(dir="../"))), {},
                 InvalidArgumentError, r"has an invalid dir", id="manifest-dir-traversal"),
    pytest.param(via(lambda e: edit_manifest(e, lambda m: m.update(extra=1))), {},
                 InvalidArgumentError, r"field 'extra': Extra inputs are not permitted",
                 id="manifest-unknown-field"),
    # the records
    pytest.param(via(lambda e: edit_lines(e, STEPS, lambda ls: ls.__setitem__(1, b"{bad"))),
                 {}, InvalidArgumentError, r"steps.jsonl line 2: malformed JSON",
                 id="malformed-json"),
    pytest.param(via(lambda e: replace_file(e, STEPS, b"[" * 60_000 + b"\n")), {},
                 InvalidArgumentError, r"line 1: (JSON nested too deeply|malformed JSON)",
                 id="deep-json"),
    pytest.param(
        via(lambda e: edit_lines(e, STEPS, lambda ls: ls.__setitem__(
            0, ls[0].replace(b'{"', b'{"seq":1,"', 1)))), {},
        InvalidArgumentError, r"duplicate key", id="duplicate-key"),
    pytest.param(
        via(lambda e: edit_lines(e, STEPS, lambda ls: ls.__setitem__(
            0, ls[0].replace(b'"tokens":', b'"input":NaN,"tokens":', 1)))), {},
        InvalidArgumentError, r"NaN is not valid JSON", id="nan"),
    pytest.param(via(lambda e: edit_record(e, STEPS, 0, lambda r: r.update(seq="1"))), {},
                 InvalidArgumentError, r"line 1: field 'seq': Input should be a valid integer",
                 id="wrong-type"),
    pytest.param(via(lambda e: edit_record(e, STEPS, 0, lambda r: r.update(rogue=True))), {},
                 InvalidArgumentError, r"field 'rogue': Extra inputs are not permitted",
                 id="unknown-field"),
    pytest.param(via(lambda e: replace_file(e, STEPS, {i.filename: d for i, d in e}[STEPS]
                                            .rstrip(b"\n"))), {},
                 InvalidArgumentError, r"no newline \(truncated\?\)", id="truncated"),
    # consistency
    pytest.param(via(lambda e: edit_record(e, RUN, 0, lambda r: r.update(pruned_seq=2))), {},
                 InvalidArgumentError, r"run r1 was compacted by retention", id="pruned-run"),
    pytest.param(via(lambda e: edit_record(e, STEPS, 2, lambda r: r.update(output="edited"))),
                 {}, InvalidArgumentError, r"ledger breaks at seq 3: content does not match",
                 id="edited-step"),
    pytest.param(via(lambda e: edit_lines(e, STEPS, lambda ls: ls.pop(3))), {},
                 InvalidArgumentError, r"5 steps for head_seq 6", id="deleted-step"),
    pytest.param(via(lambda e: edit_lines(e, STEPS, lambda ls: ls.reverse())), {},
                 InvalidArgumentError, r"step 1 is out of place", id="reordered-steps"),
    pytest.param(
        via(lambda e: edit_manifest(e, lambda m: m["runs"][0].update(head_hash="f" * 64))), {},
        InvalidArgumentError, r"ledger head differs from the manifest's", id="head-hash"),
    pytest.param(
        via(lambda e: edit_record(e, CHECKPOINTS, 0, lambda r: r.update(parent_id="cp_x"))),
        {}, InvalidArgumentError, r"checkpoint 1 is out of place", id="checkpoint-parent"),
    pytest.param(
        via(lambda e: edit_record(e, STEPS, 4, lambda r: r.update(cum_tokens=1))), {},
        InvalidArgumentError, r"step 5 has inconsistent token totals", id="token-totals"),
    pytest.param(via(lambda e: edit_record(e, RUN, 0, lambda r: r.update(run_id="../r1"))), {},
                 InvalidArgumentError, r"holds run '../r1'", id="run-id-mismatch"),
    pytest.param(
        via(lambda e: edit_record(e, "memories.jsonl", 0,
                                  lambda r: r.update(memory_id="m/../x"))), {},
        InvalidArgumentError, r"memory id may hold only", id="bad-memory-id"),
    # not a pack at all
    pytest.param(lambda e, d: b"PK\x03\x04 certainly not a zip" * 10, {},
                 InvalidArgumentError, r"not a valid zip archive", id="not-a-zip"),
    pytest.param(lambda e, d: lying_size(d, STEPS, 10), {},
                 InvalidArgumentError, r"Bad CRC-32 for file 'runs/0001/steps.jsonl'",
                 id="header-says-smaller"),
    pytest.param(lambda e, d: lying_size(d, STEPS, 1_000_000), {},
                 PayloadTooLargeError, r"limits.max_pack_ratio is 200",
                 id="header-says-larger"),
    pytest.param(lambda e, d: d[: len(d) // 2], {},
                 InvalidArgumentError, r"not a valid zip archive", id="cut-in-half"),
]


# -- the store whose state must not change ---------------------------------------------------


def snapshot(tmp_path: Path, db: Path) -> tuple[list[str], dict[str, list[tuple[Any, ...]]]]:
    """Every file under tmp_path, and every row of every table of the store."""
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '%fts%'")]
        rows = {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in tables}  # noqa: S608
    finally:
        conn.close()
    return files, rows


@pytest.fixture
async def sqlite_store(tmp_path: Path, settings: Settings, clock: FakeClock
                       ) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "data" / "store.db", SqliteSettings())
    await store.open()
    episodes = Episodes(store, WordTokenizer(), settings, clock=clock)
    await episodes.start_run(T, "already here", run_id="existing")
    await episodes.record_step(T, "existing", StepDraft(tool="bash", input="ls"))
    try:
        yield store
    finally:
        await store.close()


@pytest.mark.parametrize(("corrupt", "limits", "error", "message"), CASES)
async def test_a_hostile_pack_is_refused_and_nothing_is_written(
    tmp_path: Path, settings: Settings, clock: FakeClock, sqlite_store: SqliteStore,
    corrupt: Case, limits: dict[str, int], error: type[CheckpointError], message: str,
) -> None:
    good = await valid_pack(settings, clock)
    path = tmp_path / "pack.zip"
    path.write_bytes(corrupt(entries(good), good))
    db = tmp_path / "data" / "store.db"
    before = snapshot(tmp_path, db)
    limited = Settings(store_url="memory://", data_dir=tmp_path, limits=limits).limits

    with pytest.raises(error, match=message) as caught:
        pack = read_pack(path, limited)
        plan = await plan_import(sqlite_store, T, pack, checkpoint_settings=settings.checkpoint)
        await apply_import(sqlite_store, plan)

    assert str(caught.value).startswith(f"{caught.value.code}: ")
    assert snapshot(tmp_path, db) == before


async def test_the_valid_pack_of_these_tests_imports(
    tmp_path: Path, settings: Settings, clock: FakeClock, sqlite_store: SqliteStore
) -> None:
    path = tmp_path / "pack.zip"
    path.write_bytes(build(entries(await valid_pack(settings, clock))))

    plan = await plan_import(sqlite_store, T, read_pack(path, settings.limits),
                             checkpoint_settings=settings.checkpoint)
    await apply_import(sqlite_store, plan)

    assert (await sqlite_store.get_run(T, "r1")).head_seq == 6  # type: ignore[arg-type]


async def test_a_header_that_lies_is_caught_while_decompressing(
    settings: Settings, clock: FakeClock
) -> None:
    good = await valid_pack(settings, clock)
    # The central directory says 10 bytes: the size check on headers passes, and reading
    # stops at 10 bytes, so the member's CRC (or our size check) refuses it.
    with pytest.raises(InvalidArgumentError, match=r"Bad CRC-32"):
        read_pack(io.BytesIO(lying_size(good, STEPS, 10)), settings.limits)
    with zipfile.ZipFile(io.BytesIO(lying_size(good, STEPS, 10))) as archive:
        assert archive.getinfo(STEPS).file_size == 10
