"""Resume packs: a portable, verified copy of runs and memories in one zip file.

A pack holds ``manifest.json`` and JSON / JSON Lines files::

    manifest.json              format and schema versions, the sha256 and size of every
                               other file, the embedding model, each run's ledger head
    runs/0001/run.json         the run record
    runs/0001/steps.jsonl      its whole ledger, seq 1..head_seq (hash chained)
    runs/0001/checkpoints.jsonl  its checkpoints, number 1..checkpoint_count
    proposals.jsonl            the memory batches that wrote the exported memories
    memories.jsonl             memories of the exported runs (and of the chosen scopes)

``export_pack`` writes one through the Store port. Importing is three steps, each usable
alone: ``read_pack`` refuses a hostile or damaged file before trusting any of it (unsafe
names, links, duplicate names, size and ratio limits enforced while decompressing, hashes,
files the manifest does not list, unknown versions, malformed JSON, wrong types, a broken
hash chain); ``plan_import`` compares the pack with the store (already imported, new, or
colliding ids, renamed with ``rename``); ``apply_import`` writes the plan in one
transaction (``Store.import_records``). Nothing is ever extracted to disk.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from mcp_checkpoint.config import CheckpointSettings, LimitSettings
from mcp_checkpoint.core._limits import Limits
from mcp_checkpoint.core.episodes import step_ack
from mcp_checkpoint.core.ledger import (
    ChainBreak,
    canonical_json,
    genesis_hash,
    request_hash,
    step_hash,
    verify_chain,
)
from mcp_checkpoint.core.models import (
    BatchId,
    Checkpoint,
    CheckpointId,
    Memory,
    MemoryId,
    Proposal,
    Run,
    RunId,
    Step,
    StepDraft,
    Tenant,
)
from mcp_checkpoint.core.ports import ImportedRun, ImportedStep, ImportRecords, Store
from mcp_checkpoint.core.snapshots import check_path, parse_manifest
from mcp_checkpoint.errors import (
    BackendError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    PayloadTooLargeError,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SCHEMA_VERSION",
    "ImportPlan",
    "Manifest",
    "Pack",
    "PackRun",
    "Progress",
    "apply_import",
    "export_pack",
    "plan_import",
    "read_pack",
]

FORMAT = "mcp-checkpoint-pack"
FORMAT_VERSION = 2
# Version 1 packs (no workspace blobs) are still read.
READABLE_FORMAT_VERSIONS = (1, 2)
"""Layout of the zip (file names, manifest fields). Readers refuse other versions."""
SCHEMA_VERSION = 1
"""Shape of the records (``resources/schemas``). Readers refuse other versions."""

MANIFEST = "manifest.json"
PROPOSALS = "proposals.jsonl"
MEMORIES = "memories.jsonl"
RUN_FILES = ("run.json", "steps.jsonl", "checkpoints.jsonl")

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: work done so far in a phase (total 0 when unknown)."""

_PAGE = 500
_CHUNK = 1 << 20
_RATIO_FLOOR = 1 << 16
"""Files smaller than this decompress to too little to matter: their ratio is not checked."""
_RUN_DIR = re.compile(r"runs/(\d{4,9})/")
# A workspace snapshot blob (format 2): its name is the sha256 of its bytes.
_BLOB = re.compile(r"blobs/([0-9a-f]{64})")
_DRIVE = re.compile(r"^[A-Za-z]:")
_M = TypeVar("_M", bound=BaseModel)


# -- the manifest ---------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PackFile(_Frozen):
    """One file of the pack: its path inside the zip, sha256 and size of its bytes."""

    path: str
    sha256: str
    size: int
    records: int


class PackRunEntry(_Frozen):
    """Where a run's files are, and the head of its ledger (to check against)."""

    run_id: RunId
    dir: str
    head_seq: int
    head_hash: str
    checkpoints: int


class Manifest(_Frozen):
    """``manifest.json``: what the pack holds and how to check it."""

    format: Literal["mcp-checkpoint-pack"]
    format_version: int
    schema_version: int
    tool_version: str
    created_at: datetime
    embedding_model: str | None
    embedding_dimension: int | None
    runs: list[PackRunEntry]
    files: list[PackFile]


@dataclass(frozen=True)
class PackRun:
    """A run with its ledger and checkpoints, in order."""

    run: Run
    steps: list[Step]
    checkpoints: list[Checkpoint]


@dataclass(frozen=True)
class Pack:
    """A pack read and verified: every hash and ledger chain checked."""

    manifest: Manifest
    digest: str
    runs: list[PackRun]
    proposals: list[Proposal]
    memories: list[Memory]
    blobs: dict[str, bytes] = field(default_factory=dict)
    """Workspace snapshot blobs (files and manifests) by sha256."""

    @property
    def step_count(self) -> int:
        """Steps of all runs."""
        return sum(len(r.steps) for r in self.runs)

    @property
    def checkpoint_count(self) -> int:
        """Checkpoints of all runs."""
        return sum(len(r.checkpoints) for r in self.runs)


def _line(model: BaseModel) -> bytes:
    return (canonical_json(model.model_dump(mode="json")) + "\n").encode("utf-8")


# -- export ---------------------------------------------------------------------------------


