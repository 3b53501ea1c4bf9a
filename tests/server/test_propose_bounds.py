"""propose_memory answers a bounded analysis: a batch of long, similar items fits a
client's 1 MB event and a model's context (counted by o200k), and the analysis runs off
the event loop."""

from __future__ import annotations

import json
import threading
import warnings
from typing import Any

import pytest
from mcp import Client

from mcp_checkpoint.core import _neardup
from tests.server.conftest import call

pytestmark = pytest.mark.anyio

_MAX_EVENT_BYTES = 1_000_000


def _long_item(i: int) -> dict[str, Any]:
    # Similar items: the same 8,000-character body with one distinct number each.
    line = "deploy step {} writes the release notes for service alpha"
    body = " ".join(line.format(n) for n in range(140))
    return {"content": f"item {i}: {body}"[:8000], "kind": "fact"}


async def test_a_batch_of_long_similar_items_gets_a_bounded_answer(client: Client) -> None:
    twin = await call(client, "propose_memory", {"items": [_long_item(-1)]})
    await call(client, "commit_memory", {"batch_id": twin["batch_id"]})  # one stored twin
    staged = await call(client, "propose_memory", {"items": [_long_item(i) for i in range(60)]})
    answer = await client.call_tool("propose_memory", {"items": [_long_item(i) for i in range(60)]})
    assert not answer.is_error
    wire = answer.model_dump_json(by_alias=True, exclude_none=True)
    assert len(wire.encode("utf-8")) < _MAX_EVENT_BYTES / 4
    with warnings.catch_warnings():  # bpe-openai loads its tables with a deprecated API
        warnings.simplefilter("ignore", DeprecationWarning)
        import bpe_openai  # type: ignore[import-untyped]

        encoding = bpe_openai.get_encoding("o200k_base")
    for block in answer.content:
        text = getattr(block, "text", "")
        # Per item: a snippet of its text and at most 5 duplicates and 5 conflicts, each a
        # snippet; far below the 60 x 8,000 characters the caller sent.
        assert len(encoding.encode_ordinary(text)) <= 60 * 900
    items = staged["items"]
    assert len(items) == 60
    for item in items:
        analysis = item["analysis"]
        assert analysis["suggested_op"] == "skip"  # each repeats an earlier item
        assert 1 <= len(analysis["duplicates"]) <= 5
        assert all(len(d["content"]) <= 160 for d in analysis["duplicates"])
        assert len(item["content_snippet"]) <= 160


async def test_proposal_analysis_runs_on_a_worker_thread(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool] = []
    original = _neardup.batch_neighbours

    def spy(*args: Any) -> Any:
        seen.append(threading.current_thread() is threading.main_thread())
        return original(*args)

    monkeypatch.setattr("mcp_checkpoint.core.proposals.batch_neighbours", spy)
    await call(client, "propose_memory", {"items": [_long_item(i) for i in range(3)]})
    assert seen == [False]


def test_in_batch_pairs_grow_linearly_with_the_batch() -> None:
    """A crowd of identical items: each keeps at most MAX_CANDIDATES neighbours, so the
    exact comparisons are at most n * MAX_CANDIDATES, not n * (n - 1) / 2."""
    texts = [_long_item(0)["content"]] * 400
    found = _neardup.batch_neighbours(texts, None, 0.35)
    assert all(1 <= len(near) <= _neardup.MAX_CANDIDATES for near in found)
    assert sum(len(near) for near in found) <= 400 * _neardup.MAX_CANDIDATES


@pytest.mark.parametrize("similar", [True, False])
def test_in_batch_neighbours_find_near_duplicates_and_skip_strangers(similar: bool) -> None:
    base = "the staging database runs postgres fifteen on port 5432 behind pgbouncer"
    other = (base + " today") if similar else "lunch is served at noon in the blue room"
    found = _neardup.batch_neighbours([base, other, ""], None, 0.35)
    assert [j for j, _ in found[0]] == ([1] if similar else [])
    assert found[2] == []
    dumped = json.dumps(found)
    assert "NaN" not in dumped
