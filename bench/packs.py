"""``python -m bench packs``: how long export and import of a large resume pack take.

Builds a synthetic run (``--steps`` steps of about ``--step-bytes`` bytes each, a checkpoint
every 500 steps, ``--memories`` memories) in a fresh SQLite store, then times: export to a
zip, reading and verifying it (hashes, hash chain), planning the import into an empty
SQLite store, writing it (one transaction), planning it again (already imported), and
checks that ``rehydrate`` gives the same context on both sides. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio

from bench._stats import emit
from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.episodes import Episodes, step_ack
from mcp_checkpoint.core.ledger import append_step, genesis_hash, request_hash
from mcp_checkpoint.core.memory import MemoryService
from mcp_checkpoint.core.models import (
    BatchId,
    Checkpoint,
    CheckpointContent,
    CheckpointId,
    Memory,
    MemoryId,
    Proposal,
    ProposalItem,
    Run,
    RunId,
    StepDraft,
    Tenant,
)
from mcp_checkpoint.core.ports import ImportedRun, ImportedStep, ImportRecords
from mcp_checkpoint.core.tokens import HeuristicTokenizer
from mcp_checkpoint.packs import apply_import, export_pack, plan_import, read_pack
from mcp_checkpoint.storage.sqlite import SqliteStore

__all__ = ["add_arguments", "main"]

T = Tenant("bench")
_T = TypeVar("_T")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bench packs``."""
    parser.add_argument("--steps", type=int, default=100_000, help="steps of the run")
    parser.add_argument("--step-bytes", type=int, default=400, help="bytes of each step")
    parser.add_argument("--memories", type=int, default=1_000, help="memories of the run")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")


def _records(steps: int, step_bytes: int, memories: int, settings: Settings) -> ImportRecords:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    run_id = RunId("bench-run")
    run = Run(run_id=run_id, objective="benchmark the resume packs", budget_tokens=8000,
              created_at=start, updated_at=start, head_hash=genesis_hash(run_id))
    filler = "x" * max(step_bytes - 120, 0)
    imported: list[ImportedStep] = []
    checkpoints: list[Checkpoint] = []
    for seq in range(1, steps + 1):
        draft = StepDraft(tool="bash", input={"cmd": f"pytest -k case{seq}"},
                          output=f"case{seq} passed {filler}", idempotency_key=f"k{seq}")
        step, run = append_step(run, draft, tokens=step_bytes // 4,
                                now=start + timedelta(milliseconds=seq))
        imported.append(ImportedStep(step, request_hash(draft), step_ack(settings.checkpoint,
                                                                           run, step)))
        if seq % 500 == 0:
            checkpoint = Checkpoint(
                checkpoint_id=CheckpointId(f"cp{seq}"), run_id=run_id,
                number=len(checkpoints) + 1,
                parent_id=checkpoints[-1].checkpoint_id if checkpoints else None,
                through_seq=seq, head_seq=seq,
                content=CheckpointContent(progress=[f"through {seq}"], next_actions=["go on"]),
                source="rules", tokens=10, created_at=step.created_at,
            )
            checkpoints.append(checkpoint)
            run = run.model_copy(update={
                "checkpoint_count": checkpoint.number, "latest_checkpoint_id":
                checkpoint.checkpoint_id, "covered_seq": seq, "covered_tokens": step.cum_tokens,
            })
    batch = BatchId("bench-batch")
    memory_rows = [
        Memory(memory_id=MemoryId(f"m{i}"), content=f"fact {i} about case{i} of the run",
               kind="fact", scope="bench", confidence=0.8, batch_id=batch, run_id=run_id,
               created_at=start, updated_at=start)
        for i in range(memories)
    ]
    proposal = Proposal(
        batch_id=batch, run_id=run_id, status="committed",
        items=[ProposalItem(content=m.content, scope="bench") for m in memory_rows],
        created_at=start, expires_at=start + timedelta(days=1), committed_at=start,
        accepted=list(range(memories)), memory_ids={i: m.memory_id
                                                   for i, m in enumerate(memory_rows)},
    )
    return ImportRecords([ImportedRun(run, imported, checkpoints)], [proposal], memory_rows)


async def _timed(figures: dict[str, Any], name: str, fn: Callable[[], Awaitable[_T]]) -> _T:
    began = time.perf_counter()
    result = await fn()
    figures[name] = round(time.perf_counter() - began, 3)
    return result


async def _bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    settings = Settings(data_dir=work, limits={"max_batch_items": max(args.memories, 1),
                                               "max_pack_ratio": 1000})
    figures: dict[str, Any] = {"steps": args.steps, "step_bytes": args.step_bytes,
                               "memories": args.memories}
    source = SqliteStore(work / "source.db", settings.sqlite)
    target = SqliteStore(work / "target.db", settings.sqlite)
    await source.open()
    await target.open()
    try:
        records = _records(args.steps, args.step_bytes, args.memories, settings)
        await source.import_records(T, records)
        pack = work / "bench.zip"

        async def export() -> None:
            with pack.open("wb") as out:
                await export_pack(source, T, ["bench-run"], out, limits=settings.limits,
                                  tool_version="bench", created_at=datetime.now(UTC))

        await _timed(figures, "export_s", export)
        figures["pack_bytes"] = pack.stat().st_size

        async def read() -> Any:
            return read_pack(pack, settings.limits)

        verified = await _timed(figures, "read_verify_s", read)

        async def plan() -> Any:
            return await plan_import(target, T, verified,
                                     checkpoint_settings=settings.checkpoint)

        planned = await _timed(figures, "plan_s", plan)
        await _timed(figures, "write_s", lambda: apply_import(target, planned))
        again = await _timed(figures, "replan_identical_s", plan)
        figures["second_import_writes_nothing"] = again.nothing_to_do
        contexts = []
        for store in (source, target):
            memory = MemoryService(store, settings)
            episodes = Episodes(store, HeuristicTokenizer(), settings, memory=memory)
            contexts.append(await episodes.rehydrate(T, "bench-run"))
        figures["rehydrate_identical"] = contexts[0] == contexts[1]
        figures["integrity"] = await target.integrity_check()
    finally:
        await source.close()
        await target.close()
    return figures


def main(args: argparse.Namespace) -> int:
    """Run the benchmark and print its figures."""
    with tempfile.TemporaryDirectory(prefix="mcp-checkpoint-bench-packs-") as tmp:
        figures = anyio.run(_bench, args, Path(tmp))
    total = figures["export_s"] + figures["read_verify_s"] + figures["plan_s"] + (
        figures["write_s"])
    figures["steps_per_s_import"] = round(
        args.steps / max(figures["read_verify_s"] + figures["plan_s"] + figures["write_s"],
                         1e-9))
    lines = [f"{key:<30} {value}" for key, value in figures.items()]
    lines.append(f"{'total_s':<30} {round(total, 3)}")
    emit("\n".join(lines), figures, Path(args.json) if args.json else None)
    ok = figures["second_import_writes_nothing"] and figures["rehydrate_identical"]
    return 0 if ok and figures["integrity"] == "ok" else 1