class _ZipOut:
    """Writes the pack's files into a zip, hashing each one and keeping every limit, so an
    export never makes a pack that import would refuse."""

    def __init__(
        self, out: IO[bytes], limits: LimitSettings, max_bytes: int, max_setting: str,
        created_at: datetime,
    ) -> None:
        self._out = out
        self._start = out.tell()
        self._limits = limits
        self._max_bytes = max_bytes
        self._max_setting = max_setting
        self._date = created_at.timetuple()[:6]
        self._zip = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6)
        self._unpacked = 0
        self.files: list[PackFile] = []

    def _written(self) -> None:
        size = self._out.tell() - self._start
        if size > self._max_bytes:
            raise PayloadTooLargeError(
                f"the pack would exceed {self._max_bytes} bytes; {self._max_setting} is "
                f"{self._max_bytes}"
            )

    def write(self, path: str, lines: Iterable[bytes], *, listed: bool = True) -> None:
        if len(self.files) + 2 > self._limits.max_pack_entries:
            raise PayloadTooLargeError(
                f"the pack would hold more than {self._limits.max_pack_entries} files; "
                f"limits.max_pack_entries is {self._limits.max_pack_entries}"
            )
        info = zipfile.ZipInfo(path, date_time=self._date)  # type: ignore[arg-type]
        info.compress_type = zipfile.ZIP_DEFLATED
        info.create_system = 3
        info.external_attr = (stat.S_IFREG | 0o644) << 16
        digest = hashlib.sha256()
        size = records = 0
        buffer = bytearray()
        with self._zip.open(info, "w") as entry:
            for line in lines:
                records += 1
                buffer += line
                if len(buffer) >= _CHUNK:
                    size += self._flush(entry, digest, buffer)
            size += self._flush(entry, digest, buffer)
        self._written()
        compressed = self._zip.getinfo(path).compress_size
        if size > _RATIO_FLOOR and size > self._limits.max_pack_ratio * max(compressed, 1):
            raise PayloadTooLargeError(
                f"{path} compresses {size // max(compressed, 1)}:1 (highly repetitive steps); "
                f"limits.max_pack_ratio is {self._limits.max_pack_ratio} (raise it where the "
                "pack is exported and where it is imported)"
            )
        if listed:
            self.files.append(PackFile(path=path, sha256=digest.hexdigest(), size=size,
                                       records=records))

    def _flush(self, entry: IO[bytes], digest: Any, buffer: bytearray) -> int:
        n = len(buffer)
        self._unpacked += n
        if self._unpacked > self._limits.max_pack_unpacked_bytes:
            raise PayloadTooLargeError(
                f"the pack's files would exceed {self._limits.max_pack_unpacked_bytes} bytes "
                f"uncompressed; limits.max_pack_unpacked_bytes is "
                f"{self._limits.max_pack_unpacked_bytes}"
            )
        digest.update(buffer)
        entry.write(buffer)
        buffer.clear()
        self._written()
        return n

    def close(self) -> None:
        self._zip.close()
        self._written()


async def export_pack(
    store: Store,
    tenant: Tenant,
    run_ids: Sequence[str],
    out: IO[bytes],
    *,
    limits: LimitSettings,
    tool_version: str,
    created_at: datetime,
    scopes: Sequence[str] = (),
    embedding: tuple[str, int | None] | None = None,
    max_bytes: int | None = None,
    max_setting: str = "limits.max_pack_bytes",
    progress: Progress | None = None,
) -> Manifest:
    """Write a pack of ``run_ids`` (with their checkpoints and the memories they wrote, and
    every memory of ``scopes``; ``"*"`` is every scope) to ``out`` (seekable).

    NotFoundError if a run does not exist; PayloadTooLargeError, naming the setting, when
    the pack would exceed a limit (``max_bytes`` or ``limits.max_pack_bytes`` for the zip,
    ``limits.max_pack_unpacked_bytes``, ``limits.max_pack_entries``,
    ``limits.max_pack_ratio``). ``out`` then holds a partial file the caller discards.
    """
    wanted = list(dict.fromkeys(run_ids))
    runs = [await store.get_run(tenant, RunId(run_id)) for run_id in wanted]
    for run in runs:
        _whole_ledger(run, "cannot be exported")
    cap = limits.max_pack_bytes if max_bytes is None else max_bytes
    zout = _ZipOut(out, limits, cap, max_setting, created_at)
    total_steps = sum(run.head_seq for run in runs)
    done = 0
    entries: list[PackRunEntry] = []
    snapshots: set[str] = set()

    async def step_lines(run: Run) -> list[bytes]:
        nonlocal done
        lines: list[bytes] = []
        after = 0
        while after < run.head_seq:
            page = await store.get_steps(
                tenant, run.run_id, after_seq=after, until_seq=run.head_seq, limit=_PAGE
            )
            if not page:
                raise NotFoundError(f"step {after + 1} of run {run.run_id}")
            lines += [_line(step) for step in page]
            after = page[-1].seq
            done += len(page)
            if progress is not None:
                progress("exporting steps", done, total_steps)
        return lines

    for index, run in enumerate(runs, start=1):
        directory = f"runs/{index:04d}/"
        # The run record is the snapshot: checkpoints taken since it was read are left out
        # (a page may then repeat one, never skip one).
        numbered: dict[int, Checkpoint] = {}
        offset = 0
        while len(numbered) < run.checkpoint_count:
            page = await store.list_checkpoints(tenant, run.run_id, limit=_PAGE, offset=offset)
            if not page:
                break
            offset += len(page)
            numbered.update((c.number, c) for c in page if c.number <= run.checkpoint_count)
        checkpoints = [numbered[n] for n in sorted(numbered)]
        snapshots.update(
            c.content.snapshot.manifest for c in checkpoints if c.content.snapshot is not None
        )
        zout.write(directory + "run.json", [_line(run)])
        zout.write(directory + "steps.jsonl", await step_lines(run))
        zout.write(directory + "checkpoints.jsonl", [_line(c) for c in checkpoints])
        entries.append(PackRunEntry(
            run_id=run.run_id, dir=directory, head_seq=run.head_seq, head_hash=run.head_hash,
            checkpoints=len(checkpoints),
        ))

    chosen = {run.run_id for run in runs}
    every_scope = "*" in scopes
    memories: list[Memory] = []
    after_key: tuple[Tenant, MemoryId] | None = None
    while True:
        found = await store.list_memories(tenant, status=None, after=after_key, limit=_PAGE)
        if not found:
            break
        memories += [
            m for _, m in found
            if m.run_id in chosen or every_scope or m.scope in scopes
        ]
        after_key = (found[-1][0], found[-1][1].memory_id)
        if progress is not None:
            progress("exporting memories", len(memories), 0)
    proposals: list[Proposal] = []
    for batch_id in dict.fromkeys(m.batch_id for m in memories if m.batch_id is not None):
        try:
            proposals.append(await store.get_proposal(tenant, batch_id))
        except NotFoundError:
            continue
    zout.write(PROPOSALS, [_line(p) for p in proposals])
    zout.write(MEMORIES, [_line(m) for m in memories])
    await _write_blobs(store, tenant, sorted(snapshots), zout)
    manifest = Manifest(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        schema_version=SCHEMA_VERSION,
        tool_version=tool_version,
        created_at=created_at,
        embedding_model=embedding[0] if embedding else None,
        embedding_dimension=embedding[1] if embedding else None,
        runs=entries,
        files=zout.files,
    )
    zout.write(MANIFEST, [manifest.model_dump_json(indent=1).encode("utf-8")], listed=False)
    zout.close()
    return manifest


