"""The MCP Inspector CLI as a real third-party client, one process per call.

Each call spawns a fresh ``mcp-checkpoint serve`` over stdio; state carries from call to
call only because the SQLite store in the data directory persists it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.e2e.conftest import SERVER, run_cli, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"
TIMEOUT = 120  # the first npx run downloads the Inspector


@pytest.fixture
def npx() -> str:
    found = shutil.which("npx")
    if found is None:
        reason = "npx (Node.js) is needed to run the MCP Inspector CLI"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


class Inspector:
    def __init__(self, npx: str, data_dir: Path) -> None:
        self.npx = npx
        self.data_dir = data_dir

    async def run(self, *args: str, era: str | None = None) -> tuple[int, str, str]:
        """``inspector --cli -q <server> ARGS``: (exit code, stdout, stderr)."""
        command = [
            self.npx,
            "-y",
            INSPECTOR,
            "--cli",
            "-q",
            "-e",
            f"MCP_CHECKPOINT_DATA_DIR={self.data_dir}",
            "-e",
            "MCP_CHECKPOINT_EMBEDDINGS__PROVIDER=hashing",
        ]
        if era is not None:
            command += ["--protocol-era", era]
        command += [str(SERVER), "serve", *args]
        with anyio.fail_after(TIMEOUT):
            done = await anyio.run_process(command, check=False)
        return done.returncode, done.stdout.decode("utf-8"), done.stderr.decode("utf-8")

    async def ok(self, *args: str, era: str | None = None) -> Any:
        code, out, err = await self.run(*args, era=era)
        assert code == 0, f"exit {code}\nstdout: {out}\nstderr: {err}"
        return json.loads(out)

    async def tool(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        result = await self.ok(
            "--method", "tools/call", "--tool-name", name, "--tool-args-json", json.dumps(args)
        )
        assert result["isError"] is False
        structured: dict[str, Any] = result["structuredContent"]
        return structured


async def test_inspector_cli_drives_the_loop_across_processes(tmp_path: Path, npx: str) -> None:
    data_dir = tmp_path / "data"
    inspector = Inspector(npx, data_dir)

    listed = await inspector.ok("--method", "tools/list", era="modern")
    tools = {t["name"]: t for t in listed["tools"]}
    assert {"start_run", "record_step", "checkpoint", "rehydrate", "search_memory"} <= set(tools)
    assert tools["rehydrate"]["annotations"]["readOnlyHint"] is True
    assert "outputSchema" in tools["record_step"]

    run = await inspector.tool("start_run", {"objective": "Migrate the DB", "run_id": "123"})
    assert run["run_id"] == "123"  # a numeric-looking id stays a string
    first = await inspector.tool(
        "record_step",
        {
            "run_id": "123",
            "tool": "psql",
            "input": {"sql": "ALTER TABLE t ADD c int"},
            "output": "ALTER TABLE",
            "idempotency_key": "alter-1",
        },
    )
    assert first["seq"] == 1
    second = await inspector.tool(
        "record_step", {"run_id": "123", "tool": "psql", "output": "ok", "status": "error"}
    )
    assert second["seq"] == 2
    assert second["checkpoint_due"] is True
    assert second["due_reason"] == "error"
    cp = await inspector.tool(
        "checkpoint",
        {"run_id": "123", "progress": ["Added column c"], "next_actions": ["Backfill c"]},
    )
    assert cp["through_seq"] == 2
    # The Inspector offers no sampling: without content the rules distil.
    ctx = await inspector.tool("rehydrate", {"run_id": "123", "budget_tokens": 300})
    assert ctx["tokens"] <= 300
    assert ctx["checkpoint_id"] == cp["checkpoint_id"]
    assert "Backfill c" in ctx["context"]

    read = await inspector.ok("--method", "resources/read", "--uri", "run://123")
    state = json.loads(read["contents"][0]["text"])
    assert state["head_seq"] == 2
    assert state["latest_checkpoint_id"] == cp["checkpoint_id"]

    prompt = await inspector.ok(
        "--method", "prompts/get", "--prompt-name", "resume_run", "--prompt-args", "run_id=123"
    )
    assert "Backfill c" in prompt["messages"][0]["content"]["text"]

    code, out, err = await inspector.run(
        "--method",
        "tools/call",
        "--tool-name",
        "record_step",
        "--tool-args-json",
        json.dumps({"run_id": "nope", "tool": "x"}),
    )
    assert code != 0
    assert json.loads(out)["content"][0]["text"] == "not_found: run nope"
    assert "tool_is_error" in err

    # The state lives in the isolated data dir (the CLI reads the same SQLite file).
    code, out, err = await run_cli("runs", "verify", "123", env=server_env(data_dir))
    assert code == 0, out + err
    assert "2 steps" in out


async def test_inspector_cli_reports_an_unknown_resource_as_an_error(
    tmp_path: Path, npx: str
) -> None:
    inspector = Inspector(npx, tmp_path / "data")

    code, out, err = await inspector.run("--method", "resources/read", "--uri", "run://ghost")

    assert code == 1
    assert out == ""
    assert "not_found: run ghost" in err
