"""The loop as a state machine: random sequences of start_run, record_step (retries and
reused keys included), checkpoint (stale, future and default through_seq), rehydrate,
propose_memory and commit_memory through the MCP client against a real SQLite store,
checked step by step against a model of what the answers must be; the store's invariants
are checked after every step and at the end.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from mcp_checkpoint.core.tokens import HeuristicTokenizer
from tests.fuzz._harness import FuzzServer, check_db, live_server
from tests.fuzz._strategies import FUZZ, FUZZ_EXAMPLES

pytestmark = pytest.mark.slow

_IDS = itertools.count()
TOKENIZER = HeuristicTokenizer()


@dataclass
class RunModel:
    """What the server must say about one run."""

    run_id: str
    budget: int
    head_seq: int = 0
    covered_seq: int = 0
    checkpoints: list[str] = field(default_factory=list)
    keys: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (payload, seq)


@dataclass
class BatchModel:
    """A staged batch: its items as sent, and the memory versions they were proposed on."""

    items: list[dict[str, Any]]
    seen: dict[str, int]  # target memory id -> version when proposed
    status: str = "pending"


class LoopMachine(RuleBasedStateMachine):
    """The episodic loop. One machine per example, each with its own runs on the shared
    server."""

    fuzz: ClassVar[FuzzServer]

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[RunModel] = []
        self.tag = f"l{next(_IDS)}"

    # -- runs and steps -------------------------------------------------------------------

    @initialize(budget=st.sampled_from([128, 300, 600, 2000]))
    def start(self, budget: int) -> None:
        self.start_run(budget)

    @rule(budget=st.sampled_from([128, 600]))
    def start_run(self, budget: int) -> None:
        run_id = f"{self.tag}-run{len(self.runs)}"
        out = self.fuzz.ok("start_run", {"objective": f"objective of {run_id}",
                                         "run_id": run_id, "budget_tokens": budget})
        assert out["run_id"] == run_id and out["budget_tokens"] == budget
        self.runs.append(RunModel(run_id, budget))

    @rule(data=st.data(), key=st.sampled_from([None, "a", "b", "c"]), payload=st.integers(0, 2),
          status=st.sampled_from(["ok", "ok", "error"]), size=st.sampled_from([1, 50, 400]))
    def record_step(self, data: st.DataObject, key: str | None, payload: int, status: str,
                    size: int) -> None:
        run = data.draw(st.sampled_from(self.runs))
        args: dict[str, Any] = {"run_id": run.run_id, "tool": "bash", "status": status,
                                "input": {"payload": payload, "pad": "word " * size}}
        if key is not None:
            args["idempotency_key"] = key
            args["status"] = "ok"  # the payload alone decides whether a retry is the same
            args["input"] = {"payload": payload}
        result = self.fuzz.call("record_step", args)
        out = self.fuzz.judge("record_step", result)
        if key is not None and key in run.keys:
            first_payload, first_seq = run.keys[key]
            if first_payload == payload:
                assert out is not None and out["duplicate"] is True and out["seq"] == first_seq
            else:
                assert out is None, "a reused key with another payload must be a conflict"
                assert _text(result).startswith("conflict: idempotency_key")
            return
        assert out is not None, _text(result)
        assert out["duplicate"] is False
        run.head_seq += 1
        assert out["seq"] == run.head_seq
        assert out["working_steps"] == run.head_seq - run.covered_seq
        if key is not None:
            run.keys[key] = (payload, out["seq"])

    # -- checkpoints and rehydrate --------------------------------------------------------

    @rule(data=st.data(), offset=st.one_of(st.none(), st.integers(-3, 3)),
          content=st.booleans())
    def checkpoint(self, data: st.DataObject, offset: int | None, content: bool) -> None:
        run = data.draw(st.sampled_from(self.runs))
        args: dict[str, Any] = {"run_id": run.run_id}
        through: int | None = None
        if offset is not None:  # around the head: some stale, some in the future
            through = run.head_seq + offset
            args["through_seq"] = through
        if content:
            args["progress"] = [f"checkpoint {len(run.checkpoints) + 1}"]
            args["state"] = {"n": len(run.checkpoints)}
        result = self.fuzz.call("checkpoint", args)
        out = self.fuzz.judge("checkpoint", result)
        if through is not None and not run.covered_seq <= through <= run.head_seq:
            assert out is None and _text(result).startswith("invalid_argument: through_seq")
            return
        assert out is not None, _text(result)
        expected = run.head_seq if through is None else through
        if not content and expected <= run.covered_seq and run.checkpoints:
            # Nothing new to distil: the latest checkpoint comes back, none is made.
            assert out["created"] is False
            assert out["checkpoint_id"] == run.checkpoints[-1]
            assert out["number"] == len(run.checkpoints)
            return
        assert out["through_seq"] == expected
        assert out["number"] == len(run.checkpoints) + 1
        assert out["working_steps"] == run.head_seq - expected
        run.covered_seq = expected
        run.checkpoints.append(out["checkpoint_id"])

    @rule(data=st.data(), budget=st.one_of(st.none(), st.sampled_from([128, 200, 1000])),
          older=st.booleans())
    def rehydrate(self, data: st.DataObject, budget: int | None, older: bool) -> None:
        run = data.draw(st.sampled_from(self.runs))
        args: dict[str, Any] = {"run_id": run.run_id}
        if budget is not None:
            args["budget_tokens"] = budget
        chosen = None
        if older and run.checkpoints:
            chosen = data.draw(st.sampled_from(run.checkpoints))
            args["checkpoint_id"] = chosen
        out = self.fuzz.ok("rehydrate", args)
        limit = run.budget if budget is None else budget
        assert out["budget_tokens"] == limit
        assert out["tokens"] <= limit and TOKENIZER.count(out["context"]) <= limit
        latest = run.checkpoints[-1] if run.checkpoints else None
        assert out["checkpoint_id"] == (chosen or latest)
        if chosen is None:
            assert out["through_seq"] == run.covered_seq
            assert all(run.covered_seq < seq <= run.head_seq for seq in out["steps_included"])

    @invariant()
    def store_is_sound(self) -> None:
        check_db(self.fuzz.db_path)


class MemoryMachine(RuleBasedStateMachine):
    """Two-phase memory: interleaved proposals and commits over the same memories. One
    machine per example, each with its own memories (searches find them by their text)."""

    fuzz: ClassVar[FuzzServer]

    def __init__(self) -> None:
        super().__init__()
        self.batches: dict[str, BatchModel] = {}
        self.memories: dict[str, str] = {}  # active memory id -> content
        self.versions: dict[str, int] = {}  # memory id -> version
        self.tag = f"m{next(_IDS)}"

    @initialize()
    def remember(self) -> None:
        """Two committed memories, so that batches can target memories from the start."""
        items = [{"content": f"{self.tag} seed {i} zq{self.tag}s{i}"} for i in range(2)]
        staged = self.fuzz.ok("propose_memory", {"items": items})
        done = self.fuzz.ok("commit_memory", {"batch_id": staged["batch_id"]})
        for index, memory_id in done["memory_ids"].items():
            self.memories[memory_id] = items[int(index)]["content"]
            self.versions[memory_id] = 1

    # -- memory ---------------------------------------------------------------------------

    @rule(data=st.data(), adds=st.integers(0, 2), updates=st.integers(0, 2),
          deprecates=st.integers(0, 1))
    def propose(self, data: st.DataObject, adds: int, updates: int, deprecates: int) -> None:
        items: list[dict[str, Any]] = [
            {"content": f"{self.tag} fact {len(self.batches)}-{i} zq{self.tag}x{i}"}
            for i in range(adds)
        ]
        active = sorted(self.memories)
        targets = data.draw(st.lists(st.sampled_from(active), max_size=updates + deprecates,
                                     unique=True)) if active else []
        for n, target in enumerate(targets):
            if n < updates:
                items.append({"op": "update", "target_id": target,
                              "content": f"{self.tag} updated {target} in {len(self.batches)}"})
            else:
                items.append({"op": "deprecate", "target_id": target})
        if not items:
            return
        out = self.fuzz.ok("propose_memory", {"items": items})
        assert out["status"] == "pending" and len(out["items"]) == len(items)
        self.batches[out["batch_id"]] = BatchModel(
            items, {t: self.versions[t] for t in targets}
        )

    @precondition(lambda self: bool(self.batches))
    @rule(data=st.data(), rejecting=st.booleans())
    def commit(self, data: st.DataObject, rejecting: bool) -> None:
        pending = sorted(b for b, model in self.batches.items() if model.status == "pending")
        pool = pending if pending and data.draw(st.integers(0, 4)) else sorted(self.batches)
        batch_id = data.draw(st.sampled_from(pool))
        batch = self.batches[batch_id]
        reject = [len(batch.items) - 1] if rejecting else []
        args: dict[str, Any] = {"batch_id": batch_id}
        if reject:
            args["reject"] = reject
        result = self.fuzz.call("commit_memory", args)
        out = self.fuzz.judge("commit_memory", result)
        if batch.status != "pending":
            assert out is None and _text(result).startswith("conflict: batch")
            return
        accepted = [i for i in range(len(batch.items)) if i not in reject]
        changed = [
            batch.items[i]["target_id"] for i in accepted
            if "target_id" in batch.items[i]
            and (batch.items[i]["target_id"] not in self.memories
                 or self.versions[batch.items[i]["target_id"]]
                 != batch.seen[batch.items[i]["target_id"]])
        ]
        if changed:
            # A target deprecated or updated since the batch was proposed: nothing written.
            assert out is None, f"committed over targets changed since: {changed}"
            assert _text(result).startswith("conflict:")
            return
        assert out is not None, _text(result)
        assert out["accepted"] == accepted
        batch.status = out["status"]
        assert batch.status == ("committed" if accepted else "rejected")
        for index, memory_id in out["memory_ids"].items():
            self.memories[memory_id] = batch.items[int(index)]["content"]
            self.versions[memory_id] = 1
        for i in accepted:
            item = batch.items[i]
            target = item.get("target_id")
            if target is None:
                continue
            self.versions[target] += 1
            if item["op"] == "update":
                self.memories[target] = item["content"]
            else:
                del self.memories[target]

    @precondition(lambda self: bool(self.memories))
    @rule(data=st.data())
    def search(self, data: st.DataObject) -> None:
        memory_id = data.draw(st.sampled_from(sorted(self.memories)))
        content = self.memories[memory_id]
        out = self.fuzz.ok("search_memory", {"query": content, "k": 10})
        found = {hit["memory_id"]: hit["content"] for hit in out["hits"]}
        assert found.get(memory_id) == content, f"{memory_id} not found by its own text"
        retired = set(self.versions) - set(self.memories)
        assert not retired & set(found), "a retired memory was found"

    @invariant()
    def store_is_sound(self) -> None:
        check_db(self.fuzz.db_path)


def _text(result: Any) -> str:
    text: str = result.content[0].text
    return text


@pytest.fixture
def fuzz(tmp_path: Path) -> Iterator[FuzzServer]:
    with live_server(tmp_path / "data") as server:
        yield server


MACHINE = settings(FUZZ, max_examples=FUZZ_EXAMPLES or 30, stateful_step_count=30)


def test_loop_state_machine(fuzz: FuzzServer) -> None:
    LoopMachine.fuzz = fuzz
    run_state_machine_as_test(LoopMachine, settings=MACHINE)


def test_memory_state_machine(fuzz: FuzzServer) -> None:
    MemoryMachine.fuzz = fuzz
    run_state_machine_as_test(MemoryMachine, settings=MACHINE)
