"""The migration files a backend ships: numbered 1, 2, 3... in order, or the store refuses to
start (two changes that took the same number cannot both ship)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_checkpoint.errors import BackendError
from mcp_checkpoint.storage._migrations import packaged_scripts
from mcp_checkpoint.storage.postgres._migrations import known_migrations as postgres_migrations
from mcp_checkpoint.storage.sqlite._migrations import known_migrations as sqlite_migrations


def _package(root: Path, name: str, files: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    folder = root / name / "migrations"
    folder.mkdir(parents=True)
    (root / name / "__init__.py").write_text("", encoding="utf-8")
    for file in files:
        (folder / file).write_text(f"-- {file}\nSELECT 1;\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(root))
    return name


def test_shipped_migrations_of_both_backends_are_numbered_from_one_without_gaps() -> None:
    for migrations in (sqlite_migrations(), postgres_migrations()):
        assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))


def test_migrations_are_read_in_number_order_and_other_files_are_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = _package(tmp_path, "mig_ordered", ["0002_b.sql", "0001_a.sql", "README.txt"],
                       monkeypatch)
    found = packaged_scripts(package, "Test")
    assert [(v, n) for v, n, _ in found] == [(1, "a"), (2, "b")]
    assert found[0][2] == "-- 0001_a.sql\nSELECT 1;\n"


@pytest.mark.parametrize(
    "files",
    [
        pytest.param(["0001_a.sql", "0001_b.sql"], id="a-number-twice"),
        pytest.param(["0001_a.sql", "0003_c.sql"], id="a-gap"),
        pytest.param(["0002_b.sql"], id="not-from-one"),
    ],
)
def test_a_repeated_or_missing_number_refuses_to_start(
    files: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = _package(tmp_path, f"mig_{len(files)}_{files[-1][:4]}", files, monkeypatch)
    with pytest.raises(BackendError, match="the packaged Test migrations are not numbered"):
        packaged_scripts(package, "Test")
