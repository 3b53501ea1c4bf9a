"""The web view's protections, over HTTP without a browser: tokens and scopes, tenant
isolation, CSRF on the one action, the security headers, escaping of stored text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from mcp_checkpoint.config import Settings
from mcp_checkpoint.server.app import Runtime
from mcp_checkpoint.ui import UiCaller, standalone_app
from tests.ui._seed import Seeded, seed

TOKENS = {
    "reader-token": UiCaller("local", frozenset({"read"})),
    "writer-token": UiCaller("local", frozenset({"read", "write"})),
    "other-tenant": UiCaller("other", frozenset({"read", "write"})),
}


async def verify(token: str) -> UiCaller | None:
    return TOKENS.get(token)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, Seeded]]:
    runtime = Runtime(Settings(data_dir=tmp_path))
    with TestClient(standalone_app(runtime.services, runtime.use, verify=verify)) as client:
        seeded = client.portal.call(seed, runtime.services)
        yield client, seeded


def _csrf(client: TestClient, path: str, token: str) -> str:
    page = client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert page.status_code == 200, page.text
    value = client.cookies.get("mcpc_csrf")
    assert value and f'value="{value}"' in page.text
    return value


def test_ui_without_a_token_redirects_to_sign_in(app: tuple[TestClient, Seeded]) -> None:
    client, seeded = app
    response = client.get(f"/ui/runs/{seeded.run_id}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].endswith("/ui/login")
    assert "Fix the flaky" not in response.text


def test_ui_sign_in_sets_an_httponly_cookie_and_shows_the_tenant_s_runs(
    app: tuple[TestClient, Seeded],
) -> None:
    client, _ = app
    csrf = _csrf(client, "/ui/login", "unused")
    wrong = client.post("/ui/login", data={"token": "nope", "csrf": csrf})
    assert wrong.status_code == 401
    signed = client.post("/ui/login", data={"token": "reader-token", "csrf": csrf},
                         follow_redirects=False)
    assert signed.status_code == 303
    cookie = signed.headers["set-cookie"]
    assert "mcpc_token=reader-token" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie.replace("Strict", "strict")
    runs = client.get("/ui/")
    assert runs.status_code == 200
    assert "run_ui_main" in runs.text


def test_ui_sign_in_without_the_csrf_token_is_refused(app: tuple[TestClient, Seeded]) -> None:
    client, _ = app
    response = client.post("/ui/login", data={"token": "reader-token"})
    assert response.status_code == 403
    assert "mcpc_token" not in response.headers.get("set-cookie", "")


def test_ui_another_tenant_sees_nothing_of_this_one(app: tuple[TestClient, Seeded]) -> None:
    client, seeded = app
    headers = {"Authorization": "Bearer other-tenant"}
    assert "run_ui_main" not in client.get("/ui/", headers=headers).text
    assert client.get(f"/ui/runs/{seeded.run_id}", headers=headers).status_code == 404
    assert client.get(f"/ui/memories/{seeded.memory_id}", headers=headers).status_code == 404
    assert client.get(f"/ui/batches/{seeded.batch_id}", headers=headers).status_code == 404
    assert client.get(f"/ui/runs/{seeded.run_id}/export.md",
                      headers=headers).status_code == 404


def test_ui_a_read_token_cannot_commit_a_batch(app: tuple[TestClient, Seeded]) -> None:
    client, seeded = app
    path = f"/ui/batches/{seeded.batch_id}"
    csrf = _csrf(client, path, "reader-token")
    page = client.get(path, headers={"Authorization": "Bearer reader-token"})
    assert "commit-button" not in page.text
    response = client.post(path + "/commit", data={"csrf": csrf, "accept": "0"},
                           headers={"Authorization": "Bearer reader-token"})
    assert response.status_code == 403
    still = client.get(path, headers={"Authorization": "Bearer writer-token"})
    assert 'id="batch-status">pending' in still.text


@pytest.mark.parametrize(
    ("headers", "with_csrf"),
    [
        pytest.param({}, False, id="no-csrf-token"),
        pytest.param({"Origin": "https://evil.example"}, True, id="cross-origin"),
        pytest.param({"Sec-Fetch-Site": "cross-site"}, True, id="cross-site"),
    ],
)
def test_ui_a_commit_from_another_site_is_refused(
    app: tuple[TestClient, Seeded], headers: dict[str, str], with_csrf: bool
) -> None:
    client, seeded = app
    path = f"/ui/batches/{seeded.batch_id}"
    csrf = _csrf(client, path, "writer-token")
    data = {"accept": "0", **({"csrf": csrf} if with_csrf else {})}
    response = client.post(path + "/commit", data=data,
                           headers={"Authorization": "Bearer writer-token", **headers})
    assert response.status_code == 403
    page = client.get(path, headers={"Authorization": "Bearer writer-token"})
    assert 'id="batch-status">pending' in page.text


def test_ui_a_write_token_commits_the_accepted_items(app: tuple[TestClient, Seeded]) -> None:
    client, seeded = app
    path = f"/ui/batches/{seeded.batch_id}"
    csrf = _csrf(client, path, "writer-token")
    response = client.post(path + "/commit", data={"csrf": csrf, "accept": "0"},
                           headers={"Authorization": "Bearer writer-token"})
    assert response.status_code == 200
    assert 'id="batch-status">committed' in response.text
    again = client.post(path + "/commit", data={"csrf": csrf, "accept": "0"},
                        headers={"Authorization": "Bearer writer-token"})
    assert again.status_code == 409
    assert "already committed" in again.text


def test_ui_pages_send_a_strict_content_security_policy(app: tuple[TestClient, Seeded]) -> None:
    client, seeded = app
    response = client.get(f"/ui/runs/{seeded.run_id}",
                          headers={"Authorization": "Bearer reader-token"})
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src" not in csp  # no script at all: default-src 'none' covers it
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "<script" not in response.text


def test_ui_stored_markup_and_escapes_render_as_text(app: tuple[TestClient, Seeded]) -> None:
    client, seeded = app
    headers = {"Authorization": "Bearer reader-token"}
    for path in ("/ui/", f"/ui/runs/{seeded.hostile_run_id}", "/ui/memories?kind=lesson"):
        text = client.get(path, headers=headers).text
        assert "<script>alert" not in text
        assert "<img src=x" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
        assert "\x1b" not in text
        assert "\\x1b[31m" in text


def test_ui_markdown_export_is_a_readable_record(app: tuple[TestClient, Seeded]) -> None:
    client, seeded = app
    response = client.get(f"/ui/runs/{seeded.run_id}/export.md",
                          headers={"Authorization": "Bearer reader-token"})
    assert response.status_code == 200
    text = response.text
    assert text.startswith(f"# Run {seeded.run_id}")
    assert "**Objective:** Fix the flaky login test" in text
    assert "decision 30: retry the login once" in text
    assert text.count("\n### ") >= seeded.steps
    assert "### 7. bash (error)" in text


def test_ui_bad_input_is_a_clear_error_page(app: tuple[TestClient, Seeded]) -> None:
    client, seeded = app
    headers = {"Authorization": "Bearer reader-token"}
    response = client.get("/ui/?since=yesterday", headers=headers)
    assert response.status_code == 400
    assert "since must be a date" in response.text
    response = client.get(f"/ui/runs/{seeded.run_id}/diff?a=x", headers=headers)
    assert response.status_code == 400
    response = client.get(f"/ui/runs/{seeded.run_id}/context?budget=0", headers=headers)
    assert response.status_code == 400
