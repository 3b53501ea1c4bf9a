"""The bounded near-duplicate lookup of ``propose_memory`` (``core.proposals.lookup_words``)
still finds a stored near duplicate, a short copy made of common words only, and a likely
conflict among 10,000 memories, on each SQL store (their indexes are what bound it)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mcp_checkpoint.config import PostgresSettings, Settings, SqliteSettings
from mcp_checkpoint.core.memory import MemoryService
from mcp_checkpoint.core.models import BatchId, MemoryId, Proposal, ProposalItem, Tenant
from mcp_checkpoint.core.ports import Store
from mcp_checkpoint.storage.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

TENANT = Tenant("scale")
COMMON = ["nate", "joanna", "thanks", "really", "great", "team", "project", "meeting",
          "deploy", "service", "staging", "weekend", "tournament", "support", "people",
          "friends", "review", "release"]
# What the probes look for, stored first: the oldest memories, older than the thousands
# of newer ones that hold the same common words.
TARGETS = [
    "Priya: the staging deploy of kestrel moved to port 8080 after the outage review",
    "Nate: thanks, you too!",
    "The billing service of osprey listens on port 5432 behind the proxy",
]


def _filler(n: int, seed: int = 16) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = rng.choices(COMMON, k=8) + [f"w{rng.randrange(30_000)}" for _ in range(2)]
        out.append(f"{rng.choice(['Nate', 'Joanna', 'Priya'])}: {' '.join(words)} (note {i})")
    # Thousands of memories that hold the targets' common words, and some their rare ones.
    out += [f"Nate: thanks, you know the team {i}" for i in range(2_000)]
    out += [f"kestrel staging deploy note {i}" for i in range(200)]
    return out


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"),
                        pytest.param("postgres", id="postgres")])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    backend: Store
    if request.param == "sqlite":
        backend = SqliteStore(tmp_path / "store.db", SqliteSettings())
    else:
        from mcp_checkpoint.storage.postgres import PostgresStore

        backend = PostgresStore(request.getfixturevalue("postgres_url"), PostgresSettings())
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


async def _seed(store: Store, service: MemoryService, texts: list[str]) -> list[MemoryId]:
    ids: list[MemoryId] = []
    for start in range(0, len(texts), 1_000):
        now = datetime.now(UTC)
        chunk = texts[start:start + 1_000]
        staged = await store.add_proposal(TENANT, Proposal(
            batch_id=BatchId(f"seed-{start}"), run_id=None, status="pending",
            items=[ProposalItem(content=t) for t in chunk], created_at=now,
            expires_at=now + timedelta(hours=1)))
        done = await service.commit(TENANT, staged.batch_id)
        ids += [done.memory_ids[i] for i in range(len(chunk))]
    return ids


async def test_the_bounded_lookup_finds_near_duplicates_among_10000_memories(
    store: Store, tmp_path: Path
) -> None:
    service = MemoryService(store, Settings(data_dir=tmp_path, embeddings={"provider": "none"}))
    texts = TARGETS + _filler(10_000 - len(TARGETS) - 2_200)
    ids = await _seed(store, service, texts)
    assert len(ids) == 10_000

    staged = await service.propose(TENANT, [
        ProposalItem(content="Priya: the staging deploy of kestrel moved to port 8080 after "
                             "the outage review."),
        ProposalItem(content="Nate: thanks, you too!!"),
        ProposalItem(content="The billing service of osprey listens on port 6543 behind the "
                             "proxy"),
        ProposalItem(content="Zoe likes quinces"),
    ])
    near, short, changed, unrelated = (item.analysis for item in staged.items)

    assert near is not None and near.suggested_op == "skip"
    assert near.duplicates[0].memory_id == ids[0]
    assert short is not None and short.suggested_op == "skip"
    assert short.duplicates[0].memory_id == ids[1]
    assert changed is not None and changed.suggested_op == "supersede"
    assert [c.memory_id for c in changed.conflicts] == [ids[2]]
    assert unrelated is not None and unrelated.suggested_op == "add"
    assert unrelated.duplicates == [] and unrelated.conflicts == []
