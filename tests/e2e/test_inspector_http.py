"""The MCP Inspector CLI as a remote client: streamable HTTP and SSE with a bearer header,
and refused without a valid one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.e2e.conftest import server_env
from tests.e2e.http_helpers import HttpServer, make_token
from tests.e2e.test_inspector import INSPECTOR, TIMEOUT
from tests.e2e.test_inspector import npx as npx_fixture

npx_path = npx_fixture  # the same fixture (finds npx; fails in CI when missing)

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def inspect(npx: str, url: str, transport: str, token: str | None,
                  *args: str) -> tuple[int, str, str]:
    command = [npx, "-y", INSPECTOR, "--cli", "-q", url, "--transport", transport]
    if token is not None:
        command += ["--header", f"Authorization: Bearer {token}"]
    with anyio.fail_after(TIMEOUT):
        done = await anyio.run_process([*command, *args], check=False, stdin=None)
    return done.returncode, done.stdout.decode("utf-8"), done.stderr.decode("utf-8")


async def tool(npx: str, url: str, transport: str, token: str, name: str,
               args: dict[str, Any]) -> dict[str, Any]:
    code, out, err = await inspect(npx, url, transport, token, "--method", "tools/call",
                                   "--tool-name", name, "--tool-args-json", json.dumps(args))
    assert code == 0, f"{out}\n{err}"
    result = json.loads(out)
    assert result["isError"] is False, out
    structured: dict[str, Any] = result["structuredContent"]
    return structured


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_inspector_cli_with_a_bearer_header(tmp_path: Path, npx_path: str,
                                                  transport: str) -> None:
    npx = npx_path
    data = tmp_path / "data"
    env = server_env(data)
    token = await make_token(env, "acme")
    reader = await make_token(env, "acme", "read")
    async with HttpServer(data, transport=transport) as server:
        url = server.url
        run = await tool(npx, url, transport, token, "start_run",
                         {"objective": "remote", "run_id": "r1"})
        assert run["run_id"] == "r1"
        ack = await tool(npx, url, transport, token, "record_step",
                         {"run_id": "r1", "tool": "bash", "output": "ok"})
        assert ack["seq"] == 1
        listed = await tool(npx, url, transport, reader, "list_runs", {})
        assert [r["run_id"] for r in listed["runs"]] == ["r1"]

        # A read-only token: the write is refused with a coded tool error.
        code, out, _ = await inspect(npx, url, transport, reader, "--method", "tools/call",
                                     "--tool-name", "record_step",
                                     "--tool-args-json", json.dumps({"run_id": "r1", "tool": "x"}))
        assert code != 0
        assert json.loads(out)["content"][0]["text"].startswith(
            "forbidden: tool record_step needs the 'write' scope")

        # No token, or a wrong one: the server answers 401, the Inspector (no TTY to run
        # an OAuth login) reports auth_required and exits 3.
        for bad in (None, "mcpck_wrong", token[:-3] + "abc"):
            code, out, err = await inspect(npx, url, transport, bad, "--method", "tools/list")
            assert code == 3, out + err
            assert json.loads(out or err)["error"]["code"] == "auth_required", (bad, out, err)
