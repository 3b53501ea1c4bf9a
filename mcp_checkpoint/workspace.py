"""Restoring a workspace snapshot onto disk: read what a target folder holds, and write
files into it atomically without ever writing outside it.

Core decides what to do with each file (``core.snapshots.plan_restore``); this module only
looks at the target and applies the plan. Paths were checked when the snapshot was taken
and are checked again here; a component that is a link, or a folder where a file should
be, is never written through.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mcp_checkpoint.core.snapshots import check_path
from mcp_checkpoint.errors import InvalidArgumentError

__all__ = ["Blocked", "apply_writes", "survey"]


class Blocked(Exception):
    """A path of the snapshot cannot be restored in this target (a link, a folder, a
    component outside the target)."""


def _inside(target: Path, rel: str) -> Path:
    """``target/rel`` if no existing component of it is a link or leaves ``target``."""
    check_path(rel)
    current = target
    for part in rel.split("/"):
        current = current / part
        if current.is_symlink():
            raise Blocked(f"{rel}: {current.relative_to(target)} is a link; not written through")
    if os.path.commonpath([target, current.parent.resolve()]) != str(target):
        raise Blocked(f"{rel}: leads outside the target")
    return current


def survey(target: Path, paths: Iterable[str]) -> tuple[dict[str, str | None], dict[str, str]]:
    """What the target holds at each path: the SHA-256 of a regular file there, or None
    when there is nothing; and the paths that cannot be restored at all, with why."""
    present: dict[str, str | None] = {}
    blocked: dict[str, str] = {}
    for rel in paths:
        try:
            dest = _inside(target, rel)
        except Blocked as exc:
            blocked[rel] = str(exc)
            continue
        if not dest.exists():
            present[rel] = None
        elif dest.is_file():
            digest = hashlib.sha256()
            with dest.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            present[rel] = digest.hexdigest()
        else:
            blocked[rel] = f"{rel}: a folder (or special file) is there"
    return present, blocked


def _write_one(target: Path, rel: str, data: bytes) -> None:
    try:
        dest = _inside(target, rel)
    except Blocked as exc:
        raise InvalidArgumentError(str(exc)) from exc
    dest.parent.mkdir(parents=True, exist_ok=True)
    if os.path.commonpath([target, dest.parent.resolve()]) != str(target):
        raise InvalidArgumentError(f"{rel}: leads outside the target")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".mcpck-tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def apply_writes(target: Path, files: Mapping[str, bytes], *, threads: int = 8) -> None:
    """Write each file into ``target`` atomically (a temporary file in the same folder,
    flushed to disk, then renamed over the destination). Components are checked again
    just before each write. Files are written by a few threads at once: each waits for its
    own flush to disk, and the disk serves several flushes together."""
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for done in [pool.submit(_write_one, target, rel, data) for rel, data in files.items()]:
            done.result()