async def _write_blobs(store: Store, tenant: Tenant, manifests: list[str], zout: _ZipOut) -> None:
    """``blobs/<sha256>`` for every manifest and file of the exported snapshots."""
    found = await store.get_blobs(tenant, manifests)
    names: set[str] = set()
    for name in manifests:
        if name not in found:
            raise NotFoundError(f"the manifest {name[:12]} of a snapshot is missing")
        names.add(name)
        names.update(e.sha256 for e in parse_manifest(found[name]))
    todo = sorted(names)
    for start in range(0, len(todo), 200):
        chunk = todo[start:start + 200]
        data = await store.get_blobs(tenant, chunk)
        for name in chunk:
            if name not in data:
                raise NotFoundError(f"the content {name[:12]} of a snapshot file is missing")
            zout.write(f"blobs/{name}", [data[name]])


# -- reading a pack (nothing trusted until checked) -----------------------------------------


def _bad(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"pack: {message}")


def _check_name(name: str) -> None:
    """Refuse names that could mean another place if they were ever extracted."""
    shown = repr(name[:80])
    if "\\" in name or "\x00" in name:
        raise _bad(f"unsafe file name {shown} (backslash or NUL)")
    if name.startswith("/") or _DRIVE.match(name):
        raise _bad(f"unsafe file name {shown} (absolute path)")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise _bad(f"unsafe file name {shown} (empty, '.' or '..' path component)")


