"""Every limit is a setting: exceeding one is ``payload_too_large`` (a value below a minimum
is ``invalid_argument``), and the message names the setting."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mcp_checkpoint.config import LimitSettings, Settings
from mcp_checkpoint.core.episodes import Episodes
from mcp_checkpoint.core.memory import MemoryService
from mcp_checkpoint.core.models import CheckpointPatch, ProposalItem, StepDraft
from mcp_checkpoint.errors import CheckpointError, InvalidArgumentError, PayloadTooLargeError
from mcp_checkpoint.storage.reference.store import ReferenceStore
from tests.unit.conftest import FakeClock, T, WordTokenizer

pytestmark = pytest.mark.anyio

Call = Callable[[Episodes, MemoryService], Awaitable[Any]]


async def _checkpoint_too_big(ep: Episodes, _: MemoryService) -> Any:
    return await ep.checkpoint(T, "r1", CheckpointPatch(progress=["x" * 1500]))


async def _state_keys(ep: Episodes, _: MemoryService) -> Any:
    return await ep.checkpoint(T, "r1", CheckpointPatch(state={f"k{i}": i for i in range(4)}))


CASES = [
    pytest.param({"max_step_bytes": 1024},
                 lambda ep, _: ep.record_step(T, "r1", StepDraft(tool="t", output="x" * 2000)),
                 PayloadTooLargeError, "limits.max_step_bytes is 1024", id="step-bytes"),
    pytest.param({"max_text_chars": 64}, lambda ep, _: ep.start_run(T, "o" * 65),
                 PayloadTooLargeError, "limits.max_text_chars is 64", id="text-chars"),
    pytest.param({"max_list_items": 3}, lambda ep, _: ep.start_run(T, "o", pinned=["p"] * 4),
                 PayloadTooLargeError, "limits.max_list_items is 3", id="list-items"),
    pytest.param({"max_list_items": 3}, _state_keys,
                 PayloadTooLargeError, "limits.max_list_items is 3", id="state-keys"),
    pytest.param({"max_checkpoint_bytes": 1024}, _checkpoint_too_big,
                 PayloadTooLargeError, "limits.max_checkpoint_bytes is 1024",
                 id="checkpoint-bytes"),
    pytest.param({"max_batch_items": 2},
                 lambda _, mem: mem.propose(T, [ProposalItem(content=f"f{i}") for i in range(3)]),
                 PayloadTooLargeError, "limits.max_batch_items is 2", id="batch-items"),
    pytest.param({"max_query_chars": 16}, lambda _, mem: mem.search(T, "q" * 17),
                 PayloadTooLargeError, "limits.max_query_chars is 16", id="search-query"),
    pytest.param({"max_query_chars": 16}, lambda ep, _: ep.rehydrate(T, "r1", query="q" * 17),
                 PayloadTooLargeError, "limits.max_query_chars is 16", id="rehydrate-query"),
    pytest.param({"max_search_k": 5}, lambda _, mem: mem.search(T, "deploy", k=6),
                 PayloadTooLargeError, "limits.max_search_k is 5", id="search-k"),
    pytest.param({}, lambda _, mem: mem.search(T, "deploy", k=0),
                 InvalidArgumentError, "k is 0; it must be at least 1", id="search-k-zero"),
    pytest.param({"min_budget_tokens": 200},
                 lambda ep, _: ep.rehydrate(T, "r1", budget_tokens=199),
                 InvalidArgumentError, "at least 200 (limits.min_budget_tokens)",
                 id="budget-min"),
    pytest.param({"max_budget_tokens": 10_000},
                 lambda ep, _: ep.start_run(T, "o", budget_tokens=10_001),
                 PayloadTooLargeError, "limits.max_budget_tokens is 10000", id="budget-max"),
    pytest.param({"max_page_size": 10}, lambda ep, _: ep.list_runs(T, limit=11),
                 PayloadTooLargeError, "limits.max_page_size is 10", id="page-size"),
    pytest.param({"max_page_size": 10}, lambda ep, _: ep.ledger(T, "r1", limit=11),
                 PayloadTooLargeError, "limits.max_page_size is 10", id="ledger-page"),
    pytest.param({"max_id_chars": 8}, lambda ep, _: ep.start_run(T, "o", run_id="r" * 9),
                 PayloadTooLargeError, "limits.max_id_chars is 8", id="id-chars"),
]


@pytest.mark.parametrize(("limits", "call", "error", "message"), CASES)
async def test_each_limit_is_enforced_with_its_setting_named(
    tmp_path: Path, clock: FakeClock, limits: dict[str, int], call: Call,
    error: type[CheckpointError], message: str,
) -> None:
    settings = Settings(store_url="memory://", data_dir=tmp_path, limits=limits,
                        rehydrate={"default_budget_tokens": 8000})
    store = ReferenceStore()
    memory = MemoryService(store, settings, clock=clock)
    episodes = Episodes(store, WordTokenizer(), settings, memory=memory, clock=clock)
    await episodes.start_run(T, "objective", run_id="r1")
    await episodes.record_step(T, "r1", StepDraft(tool="t"))

    with pytest.raises(error) as caught:
        await call(episodes, memory)

    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{error.code}: ")


def test_every_limit_setting_is_named_by_some_check() -> None:
    package = Path(__file__).parents[2] / "mcp_checkpoint"
    source = "".join(
        path.read_text(encoding="utf-8")
        for path in [*package.glob("core/*.py"), *package.glob("packs/*.py"),
                     package / "server" / "_packs.py"]
    )
    unnamed = [name for name in LimitSettings.model_fields
               if f"limits.{name}" not in source and f'"{name}"' not in source]
    assert unnamed == []


@pytest.mark.parametrize("run_id", ["inp1\n", "inp1\r\n", "in p1", "\ninp1"])
async def test_a_run_id_with_a_trailing_newline_or_space_is_refused(run_id: str) -> None:
    settings = Settings(store_url="memory://")
    episodes = Episodes(ReferenceStore(), WordTokenizer(), settings)
    with pytest.raises(InvalidArgumentError, match="run_id may hold only"):
        await episodes.start_run(T, "objective", run_id=run_id)


def test_token_tenant_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    from mcp_checkpoint.server.bearer import TokenFile

    with pytest.raises(InvalidArgumentError, match="tenant"):
        TokenFile(tmp_path).create("acme\n", ["read"])
