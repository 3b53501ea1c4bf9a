"""Workspace snapshots: the files of the work, kept with a checkpoint and restored later.

Files are blobs named by the SHA-256 of their bytes, so a file unchanged since an earlier
checkpoint is stored once. A snapshot is a manifest blob (a JSON list of path, sha256,
size) that the checkpoint's content names. Blobs are written before the checkpoint that
refers to them, so a crash in between leaves only unreferenced blobs, which garbage
collection removes. The rules about paths (what a snapshot may hold and where a restore
may write) are kept here, once.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import anyio

from mcp_checkpoint.config import SnapshotSettings
from mcp_checkpoint.core.models import SnapshotEntry, SnapshotRef, Tenant
from mcp_checkpoint.core.ports import Store
from mcp_checkpoint.errors import BackendError, InvalidArgumentError, PayloadTooLargeError

__all__ = [
    "RestoreAction",
    "RestorePlan",
    "Snapshots",
    "check_path",
    "collect_garbage",
    "plan_restore",
    "sha256_hex",
]

_MAX_PATH_CHARS = 1_024
_MAX_SEGMENT_BYTES = 255
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                     *(f"lpt{i}" for i in range(1, 10))}


def sha256_hex(data: bytes) -> str:
    """The blob name of ``data``."""
    return hashlib.sha256(data).hexdigest()


def check_path(path: str, *, field_name: str = "path") -> str:
    """``path`` if it is a safe relative POSIX path inside a workspace, else
    InvalidArgumentError naming the problem: empty, too long, absolute (``/x``, ``C:``,
    ``\\\\host``), backslashes, ``.``/``..`` or empty segments, control characters, or
    names Windows reserves (a restore must be safe on every platform)."""
    if not path:
        raise InvalidArgumentError(f"{field_name} must not be empty")
    if len(path) > _MAX_PATH_CHARS:
        raise InvalidArgumentError(f"{field_name} is longer than {_MAX_PATH_CHARS} characters")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in path):
        raise InvalidArgumentError(f"{field_name} {path!r} holds control characters")
    if "\\" in path:
        raise InvalidArgumentError(f"{field_name} {path!r} holds a backslash; use '/'")
    if path.startswith("/") or (len(path) >= 2 and path[1] == ":"):
        raise InvalidArgumentError(f"{field_name} {path!r} is absolute; give it relative")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidArgumentError(
                f"{field_name} {path!r} has an empty, '.' or '..' segment"
            )
        if len(segment.encode("utf-8")) > _MAX_SEGMENT_BYTES:
            raise InvalidArgumentError(f"{field_name} {path!r} has a name over 255 bytes")
        if segment.split(".")[0].lower() in _WINDOWS_RESERVED or segment.endswith((" ", ".")):
            raise InvalidArgumentError(
                f"{field_name} {path!r} has a name Windows cannot hold ({segment!r})"
            )
    return path


def _entries(pairs: Sequence[tuple[str, bytes]]) -> list[SnapshotEntry]:
    return [SnapshotEntry(path=p, sha256=sha256_hex(d), size=len(d)) for p, d in pairs]


def _manifest_bytes(entries: Sequence[SnapshotEntry]) -> bytes:
    listed = [e.model_dump() for e in entries]
    return json.dumps(listed, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def parse_manifest(data: bytes) -> list[SnapshotEntry]:
    """The entries of a manifest blob (BackendError if it is not one)."""
    try:
        raw = json.loads(data)
        return [SnapshotEntry.model_validate(item) for item in raw]
    except (ValueError, TypeError) as exc:
        raise BackendError("a snapshot manifest is damaged") from exc


RestoreAction = Literal["create", "unchanged", "overwrite", "conflict"]


@dataclass(frozen=True)
class RestorePlan:
    """What a restore would do, file by file (``conflict``: the target holds other bytes
    and ``force`` was not given, so it is left alone)."""

    actions: dict[str, RestoreAction] = field(default_factory=dict)

    def count(self, action: RestoreAction) -> int:
        """How many files get ``action``."""
        return sum(1 for a in self.actions.values() if a == action)

    @property
    def writes(self) -> list[str]:
        """The paths a restore writes, in manifest order."""
        return [p for p, a in self.actions.items() if a in ("create", "overwrite")]


def plan_restore(
    entries: Sequence[SnapshotEntry], present: dict[str, str | None], *, force: bool
) -> RestorePlan:
    """Decide each file's fate from what the target holds now: ``present[path]`` is the
    SHA-256 of the file there, or None when there is none."""
    actions: dict[str, RestoreAction] = {}
    for entry in entries:
        current = present.get(entry.path)
        if current is None:
            actions[entry.path] = "create"
        elif current == entry.sha256:
            actions[entry.path] = "unchanged"
        else:
            actions[entry.path] = "overwrite" if force else "conflict"
    return RestorePlan(actions)


class Snapshots:
    """Stores snapshots, reads them back, and collects the blobs nothing refers to."""

    def __init__(self, store: Store, settings: SnapshotSettings) -> None:
        self._store = store
        self._cfg = settings

    def check_files(self, files: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """The files if a snapshot may hold them: safe distinct paths (also distinct when
        case is ignored, for case-insensitive file systems) within the size limits."""
        cfg = self._cfg
        if len(files) > cfg.max_files:
            raise PayloadTooLargeError(
                f"files holds {len(files)} files; the limit is {cfg.max_files} "
                "(snapshots.max_files)"
            )
        seen: dict[str, str] = {}
        total = 0
        for i, (path, data) in enumerate(files):
            check_path(path, field_name=f"files.{i}.path")
            folded = path.casefold()
            if folded in seen:
                raise InvalidArgumentError(
                    f"files.{i}.path {path!r} repeats {seen[folded]!r}"
                )
            seen[folded] = path
            if len(data) > cfg.max_file_bytes:
                raise PayloadTooLargeError(
                    f"files.{i} ({path}) is {len(data)} bytes; the limit is "
                    f"{cfg.max_file_bytes} (snapshots.max_file_bytes)"
                )
            total += len(data)
        if total > cfg.max_total_bytes:
            raise PayloadTooLargeError(
                f"the snapshot holds {total} bytes; the limit is {cfg.max_total_bytes} "
                "(snapshots.max_total_bytes)"
            )
        # A file may not also be a folder of another (a and a/b cannot both be restored).
        for path in seen:
            parts = path.split("/")
            for depth in range(1, len(parts)):
                if "/".join(parts[:depth]) in seen:
                    raise InvalidArgumentError(
                        f"files holds {'/'.join(parts[:depth])!r} both as a file and as a "
                        f"folder of {seen[path]!r}"
                    )
        return list(files)

    async def store(
        self, tenant: Tenant, files: Sequence[tuple[str, bytes]], *, now: datetime
    ) -> SnapshotRef:
        """Store the files' blobs (only those the tenant does not hold) and their manifest;
        the reference a checkpoint keeps. The files must have passed ``check_files``."""
        pairs = sorted(files, key=lambda f: f[0])
        entries = await anyio.to_thread.run_sync(_entries, pairs)  # hashing grows with size
        blobs = {e.sha256: d for e, (_, d) in zip(entries, pairs, strict=True)}
        manifest = _manifest_bytes(entries)
        manifest_name = sha256_hex(manifest)
        blobs[manifest_name] = manifest
        missing = await self._store.missing_blobs(tenant, list(blobs))
        new = await self._store.put_blobs(
            tenant, {name: blobs[name] for name in missing}, now=now
        ) if missing else 0
        return SnapshotRef(
            manifest=manifest_name,
            files=len(entries),
            bytes=sum(e.size for e in entries),
            new_blobs=new - (1 if manifest_name in missing else 0),
        )

    async def manifest(self, tenant: Tenant, ref: SnapshotRef) -> list[SnapshotEntry]:
        """The files a snapshot lists (BackendError if its manifest is gone)."""
        found = await self._store.get_blobs(tenant, [ref.manifest])
        if ref.manifest not in found:
            raise BackendError(f"the manifest {ref.manifest[:12]} of this snapshot is missing")
        return parse_manifest(found[ref.manifest])

    async def read(self, tenant: Tenant, entries: Sequence[SnapshotEntry]) -> dict[str, bytes]:
        """The bytes of these files, by path, each checked against its SHA-256 (a blob that
        is missing or does not match is a BackendError naming the file: nothing half-read
        is returned)."""
        found = await self._store.get_blobs(tenant, sorted({e.sha256 for e in entries}))
        out: dict[str, bytes] = {}
        for entry in entries:
            data = found.get(entry.sha256)
            if data is None:
                raise BackendError(f"the content of {entry.path} is missing from the store")
            if sha256_hex(data) != entry.sha256 or len(data) != entry.size:
                raise BackendError(f"the stored content of {entry.path} fails its SHA-256 check")
            out[entry.path] = data
        return out

    async def collect_garbage(self, tenant: Tenant) -> int:
        """See ``collect_garbage``."""
        return await collect_garbage(self._store, tenant)


async def collect_garbage(store: Store, tenant: Tenant) -> int:
    """Remove the tenant's blobs that no remaining checkpoint's snapshot refers to (after
    retention or a deletion); how many went."""
    live: set[str] = set()
    manifests = await store.snapshot_manifests(tenant)
    stored = await store.get_blobs(tenant, sorted(manifests))
    for name, data in stored.items():
        live.add(name)
        live.update(e.sha256 for e in parse_manifest(data))
    dead = sorted((await store.list_blobs(tenant)) - live)
    return await store.delete_blobs(tenant, dead) if dead else 0
