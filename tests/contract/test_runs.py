"""EpisodicStore: create_run, get_run, list_runs, update_run."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from mcp_checkpoint.core.models import RunId
from mcp_checkpoint.core.ports import Store
from mcp_checkpoint.errors import ConflictError, NotFoundError

from .conftest import T0, TENANT_A, TENANT_B, Clock, append, draft, make_run

pytestmark = pytest.mark.anyio


async def test_create_run_stores_the_run_as_given(store: Store) -> None:
    run = make_run("r1")

    created = await store.create_run(TENANT_A, run)

    assert created == run
    assert await store.get_run(TENANT_A, RunId("r1")) == run


async def test_create_run_duplicate_id_conflicts_and_keeps_the_first(store: Store) -> None:
    await store.create_run(TENANT_A, make_run("r1"))

    with pytest.raises(ConflictError):
        await store.create_run(TENANT_A, make_run("r1", budget_tokens=99))

    assert (await store.get_run(TENANT_A, RunId("r1"))).budget_tokens == 1_000


async def test_create_run_same_id_in_another_tenant_is_a_different_run(store: Store) -> None:
    await store.create_run(TENANT_A, make_run("r1"))

    await store.create_run(TENANT_B, make_run("r1", budget_tokens=500))

    assert (await store.get_run(TENANT_A, RunId("r1"))).budget_tokens == 1_000
    assert (await store.get_run(TENANT_B, RunId("r1"))).budget_tokens == 500


async def test_get_run_unknown_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        await store.get_run(TENANT_A, RunId("nope"))


async def test_get_run_of_another_tenant_is_not_found(store: Store) -> None:
    await store.create_run(TENANT_A, make_run("r1"))

    with pytest.raises(NotFoundError):
        await store.get_run(TENANT_B, RunId("r1"))


async def test_list_runs_newest_updated_first_ties_by_run_id(store: Store) -> None:
    # A whole second and a fraction of a second later must order by instant, not by text.
    await store.create_run(TENANT_A, make_run("old", now=T0))
    await store.create_run(TENANT_A, make_run("tie-a", now=T0 + timedelta(seconds=1)))
    await store.create_run(TENANT_A, make_run("tie-b", now=T0 + timedelta(seconds=1)))
    await store.create_run(TENANT_A, make_run("new", now=T0 + timedelta(seconds=1, microseconds=5)))

    runs = await store.list_runs(TENANT_A, status=None, limit=10, offset=0)

    assert [r.run_id for r in runs] == ["new", "tie-b", "tie-a", "old"]


async def test_list_runs_paginates_without_overlap(store: Store, clock: Clock) -> None:
    for i in range(7):
        await store.create_run(TENANT_A, make_run(f"r{i}", now=clock()))

    pages = [
        await store.list_runs(TENANT_A, status=None, limit=3, offset=offset)
        for offset in (0, 3, 6, 9)
    ]

    assert [[r.run_id for r in page] for page in pages] == [
        ["r6", "r5", "r4"], ["r3", "r2", "r1"], ["r0"], []
    ]


async def test_list_runs_filters_by_status(store: Store, clock: Clock) -> None:
    for run_id in ("r1", "r2", "r3"):
        await store.create_run(TENANT_A, make_run(run_id, now=clock()))
    await store.update_run(
        TENANT_A, RunId("r2"), expected_version=1, status="completed", now=clock()
    )

    completed = await store.list_runs(TENANT_A, status="completed", limit=10, offset=0)
    active = await store.list_runs(TENANT_A, status="active", limit=10, offset=0)

    assert [r.run_id for r in completed] == ["r2"]
    assert [r.run_id for r in active] == ["r3", "r1"]


async def test_create_run_keeps_its_project(store: Store) -> None:
    run = make_run("r1").model_copy(update={"project": "/home/ada/project é"})

    await store.create_run(TENANT_A, run)

    assert (await store.get_run(TENANT_A, RunId("r1"))).project == "/home/ada/project é"
    assert (await store.get_run(TENANT_A, RunId("r1"))) == run


async def test_list_runs_filters_by_project_and_status(store: Store, clock: Clock) -> None:
    for run_id, project in (("r1", "/p/a"), ("r2", "/p/b"), ("r3", "/p/a"), ("r4", None)):
        run = make_run(run_id, now=clock()).model_copy(update={"project": project})
        await store.create_run(TENANT_A, run)
    await store.create_run(TENANT_B, make_run("b1", now=clock()).model_copy(
        update={"project": "/p/a"}))
    await store.update_run(
        TENANT_A, RunId("r3"), expected_version=1, status="completed", now=clock()
    )

    of_a = await store.list_runs(TENANT_A, status=None, limit=10, offset=0, project="/p/a")
    active_of_a = await store.list_runs(
        TENANT_A, status="active", limit=10, offset=0, project="/p/a"
    )
    every = await store.list_runs(TENANT_A, status=None, limit=10, offset=0)

    assert [r.run_id for r in of_a] == ["r3", "r1"]
    assert [r.run_id for r in active_of_a] == ["r1"]
    assert [r.run_id for r in every] == ["r3", "r4", "r2", "r1"]


async def test_list_runs_filters_by_objective_text_and_dates_in_pages(
    store: Store, clock: Clock
) -> None:
    objectives = {
        "r1": "Fix the LOGIN page", "r2": "write docs", "r3": "Été: login retry",
        "r4": "100% of_the login_tests", "r5": "ÉTÉ plans", "r6": "relogin flow",
    }
    times = {}
    for run_id, objective in objectives.items():
        times[run_id] = clock()
        await store.create_run(TENANT_A, make_run(run_id, now=times[run_id]).model_copy(
            update={"objective": objective}))
    await store.create_run(TENANT_B, make_run("b1", now=clock()).model_copy(
        update={"objective": "login elsewhere"}))

    async def ids(**kwargs: Any) -> list[str]:
        runs = await store.list_runs(TENANT_A, **{"status": None, **kwargs})
        return [r.run_id for r in runs]

    assert await ids(limit=10, offset=0, text="Login") == ["r6", "r4", "r3", "r1"]
    assert await ids(limit=2, offset=0, text="login") == ["r6", "r4"]
    assert await ids(limit=2, offset=2, text="login") == ["r3", "r1"]
    # Unicode letters fold too; LIKE wildcards are plain characters.
    assert await ids(limit=10, offset=0, text="été") == ["r5", "r3"]
    assert await ids(limit=10, offset=0, text="0% of_") == ["r4"]
    assert await ids(limit=10, offset=0, text="_x") == []
    assert await ids(limit=10, offset=0, since=times["r2"], until=times["r5"]) == [
        "r4", "r3", "r2"]
    assert await ids(limit=10, offset=0, text="login", since=times["r3"]) == [
        "r6", "r4", "r3"]
    assert await ids(limit=10, offset=0, text="login", status="completed") == []


async def test_list_runs_shows_only_the_tenants_runs(store: Store) -> None:
    await store.create_run(TENANT_A, make_run("a1"))
    await store.create_run(TENANT_B, make_run("b1"))

    runs = await store.list_runs(TENANT_B, status=None, limit=10, offset=0)

    assert [r.run_id for r in runs] == ["b1"]


async def test_update_run_changes_status_and_pinned_and_bumps_version(
    store: Store, clock: Clock
) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    now = clock()

    updated = await store.update_run(
        TENANT_A, RunId("r1"), expected_version=1, status="completed", pinned=["x"], now=now
    )

    assert (updated.status, updated.pinned, updated.version) == ("completed", ["x"], 2)
    assert await store.get_run(TENANT_A, RunId("r1")) == updated


async def test_update_run_leaves_what_is_not_given(store: Store, clock: Clock) -> None:
    await store.create_run(TENANT_A, make_run("r1"))

    updated = await store.update_run(TENANT_A, RunId("r1"), expected_version=1, now=clock())
    pinned_only = await store.update_run(
        TENANT_A, RunId("r1"), expected_version=2, pinned=[], now=clock()
    )

    assert (updated.status, updated.pinned, updated.version) == (
        "active", ["remember the milk"], 2
    )
    assert (pinned_only.status, pinned_only.pinned, pinned_only.version) == ("active", [], 3)


async def test_update_run_stale_version_conflicts_and_changes_nothing(
    store: Store, clock: Clock
) -> None:
    await store.create_run(TENANT_A, make_run("r1"))
    await store.update_run(TENANT_A, RunId("r1"), expected_version=1, pinned=["a"], now=clock())

    with pytest.raises(ConflictError):
        await store.update_run(
            TENANT_A, RunId("r1"), expected_version=1, status="failed", now=clock()
        )

    run = await store.get_run(TENANT_A, RunId("r1"))
    assert (run.status, run.pinned, run.version) == ("active", ["a"], 2)


async def test_update_run_unknown_is_not_found(store: Store, clock: Clock) -> None:
    with pytest.raises(NotFoundError):
        await store.update_run(TENANT_A, RunId("nope"), expected_version=1, now=clock())


async def test_update_run_of_another_tenant_is_not_found_and_untouched(
    store: Store, clock: Clock
) -> None:
    await store.create_run(TENANT_A, make_run("r1"))

    with pytest.raises(NotFoundError):
        await store.update_run(
            TENANT_B, RunId("r1"), expected_version=1, status="abandoned", now=clock()
        )

    run = await store.get_run(TENANT_A, RunId("r1"))
    assert (run.status, run.version) == ("active", 1)


async def test_offsets_and_cursors_beyond_64_bits_are_empty_pages(
    store: Store, clock: Clock
) -> None:
    """Callers may page past any 64-bit integer (a client's offset or ledger cursor); the
    answer is an empty page, never a driver overflow."""
    await store.create_run(TENANT_A, make_run("r1", now=clock()))
    await append(store, "r1", draft(1), now=clock())
    for huge in (2**63, 10**30):
        assert await store.list_runs(TENANT_A, status=None, limit=10, offset=huge) == []
        assert await store.get_steps(TENANT_A, RunId("r1"), after_seq=huge, limit=10) == []
        assert await store.list_checkpoints(TENANT_A, RunId("r1"), limit=10, offset=huge) == []
    steps = await store.get_steps(TENANT_A, RunId("r1"), after_seq=0, limit=2**64)
    assert [s.seq for s in steps] == [1]
