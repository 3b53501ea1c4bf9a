"""Exporting a pack: ``export_pack`` writes runs and memories through the Store port into a
zip, keeping every limit import would check, so an export never makes a pack import refuses.
"""

from __future__ import annotations

import hashlib
import stat
import zipfile
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import IO, Any

from pydantic import BaseModel

from mcp_checkpoint.config import LimitSettings
from mcp_checkpoint.core.ledger import canonical_json
from mcp_checkpoint.core.models import Checkpoint, Memory, MemoryId, Proposal, Run, RunId, Tenant
from mcp_checkpoint.core.ports import Store
from mcp_checkpoint.core.snapshots import parse_manifest
from mcp_checkpoint.errors import NotFoundError, PayloadTooLargeError
from mcp_checkpoint.packs.format import (
    _CHUNK,
    _PAGE,
    _RATIO_FLOOR,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    MEMORIES,
    PROPOSALS,
    SCHEMA_VERSION,
    Manifest,
    PackFile,
    PackRunEntry,
    Progress,
    _whole_ledger,
)

__all__ = ["export_pack"]


def _line(model: BaseModel) -> bytes:
    return (canonical_json(model.model_dump(mode="json")) + "\n").encode("utf-8")


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

