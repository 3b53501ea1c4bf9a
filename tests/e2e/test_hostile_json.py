"""Raw JSON-RPC lines that no SDK client would write, sent to ``mcp-checkpoint serve`` over
stdio: lenient JSON (NaN, Infinity) is refused before it reaches the ledger."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from tests.e2e.conftest import SERVER, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


class RawSession:
    """One line out, one line back."""

    def __init__(self, process: Process) -> None:
        self.process = process
        assert process.stdout is not None
        self.lines = TextReceiveStream(process.stdout, encoding="utf-8")
        self.buffer = ""

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send((line + "\n").encode("utf-8"))

    async def reply(self) -> dict[str, Any]:
        while "\n" not in self.buffer:
            self.buffer += await self.lines.receive()
        line, self.buffer = self.buffer.split("\n", 1)
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def call(self, request_id: int, tool: str, arguments: str) -> dict[str, Any]:
        await self.send(
            f'{{"jsonrpc":"2.0","id":{request_id},"method":"tools/call",'
            f'"params":{{"name":"{tool}","arguments":{arguments}}}}}'
        )
        return await self.reply()


async def test_nan_and_infinity_are_refused_not_stored_as_invalid_json(tmp_path: Path) -> None:
    env = server_env(tmp_path / "data")
    errlog = (tmp_path / "stderr.log").open("wb")
    with anyio.fail_after(60), errlog:
        async with await anyio.open_process([str(SERVER), "serve"], env=env,
                                            stderr=errlog) as process:
            raw = RawSession(process)
            await raw.send(json.dumps({
                "jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                           "clientInfo": {"name": "raw", "version": "1"}},
            }))
            assert "result" in await raw.reply()
            await raw.send('{"jsonrpc":"2.0","method":"notifications/initialized"}')
            started = await raw.call(1, "start_run", '{"objective":"o","run_id":"r"}')
            assert started["result"]["isError"] is False

            answers = [
                await raw.call(2, "record_step",
                               '{"run_id":"r","tool":"t","input":{"a":[1,NaN]}}'),
                await raw.call(3, "record_step", '{"run_id":"r","tool":"t","output":Infinity}'),
                await raw.call(4, "checkpoint", '{"run_id":"r","state":{"x":-Infinity}}'),
            ]
            fine = await raw.call(5, "record_step", '{"run_id":"r","tool":"t","input":1e308}')
            assert process.stdin is not None
            await process.stdin.aclose()
            await process.wait()

    texts = [answer["result"]["content"][0]["text"] for answer in answers]
    assert texts == [
        "invalid_argument: field 'input.a.1': NaN and Infinity are not JSON numbers",
        "invalid_argument: field 'output': NaN and Infinity are not JSON numbers",
        "invalid_argument: field 'state.x': NaN and Infinity are not JSON numbers",
    ]
    assert all(answer["result"]["isError"] for answer in answers)
    assert fine["result"]["isError"] is False
    db = sqlite3.connect(tmp_path / "data" / "mcp-checkpoint.db")
    try:
        rows = db.execute("SELECT seq, input, json_valid(input) FROM steps").fetchall()
        checkpoints = db.execute("SELECT count(*) FROM checkpoints").fetchone()[0]
    finally:
        db.close()
    assert rows == [(1, "1e+308", 1)]
    assert checkpoints == 0
