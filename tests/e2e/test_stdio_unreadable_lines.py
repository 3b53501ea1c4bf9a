"""``serve`` on stdio answers every line: one it cannot read gets a JSON-RPC error."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import SERVER, server_env

pytestmark = pytest.mark.e2e

INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {},
    "clientInfo": {"name": "probe", "version": "1"}}}
CALL = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"list_runs",'

LINES = [
    pytest.param(CALL + b'"arguments":{"status":"\\ud800"}}}', -32700, id="lone-surrogate"),
    pytest.param(b'{"jsonrpc":"2.0","id":7,"method":"ping","params":'
                 + b"[" * 1000 + b"]" * 1000 + b"}", -32700, id="deep-nesting"),
    pytest.param(b'{"jsonrpc":"2.0","id":' + b"9" * 5000 + b',"method":"ping"}', -32700,
                 id="huge-integer"),
    pytest.param(b'{"jsonrpc":"2.0","id":7,"method":"ping"\xff\xfe}', -32700,
                 id="invalid-utf8"),
    pytest.param(b'{"jsonrpc":"2.0","id":7,"method":42}', -32600, id="not-a-message"),
]


@pytest.mark.parametrize(("line", "code"), LINES)
def test_an_unreadable_line_gets_a_json_rpc_error(tmp_path: Path, line: bytes, code: int) -> None:
    ping = b'{"jsonrpc":"2.0","id":99,"method":"ping"}'
    data = b"\n".join([json.dumps(INIT).encode(),
                       b'{"jsonrpc":"2.0","method":"notifications/initialized"}',
                       line, ping]) + b"\n"
    with subprocess.Popen([str(SERVER), "serve"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          env=server_env(tmp_path / "data")) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(data)
        proc.stdin.flush()
        answers = []
        while len(answers) < 3:  # initialize, the error, the ping
            raw = proc.stdout.readline()
            assert raw, f"the server stopped answering after {answers}"
            answers.append(json.loads(raw))
        proc.stdin.close()
        proc.wait(timeout=30)
    error = answers[1]
    assert error["error"]["code"] == code
    assert error["id"] in (None, 7)
    assert answers[2] == {"jsonrpc": "2.0", "id": 99, "result": {}}
