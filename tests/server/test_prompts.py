"""Prompts over a real MCP client: listed with their arguments, filled with live state."""

from __future__ import annotations

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import TextContent

from mcp_checkpoint.core.tokens import HeuristicTokenizer
from tests.server.conftest import call, record, start_run

bpe_openai = pytest.importorskip("bpe_openai")  # the dev extra installs it; CI runs this
_O200K = bpe_openai.get_encoding("o200k_base")


def o200k(text: str) -> int:
    return len(_O200K.encode_ordinary(text))

pytestmark = pytest.mark.anyio


async def prompt_text(client: Client, name: str, args: dict[str, str] | None = None) -> str:
    result = await client.get_prompt(name, args)
    assert result.messages
    texts = []
    for message in result.messages:
        assert isinstance(message.content, TextContent)
        texts.append(message.content.text)
    return "\n".join(texts)


async def test_prompts_list_has_the_four_prompts_with_their_arguments(client: Client) -> None:
    prompts = {p.name: p for p in (await client.list_prompts()).prompts}

    assert set(prompts) == {"resume_run", "checkpoint_now", "review_memory_batch", "agent_protocol"}
    assert all(p.description for p in prompts.values())
    resume_args = {a.name: a.required for a in prompts["resume_run"].arguments or []}
    assert resume_args == {"run_id": True, "budget_tokens": False}
    batch_args = {a.name: a.required for a in prompts["review_memory_batch"].arguments or []}
    assert batch_args == {"batch_id": True}


async def test_resume_run_prompt_embeds_the_rehydrated_context(client: Client) -> None:
    await start_run(client, pinned=["Use the staging database only"])
    await record(client, n=2)
    await call(
        client, "checkpoint", {"run_id": "r1", "next_actions": ["Rewrite the cookie fixture"]}
    )

    text = await prompt_text(client, "resume_run", {"run_id": "r1"})
    context = await call(client, "rehydrate", {"run_id": "r1"})

    assert context["context"] in text
    assert "Rewrite the cookie fixture" in text
    assert "Use the staging database only" in text
    assert "Fix the flaky login test" in text


async def test_resume_run_prompt_respects_a_budget(client: Client) -> None:
    await start_run(client)
    await record(client, n=60)

    short = await prompt_text(client, "resume_run", {"run_id": "r1", "budget_tokens": "400"})
    full = await prompt_text(client, "resume_run", {"run_id": "r1"})

    assert len(short) < len(full)
    assert "case59" in short  # the newest step survives the cut
    # The whole message, instructions included, is within the budget by o200k's count.
    assert o200k(short) <= HeuristicTokenizer().count(short) <= 400


async def test_resume_run_prompt_of_hostile_pins_stays_within_the_budget(
    client: Client,
) -> None:
    await start_run(client, pinned=["p" + "\x0c" * 7999] * 20)

    text = await prompt_text(client, "resume_run", {"run_id": "r1", "budget_tokens": "300"})

    assert "Fix the flaky login test" in text
    assert o200k(text) <= 300


async def test_resume_run_prompt_of_unknown_run_is_not_found(client: Client) -> None:
    with pytest.raises(MCPError) as caught:
        await client.get_prompt("resume_run", {"run_id": "nope"})

    assert caught.value.error.message == "not_found: run nope"


async def test_checkpoint_now_prompt_shows_the_working_memory(client: Client) -> None:
    await start_run(client)
    await record(client, n=4)

    text = await prompt_text(client, "checkpoint_now", {"run_id": "r1"})

    assert "r1" in text
    assert "Fix the flaky login test" in text
    assert "4" in text


async def test_review_memory_batch_prompt_lists_the_staged_items(client: Client) -> None:
    batch = await call(
        client, "propose_memory", {"items": [{"content": "Deploys happen on Tuesdays"}]}
    )

    text = await prompt_text(client, "review_memory_batch", {"batch_id": batch["batch_id"]})

    assert batch["batch_id"] in text
    assert "Deploys happen on Tuesdays" in text


async def test_agent_protocol_prompt_teaches_the_loop(client: Client) -> None:
    text = await prompt_text(client, "agent_protocol")

    for word in ("start_run", "record_step", "checkpoint", "rehydrate", "propose_memory"):
        assert word in text
