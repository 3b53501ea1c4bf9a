"""The embeddable Checkpointer (sync and async) on real local stores: the loop, resuming by
id, custom triggers, events, model profiles, and the offline example."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_checkpoint.checkpointer import (
    CONTEXT_WINDOWS,
    AsyncCheckpointer,
    Checkpointer,
    Event,
    TriggerInput,
    for_model,
)
from mcp_checkpoint.config import Settings
from mcp_checkpoint.errors import ConfigError, InvalidArgumentError, NotFoundError

ROOT = Path(__file__).resolve().parents[2]
with warnings.catch_warnings():  # bpe_openai reads its data with a deprecated API
    warnings.simplefilter("ignore", DeprecationWarning)
    import bpe_openai

    O200K = bpe_openai.get_encoding("o200k_base")


def o200k(text: str) -> int:
    return len(O200K.encode_ordinary(text))


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cp.db'}"


def settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(data_dir=tmp_path, embeddings={"provider": "none"}, **kw)


# -- the loop ------------------------------------------------------------------------------


def test_record_checkpoint_and_context_in_a_plain_script(tmp_path: Path) -> None:
    with Checkpointer.open("Fix the flaky test", settings=settings(tmp_path)) as cp:
        ack = cp.record("bash", input={"cmd": "pytest -x"},
                        output="FAILED tests/test_io.py::test_read - OSError", status="error")
        assert (ack.seq, ack.checkpoint_due, ack.due_reason) == (1, True, "error")
        assert cp.should_checkpoint() and cp.due_reason == "error"
        done = cp.checkpoint({"progress": ["reproduced the failure"],
                              "next_actions": ["patch src/io.py"]})
        assert done["number"] == 1 and done["through_seq"] == 1 and done["source"] == "model"
        assert not cp.should_checkpoint()
        context = cp.context()
    assert "Fix the flaky test" in context and "patch src/io.py" in context


def test_a_run_resumes_by_id_in_another_checkpointer(tmp_path: Path) -> None:
    s = settings(tmp_path)
    with Checkpointer.open("Port the parser", settings=s) as first:
        run_id = first.run_id
        first.record("read_file", input="src/parser.py", output="def parse(): ...")
        first.checkpoint({"next_actions": ["port parse() to the new lexer"]})
    with Checkpointer.open(run_id=run_id, settings=s) as again:
        assert again.run_id == run_id
        assert again.record("bash", input="pytest").seq == 2
        assert "port parse() to the new lexer" in again.context()


def test_open_without_objective_for_an_unknown_run_names_the_problem(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="objective is required .*no run r-missing"):
        Checkpointer.open(run_id="r-missing", settings=settings(tmp_path))


def test_open_with_both_a_url_and_a_local_store_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="either url"):
        Checkpointer.open("x", url="http://127.0.0.1:1/mcp", store_url=sqlite_url(tmp_path))


def test_resume_at_an_older_checkpoint_travels_back(tmp_path: Path) -> None:
    with Checkpointer.open("Two phases", settings=settings(tmp_path)) as cp:
        cp.record("bash", input="make phase-one")
        first = cp.checkpoint({"next_actions": ["start phase two"]})
        cp.record("bash", input="make phase-two")
        cp.checkpoint({"next_actions": ["ship it"]})
        assert "ship it" in cp.context()
        older = cp.resume(first["checkpoint_id"])
        with pytest.raises(NotFoundError):
            cp.resume("cp_nope")
    assert "start phase two" in older and "ship it" not in older


def test_a_closed_checkpointer_refuses_calls_clearly(tmp_path: Path) -> None:
    cp = Checkpointer.open("x", settings=settings(tmp_path))
    cp.close()
    cp.close()  # closing twice is harmless
    with pytest.raises(Exception, match="closed"):
        cp.record("bash")


# -- triggers and events -------------------------------------------------------------------


def test_a_custom_trigger_stays_due_until_the_next_checkpoint(tmp_path: Path) -> None:
    def on_commit(step: TriggerInput) -> str | None:
        return "committed" if step.step.tool == "git_commit" else None

    with Checkpointer.open("x", settings=settings(tmp_path), triggers=[on_commit]) as cp:
        cp.record("bash", input="ls")
        assert not cp.should_checkpoint()
        cp.record("git_commit", input="-m fix", output="[main 1a2b3c4] fix")
        cp.record("bash", input="ls")  # a later ordinary step does not clear it
        assert cp.should_checkpoint() and cp.due_reason == "committed"
        cp.checkpoint()
        assert not cp.should_checkpoint()


def test_on_event_sees_every_step_checkpoint_and_context(tmp_path: Path) -> None:
    events: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("an observer's bug")

    with Checkpointer.open("x", settings=settings(tmp_path),
                           on_event=[events.append, broken]) as cp:
        cp.record("bash", input="ls", output="a b")
        cp.checkpoint()
        cp.context(budget_tokens=500)
        cp.set_status("completed")
    kinds = [e.kind for e in events]
    assert kinds == ["run_started", "step", "checkpoint", "context", "status"]
    assert events[1].data["seq"] == 1 and events[1].data["tool"] == "bash"
    assert events[2].data["source"] == "rules"
    assert events[3].data["budget_tokens"] == 500 and events[3].data["tokens"] <= 500
    assert {e.run_id for e in events} == {cp.run_id}


def test_the_async_twin_runs_the_same_loop(tmp_path: Path) -> None:
    async def main() -> str:
        async with await AsyncCheckpointer.open(
            "Async loop", store_url=sqlite_url(tmp_path), settings=None
        ) as cp:
            for i in range(3):
                await cp.record("bash", input=f"step {i}")
            await cp.checkpoint({"next_actions": ["keep going"]})
            return await cp.context()

    assert "keep going" in anyio.run(main)


def test_the_sync_api_works_inside_a_running_event_loop(tmp_path: Path) -> None:
    async def main() -> int:  # e.g. a notebook cell calling the sync API
        with Checkpointer.open("x", settings=settings(tmp_path)) as cp:
            return cp.record("bash").seq

    assert anyio.run(main) == 1


# -- model profiles ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "window"), [
    pytest.param("claude-sonnet-4-5-20250929", 200_000, id="dated-anthropic"),
    pytest.param("anthropic/claude-opus-4-1", 200_000, id="provider-prefix"),
    pytest.param("gpt-4.1-mini", 1_047_576, id="longest-prefix"),
    pytest.param("gpt-4o", 128_000, id="exact"),
    pytest.param("llama-3.1:70b", 131_072, id="tagged"),
])
def test_for_model_finds_the_window_by_longest_prefix(name: str, window: int) -> None:
    profile = for_model(name)
    assert profile.context_window == window
    assert 1_000 <= profile.budget_tokens <= 64_000
    assert profile.budget_tokens == min(64_000, window // 4)


def test_for_model_unknown_needs_an_explicit_window() -> None:
    with pytest.raises(InvalidArgumentError, match="unknown model 'my-model'.*context_window"):
        for_model("my-model")
    assert for_model("my-model", context_window=32_000).budget_tokens == 8_000
    assert for_model("gpt-4o", share=0.5).budget_tokens == 64_000  # capped
    assert all(w >= 8_192 for w in CONTEXT_WINDOWS.values())


def test_open_by_model_derives_the_budget(tmp_path: Path) -> None:
    with Checkpointer.open("x", model="gpt-4", settings=settings(tmp_path)) as cp:
        assert cp.budget_tokens == 2_048


# -- the example ---------------------------------------------------------------------------


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("long_task", ROOT / "examples" / "long_task.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["long_task"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_example_runs_an_unbounded_task_across_episodes_within_the_budget(
    tmp_path: Path,
) -> None:
    budget = 2_000
    out = _example().run(modules=340, budget=budget, store_url=sqlite_url(tmp_path))
    contexts: list[str] = out["contexts"]
    assert out["steps"] >= 1_000 and out["episodes"] >= 20
    assert max(o200k(c) for c in contexts) <= budget
    # The model finished from its checkpoints alone: the last context says all were done.
    assert "continue with module 340" in contexts[-1]


def test_an_interrupt_while_a_sync_call_waits_cancels_it_and_lets_it_finish() -> None:
    import asyncio
    import contextvars

    from mcp_checkpoint.checkpointer._sync import _run_task

    loop = asyncio.new_event_loop()
    finished: list[str] = []

    async def waits() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            finished.append("cleaned up")

    def interrupt() -> None:
        raise KeyboardInterrupt

    try:
        loop.call_later(0.01, interrupt)
        with pytest.raises(KeyboardInterrupt):
            _run_task(loop, waits(), contextvars.copy_context())
        assert finished == ["cleaned up"]
        assert not asyncio.all_tasks(loop)
        assert _run_task(loop, asyncio.sleep(0, result=7), contextvars.copy_context()) == 7
    finally:
        loop.close()
