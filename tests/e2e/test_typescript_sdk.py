"""The TypeScript SDK (pinned in tests/node/package.json; what Claude Desktop, Claude Code
and VS Code are built on) as a permanent e2e client: ``tests/node/sdk-client.mjs`` drives
the loop, calls every tool (the SDK validates each result against its output schema),
reads every resource template and prompt and checks bad arguments, on every transport
mode. A tool the script does not exercise fails it."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from tests.e2e.conftest import SERVER, server_env
from tests.e2e.http_helpers import HttpServer, make_token
from tests.e2e.node_helpers import NODE_DIR, node_clients

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.slow]

SCRIPT = NODE_DIR / "sdk-client.mjs"
# transport mode -> (serve arguments, can the server's sampling request reach the client?)
MODES: dict[str, tuple[list[str], bool]] = {
    "stdio": ([], True),
    "http": (["--transport", "http"], True),
    "http-json": (["--transport", "http", "--json-response"], False),
    "http-stateless": (["--transport", "http", "--stateless"], False),
    "sse": (["--transport", "sse"], True),
}


async def run_script(node: Path, *args: str, env: dict[str, str]) -> dict[str, object]:
    with anyio.fail_after(300):
        done = await anyio.run_process([str(node), str(SCRIPT), *args], env=env, check=False,
                                       cwd=NODE_DIR)
    out = done.stdout.decode("utf-8", "replace")
    err = done.stderr.decode("utf-8", "replace")
    failures = [line for line in err.splitlines() if line.startswith("FAIL")]
    assert done.returncode == 0, "\n".join(failures) or err[-3000:]
    summary: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return summary


@pytest.mark.parametrize("mode", list(MODES))
async def test_typescript_sdk_runs_the_whole_surface(tmp_path: Path, mode: str) -> None:
    node = node_clients()
    args, carries_sampling = MODES[mode]
    data = tmp_path / "data"
    env = server_env(data)
    if mode == "stdio":
        summary = await run_script(node, "stdio", str(SERVER), "serve", env=env)
    else:
        token = await make_token(env, "ts-tenant")
        async with HttpServer(data, *args[2:], transport=args[1]) as server:
            summary = await run_script(node, args[1], server.url,
                                       env={**env, "MCPCK_TOKEN": token})
            log = server.log()
        assert "Traceback" not in log, log[-3000:]

    tools = summary["tools"]
    assert isinstance(tools, dict)
    assert {"start_run", "record_step", "checkpoint", "rehydrate", "search_memory"} <= set(tools)
    assert summary["badArguments"] == len(tools)  # every tool refused a bogus argument
    # Every template and prompt was read (the script fails on one it cannot fill).
    assert summary["templates"] >= 7 and summary["resources"] >= 1 and summary["prompts"] >= 4
    assert summary["sampled"] == (1 if carries_sampling else 0)
