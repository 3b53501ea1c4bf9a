"""The command line on PostgreSQL: ``doctor`` shows the backend without its password, and
``bench throughput`` runs several server processes on one store (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from mcp_checkpoint.cli import main
from mcp_checkpoint.storage.postgres._migrations import known_migrations

pytestmark = pytest.mark.e2e

SECRET = "pw-that-must-not-show"


def _with_password(url: str, password: str, port: int | None = None) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{parts.username or 'postgres'}:{password}@{host}:{port or parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc))


def test_doctor_shows_the_postgres_backend_and_masks_the_password(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MCP_CHECKPOINT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MCP_CHECKPOINT_STORE_URL", _with_password(postgres_url, SECRET))

    assert main(["doctor", "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out)

    assert SECRET not in out
    assert report["store"].startswith("postgresql://") and ":***@" in report["store"]
    assert report["schema_version"] == known_migrations()[-1].version
    backend = report["backend"]
    assert backend["backend"] == "postgresql"
    assert backend["database"] == urlsplit(postgres_url).path.lstrip("/")
    assert backend["pool"]["max_size"] == 10
    assert report["store_status"] == "ok" and report["problems"] == []


def test_doctor_reports_an_unreachable_postgres_without_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MCP_CHECKPOINT_DATA_DIR", str(tmp_path / "data"))
    # Port 1 on loopback refuses at once.
    monkeypatch.setenv(
        "MCP_CHECKPOINT_STORE_URL", _with_password("postgresql://u@127.0.0.1/db", SECRET, 1)
    )
    monkeypatch.setenv("MCP_CHECKPOINT_POSTGRES__CONNECT_TIMEOUT_S", "1")

    assert main(["doctor"]) == 1
    captured = capsys.readouterr()
    assert "backend_unavailable" in captured.out and "PROBLEMS" in captured.out
    assert SECRET not in captured.out + captured.err


def _throughput(tmp_path: Path, *store: str) -> dict[str, object]:
    out = tmp_path / "throughput.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_CHECKPOINT_")}
    done = subprocess.run(
        [sys.executable, "-m", "mcp_checkpoint", "bench", "throughput", "--processes", "2",
         "--steps", "15", "--rehydrates", "3", "--json", str(out), *store],
        capture_output=True, text=True, timeout=180, env=env, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "hash chain verified" in done.stdout
    report: dict[str, object] = json.loads(out.read_text(encoding="utf-8"))
    return report


@pytest.mark.slow
def test_bench_throughput_on_sqlite_records_every_step_once(tmp_path: Path) -> None:
    report = _throughput(tmp_path)

    assert report["ledger"] == {"steps": 2 * (15 + 5), "verified": True}
    assert report["store"] == "sqlite:///<tmp>/bench.db"


@pytest.mark.slow
def test_bench_throughput_on_postgres_records_every_step_once(
    tmp_path: Path, postgres_url: str
) -> None:
    report = _throughput(tmp_path, "--store-url", _with_password(postgres_url, SECRET))

    assert report["ledger"] == {"steps": 2 * (15 + 5), "verified": True}
    assert SECRET not in json.dumps(report)
    assert report["record_step"]["calls"] == 30  # type: ignore[index]
