"""The contract suite: one set of tests that every Store backend must pass.

``store`` is parametrized over the in-memory reference and each real backend; a test
written against it checks a sentence of a port docstring (``core/ports.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import JsonValue

from mcp_checkpoint.config import PostgresSettings, SqliteSettings
from mcp_checkpoint.core.ledger import genesis_hash, request_hash
from mcp_checkpoint.core.models import (
    BatchId,
    MemoryId,
    MemoryKind,
    NewMemory,
    Proposal,
    ProposalItem,
    Run,
    RunId,
    Step,
    StepAck,
    StepDraft,
    Tenant,
)
from mcp_checkpoint.core.ports import CommitPlan, Store
from mcp_checkpoint.storage.reference.store import ReferenceStore
from mcp_checkpoint.storage.sqlite import SqliteStore

TENANT_A = Tenant("tenant-a")
TENANT_B = Tenant("tenant-b")
T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def sqlite_file(tmp_path: Path) -> Path:
    """Where a test's SQLite store lives (in a directory the store must create)."""
    return tmp_path / "data" / "store.db"


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres"),
    ]
)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An opened, empty store of each backend, closed after the test (PostgreSQL: the
    session's database, emptied for the test)."""
    backend: Store
    if request.param == "memory":
        backend = ReferenceStore()
    elif request.param == "sqlite":
        backend = SqliteStore(sqlite_file(tmp_path), SqliteSettings())
    else:
        from mcp_checkpoint.storage.postgres import PostgresStore

        backend = PostgresStore(request.getfixturevalue("postgres_url"), PostgresSettings())
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


class Clock:
    """A fake clock: every call is a little later than the previous one."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1, microseconds=1)
        return self.now


@pytest.fixture
def clock() -> Clock:
    """A fresh fake clock."""
    return Clock()


def make_run(run_id: str, *, now: datetime = T0, budget_tokens: int = 1_000) -> Run:
    """A new run as core's start_run builds it."""
    return Run(
        run_id=RunId(run_id),
        objective=f"objective of {run_id}",
        acceptance_criteria=["tests pass"],
        constraints=["no network"],
        pinned=["remember the milk"],
        budget_tokens=budget_tokens,
        created_at=now,
        updated_at=now,
        head_hash=genesis_hash(RunId(run_id)),
    )


def draft(n: int = 0, *, key: str | None = None, tool: str = "shell") -> StepDraft:
    """A step draft whose content depends on ``n``."""
    payload: JsonValue = {"cmd": f"echo {n}", "nested": {"list": [n, 1.5, None, "é"]}}
    return StepDraft(tool=tool, input=payload, output=f"out {n}", idempotency_key=key)


def make_ack(run: Run, step: Step) -> StepAck:
    """The acknowledgement core builds from the run after the append."""
    return StepAck(
        run_id=run.run_id,
        seq=step.seq,
        episode=step.episode,
        working_steps=run.working_steps,
        working_tokens=run.working_tokens,
        budget_tokens=run.budget_tokens,
        checkpoint_due=run.working_steps >= 3,
        due_reason="steps" if run.working_steps >= 3 else None,
    )


async def append(
    store: Store,
    run_id: str,
    step: StepDraft,
    *,
    now: datetime,
    tokens: int = 10,
    tenant: Tenant = TENANT_A,
) -> StepAck:
    """Append ``step`` the way core's record_step does."""
    return await store.append_step(
        tenant,
        RunId(run_id),
        step,
        tokens=tokens,
        request_hash=request_hash(step),
        now=now,
        make_ack=make_ack,
    )


def make_proposal(batch_id: str, contents: list[str], *, now: datetime = T0) -> Proposal:
    """A pending batch proposing to add ``contents``."""
    return Proposal(
        batch_id=BatchId(batch_id),
        run_id=None,
        status="pending",
        items=[ProposalItem(content=text, rationale="seen twice") for text in contents],
        created_at=now,
        expires_at=now + timedelta(days=1),
    )


def new_memory(
    memory_id: str,
    content: str,
    *,
    batch_id: str = "b-seed",
    kind: MemoryKind = "fact",
    scope: str = "global",
) -> NewMemory:
    """A memory to insert through a commit plan."""
    return NewMemory(
        memory_id=MemoryId(memory_id),
        content=content,
        kind=kind,
        scope=scope,
        confidence=0.75,
        source_refs=["step:r1#1"],
        batch_id=BatchId(batch_id),
        run_id=None,
    )


async def seed_memories(
    store: Store,
    memories: list[NewMemory],
    *,
    batch_id: str = "b-seed",
    now: datetime = T0,
    tenant: Tenant = TENANT_A,
) -> Proposal:
    """Insert ``memories`` through one committed batch."""
    await store.add_proposal(tenant, make_proposal(batch_id, [m.content for m in memories]))
    indexes = list(range(len(memories)))
    plan = CommitPlan(
        batch_id=BatchId(batch_id),
        accepted=indexes,
        rejected=[],
        inserts=memories,
        memory_ids={i: m.memory_id for i, m in zip(indexes, memories, strict=True)},
    )
    return await store.commit_proposal(tenant, plan, now=now)
