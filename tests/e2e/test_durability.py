"""Durability: every acknowledged step survives a SIGKILL of the server mid-stream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_types import TextResourceContents

from tests.e2e.conftest import StdioServer, run_cli, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

KILL_AFTER_ACKS = 200
WORKERS = 8
RUN = "crash"


def step_args(i: int) -> dict[str, Any]:
    """The i-th call; a retry sends exactly the same arguments."""
    return {
        "run_id": RUN,
        "tool": "write_file",
        "input": {"path": f"src/module_{i}.py", "lines": i},
        "output": f"wrote {i} lines",
        "idempotency_key": f"step-{i}",
    }


async def read_ledger(client: Client) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    uri = f"ledger://{RUN}?limit=500"
    while True:
        content = (await client.read_resource(uri)).contents[0]
        assert isinstance(content, TextResourceContents)
        page = json.loads(content.text)
        steps += page["steps"]
        if page["next_cursor"] is None:
            return steps
        uri = f"ledger://{RUN}?cursor={page['next_cursor']}&limit=500"


async def test_sigkill_loses_no_acknowledged_step(tmp_path: Path) -> None:
    env = server_env(tmp_path / "data")
    acked: dict[str, int] = {}  # idempotency key -> acknowledged seq
    unanswered: list[int] = []  # calls sent when the server died
    enough = anyio.Event()
    next_call = 0

    transport = StdioServer(env, tmp_path / "stderr-1.log")
    async with Client(transport) as client:
        result = await client.call_tool("start_run", {"objective": "survive", "run_id": RUN})
        assert not result.is_error

        async def worker() -> None:
            nonlocal next_call
            while True:  # until the kill breaks the connection under a call
                i = next_call
                next_call += 1
                try:
                    result = await client.call_tool("record_step", step_args(i))
                except Exception:
                    if not enough.is_set():
                        raise  # not the kill: a bug, fail now
                    unanswered.append(i)
                    return
                if result.is_error:
                    # Before the kill a tool error is a bug: fail now, not at the timeout.
                    assert enough.is_set(), f"{result.content}\n{transport.stderr_tail()}"
                    unanswered.append(i)
                    return
                assert result.structured_content is not None
                acked[f"step-{i}"] = result.structured_content["seq"]
                if len(acked) >= KILL_AFTER_ACKS:
                    enough.set()

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for _ in range(WORKERS):
                    tg.start_soon(worker)
                await enough.wait()
                transport.process.kill()  # SIGKILL, with other calls still in flight

    assert transport.process.returncode == -9
    assert len(acked) >= KILL_AFTER_ACKS
    assert unanswered, "no call was in flight at the kill"

    restarted = StdioServer(env, tmp_path / "stderr-2.log")
    async with Client(restarted) as client:
        ledger = await read_ledger(client)
        by_key = {step["idempotency_key"]: step["seq"] for step in ledger}

        # Every acknowledged step is there, under the seq its ack gave.
        assert {key: by_key.get(key) for key in acked} == acked
        # The ledger is gap-free and each call is recorded at most once.
        assert [step["seq"] for step in ledger] == list(range(1, len(ledger) + 1))
        assert len(by_key) == len(ledger)

        # Retrying each unanswered call returns the stored ack or records it now, once.
        for i in unanswered:
            result = await client.call_tool("record_step", step_args(i))
            assert not result.is_error, result.content
            ack = result.structured_content
            assert ack is not None
            key = f"step-{i}"
            if key in by_key:
                assert ack["duplicate"] is True
                assert ack["seq"] == by_key[key]
            else:
                assert ack["duplicate"] is False
                assert ack["seq"] == len(ledger) + 1
                ledger.append({"idempotency_key": key, "seq": ack["seq"]})
                by_key[key] = ack["seq"]

        final = await read_ledger(client)
        assert [(s["seq"], s["idempotency_key"]) for s in final] == [
            (s["seq"], s["idempotency_key"]) for s in ledger
        ]

    code, out, err = await run_cli("runs", "verify", RUN, env=env)
    assert code == 0, out + err
    assert f"{len(final)} steps" in out
