"""Remote serving end to end: streamable HTTP and SSE with the SDK client, bearer-token
auth (401/403), scopes, DNS-rebinding protection, /healthz, /metrics, graceful SIGTERM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp_types import TextContent

from tests.e2e.conftest import run_cli, server_env
from tests.e2e.http_helpers import HttpServer, connect, headers, make_token

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def text(result: Any) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


async def loop(client: Any, run_id: str = "r1") -> None:
    """start_run, two steps, a checkpoint and a rehydrate: the core loop works."""
    started = await client.call_tool("start_run", {"objective": "ship it", "run_id": run_id})
    assert not started.is_error, text(started)
    for i in range(2):
        ack = await client.call_tool("record_step", {"run_id": run_id, "tool": f"t{i}"})
        assert ack.structured_content["seq"] == i + 1
    cp = await client.call_tool("checkpoint", {"run_id": run_id, "progress": ["two steps"]})
    assert not cp.is_error, text(cp)
    ctx = await client.call_tool("rehydrate", {"run_id": run_id})
    assert "two steps" in ctx.structured_content["context"]


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_sdk_client_runs_the_loop_with_a_token(tmp_path: Path, transport: str) -> None:
    data = tmp_path / "data"
    token = await make_token(server_env(data), "alice")
    async with HttpServer(data, transport=transport) as server:
        async with connect(server.url, token, transport=transport) as client:
            await loop(client)
        # The step is stored for alice, not for the local tenant.
        code, out, _ = await run_cli("runs", "list", "--json", "--tenant", "alice",
                                     env=server.env)
        assert code == 0 and [r["run_id"] for r in json.loads(out)] == ["r1"]
        code, out, _ = await run_cli("runs", "list", "--json", env=server.env)
        assert json.loads(out) == []


async def test_stateless_mode_serves_every_request_without_a_session(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = await make_token(server_env(data), "alice")
    async with HttpServer(data, "--stateless") as server:
        async with connect(server.url, token) as client:
            await loop(client)
        # A fresh connection (no session to resume) sees the same state.
        async with connect(server.url, token) as client:
            run = await client.call_tool("rehydrate", {"run_id": "r1"})
            assert not run.is_error


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_requests_without_a_valid_token_get_401_with_www_authenticate(
    tmp_path: Path, transport: str
) -> None:
    data = tmp_path / "data"
    env = server_env(data)
    token = await make_token(env, "alice")
    async with HttpServer(data, transport=transport) as server, httpx2.AsyncClient() as http:
        method = "POST" if transport == "http" else "GET"
        for bad in (None, "mcpck_not-a-real-token", token[:-2] + "xx", "eyJ.a.b"):
            response = await http.request(
                method, server.url, headers={**headers(bad), "content-type": "application/json",
                                             "accept": "application/json, text/event-stream"},
                content=b"{}" if method == "POST" else None,
            )
            assert response.status_code == 401, bad
            challenge = response.headers["www-authenticate"]
            assert challenge.startswith("Bearer ")
            assert 'error="invalid_token"' in challenge
            # Static tokens only: no OAuth resource server, so no pointer into OAuth.
            assert "resource_metadata" not in challenge
        # What OAuth-capable clients probe anyway answers a JSON OAuth error that says
        # how to authenticate, never a plain-text 404 they cannot parse.
        for method_, path in (("GET", "/.well-known/oauth-protected-resource/mcp"),
                              ("GET", "/.well-known/oauth-protected-resource"),
                              ("GET", "/.well-known/oauth-authorization-server"),
                              ("GET", "/.well-known/openid-configuration"),
                              ("POST", "/register"), ("GET", "/authorize"), ("POST", "/token")):
            response = await http.request(method_, server.base + path)
            assert response.status_code == 404, path
            assert response.json()["error"] == "invalid_request"
            assert "Authorization: Bearer mcpck_" in response.json()["error_description"]

        # Revoking takes effect on the running server, without a restart.
        code, out, _ = await run_cli("tokens", "list", "--json", env=env)
        assert code == 0
        token_id = json.loads(out)[0]["token_id"]
        async with connect(server.url, token, transport=transport) as client:
            assert not (await client.call_tool("list_runs", {})).is_error
        assert (await run_cli("tokens", "revoke", token_id, env=env))[0] == 0
        response = await http.request(method, server.url, headers=headers(token))
        assert response.status_code == 401


async def test_scopes_read_only_token_cannot_write_and_metrics_token_cannot_use_mcp(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    env = server_env(data)
    writer = await make_token(env, "alice")
    reader = await make_token(env, "alice", "read")
    scraper = await make_token(env, "alice", "metrics")
    async with HttpServer(data) as server:
        async with connect(server.url, writer) as client:
            await loop(client)
        async with connect(server.url, reader) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            for name, tool in tools.items():
                assert tool.annotations is not None
                if tool.annotations.read_only_hint:
                    continue
                result = await client.call_tool(name, {"run_id": "r1"})
                assert result.is_error
                assert text(result).startswith(f"forbidden: tool {name} needs the 'write' scope")
            ctx = await client.call_tool("rehydrate", {"run_id": "r1"})
            assert not ctx.is_error
            run = await client.read_resource("run://r1")
            assert '"step_count": 2' in run.contents[0].text  # type: ignore[union-attr]
        async with httpx2.AsyncClient() as http:
            response = await http.post(
                server.url, headers={**headers(scraper), "content-type": "application/json"},
                content=b"{}",
            )
            assert response.status_code == 403
            assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


async def test_dns_rebinding_protection_rejects_foreign_host_and_origin(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = await make_token(server_env(data), "alice")
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
    base = {**headers(token), "content-type": "application/json",
            "accept": "application/json, text/event-stream"}
    async with HttpServer(data) as server, httpx2.AsyncClient() as http:
        response = await http.post(server.url, headers={**base, "host": "evil.example:80"},
                                   content=body)
        assert response.status_code == 421
        response = await http.post(server.url, headers={**base, "origin": "http://evil.example"},
                                   content=body)
        assert response.status_code == 403


async def test_healthz_and_metrics(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = server_env(data)
    writer = await make_token(env, "tenant-secret-name")
    scraper = await make_token(env, "ops", "metrics")
    async with HttpServer(data) as server:
        async with connect(server.url, writer) as client:
            await loop(client, "run-secret-id")
            missing = await client.call_tool("rehydrate", {"run_id": "nope"})
            assert text(missing).startswith("not_found")
        async with httpx2.AsyncClient(base_url=server.base) as http:
            health = await http.get("/healthz")
            assert health.status_code == 200
            assert health.json()["status"] == "ok" and health.json()["store"] == "ok"

            assert (await http.get("/metrics")).status_code == 401
            assert (await http.get("/metrics", headers=headers(writer))).status_code == 403
            scraped = await http.get("/metrics", headers=headers(scraper))
            assert scraped.status_code == 200
            assert scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
            body = scraped.text
    assert 'mcp_checkpoint_tool_calls_total{tool="record_step",code="ok"} 2' in body
    assert 'mcp_checkpoint_tool_calls_total{tool="rehydrate",code="not_found"} 1' in body
    assert 'mcp_checkpoint_tool_duration_seconds_count{tool="record_step"} 2' in body
    assert 'mcp_checkpoint_store_duration_seconds_count{op="append_step"}' in body
    assert 'mcp_checkpoint_http_responses_total{endpoint="/metrics",status="401"} 1' in body
    for secret in ("tenant-secret-name", "run-secret-id", "ship it"):
        assert secret not in body


async def test_metrics_open_and_off_settings(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with HttpServer(data, MCP_CHECKPOINT_HTTP__METRICS="open") as server, \
            httpx2.AsyncClient(base_url=server.base) as http:
        assert (await http.get("/metrics")).status_code == 200
    async with HttpServer(data, MCP_CHECKPOINT_HTTP__METRICS="off") as server, \
            httpx2.AsyncClient(base_url=server.base) as http:
        assert (await http.get("/metrics")).status_code == 404


async def test_no_auth_is_refused_on_a_public_interface(tmp_path: Path) -> None:
    env = server_env(tmp_path / "data")
    code, _, err = await run_cli("serve", "--transport", "http", "--host", "0.0.0.0",  # noqa: S104
                                 "--no-auth", "--port", "0", env=env)
    assert code == 1
    assert "refusing to serve without auth on 0.0.0.0" in err
    assert "--insecure-no-auth-on-public-interface" in err


async def test_no_auth_on_loopback_serves_the_configured_tenant(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with HttpServer(data, "--no-auth", MCP_CHECKPOINT_TENANT="me") as server:
        async with connect(server.url, None) as client:
            await loop(client)
        assert "WITHOUT AUTH" in server.log()
    code, out, _ = await run_cli("runs", "list", "--json", "--tenant", "me", env=server.env)
    assert code == 0
    assert [r["run_id"] for r in json.loads(out)] == ["r1"]


async def test_sigterm_finishes_in_flight_requests_and_closes_the_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = await make_token(server_env(data), "alice")
    acked: list[int] = []
    enough = anyio.Event()
    server = HttpServer(data)
    async with server:
        async with connect(server.url, token) as client:
            await client.call_tool("start_run", {"objective": "o", "run_id": "r1"})

        async def writer(n: int) -> None:
            try:
                async with connect(server.url, token) as client:
                    for i in range(1000):
                        result = await client.call_tool(
                            "record_step", {"run_id": "r1", "tool": f"w{n}-{i}"}
                        )
                        if result.is_error:
                            return
                        acked.append(result.structured_content["seq"])
                        if len(acked) >= 40:
                            enough.set()
            except Exception:  # the connection ends when the server stops: expected
                return

        async with anyio.create_task_group() as tg:
            for n in range(4):
                tg.start_soon(writer, n)
            with anyio.fail_after(30):
                await enough.wait()
            code = await server.stop()
    assert code == 0, server.log()
    assert "store closed" in server.log()
    _, out, _ = await run_cli("runs", "show", "r1", "--json", "--tenant", "alice",
                              env=server.env)
    run = json.loads(out)["run"]
    # Every acknowledged step is stored (some may have been stored without reaching the
    # client before it disconnected, never the other way round), sequence numbers unique.
    assert len(acked) == len(set(acked))
    assert run["step_count"] >= len(acked)
    assert max(acked) <= run["head_seq"]


async def test_tokens_cli_prints_the_token_once_and_never_lists_secrets(tmp_path: Path) -> None:
    env = server_env(tmp_path / "data")
    token = await make_token(env, "acme", "read,metrics")
    stored = (tmp_path / "data" / "tokens.json").read_text(encoding="utf-8")
    digest = json.loads(stored)["tokens"][0]["sha256"]
    for args in (("tokens", "list"), ("tokens", "list", "--json"), ("tokens", "list", "--all")):
        code, out, err = await run_cli(*args, env=env)
        assert code == 0
        assert "acme" in out and ("metrics,read" in out or "\"metrics\"" in out)
        assert token not in out + err and digest not in out + err
    code, _, err = await run_cli("tokens", "create", "--tenant", "acme", "--scope", "admin",
                                 env=env)
    assert code == 1 and "scope must be a comma-separated list" in err
    code, _, err = await run_cli("tokens", "revoke", "tok_nope", env=env)
    assert code == 1 and err.startswith("mcp-checkpoint: not_found: token")
