"""What a client sees before its first call, pinned byte for byte: the ``initialize`` result
and the ``tools/list``, ``resources/templates/list``, ``prompts/list`` and ``resources/list``
answers, as ``mcp-checkpoint serve`` writes them on stdio.

Start-up work (how models are declared, what is imported when) must leave these lines
unchanged. When a change to them is intended, rewrite the snapshot and review its diff:
``UPDATE_LISTING=1 pytest tests/e2e/test_listing.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_checkpoint import __version__
from tests.e2e.conftest import SERVER, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SNAPSHOT = Path(__file__).with_name("listing.jsonl")

REQUESTS: list[dict[str, Any]] = [
    {"jsonrpc": "2.0", "id": 1, "method": "initialize",
     "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "listing", "version": "0"}}},
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    {"jsonrpc": "2.0", "id": 3, "method": "resources/templates/list"},
    {"jsonrpc": "2.0", "id": 4, "method": "prompts/list"},
    {"jsonrpc": "2.0", "id": 5, "method": "resources/list"},
]


async def _answers(env: dict[str, str]) -> list[str]:
    """The server's stdout line for each request, in order (one request at a time)."""
    lines: list[str] = []
    async with await anyio.open_process([str(SERVER), "serve"], env=env) as process:
        assert process.stdin is not None and process.stdout is not None
        pending = b""
        for request in REQUESTS:
            await process.stdin.send((json.dumps(request) + "\n").encode())
            if "id" not in request:
                continue
            while b"\n" not in pending:
                pending += await process.stdout.receive()
            line, pending = pending.split(b"\n", 1)
            lines.append(line.decode("utf-8"))
        await process.stdin.aclose()
        await process.wait()
    return lines


async def test_what_a_client_lists_is_unchanged(tmp_path: Path) -> None:
    env = server_env(tmp_path / "data")
    with anyio.fail_after(60):
        lines = await _answers(env)
    # The version is the release's, not part of what is pinned.
    version = f'"version":{json.dumps(__version__)}'
    text = "".join(line.replace(version, '"version":"<version>"') + "\n" for line in lines)
    if os.environ.get("UPDATE_LISTING"):
        SNAPSHOT.write_text(text, encoding="utf-8")
    expected = SNAPSHOT.read_text(encoding="utf-8").splitlines()
    for got, want in zip(text.splitlines(), expected, strict=True):
        assert got == want, f"{json.loads(want)['id']}: rewrite with UPDATE_LISTING=1 if intended"
