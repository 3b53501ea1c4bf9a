"""The embeddable Checkpointer against a real ``serve --transport http`` with a bearer token:
the same loop as on a local store, errors mapped back onto the error tree."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from mcp_checkpoint.checkpointer import AsyncCheckpointer, Checkpointer
from mcp_checkpoint.errors import BackendError, InvalidArgumentError, NotFoundError
from tests.e2e.http_helpers import HttpServer, make_token

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_a_remote_run_records_checkpoints_and_resumes_by_id(tmp_path: Path) -> None:
    async with HttpServer(tmp_path / "data") as server:
        token = await make_token(server.env, "acme")
        async with await AsyncCheckpointer.open(
            "Ship the release notes", url=server.url, token=token, budget_tokens=1_000
        ) as cp:
            run_id = cp.run_id
            ack = await cp.record("bash", input={"cmd": "git log --oneline"},
                                  output="1a2b3c4 fix the parser", status="ok")
            assert (ack.seq, ack.budget_tokens) == (1, 1_000)
            done = await cp.checkpoint({"next_actions": ["write the notes for 1a2b3c4"]})
            assert done["number"] == 1 and done["source"] == "model"
            with pytest.raises(InvalidArgumentError, match="budget_tokens"):
                await cp.context(budget_tokens=1)
        async with await AsyncCheckpointer.open(run_id=run_id, url=server.url,
                                                token=token) as again:
            assert (await again.record("bash", input="ls")).seq == 2
            context = await again.context()
            with pytest.raises(NotFoundError):
                await again.resume("cp_unknown")
        # Another tenant's token does not see the run at all.
        other = await make_token(server.env, "other")
        with pytest.raises(InvalidArgumentError, match=f"no run {run_id}"):
            await AsyncCheckpointer.open(run_id=run_id, url=server.url, token=other)
    assert "write the notes for 1a2b3c4" in context


async def test_a_bad_token_or_no_server_is_a_clear_backend_error(tmp_path: Path) -> None:
    async with HttpServer(tmp_path / "data") as server:
        with pytest.raises(BackendError, match="cannot reach the mcp-checkpoint server"):
            await AsyncCheckpointer.open("x", url=server.url, token="mcpck_wrong")
    with pytest.raises(BackendError, match="cannot reach"):
        await AsyncCheckpointer.open("x", url=server.url, token="mcpck_any")


async def test_the_sync_checkpointer_talks_to_a_remote_server(tmp_path: Path) -> None:
    async with HttpServer(tmp_path / "data") as server:
        token = await make_token(server.env, "acme")

        def loop() -> str:
            with Checkpointer.open("sync remote", url=server.url, token=token) as cp:
                cp.record("bash", input="pytest", output="1 failed", status="error")
                assert cp.should_checkpoint()
                cp.checkpoint()
                return cp.context()

        context = await anyio.to_thread.run_sync(loop)
    assert "sync remote" in context
