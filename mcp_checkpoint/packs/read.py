"""Reading a pack without trusting it: ``read_pack`` refuses a hostile or damaged file
before trusting any of it (unsafe names, links, duplicate names, size and ratio limits
enforced while decompressing, hashes, files the manifest does not list, unknown versions,
malformed JSON, wrong types), then has ``verify`` check the records. Nothing is ever
extracted to disk.
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
from pathlib import Path
from typing import IO, Any, TypeVar

from pydantic import BaseModel, ValidationError

from mcp_checkpoint.config import LimitSettings
from mcp_checkpoint.core.models import Checkpoint, Memory, Proposal, Run, Step
from mcp_checkpoint.errors import InvalidArgumentError, PayloadTooLargeError
from mcp_checkpoint.packs.format import (
    _BLOB,
    _CHUNK,
    _RATIO_FLOOR,
    _RUN_DIR,
    FORMAT,
    MANIFEST,
    MEMORIES,
    PROPOSALS,
    READABLE_FORMAT_VERSIONS,
    RUN_FILES,
    SCHEMA_VERSION,
    Manifest,
    Pack,
    PackRun,
    Progress,
    _bad,
)
from mcp_checkpoint.packs.verify import _verify

__all__ = ["read_pack"]

_DRIVE = re.compile(r"^[A-Za-z]:")
_M = TypeVar("_M", bound=BaseModel)


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