def _check_entries(infos: list[zipfile.ZipInfo], limits: LimitSettings) -> None:
    if len(infos) > limits.max_pack_entries:
        raise PayloadTooLargeError(
            f"pack holds {len(infos)} files; limits.max_pack_entries is "
            f"{limits.max_pack_entries}"
        )
    seen: set[str] = set()
    declared = 0
    for info in infos:
        name = info.filename
        if name.endswith("/"):
            raise _bad(f"unexpected directory entry {name[:80]!r}")
        _check_name(name)
        mode = info.external_attr >> 16
        if info.create_system == 3 and mode and not stat.S_ISREG(mode):
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
            raise _bad(f"{name[:80]!r} is {kind}")
        folded = name.casefold()
        if folded in seen:
            raise _bad(f"duplicate file name {name[:80]!r}")
        seen.add(folded)
        if info.flag_bits & 0x1:
            raise _bad(f"{name[:80]!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _bad(f"{name[:80]!r} uses an unsupported compression method")
        declared += info.file_size
        if declared > limits.max_pack_unpacked_bytes:
            raise PayloadTooLargeError(
                "pack's files declare more than "
                f"{limits.max_pack_unpacked_bytes} bytes uncompressed; "
                f"limits.max_pack_unpacked_bytes is {limits.max_pack_unpacked_bytes}"
            )
        _check_ratio(name, info.file_size, info.compress_size, limits)


def _check_ratio(name: str, size: int, compressed: int, limits: LimitSettings) -> None:
    if size > _RATIO_FLOOR and size > limits.max_pack_ratio * max(compressed, 1):
        raise PayloadTooLargeError(
            f"{name[:80]!r} decompresses more than {limits.max_pack_ratio}:1; "
            f"limits.max_pack_ratio is {limits.max_pack_ratio}"
        )


class _Reader:
    """Reads members with every limit enforced while decompressing (headers can lie)."""

    def __init__(self, archive: zipfile.ZipFile, limits: LimitSettings,
                 progress: Progress | None, total: int) -> None:
        self._zip = archive
        self._limits = limits
        self.progress = progress
        self._total = total
        self.read_bytes = 0

    def read(self, info: zipfile.ZipInfo) -> tuple[bytes, str]:
        digest = hashlib.sha256()
        out = bytearray()
        lim = self._limits
        with self._zip.open(info) as member:
            while chunk := member.read(_CHUNK):
                out += chunk
                self.read_bytes += len(chunk)
                if self.read_bytes > lim.max_pack_unpacked_bytes:
                    raise PayloadTooLargeError(
                        f"pack decompresses to more than {lim.max_pack_unpacked_bytes} bytes; "
                        f"limits.max_pack_unpacked_bytes is {lim.max_pack_unpacked_bytes}"
                    )
                if len(out) > info.file_size:
                    raise _bad(f"{info.filename!r} is larger than its header says")
                _check_ratio(info.filename, len(out), info.compress_size, lim)
                digest.update(chunk)
                if self.progress is not None:
                    self.progress("reading", self.read_bytes, self._total)
        return bytes(out), digest.hexdigest()


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise ValueError("duplicate key in a JSON object")
    return found


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse(model: type[_M], raw: bytes, where: str) -> _M:
    """One JSON value as ``model``: strict JSON (no duplicate keys, NaN or Infinity), strict
    types (no coercion), no unknown fields. Errors name the place and the field, never the
    rejected value."""
    try:
        json.loads(raw, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
    except RecursionError:
        raise _bad(f"{where}: JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise _bad(f"{where}: malformed JSON ({reason[:80]})") from None
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "the record"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise _bad(f"{where}: field '{loc}': {first['msg']}{more}") from None


def _parse_lines(model: type[_M], raw: bytes, path: str) -> list[_M]:
    if raw and not raw.endswith(b"\n"):
        raise _bad(f"{path}: the last line has no newline (truncated?)")
    return [
        _parse(model, line, f"{path} line {number}")
        for number, line in enumerate(raw.split(b"\n")[:-1], start=1)
    ]


def read_pack(
    source: Path | IO[bytes], limits: LimitSettings, *, progress: Progress | None = None
) -> Pack:
    """Read and verify a pack without trusting it.

    Refused with InvalidArgumentError (``pack: ...``, naming the file and the problem):
    not a zip; an unsafe name (``..``, absolute, backslash, drive letter); a link or other
    non-regular entry; a duplicate name; an encrypted entry or another compression method;
    a missing, unknown-version or malformed manifest; a file missing from the zip or
    present but not listed; a size or sha256 that differs from the manifest; malformed JSON
    (duplicate keys, NaN); a record of the wrong shape or types; ids that are not valid ids;
    inconsistent runs (a broken hash chain, seq gaps, checkpoint numbering or parents, head
    or token totals that do not match). PayloadTooLargeError, naming the setting, for the
    file size, entry count, total decompressed size and compression ratio limits, which are
    checked on the headers and again while decompressing.
    """
    if isinstance(source, Path):
        try:
            handle = source.open("rb")
            size = os.fstat(handle.fileno()).st_size
        except OSError as exc:
            raise InvalidArgumentError(
                f"cannot read the pack {source.name!r} ({exc.strerror or 'OS error'})"
            ) from None
        with handle:
            _check_pack_size(size, limits)
            return _read_zip(handle, limits, progress)
    position = source.tell()
    size = source.seek(0, io.SEEK_END) - position
    source.seek(position)
    _check_pack_size(size, limits)
    return _read_zip(source, limits, progress)


def _check_pack_size(size: int, limits: LimitSettings) -> None:
    if size > limits.max_pack_bytes:
        raise PayloadTooLargeError(
            f"the pack is {size} bytes; limits.max_pack_bytes is {limits.max_pack_bytes}"
        )


def _read_zip(handle: IO[bytes], limits: LimitSettings, progress: Progress | None) -> Pack:
    try:
        with zipfile.ZipFile(handle) as archive:
            infos = archive.infolist()
            _check_entries(infos, limits)
            by_name = {info.filename: info for info in infos}
            reader = _Reader(archive, limits, progress, sum(i.file_size for i in infos))
            return _read_members(by_name, reader, limits)
    except zipfile.BadZipFile as exc:
        raise _bad(f"not a valid zip archive ({str(exc)[:80]})") from None
    except (zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError,
            RuntimeError) as exc:
        raise _bad(f"unreadable zip archive ({type(exc).__name__})") from None


def _read_members(
    by_name: dict[str, zipfile.ZipInfo], reader: _Reader, limits: LimitSettings
) -> Pack:
    info = by_name.get(MANIFEST)
    if info is None:
        raise _bad("manifest.json is missing")
    raw_manifest, manifest_digest = reader.read(info)
    try:
        head = json.loads(raw_manifest)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _bad("manifest.json: malformed JSON") from None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise _bad("manifest.json does not describe an mcp-checkpoint pack")
    if head.get("format_version") not in READABLE_FORMAT_VERSIONS:
        raise _bad(
            f"unknown format_version {str(head.get('format_version'))[:20]}; this "
            f"mcp-checkpoint reads {', '.join(map(str, READABLE_FORMAT_VERSIONS))}"
        )
    if head.get("schema_version") != SCHEMA_VERSION:
        raise _bad(
            f"unknown schema_version {str(head.get('schema_version'))[:20]}; this "
            f"mcp-checkpoint reads {SCHEMA_VERSION}"
        )
    manifest = _parse(Manifest, raw_manifest, "manifest.json")

    listed = {f.path: f for f in manifest.files}
    if len(listed) != len(manifest.files):
        raise _bad("manifest.json lists a file twice")
    expected = {PROPOSALS, MEMORIES}
    for entry in manifest.runs:
        if not _RUN_DIR.fullmatch(entry.dir):
            raise _bad(f"manifest.json: run {entry.run_id!r} has an invalid dir")
        expected |= {entry.dir + name for name in RUN_FILES}
    if manifest.format_version >= 2:
        expected |= {path for path in listed if _BLOB.fullmatch(path)}
    if set(listed) != expected:
        odd = sorted(set(listed) ^ expected)[:5]
        raise _bad(f"manifest.json lists unexpected or misses required files: {odd}")
    extra = sorted(set(by_name) - set(listed) - {MANIFEST})
    if extra:
        raise _bad(f"files not listed in the manifest: {[n[:80] for n in extra[:5]]}")
    missing = sorted(set(listed) - set(by_name))
    if missing:
        raise _bad(f"files listed in the manifest are missing: {missing[:5]}")

    contents: dict[str, bytes] = {}
    for path, described in sorted(listed.items()):
        data, digest = reader.read(by_name[path])
        if len(data) != described.size:
            raise _bad(f"{path} is {len(data)} bytes; the manifest says {described.size}")
        if digest != described.sha256:
            raise _bad(f"{path} does not match its sha256 in the manifest")
        contents[path] = data

    # Each file's bytes are dropped once parsed: the records are what the import keeps.
    runs: list[PackRun] = []
    for entry in manifest.runs:
        run = _parse(Run, contents.pop(entry.dir + "run.json").rstrip(b"\n"),
                     entry.dir + "run.json")
        steps = _parse_lines(Step, contents.pop(entry.dir + "steps.jsonl"),
                             entry.dir + "steps.jsonl")
        checkpoints = _parse_lines(Checkpoint, contents.pop(entry.dir + "checkpoints.jsonl"),
                                   entry.dir + "checkpoints.jsonl")
        runs.append(PackRun(run, steps, checkpoints))
    blobs: dict[str, bytes] = {}
    for path in [p for p in contents if _BLOB.fullmatch(p)]:
        data = contents.pop(path)
        if hashlib.sha256(data).hexdigest() != path.removeprefix("blobs/"):
            raise _bad(f"{path} does not hold the bytes its name says")
        blobs[path.removeprefix("blobs/")] = data
    pack = Pack(
        manifest=manifest,
        digest=manifest_digest,
        runs=runs,
        proposals=_parse_lines(Proposal, contents.pop(PROPOSALS), PROPOSALS),
        memories=_parse_lines(Memory, contents.pop(MEMORIES), MEMORIES),
        blobs=blobs,
    )
    _verify(pack, limits, reader.progress)
    return pack


# -- consistency ----------------------------------------------------------------------------


def _verify(pack: Pack, limits: LimitSettings, progress: Progress | None = None) -> None:
    """Check that the records are a consistent, untampered copy of a store's state."""
    lim = Limits(limits)
    counter = _Counter(progress, "verifying ledgers", pack.step_count)
    run_ids = [r.run.run_id for r in pack.runs]
    if len(set(run_ids)) != len(run_ids):
        raise _bad("a run appears twice")
    for entry, item in zip(pack.manifest.runs, pack.runs, strict=True):
        run = item.run
        if run.run_id != entry.run_id:
            raise _bad(f"{entry.dir}run.json holds run {run.run_id!r}, not {entry.run_id!r}")
        _ident(lim, "run_id", run.run_id)
        try:
            _whole_ledger(run, "cannot be imported")
        except InvalidArgumentError as exc:
            raise _bad(exc.message) from None
        _verify_steps(item, lim, limits, counter)
        _verify_checkpoints(item, lim)
        if run.head_hash != entry.head_hash or run.head_seq != entry.head_seq:
            raise _bad(f"run {run.run_id}: its ledger head differs from the manifest's")
        _verify_snapshots(item, pack.blobs)
    for what, ids in (
        ("batch", [p.batch_id for p in pack.proposals]),
        ("memory", [m.memory_id for m in pack.memories]),
    ):
        if len(set(ids)) != len(ids):
            raise _bad(f"a {what} appears twice")
        for record_id in ids:
            _ident(lim, f"{what} id", record_id)
    for proposal in pack.proposals:
        if len(proposal.items) > limits.max_batch_items:
            raise PayloadTooLargeError(
                f"pack: batch {proposal.batch_id} has {len(proposal.items)} items; "
                f"limits.max_batch_items is {limits.max_batch_items}"
            )
    for memory in pack.memories:
        lim.text(f"memory {memory.memory_id} content", memory.content, required=True)
        lim.ident(f"memory {memory.memory_id} scope", memory.scope)


def _verify_snapshots(item: PackRun, blobs: dict[str, bytes]) -> None:
    """Every snapshot a checkpoint names is in the pack, whole: its manifest and each file
    (the bytes were checked against their names when read)."""
    for checkpoint in item.checkpoints:
        ref = checkpoint.content.snapshot
        if ref is None:
            continue
        where = f"run {item.run.run_id} checkpoint {checkpoint.number}"
        if ref.manifest not in blobs:
            raise _bad(f"{where}: its snapshot's manifest is not in the pack")
        try:
            entries = parse_manifest(blobs[ref.manifest])
        except BackendError:
            raise _bad(f"{where}: its snapshot's manifest is malformed") from None
        for entry in entries:
            try:
                check_path(entry.path, field_name="a snapshot path")
            except InvalidArgumentError as exc:
                raise _bad(f"{where}: {exc.message}") from None
            data = blobs.get(entry.sha256)
            if data is None or len(data) != entry.size:
                raise _bad(f"{where}: snapshot file {entry.path!r} is not in the pack")


def _whole_ledger(run: Run, what: str) -> None:
    """InvalidArgumentError if retention compacted ``run``: a pack holds whole ledgers
    (steps from seq 1, checkpoints from number 1), which such a run no longer has."""
    if run.pruned_seq or run.pruned_checkpoints:
        raise InvalidArgumentError(
            f"run {run.run_id} was compacted by retention (steps 1-{run.pruned_seq} and "
            f"{run.pruned_checkpoints} checkpoints removed); a pack holds whole ledgers, so "
            f"it {what}"
        )


def _ident(lim: Limits, field: str, value: str) -> None:
    try:
        lim.ident(field, value)
    except InvalidArgumentError as exc:
        raise _bad(exc.message) from None


class _Counter:
    """Progress of one phase, reported every ``_PAGE`` items."""

    def __init__(self, progress: Progress | None, phase: str, total: int) -> None:
        self._progress = progress
        self._phase = phase
        self._total = total
        self.done = 0

    def add(self, count: int) -> None:
        self.done += count
        if self._progress is not None and count:
            self._progress(self._phase, self.done, self._total)


def _verify_steps(item: PackRun, lim: Limits, limits: LimitSettings, counter: _Counter) -> None:
    run = item.run
    where = f"run {run.run_id}"
    if len(item.steps) != run.head_seq or run.step_count != run.head_seq:
        raise _bad(f"{where}: {len(item.steps)} steps for head_seq {run.head_seq}")
    keys: set[str] = set()
    cum = 0
    episode = 1
    for position, step in enumerate(item.steps, start=1):
        if step.run_id != run.run_id or step.seq != position:
            raise _bad(f"{where}: step {position} is out of place")
        if step.tokens < 0 or step.cum_tokens != cum + step.tokens:
            raise _bad(f"{where}: step {position} has inconsistent token totals")
        cum = step.cum_tokens
        if not episode <= step.episode <= run.checkpoint_count + 1:
            raise _bad(f"{where}: step {position} has an impossible episode")
        episode = step.episode
        if step.idempotency_key is not None:
            if step.idempotency_key in keys:
                raise _bad(f"{where}: idempotency_key used twice")
            keys.add(step.idempotency_key)
        payload = canonical_json([step.input, step.output, step.reasoning])
        lim.size(f"pack: step {position} of run {run.run_id}", len(payload.encode("utf-8")),
                 limits.max_step_bytes, "limits.max_step_bytes")
    head = genesis_hash(run.run_id)
    for start in range(0, len(item.steps), 5 * _PAGE):
        page = item.steps[start : start + 5 * _PAGE]
        try:
            head = verify_chain(run.run_id, page, prev_hash=head)
        except ChainBreak as exc:
            raise _bad(f"{where}: {exc}") from None
        counter.add(len(page))
    if head != run.head_hash:
        raise _bad(f"{where}: head_hash does not match the last step")
    if cum != run.head_tokens:
        raise _bad(f"{where}: head_tokens does not match the steps")


def _verify_checkpoints(item: PackRun, lim: Limits) -> None:
    run = item.run
    where = f"run {run.run_id}"
    if len(item.checkpoints) != run.checkpoint_count:
        raise _bad(f"{where}: {len(item.checkpoints)} checkpoints for checkpoint_count "
                   f"{run.checkpoint_count}")
    parent: CheckpointId | None = None
    through = 0
    for number, checkpoint in enumerate(item.checkpoints, start=1):
        _ident(lim, "checkpoint id", checkpoint.checkpoint_id)
        if (checkpoint.run_id != run.run_id or checkpoint.number != number
                or checkpoint.parent_id != parent):
            raise _bad(f"{where}: checkpoint {number} is out of place")
        if not through <= checkpoint.through_seq <= checkpoint.head_seq <= run.head_seq:
            raise _bad(f"{where}: checkpoint {number} covers an impossible range")
        lim.size(f"pack: checkpoint {number} of run {run.run_id}",
                 len(checkpoint.content.model_dump_json().encode("utf-8")),
                 lim.s.max_checkpoint_bytes, "limits.max_checkpoint_bytes")
        parent = checkpoint.checkpoint_id
        through = checkpoint.through_seq
    covered_tokens = item.steps[through - 1].cum_tokens if through else 0
    if (run.latest_checkpoint_id != parent or run.covered_seq != through
            or run.covered_tokens != covered_tokens):
        raise _bad(f"{where}: its latest checkpoint does not match its checkpoints")


# -- planning an import ---------------------------------------------------------------------

Kind = Literal["run", "batch", "memory"]
_PREFIX: dict[Kind, str] = {"run": "run", "batch": "batch", "memory": "mem"}
_RENAME_ORDER: tuple[Kind, ...] = ("run", "memory", "batch")


@dataclass(frozen=True)
class RunOutcome:
    """What an import does with one run of the pack."""

    pack_id: RunId
    run_id: RunId
    action: Literal["import", "identical"]
    steps: int
    checkpoints: int


@dataclass
class ImportPlan:
    """What importing a pack into a tenant would write (``records``) and why."""

    pack: Pack
    tenant: Tenant
    records: ImportRecords
    runs: list[RunOutcome]
    proposals_identical: int
    memories_identical: int
    renamed: dict[str, str] = field(default_factory=dict)
    """``"kind id"`` -> new id, for ids that collided with different records."""

    @property
    def nothing_to_do(self) -> bool:
        """True when everything in the pack is already in the store, identical."""
        r = self.records
        return not (r.runs or r.proposals or r.memories)

    def summary(self) -> dict[str, Any]:
        """The plan as JSON-ready data."""
        m = self.pack.manifest
        return {
            "pack": {
                "format_version": m.format_version,
                "schema_version": m.schema_version,
                "tool_version": m.tool_version,
                "created_at": m.created_at.isoformat(),
                "embedding_model": m.embedding_model,
                "embedding_dimension": m.embedding_dimension,
                "runs": len(self.pack.runs),
                "steps": self.pack.step_count,
                "checkpoints": self.pack.checkpoint_count,
                "proposals": len(self.pack.proposals),
                "memories": len(self.pack.memories),
            },
            "tenant": self.tenant,
            "runs": [
                {"pack_id": o.pack_id, "run_id": o.run_id, "action": o.action,
                 "steps": o.steps, "checkpoints": o.checkpoints}
                for o in self.runs
            ],
            "proposals": {"import": len(self.records.proposals),
                          "identical": self.proposals_identical},
            "memories": {"import": len(self.records.memories),
                         "identical": self.memories_identical},
            "renamed": dict(self.renamed),
            "nothing_to_do": self.nothing_to_do,
        }

    def lines(self) -> list[str]:
        """The plan as text, one line per decision."""
        m = self.pack.manifest
        out = [
            f"pack: format {m.format_version}, exported {m.created_at:%Y-%m-%d %H:%M:%S} UTC "
            f"by mcp-checkpoint {m.tool_version}; {len(self.pack.runs)} runs, "
            f"{self.pack.step_count} steps, {self.pack.checkpoint_count} checkpoints, "
            f"{len(self.pack.proposals)} memory batches, {len(self.pack.memories)} memories",
            "verified: every file's sha256 and size, every run's hash chain and head",
        ]
        for o in self.runs:
            if o.action == "identical":
                out.append(f"run {o.run_id}: already imported (identical), skipped")
            elif o.pack_id != o.run_id:
                out.append(f"run {o.pack_id}: import as {o.run_id} (the id is taken by another "
                           f"run), {o.steps} steps, {o.checkpoints} checkpoints")
            else:
                out.append(f"run {o.run_id}: import, {o.steps} steps, {o.checkpoints} "
                           "checkpoints")
        for what, new, same in (
            ("memory batches", len(self.records.proposals), self.proposals_identical),
            ("memories", len(self.records.memories), self.memories_identical),
        ):
            out.append(f"{what}: {new} to import, {same} already imported")
        for old, new_id in self.renamed.items():
            if not old.startswith("run "):
                out.append(f"{old}: import as {new_id} (the id is taken)")
        if m.embedding_model is not None and self.records.memories:
            out.append(f"vectors: not in the pack (exported with {m.embedding_model}); the "
                       "server embeds imported memories when it starts, or run "
                       "`mcp-checkpoint reindex`")
        return out


def _new_id(kind: Kind, old: str, digest: str) -> str:
    """A renamed id: the same for the same pack and id, so a second import with
    ``rename`` finds its first copy."""
    tail = hashlib.sha256(f"{digest}\n{kind}\n{old}".encode()).hexdigest()[:22]
    return f"{_PREFIX[kind]}_{tail}"


def _rehash(run: Run, steps: list[Step], new_id: RunId) -> tuple[Run, list[Step]]:
    """The run under another id: the hash chain starts from the new id's genesis hash."""
    prev = genesis_hash(new_id)
    out: list[Step] = []
    for step in steps:
        draft = StepDraft(
            tool=step.tool, input=step.input, output=step.output, reasoning=step.reasoning,
            status=step.status, idempotency_key=step.idempotency_key,
        )
        digest = step_hash(prev, new_id, step.seq, draft, step.created_at)
        out.append(step.model_copy(update={"run_id": new_id, "prev_hash": prev,
                                           "hash": digest}))
        prev = digest
    return run.model_copy(update={"run_id": new_id, "head_hash": prev}), out


def _apply_renames(pack: Pack, names: dict[tuple[Kind, str], str]) -> Pack:
    if not names:
        return pack

    def rid(value: RunId | None) -> Any:
        return None if value is None else names.get(("run", value), value)

    def bid(value: BatchId | None) -> Any:
        return None if value is None else names.get(("batch", value), value)

    def mid(value: str | None) -> Any:
        return None if value is None else names.get(("memory", value), value)

    runs: list[PackRun] = []
    for item in pack.runs:
        new = RunId(rid(item.run.run_id))
        if new == item.run.run_id:
            runs.append(item)
            continue
        run, steps = _rehash(item.run, item.steps, new)
        checkpoints = [c.model_copy(update={"run_id": new}) for c in item.checkpoints]
        runs.append(PackRun(run, steps, checkpoints))
    proposals = [
        p.model_copy(update={
            "batch_id": bid(p.batch_id),
            "run_id": rid(p.run_id),
            "memory_ids": {i: mid(m) for i, m in p.memory_ids.items()},
            "items": [
                it.model_copy(update={"target_id": mid(it.target_id),
                                      "superseded_by": mid(it.superseded_by)})
                for it in p.items
            ],
        })
        for p in pack.proposals
    ]
    memories = [
        m.model_copy(update={
            "memory_id": mid(m.memory_id), "batch_id": bid(m.batch_id), "run_id": rid(m.run_id),
            "superseded_by": mid(m.superseded_by),
        })
        for m in pack.memories
    ]
    return Pack(pack.manifest, pack.digest, runs, proposals, memories)


@dataclass
class _Classified:
    new_runs: list[PackRun]
    same_runs: list[PackRun]
    new_proposals: list[Proposal]
    same_proposals: int
    new_memories: list[Memory]
    same_memories: int
    collisions: list[tuple[Kind, str]]


async def _classify(store: Store, tenant: Tenant, pack: Pack) -> _Classified:
    found = _Classified([], [], [], 0, [], 0, [])
    for item in pack.runs:
        try:
            stored = await store.get_run(tenant, item.run.run_id)
        except NotFoundError:
            found.new_runs.append(item)
            continue
        same = stored == item.run
        if same and item.checkpoints:
            newest = await store.list_checkpoints(
                tenant, stored.run_id, limit=len(item.checkpoints) + 1, offset=0
            )
            same = list(reversed(newest)) == item.checkpoints
        if same:
            found.same_runs.append(item)
        else:
            found.collisions.append(("run", item.run.run_id))
    for proposal in pack.proposals:
        try:
            stored_batch = await store.get_proposal(tenant, proposal.batch_id)
        except NotFoundError:
            found.new_proposals.append(proposal)
            continue
        if stored_batch == proposal:
            found.same_proposals += 1
        else:
            found.collisions.append(("batch", proposal.batch_id))
    for start in range(0, len(pack.memories), _PAGE):
        chunk = pack.memories[start : start + _PAGE]
        stored_memories = {
            m.memory_id: m
            for m in await store.get_memories(tenant, [m.memory_id for m in chunk])
        }
        for memory in chunk:
            existing = stored_memories.get(memory.memory_id)
            if existing is None:
                found.new_memories.append(memory)
            elif existing == memory:
                found.same_memories += 1
            else:
                found.collisions.append(("memory", memory.memory_id))
    return found


def _imported_run(item: PackRun, cfg: CheckpointSettings, counter: _Counter) -> ImportedRun:
    """The run with what ``append_step`` would have kept for each step: its request hash
    and the acknowledgement a retry gets (working memory as it was after that step)."""
    run = item.run
    covered: list[tuple[int, int]] = [(0, 0)]
    for checkpoint in item.checkpoints:
        through = checkpoint.through_seq
        covered.append((through, item.steps[through - 1].cum_tokens if through else 0))
    steps: list[ImportedStep] = []
    error_seq = 0
    for step in item.steps:
        covered_seq, covered_tokens = covered[step.episode - 1]
        error_seq = step.seq if step.status == "error" else error_seq
        then = run.model_copy(update={
            "head_seq": step.seq, "head_tokens": step.cum_tokens,
            "checkpoint_count": step.episode - 1, "covered_seq": covered_seq,
            "covered_tokens": covered_tokens, "error_seq": error_seq,
        })
        draft = StepDraft(
            tool=step.tool, input=step.input, output=step.output, reasoning=step.reasoning,
            status=step.status, idempotency_key=step.idempotency_key,
        )
        steps.append(ImportedStep(step, request_hash(draft), step_ack(cfg, then, step)))
        if step.seq % _PAGE == 0:
            counter.add(_PAGE)
    counter.add(len(item.steps) % _PAGE)
    return ImportedRun(run, steps, list(item.checkpoints))


async def plan_import(
    store: Store,
    tenant: Tenant,
    pack: Pack,
    *,
    checkpoint_settings: CheckpointSettings,
    rename: bool = False,
    progress: Progress | None = None,
) -> ImportPlan:
    """Compare a verified pack with the store and decide what to write.

    A record whose id is free is imported; one that is stored already, identical, is
    skipped (so importing twice writes nothing the second time). An id taken by a
    *different* record is a collision: ConflictError naming the ids, unless ``rename``,
    which gives each colliding record a new id derived from the pack and the old id (the
    same every time) and rewrites every reference to it (a renamed run's hash chain is
    recomputed from its new id's genesis hash). Reads only.
    """
    names: dict[tuple[Kind, str], str] = {}
    while True:
        current = _apply_renames(pack, names)
        found = await _classify(store, tenant, current)
        if not found.collisions:
            break
        reverse = {new: old for (kind, old), new in names.items()}
        if not rename or any(record_id in reverse for _, record_id in found.collisions):
            shown = ", ".join(f"{kind} {record_id}" for kind, record_id in
                              found.collisions[:10])
            more = len(found.collisions) - 10
            raise ConflictError(
                f"these ids exist with other content: {shown}"
                + (f" (and {more} more)" if more > 0 else "")
                + "; import with --rename to give them new ids"
            )
        # One kind at a time, referenced kinds first: a record that differs only because it
        # points at a renamed one is then renamed by reference, not given an id of its own
        # (so a second import with rename finds the first one's copies identical).
        first = next(k for k in _RENAME_ORDER if any(c[0] == k for c in found.collisions))
        for kind, record_id in found.collisions:
            if kind == first:
                names[(kind, record_id)] = _new_id(kind, record_id, pack.digest)
    outcomes: list[RunOutcome] = []
    new_ids = {item.run.run_id for item in found.new_runs}
    for original, item in zip(pack.runs, current.runs, strict=True):
        outcomes.append(RunOutcome(
            pack_id=original.run.run_id,
            run_id=item.run.run_id,
            action="import" if item.run.run_id in new_ids else "identical",
            steps=len(item.steps),
            checkpoints=len(item.checkpoints),
        ))
    counter = _Counter(progress, "planning", sum(len(i.steps) for i in found.new_runs))
    records = ImportRecords(
        runs=[_imported_run(item, checkpoint_settings, counter) for item in found.new_runs],
        proposals=found.new_proposals,
        memories=found.new_memories,
    )
    return ImportPlan(
        pack=pack,
        tenant=tenant,
        records=records,
        runs=outcomes,
        proposals_identical=found.same_proposals,
        memories_identical=found.same_memories,
        renamed={f"{kind} {old}": new for (kind, old), new in names.items()},
    )


async def apply_import(store: Store, plan: ImportPlan) -> None:
    """Write the plan in one transaction (nothing when there is nothing to do).
    ConflictError, with nothing written, if another writer took one of its ids meanwhile."""
    if plan.records.runs and plan.pack.blobs:
        # Content-addressed, so written first: if the import then fails, the blobs are
        # unreferenced and garbage collection removes them.
        await store.put_blobs(plan.tenant, plan.pack.blobs, now=plan.pack.manifest.created_at)
    if not plan.nothing_to_do:
        await store.import_records(plan.tenant, plan.records)
