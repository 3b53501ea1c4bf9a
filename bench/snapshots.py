"""``python -m bench snapshots``: workspace snapshots and restores, and the embeddable
checkpointer's ``record``, on a local SQLite store.

Snapshots: ``--files`` files of ``--file-kb`` KB each (random bytes, so nothing compresses)
kept with one checkpoint, then again with ``--changed`` percent of them changed; times both,
counts the blobs the second stored, restores the second into an empty folder (verify and
write), then runs a dry run against a folder where the same share changed and counts the
stored file bytes it read (none expected). Checkpointer: ``record`` p50 and p99 over
``--records`` steps, synchronous and async, with ``synchronous=FULL`` (every step fsynced)
and ``NORMAL``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from bench._stats import emit, summary
from mcp_checkpoint.checkpointer import AsyncCheckpointer, Checkpointer
from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.episodes import Episodes
from mcp_checkpoint.core.models import CheckpointPatch, StepDraft, Tenant
from mcp_checkpoint.core.snapshots import plan_restore
from mcp_checkpoint.core.tokens import HeuristicTokenizer
from mcp_checkpoint.storage.sqlite import SqliteStore
from mcp_checkpoint.workspace import apply_writes, survey

__all__ = ["add_arguments", "main"]

T = Tenant("bench")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bench snapshots``."""
    parser.add_argument("--files", type=int, default=1_000)
    parser.add_argument("--file-kb", type=int, default=50)
    parser.add_argument("--changed", type=float, default=10.0, help="percent changed")
    parser.add_argument("--records", type=int, default=2_000)
    parser.add_argument("--json", metavar="PATH", type=Path)


async def _snapshots(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    settings = Settings(data_dir=folder / "data", embeddings={"provider": "none"})
    store = SqliteStore(settings.sqlite_path, settings.sqlite)
    await store.open()
    reads = {"bytes": 0}
    original = store.get_blobs

    async def counted(tenant: Tenant, names: Any) -> dict[str, bytes]:
        found = await original(tenant, names)
        reads["bytes"] += sum(len(v) for v in found.values())
        return found

    store.get_blobs = counted  # type: ignore[method-assign]
    try:
        episodes = Episodes(store, HeuristicTokenizer(), settings)
        await episodes.start_run(T, "snapshot bench", run_id="r1")
        size = args.file_kb * 1024
        files = {f"src/pkg{i // 100}/file_{i:05d}.bin": os.urandom(size) for i in range(args.files)}
        await episodes.record_step(T, "r1", StepDraft(tool="edit"))
        start = time.perf_counter()
        first = await episodes.checkpoint(T, "r1", CheckpointPatch(name="v1"),
                                          files=sorted(files.items()))
        first_s = time.perf_counter() - start
        n_changed = int(args.files * args.changed / 100)
        changed = dict(files)
        for path in list(files)[:n_changed]:
            changed[path] = os.urandom(size)
        await episodes.record_step(T, "r1", StepDraft(tool="edit"))
        start = time.perf_counter()
        second = await episodes.checkpoint(T, "r1", CheckpointPatch(name="v2"),
                                           files=sorted(changed.items()))
        second_s = time.perf_counter() - start
        ref = second.checkpoint.content.snapshot
        if ref is None or first.checkpoint.content.snapshot is None:
            raise SystemExit("a checkpoint with files kept no snapshot")

        target = folder / "restore"
        reads["bytes"] = 0
        start = time.perf_counter()
        _, entries = await episodes.snapshot(T, "r1")
        present, blocked = await anyio.to_thread.run_sync(survey, target, [e.path for e in entries])
        plan = plan_restore(entries, present, force=False)
        data = await episodes.snapshot_files(T, [e for e in entries if e.path in set(plan.writes)])
        await anyio.to_thread.run_sync(apply_writes, target, data)
        restore_s = time.perf_counter() - start
        restored_bytes = reads["bytes"]

        for path in list(files)[-n_changed:]:  # someone edits 10 % of the restored files
            (target / path).write_bytes(os.urandom(size))
        reads["bytes"] = 0
        start = time.perf_counter()
        _, entries = await episodes.snapshot(T, "r1")
        present, blocked = await anyio.to_thread.run_sync(survey, target, [e.path for e in entries])
        dry = plan_restore(entries, present, force=False)
        dry_s = time.perf_counter() - start
        return {
            "files": args.files,
            "total_mb": round(args.files * size / 2**20, 1),
            "first_checkpoint_s": round(first_s, 3),
            "first_new_blobs": first.checkpoint.content.snapshot.new_blobs,
            "second_checkpoint_s": round(second_s, 3),
            "second_new_blobs": ref.new_blobs,
            "changed_files": n_changed,
            "restore_s": round(restore_s, 3),
            "restore_blob_mb_read": round(restored_bytes / 2**20, 1),
            "dry_run_s": round(dry_s, 3),
            "dry_run_conflicts": dry.count("conflict"),
            "dry_run_stored_bytes_read": reads["bytes"],  # the manifest only
            "blocked": len(blocked),
        }
    finally:
        await store.close()


def _record_sync(folder: Path, n: int, synchronous: str) -> dict[str, Any]:
    settings = Settings(data_dir=folder, embeddings={"provider": "none"},
                        sqlite={"synchronous": synchronous})
    times: list[float] = []
    with Checkpointer.open("record bench", settings=settings) as cp:
        for i in range(n):
            start = time.perf_counter()
            cp.record("bash", input={"cmd": f"ls {i}"}, output="x" * 200)
            times.append((time.perf_counter() - start) * 1000)
            if cp.should_checkpoint():
                cp.checkpoint()
    return summary(times)


async def _record_async(folder: Path, n: int, synchronous: str) -> dict[str, Any]:
    settings = Settings(data_dir=folder, embeddings={"provider": "none"},
                        sqlite={"synchronous": synchronous})
    times: list[float] = []
    async with await AsyncCheckpointer.open("record bench", settings=settings) as cp:
        for i in range(n):
            start = time.perf_counter()
            await cp.record("bash", input={"cmd": f"ls {i}"}, output="x" * 200)
            times.append((time.perf_counter() - start) * 1000)
            if cp.should_checkpoint():
                await cp.checkpoint()
    return summary(times)


def main(args: argparse.Namespace) -> int:
    """Run the benchmark and print its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        snaps = anyio.run(_snapshots, args, folder)
        records = {}
        for mode in ("FULL", "NORMAL"):
            records[f"sync {mode}"] = _record_sync(folder / f"s{mode}", args.records, mode)
            records[f"async {mode}"] = anyio.run(
                _record_async, folder / f"a{mode}", args.records, mode
            )
    lines = ["workspace snapshots (SQLite):"]
    lines += [f"  {key}: {value}" for key, value in snaps.items()]
    lines.append("Checkpointer.record, ms:")
    lines += [f"  {key}: p50 {s['p50']}  p99 {s['p99']}" for key, s in records.items()]
    emit("\n".join(lines), {"snapshots": snaps, "record_ms": records}, args.json)
    return 0
