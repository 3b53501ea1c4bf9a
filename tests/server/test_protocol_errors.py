"""Protocol errors with the spec's code: an unknown tool, an unknown prompt, a prompt with a
missing or unknown argument answer JSON-RPC ``-32602`` with a coded message, in both
protocol flows, and log no traceback."""

from __future__ import annotations

import logging

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

pytestmark = pytest.mark.anyio


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    logged = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert logged == [], [r.getMessage() for r in logged]


async def test_unknown_tool_is_invalid_params(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(MCPError) as caught:
        await client.call_tool("test_simple_text", {})

    assert caught.value.error.code == INVALID_PARAMS
    message = caught.value.error.message
    assert message.startswith("not_found: tool 'test_simple_text' does not exist; the tools are ")
    assert "record_step" in message
    no_traceback(caplog)


async def test_unknown_prompt_is_invalid_params(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(MCPError) as caught:
        await client.get_prompt("test_simple_prompt")

    assert caught.value.error.code == INVALID_PARAMS
    assert caught.value.error.message.startswith(
        "not_found: prompt 'test_simple_prompt' does not exist; the prompts are "
    )
    assert "resume_run" in caught.value.error.message
    no_traceback(caplog)


async def test_prompt_missing_a_required_argument_is_invalid_params(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(MCPError) as caught:
        await client.get_prompt("resume_run", {"budget_tokens": "500"})

    assert caught.value.error.code == INVALID_PARAMS
    assert caught.value.error.message == (
        "invalid_argument: prompt resume_run needs argument(s) run_id"
    )
    no_traceback(caplog)


async def test_prompt_with_an_unknown_argument_is_invalid_params(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(MCPError) as caught:
        await client.get_prompt("agent_protocol", {"verbose": "yes"})

    assert caught.value.error.code == INVALID_PARAMS
    assert caught.value.error.message == (
        "invalid_argument: unknown argument(s) verbose; prompt agent_protocol accepts "
        "no arguments"
    )
    no_traceback(caplog)


async def test_known_tool_with_bad_arguments_stays_a_tool_error(client: Client) -> None:
    result = await client.call_tool("record_step", {"run_id": "r1"})

    assert result.is_error
