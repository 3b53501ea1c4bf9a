"""Benchmark of the web view and curation: server-side render of the run page (a run of
N steps) and of the runs page (M runs), ``search_steps``, and ``delete_run`` of the long
run with an orphan-row check. Run from a checkout:

    PYTHONPATH=. python bench/curation.py --backend sqlite
    PYTHONPATH=. python bench/curation.py --backend postgres --store-url postgresql://...

The store is seeded through ``import_records`` (the steps are built by core's ledger, so
they chain and verify), in a temporary directory (SQLite) or a fresh database (PostgreSQL).
Prints medians over the repetitions; the first render of each page is a warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx2

from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.ledger import append_step, genesis_hash, request_hash
from mcp_checkpoint.core.models import (
    Checkpoint,
    CheckpointContent,
    CheckpointId,
    Run,
    RunId,
    StepAck,
    StepDraft,
    Tenant,
)
from mcp_checkpoint.core.ports import ImportedRun, ImportedStep, ImportRecords, StepQuery, Store
from mcp_checkpoint.server.app import Runtime
from mcp_checkpoint.ui import build_ui_app

T = Tenant("local")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TOOLS = ["bash", "edit_file", "read_file", "grep", "pytest", "git"]
WORDS = [
    "login", "timeout", "retry", "database", "migration", "cache", "token", "deploy", "config",
    "parser", "index", "schema", "worker", "queue", "socket", "header", "cookie", "session",
    "render", "template",
]


def _long_run(steps: int, every: int, run_id: str = "run_long") -> ImportedRun:
    run = Run(run_id=RunId(run_id), objective="A long task", budget_tokens=8000,
              created_at=T0, updated_at=T0, head_hash=genesis_hash(RunId(run_id)))
    imported: list[ImportedStep] = []
    checkpoints: list[Checkpoint] = []
    for seq in range(1, steps + 1):
        words = " ".join(WORDS[(seq * k) % len(WORDS)] for k in (1, 3, 7))
        draft = StepDraft(tool=TOOLS[seq % len(TOOLS)],
                          input={"cmd": f"run {words} case {seq}"},
                          output=f"step {seq}: {words} ok" + (" needle" if seq % 997 == 0 else ""),
                          status="error" if seq % 50 == 7 else "ok")
        step, run = append_step(run, draft, tokens=40 + seq % 30,
                                now=T0 + timedelta(milliseconds=seq))
        ack = StepAck(run_id=run.run_id, seq=seq, episode=step.episode, working_steps=0,
                      working_tokens=0, budget_tokens=run.budget_tokens, checkpoint_due=False)
        imported.append(ImportedStep(step, request_hash(draft), ack))
        if seq % every == 0:
            number = len(checkpoints) + 1
            cp = Checkpoint(
                checkpoint_id=CheckpointId(f"cp_{number:08d}"), run_id=run.run_id,
                number=number, parent_id=checkpoints[-1].checkpoint_id if checkpoints else None,
                through_seq=seq, head_seq=seq,
                content=CheckpointContent(progress=[f"up to {seq}"],
                                          next_actions=[f"continue after {seq}"]),
                source="model", tokens=20, created_at=step.created_at,
            )
            checkpoints.append(cp)
            run = run.model_copy(update={
                "checkpoint_count": number, "latest_checkpoint_id": cp.checkpoint_id,
                "covered_seq": seq, "covered_tokens": run.head_tokens,
            })
    return ImportedRun(run, imported, checkpoints)


def _small_runs(count: int) -> list[ImportedRun]:
    return [
        ImportedRun(
            Run(run_id=RunId(f"run_{i:06d}"), objective=f"task {i}: {WORDS[i % len(WORDS)]}",
                budget_tokens=8000, created_at=T0 + timedelta(seconds=i),
                updated_at=T0 + timedelta(seconds=i),
                head_hash=genesis_hash(RunId(f"run_{i:06d}"))),
            [], [],
        )
        for i in range(count)
    ]


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def _rows_left(backend: str, data_dir: Path, url: str | None) -> dict[str, int]:
    """Rows of the deleted run left in each table (all must be 0)."""
    tables = ["steps", "checkpoints", "pruned_checkpoints", "runs"]
    if backend == "sqlite":
        import sqlite3

        db = sqlite3.connect(data_dir / "mcp-checkpoint.db")
        try:
            return {t: db.execute(f"SELECT count(*) FROM {t} WHERE run_id = 'run_long'"  # noqa: S608
                                  ).fetchone()[0] for t in [*tables, "steps_fts"]}
        finally:
            db.close()
    import psycopg

    with psycopg.connect(url or "") as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t} WHERE run_id = 'run_long'"  # noqa: S608
                                ).fetchone()[0] for t in tables}  # type: ignore[index]


async def measure(args: argparse.Namespace, settings: Settings, data_dir: Path
                  ) -> dict[str, Any]:
    """Seed, then time the pages (in this event loop, through the ASGI app: the server's
    own work, no HTTP client thread), search_steps and delete_run."""
    results: dict[str, Any] = {"backend": args.backend, "steps": args.steps, "runs": args.runs,
                               "other_steps": args.other_steps}
    runtime = Runtime(settings)
    async with runtime.use() as services:
        store: Store = services.store
        started = time.perf_counter()
        # Another long run first (when asked): the store holds more than the run measured,
        # so a delete or a filtered search that reads the whole ledger shows.
        if args.other_steps:
            await store.import_records(T, ImportRecords(
                runs=[_long_run(args.other_steps, args.checkpoint_every, "run_other")]))
        long_run = _long_run(args.steps, args.checkpoint_every)
        await store.import_records(T, ImportRecords(runs=[long_run, *_small_runs(args.runs)]))
        results["seed_seconds"] = round(time.perf_counter() - started, 1)
        app = build_ui_app(services, verify=None)
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport,
                                      base_url="http://127.0.0.1:8765") as client:

            async def timed(path: str) -> float:
                begun = time.perf_counter()
                response = await client.get(path)
                elapsed = time.perf_counter() - begun
                if response.status_code != 200:
                    raise RuntimeError(f"{path}: HTTP {response.status_code}")
                return elapsed

            for name, path in (
                ("run_page", "/runs/run_long"),
                ("run_page_older", f"/runs/run_long?before={args.steps // 2}&cp_offset=1000"),
                ("runs_page", "/"),
                ("runs_page_filtered", "/?status=active&q=task%201"),
            ):
                await timed(path)
                results[f"{name}_p50_ms"] = _median_ms(
                    [await timed(path) for _ in range(args.repeat)])

        curation = services.curation
        for name, query in (("rare_word", "needle"), ("common_words", "login timeout"),
                            ("filtered", "database"), ("rare_filtered", "needle")):
            narrow = name.endswith("filtered")  # one run and one tool
            q = StepQuery(query, run_id=RunId("run_long") if narrow else None,
                          tool="grep" if narrow else None)
            samples = []
            for _ in range(args.repeat + 1):
                begun = time.perf_counter()
                hits = await curation.search_steps(T, q, k=10)
                samples.append(time.perf_counter() - begun)
                if not hits:
                    raise RuntimeError(f"search_steps {query!r} found nothing")
            results[f"search_steps_{name}_p50_ms"] = _median_ms(samples[1:])

        begun = time.perf_counter()
        deleted = await curation.delete_run(T, "run_long")
        results["delete_run_seconds"] = round(time.perf_counter() - begun, 3)
        results["deleted_steps"] = deleted.steps
        if await curation.search_steps(T, StepQuery("needle", run_id=RunId("run_long")),
                                       k=10):
            raise RuntimeError("a deleted step is still found")
        if args.other_steps and len(await curation.search_steps(
                T, StepQuery("needle", run_id=RunId("run_other")), k=10)) == 0:
            raise RuntimeError("the other run's steps are no longer found")
    results["rows_left"] = _rows_left(args.backend, data_dir, args.store_url)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--store-url", help="PostgreSQL URL (a database to fill and empty)")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--other-steps", type=int, default=0,
                        help="steps of another run that stays in the store (default 0)")
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    if args.backend == "postgres" and not args.store_url:
        parser.error("--backend postgres needs --store-url")
    with tempfile.TemporaryDirectory() as tmp:
        # Seeding writes the whole run in one transaction: longer than a request may take.
        extra: dict[str, Any] = {
            "store_url": args.store_url, "postgres": {"operation_timeout_s": 900},
        } if args.backend == "postgres" else {}
        settings = Settings(data_dir=Path(tmp), **extra)
        results = anyio.run(measure, args, settings, Path(tmp))
    results["machine_load"] = Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3]
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
