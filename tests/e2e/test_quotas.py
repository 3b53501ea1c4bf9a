"""Quotas per token and per tenant on ``serve --transport http``: tenant A at its limits
is refused with 429 and Retry-After while tenant B keeps working."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.e2e.http_helpers import HttpServer, connect, make_token

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

INITIALIZE = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {},
               "clientInfo": {"name": "flood", "version": "1"}},
}


async def _initialize(http: httpx2.AsyncClient, url: str, token: str) -> httpx2.Response:
    return await http.post(url, json=INITIALIZE, headers={
        "Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream",
    })


async def _b_works(url: str, token: str, run_id: str) -> None:
    async with connect(url, token) as client:
        result: Any = await client.call_tool("start_run", {"objective": "b", "run_id": run_id})
        assert not result.is_error


async def test_one_tenant_at_its_session_and_rate_limits_leaves_another_working(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    async with HttpServer(
        data,
        MCP_CHECKPOINT_HTTP__MAX_SESSIONS_PER_TOKEN="3",
        MCP_CHECKPOINT_HTTP__MAX_SESSIONS_PER_TENANT="5",
        MCP_CHECKPOINT_HTTP__REQUESTS_PER_SECOND_PER_TOKEN="1",
        MCP_CHECKPOINT_HTTP__REQUEST_BURST_PER_TOKEN="12",
        MCP_CHECKPOINT_HTTP__REFUSAL_DELAY_SECONDS="0.2",
    ) as server:
        a1 = await make_token(server.env, "tenant-a", "read")
        a2 = await make_token(server.env, "tenant-a", "read")
        b = await make_token(server.env, "tenant-b")
        async with httpx2.AsyncClient(timeout=30) as http:
            opened = [await _initialize(http, server.url, a1) for _ in range(3)]
            assert [r.status_code for r in opened] == [200, 200, 200]
            refused = await _initialize(http, server.url, a1)
            assert refused.status_code == 429
            # answered after the refusal pause: a client retrying at once is slowed
            assert refused.elapsed.total_seconds() >= 0.2
            assert int(refused.headers["Retry-After"]) >= 1
            assert "open sessions of this token" in refused.json()["error_description"]
            # A second token of the same tenant: the tenant's cap (5) stops it at two.
            assert [(await _initialize(http, server.url, a2)).status_code
                    for _ in range(3)] == [200, 200, 429]
            await _b_works(server.url, b, "b1")  # tenant B opens a session and writes

            # Token a1's bucket (12 at once, 1/s) runs dry: 429 with Retry-After.
            # (at once: the refusals' pauses run side by side, so the bucket has no time
            # to refill)
            answers: list[httpx2.Response] = []

            async def one() -> None:
                answers.append(await _initialize(http, server.url, a1))

            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(one)
            assert [r.status_code for r in answers].count(429) == 20
            rate_refused = [r for r in answers
                            if "request rate" in r.json()["error_description"]]
            assert rate_refused  # 20 at once outrun the bucket whatever was left in it
            assert int(rate_refused[0].headers["Retry-After"]) >= 1
            await _b_works(server.url, b, "b2")
        assert "Traceback" not in server.log()
