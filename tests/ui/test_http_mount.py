"""``/ui`` on the HTTP server: the same bearer tokens as MCP, tenant and scopes included."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from mcp_checkpoint.server.bearer import TokenFile
from mcp_checkpoint.server.http import HttpOptions, build_http_app
from tests.ui.conftest import seeded_settings


def test_http_ui_is_behind_the_server_s_tokens_and_tenants(tmp_path: Path) -> None:
    settings, seeded = seeded_settings(tmp_path)
    tokens = TokenFile(settings.data_dir)
    reader, _ = tokens.create("local", ["read"])
    stranger, _ = tokens.create("other", ["read", "write"])
    app = build_http_app(settings, HttpOptions(host="127.0.0.1", port=8000))
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        anonymous = client.get("/ui/", follow_redirects=False)
        assert anonymous.status_code == 303
        assert anonymous.headers["location"].endswith("/ui/login")
        mine = client.get(f"/ui/runs/{seeded.run_id}",
                          headers={"Authorization": f"Bearer {reader}"})
        assert mine.status_code == 200
        assert "Fix the flaky login test" in mine.text
        assert "default-src 'none'" in mine.headers["content-security-policy"]
        foreign = client.get(f"/ui/runs/{seeded.run_id}",
                             headers={"Authorization": f"Bearer {stranger}"})
        assert foreign.status_code == 404
        revoked_id = tokens.records()[0].token_id
        tokens.revoke(revoked_id)
        after = client.get("/ui/", headers={"Authorization": f"Bearer {reader}"},
                           follow_redirects=False)
        assert after.status_code == 303  # a revoked token is signed out at once


def test_http_ui_without_auth_answers_loopback_host_names_only(tmp_path: Path) -> None:
    settings, seeded = seeded_settings(tmp_path)
    app = build_http_app(settings, HttpOptions(host="127.0.0.1", port=8000, auth=False))
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        assert client.get(f"/ui/runs/{seeded.run_id}").status_code == 200
        rebound = client.get("/ui/", headers={"Host": "attacker.example:8000"})
        assert rebound.status_code == 421
        assert "run_ui_main" not in rebound.text
