"""A real ``mcp-checkpoint serve`` on PostgreSQL through a TCP proxy the test controls:
while the database is unreachable, tools answer ``backend_unavailable`` promptly and write
nothing; once it is back, the same server process recovers without a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import pytest
from mcp import Client
from mcp_types import TextContent

from tests._postgres import database_url, require_postgres
from tests._tcp_proxy import TcpProxy
from tests.e2e.conftest import StdioServer, server_env
from tests.e2e.test_durability import RUN, read_ledger, step_args

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

HANG = 60  # far above the bounds the server is given below


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    require_postgres()
    target = urlsplit(database_url("x"))
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


def _text(result: Any) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


async def test_the_server_answers_backend_unavailable_during_an_outage_then_recovers(
    tmp_path: Path, postgres_url: str, proxy: TcpProxy
) -> None:
    parts = urlsplit(postgres_url)
    user = f"{parts.username}:not-a-secret@" if parts.username else ""
    through_proxy = urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}"))
    env = server_env(
        tmp_path / "data",
        MCP_CHECKPOINT_STORE_URL=through_proxy,
        MCP_CHECKPOINT_POSTGRES__CONNECT_TIMEOUT_S="1",
        MCP_CHECKPOINT_POSTGRES__POOL_TIMEOUT_S="1",
        MCP_CHECKPOINT_POSTGRES__OPERATION_TIMEOUT_S="2",
    )
    transport = StdioServer(env, tmp_path / "stderr.log")
    async with Client(transport) as client:
        result = await client.call_tool("start_run", {"objective": "outlive", "run_id": RUN})
        assert not result.is_error, _text(result)
        for i in range(3):
            result = await client.call_tool("record_step", step_args(i))
            assert not result.is_error, _text(result)

        proxy.cut()
        with anyio.fail_after(HANG):
            down_step = await client.call_tool("record_step", step_args(3))
            down_rehydrate = await client.call_tool("rehydrate", {"run_id": RUN})
        for failed in (down_step, down_rehydrate):
            assert failed.is_error
            text = _text(failed)
            assert text.startswith("backend_unavailable:"), text
            assert "not-a-secret" not in text and str(proxy.port) not in text

        proxy.restore()
        with anyio.fail_after(HANG):
            while (retried := await client.call_tool("record_step", step_args(3))).is_error:
                assert _text(retried).startswith("backend_unavailable:"), _text(retried)
                await anyio.sleep(0.2)
        assert retried.structured_content is not None
        assert (retried.structured_content["seq"], retried.structured_content["duplicate"]) == (
            4, False
        )
        ledger = await read_ledger(client)
        rehydrated = await client.call_tool("rehydrate", {"run_id": RUN})
        assert not rehydrated.is_error, _text(rehydrated)

    assert [(s["seq"], s["idempotency_key"]) for s in ledger] == [
        (i + 1, f"step-{i}") for i in range(4)
    ]
    assert "not-a-secret" not in (tmp_path / "stderr.log").read_text(encoding="utf-8")
