"""``serve --workers N``: several processes on one port and one store, supervised."""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx2
import pytest

from tests.e2e.conftest import run_cli, server_env
from tests.e2e.http_helpers import HttpServer, connect, headers, make_token

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

_WORKER = re.compile(r"worker (\d+) \(pid (\d+)\) starting")
CLIENTS = 4
STEPS = 15


def _worker_pids(log: str) -> dict[int, int]:
    """The newest pid of each worker index the log names."""
    return {int(index): int(pid) for index, pid in _WORKER.findall(log)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _until(condition: Callable[[], bool], seconds: float = 30) -> None:
    """Poll ``condition`` (a log or a file another process writes) until it holds."""
    with anyio.fail_after(seconds):
        while True:
            if condition():
                return
            await anyio.sleep(0.1)


def _saved_steps(data: Path) -> int:
    """The record_step calls the workers' saved metrics files count."""
    total = 0
    for path in (data / "metrics").glob("worker-*.json"):
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        total += sum(n for key, n in saved["tool_calls"] if key == ["record_step", "ok"])
    return total


async def _calls_counted(base: str, token: str, expected: int) -> str:
    """/metrics once it counts ``expected`` record_step calls (the workers save theirs
    every second); the body."""
    async with httpx2.AsyncClient(base_url=base) as http:
        with anyio.fail_after(15):
            while True:
                body = (await http.get("/metrics", headers=headers(token))).text
                line = f'mcp_checkpoint_tool_calls_total{{tool="record_step",code="ok"}} {expected}'
                if line in body.splitlines():
                    return body
                await anyio.sleep(0.2)  # polling for the workers' next save


async def _record(url: str, token: str, n: int) -> list[int]:
    async with connect(url, token) as client:
        seqs = []
        for i in range(STEPS):
            ack = await client.call_tool(
                "record_step", {"run_id": "r1", "tool": f"c{n}", "idempotency_key": f"{n}-{i}"}
            )
            assert not ack.is_error, ack
            seqs.append(ack.structured_content["seq"])
        return seqs


async def test_workers_share_one_port_one_store_and_their_metrics(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = server_env(data)
    token = await make_token(env, "alice")
    scraper = await make_token(env, "ops", "metrics")
    server = HttpServer(data, "--stateless", workers=2)
    async with server:
        pids = _worker_pids(server.log())
        assert sorted(pids) == [0, 1] and all(_alive(pid) for pid in pids.values())
        async with connect(server.url, token) as client:
            await client.call_tool("start_run", {"objective": "o", "run_id": "r1"})
        acked: list[int] = []

        async def record(n: int) -> None:
            acked.extend(await _record(server.url, token, n))

        async with anyio.create_task_group() as group:
            for n in range(CLIENTS):
                group.start_soon(record, n)
        await _calls_counted(server.base, scraper, CLIENTS * STEPS)
        code = await server.stop()

    assert code == 0, server.log()
    assert server.log().count("store closed") == 2  # every worker drained and closed
    assert not any(_alive(pid) for pid in pids.values())
    assert sorted(acked) == list(range(1, CLIENTS * STEPS + 1))
    code, out, err = await run_cli("runs", "verify", "r1", "--tenant", "alice",
                                   env=server.env)
    assert code == 0, err
    assert f"run r1: ok — {CLIENTS * STEPS} steps" in out


async def test_a_worker_that_dies_is_replaced_and_its_counts_kept(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = server_env(data, MCP_CHECKPOINT_HTTP__METRICS="open")
    token = await make_token(env, "alice")
    server = HttpServer(data, "--stateless", workers=2, MCP_CHECKPOINT_HTTP__METRICS="open")
    async with server:
        async with connect(server.url, token) as client:
            await client.call_tool("start_run", {"objective": "o", "run_id": "r1"})
        await _record(server.url, token, 0)
        await _until(lambda: _saved_steps(data) >= STEPS)  # the workers' next save
        killed = _worker_pids(server.log())
        for pid in killed.values():  # both: whichever served the steps
            os.kill(pid, signal.SIGKILL)
        await _until(lambda: server.log().count("Application startup complete") >= 4)
        replaced = _worker_pids(server.log())
        assert sorted(replaced) == [0, 1] and not set(replaced.values()) & set(killed.values())
        assert "exited (code -9); starting a new one" in server.log()

        await _record(server.url, token, 1)
        await _calls_counted(server.base, token, 2 * STEPS)  # the killed workers' counts too
        assert await server.stop() == 0


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--transport", "http", "--workers", "2"], id="sessions"),
        pytest.param(["--transport", "sse", "--workers", "2"], id="sse"),
        pytest.param(["--transport", "http", "--stateless", "--workers", "0"], id="zero"),
        pytest.param(["--workers", "2"], id="stdio"),
    ],
)
async def test_worker_counts_that_cannot_serve_correctly_are_refused(
    tmp_path: Path, args: list[str]
) -> None:
    code, _, err = await run_cli("serve", "--port", "0", *args,
                                 env=server_env(tmp_path / "data"))
    assert code == 1
    assert "--workers" in err
    assert "Traceback" not in err


async def test_workers_on_a_store_that_cannot_open_are_never_started(tmp_path: Path) -> None:
    # A store that cannot open is found before any worker is forked: the server exits 1 with
    # one line naming the problem (no worker restarted again and again, no traceback).
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("", encoding="utf-8")
    env = server_env(tmp_path / "data",
                     MCP_CHECKPOINT_STORE_URL=f"sqlite:///{blocker}/store.db")
    code, _, err = await run_cli("serve", "--transport", "http", "--stateless", "--port", "0",
                                 "--workers", "2", env=env)
    assert code == 1
    assert err.strip().splitlines() == [
        "mcp-checkpoint: backend_unavailable: cannot create the SQLite store (File exists)"
    ]
    assert "Traceback" not in err and "worker" not in err
