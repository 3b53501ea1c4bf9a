"""The HTTP app in process: /healthz on a failing store, the exposure rule, Host checks,
the Prometheus text."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx2
import pytest

from mcp_checkpoint.config import Settings
from mcp_checkpoint.errors import BackendError, ConfigError
from mcp_checkpoint.server.http import HttpOptions, build_http_app, check_exposure, is_loopback
from mcp_checkpoint.server.metrics import Metrics
from mcp_checkpoint.storage.reference.store import ReferenceStore

pytestmark = pytest.mark.anyio


class BrokenStore(ReferenceStore):
    """A store whose backend is down (the message names a DSN that must never leak)."""

    async def list_runs(self, *args: Any, **kwargs: Any) -> Any:
        raise BackendError("postgresql://admin:hunter2@db.internal failed")


async def test_healthz_reports_an_unavailable_store_without_details(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, store_url="memory://")
    app = build_http_app(settings, HttpOptions(), store=BrokenStore())
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        response = await http.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert "hunter2" not in response.text and "postgresql" not in response.text


async def test_healthz_ok_on_a_working_store(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, store_url="memory://")
    app = build_http_app(settings, HttpOptions(), store=ReferenceStore())
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json()["store"] == "ok"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
     ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("example.com", False)],  # noqa: S104
)
def test_exposure_rule(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    check_exposure(HttpOptions(host=host, auth=True), insecure_public=False)
    check_exposure(HttpOptions(host=host, auth=False), insecure_public=True)
    if loopback:
        check_exposure(HttpOptions(host=host, auth=False), insecure_public=False)
    else:
        with pytest.raises(ConfigError, match="refusing to serve without auth"):
            check_exposure(HttpOptions(host=host, auth=False), insecure_public=False)


def test_metrics_text_is_prometheus_exposition() -> None:
    metrics = Metrics()
    metrics.tool_call("record_step", "ok", 0.003)
    metrics.tool_call("record_step", "not_found", 0.2)
    metrics.store_call("append_step", 0.001, failed=True)
    text = metrics.render()
    assert 'mcp_checkpoint_tool_calls_total{tool="record_step",code="ok"} 1' in text
    assert 'mcp_checkpoint_tool_calls_total{tool="record_step",code="not_found"} 1' in text
    # Buckets are cumulative: 3 ms falls in le=0.005, 200 ms in le=0.25.
    assert 'mcp_checkpoint_tool_duration_seconds_bucket{tool="record_step",le="0.0025"} 0' in text
    assert 'mcp_checkpoint_tool_duration_seconds_bucket{tool="record_step",le="0.005"} 1' in text
    assert 'mcp_checkpoint_tool_duration_seconds_bucket{tool="record_step",le="0.25"} 2' in text
    assert 'mcp_checkpoint_tool_duration_seconds_bucket{tool="record_step",le="+Inf"} 2' in text
    assert 'mcp_checkpoint_tool_duration_seconds_count{tool="record_step"} 2' in text
    assert 'mcp_checkpoint_store_errors_total{op="append_step"} 1' in text
    assert text.endswith("\n")
    for line in text.splitlines():
        assert line.startswith(("# HELP ", "# TYPE ", "mcp_checkpoint_")), line


@pytest.mark.parametrize("damage", ["unreadable", "invalid"])
async def test_a_broken_token_file_answers_503_without_a_traceback(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    from mcp_checkpoint.server.bearer import TokenFile

    token, _ = TokenFile(tmp_path).create("acme", ["read"])
    path = tmp_path / "tokens.json"
    if damage == "unreadable":
        path.chmod(0)
        if os.access(path, os.R_OK):  # root reads anything: make it unreadable another way
            path.unlink()
            path.mkdir()
    else:
        path.write_text("{not json", encoding="utf-8")
    settings = Settings(data_dir=tmp_path, store_url="memory://")
    app = build_http_app(settings, HttpOptions(), store=ReferenceStore())
    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        response = await http.post(
            "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    assert response.json()["error"] == "temporarily_unavailable"
    assert all(r.exc_info is None for r in caplog.records)
    assert any("token file" in r.getMessage() for r in caplog.records)
