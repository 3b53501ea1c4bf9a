"""Snapshot rules in core: which paths a snapshot may hold, and how a restore decides."""

from __future__ import annotations

import pytest

from mcp_checkpoint.config import SnapshotSettings
from mcp_checkpoint.core.models import SnapshotEntry
from mcp_checkpoint.core.snapshots import Snapshots, check_path, plan_restore, sha256_hex
from mcp_checkpoint.errors import InvalidArgumentError, PayloadTooLargeError
from mcp_checkpoint.storage.reference.store import ReferenceStore

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("path", "problem"), [
    pytest.param("", "must not be empty", id="empty"),
    pytest.param("/etc/passwd", "absolute", id="absolute"),
    pytest.param("C:/Windows/x", "absolute", id="drive"),
    pytest.param("a\\b", "backslash", id="backslash"),
    pytest.param("../escape", "'..'", id="dotdot"),
    pytest.param("a/../../b", "'..'", id="inner-dotdot"),
    pytest.param("a//b", "empty", id="empty-segment"),
    pytest.param("a/./b", "'.'", id="dot"),
    pytest.param("dir/", "empty", id="trailing-slash"),
    pytest.param("a\x00b", "control", id="nul"),
    pytest.param("a\u202eb", "control", id="bidi-override"),
    pytest.param("CON.txt", "Windows", id="reserved"),
    pytest.param("x" * 300, "255 bytes", id="long-name"),
])
def test_check_path_refuses_what_could_escape_or_not_restore(path: str, problem: str) -> None:
    with pytest.raises(InvalidArgumentError, match=problem):
        check_path(path)


@pytest.mark.parametrize("path", ["README.md", "src/pkg/mod.py", "docs/é.md", ".github/ci.yml"])
def test_check_path_accepts_ordinary_relative_paths(path: str) -> None:
    assert check_path(path) == path


def test_check_files_refuses_duplicates_files_that_are_folders_and_oversize() -> None:
    snapshots = Snapshots(ReferenceStore(), SnapshotSettings(max_file_bytes=10,
                                                             max_total_bytes=15, max_files=3))
    with pytest.raises(InvalidArgumentError, match="repeats"):
        snapshots.check_files([("A.md", b""), ("a.md", b"")])
    with pytest.raises(InvalidArgumentError, match="both as a file and as a folder"):
        snapshots.check_files([("a", b""), ("a/b", b"")])
    with pytest.raises(PayloadTooLargeError, match="snapshots.max_file_bytes"):
        snapshots.check_files([("a", b"x" * 11)])
    with pytest.raises(PayloadTooLargeError, match="snapshots.max_total_bytes"):
        snapshots.check_files([("a", b"x" * 8), ("b", b"x" * 8)])
    with pytest.raises(PayloadTooLargeError, match="snapshots.max_files"):
        snapshots.check_files([(f"f{i}", b"") for i in range(4)])


def test_plan_restore_never_overwrites_a_changed_file_without_force() -> None:
    entries = [SnapshotEntry(path=p, sha256=sha256_hex(p.encode()), size=len(p))
               for p in ("new", "same", "edited")]
    present = {"same": sha256_hex(b"same"), "edited": sha256_hex(b"someone else's")}
    plan = plan_restore(entries, present, force=False)
    assert plan.actions == {"new": "create", "same": "unchanged", "edited": "conflict"}
    assert plan.writes == ["new"]
    forced = plan_restore(entries, present, force=True)
    assert forced.writes == ["new", "edited"] and forced.count("overwrite") == 1


async def test_read_refuses_a_blob_whose_bytes_do_not_match_its_name() -> None:
    store = ReferenceStore()
    snapshots = Snapshots(store, SnapshotSettings())
    await store.put_blobs("t", {sha256_hex(b"good"): b"tampered"}, now=None)  # type: ignore[arg-type]
    entry = SnapshotEntry(path="f", sha256=sha256_hex(b"good"), size=4)
    with pytest.raises(Exception, match="fails its SHA-256 check"):
        await snapshots.read("t", [entry])  # type: ignore[arg-type]
