"""``python -m bench throughput``: record_step from several server processes on one run.

``--processes N`` real ``mcp-checkpoint serve`` subprocesses (stdio, one client each) share
one store (a fresh temporary SQLite file, or ``--store-url``, e.g. PostgreSQL). After an
untimed warm-up, every client records ``--steps`` steps on the same run, all at once, each
waiting for its previous answer (an agent's pace, N agents at a time). Reported: steps per
second over the wall time of that phase, and each call's latency as its client saw it.
Then ``--rehydrates`` rehydrates of the run, one at a time. Finally the store is opened
directly: the ledger must hold every acknowledged step exactly once, gap-free, with an
unbroken hash chain (the benchmark fails otherwise).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio

from bench._client import BenchError, TimedClient, spawn_server
from bench._stats import emit, percentile, summary
from mcp_checkpoint import __version__
from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.ledger import ChainBreak, verify_run
from mcp_checkpoint.core.models import RunId, Tenant
from mcp_checkpoint.errors import CheckpointError
from mcp_checkpoint.storage import make_store
from mcp_checkpoint.storage._urls import mask_url

__all__ = ["add_arguments", "main"]

RUN = "bench-throughput"
_WARMUP_STEPS = 5
_OUTPUT = "ok: " + "x" * 400  # a typical short tool output (~100 tokens)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bench throughput``."""
    parser.add_argument("--processes", type=int, default=4, help="server processes (default 4)")
    parser.add_argument(
        "--steps", type=int, default=200, help="record_step calls per process (default 200)"
    )
    parser.add_argument(
        "--rehydrates", type=int, default=30, help="rehydrate calls afterwards (default 30)"
    )
    parser.add_argument(
        "--store-url",
        metavar="URL",
        help="the store to share instead of a fresh temporary SQLite file, e.g. "
        "postgresql://user@host/db (the benchmark writes under a new tenant of its own)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment of the server processes (repeatable)",
    )


def _step(process: int, n: int) -> dict[str, Any]:
    return {
        "run_id": RUN,
        "tool": "shell",
        "input": {"cmd": f"pytest tests/test_{n % 50}.py -k case_{process}_{n}"},
        "output": _OUTPUT,
        "idempotency_key": f"p{process}-s{n}",
    }


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    if args.processes < 1 or args.steps < 1 or args.rehydrates < 0:
        raise BenchError("--processes and --steps must be at least 1, --rehydrates at least 0")
    with tempfile.TemporaryDirectory(prefix="mcp-checkpoint-throughput-") as tmp:
        data_dir = Path(tmp)
        store_url = args.store_url or f"sqlite:///{data_dir / 'bench.db'}"
        tenant = Tenant(f"bench-{uuid.uuid4().hex[:8]}") if args.store_url else Tenant("bench")
        env = {
            "MCP_CHECKPOINT_DATA_DIR": str(data_dir),
            "MCP_CHECKPOINT_STORE_URL": store_url,
            "MCP_CHECKPOINT_TENANT": tenant,
            "MCP_CHECKPOINT_LOG_LEVEL": "WARNING",
            "MCP_CHECKPOINT_EMBEDDINGS__PROVIDER": "none",
        }
        for item in args.server_env:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise BenchError(f"--server-env wants KEY=VALUE, got {item!r}")
            env[key] = value
        record_ms: list[float] = []
        rehydrate_ms: list[float] = []
        acked: dict[str, int] = {}
        async with AsyncExitStack() as stack:
            clients: list[TimedClient] = []
            for i in range(args.processes):
                errlog = stack.enter_context(
                    (data_dir / f"server-{i}.log").open("w", encoding="utf-8")
                )
                clients.append(await stack.enter_async_context(spawn_server(env, errlog)))
            await clients[0].call("start_run", {"objective": "throughput", "run_id": RUN})

            async def warm(i: int, client: TimedClient) -> None:
                for n in range(_WARMUP_STEPS):
                    ack, _ = await client.call("record_step", _step(i, -1 - n))
                    acked[f"p{i}-s{-1 - n}"] = int(ack["seq"])

            async def work(i: int, client: TimedClient) -> None:
                for n in range(args.steps):
                    ack, ms = await client.call("record_step", _step(i, n))
                    record_ms.append(ms)
                    acked[f"p{i}-s{n}"] = int(ack["seq"])

            async with anyio.create_task_group() as group:
                for i, client in enumerate(clients):
                    group.start_soon(warm, i, client)
            start = time.perf_counter()
            async with anyio.create_task_group() as group:
                for i, client in enumerate(clients):
                    group.start_soon(work, i, client)
            wall = time.perf_counter() - start
            for _ in range(args.rehydrates):
                context, ms = await clients[0].call("rehydrate", {"run_id": RUN})
                rehydrate_ms.append(ms)
            context_tokens = int(context["tokens"]) if args.rehydrates else None
        ledger = await _verify(Settings(data_dir=data_dir, store_url=store_url), tenant, acked)
    calls = args.processes * args.steps
    return {
        "benchmark": "throughput",
        "version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "store": mask_url(args.store_url) if args.store_url else "sqlite:///<tmp>/bench.db",
        "processes": args.processes,
        "steps_per_process": args.steps,
        "record_step": {
            "calls": calls,
            "wall_seconds": round(wall, 3),
            "steps_per_second": round(calls / wall, 1),
            "latency_ms": summary(record_ms) | {"p95": round(percentile(record_ms, 95), 3)},
        },
        "rehydrate": {
            "head_seq": ledger["steps"],
            "context_tokens": context_tokens,
            "latency_ms": summary(rehydrate_ms)
            | {"p95": round(percentile(rehydrate_ms, 95), 3) if rehydrate_ms else None},
        },
        "ledger": ledger,
        "how": "N stdio servers on one store; every client records its steps on one shared "
        "run, each call waiting for its answer; wall time of that phase; then rehydrates of "
        "the run from one client",
    }


async def _verify(settings: Settings, tenant: Tenant, acked: dict[str, int]) -> dict[str, Any]:
    """The ledger holds every acknowledged step once, under its acknowledged seq."""
    store = make_store(settings)
    await store.open()
    try:
        run = await store.get_run(tenant, RunId(RUN))
        try:
            verified = await verify_run(store, tenant, RunId(RUN))
        except ChainBreak as exc:
            raise BenchError(f"the ledger does not verify: {exc}") from exc
        seen: dict[str, int] = {}
        after = 0
        while page := await store.get_steps(tenant, RunId(RUN), after_seq=after, limit=1000):
            seen |= {s.idempotency_key or "": s.seq for s in page}
            after = page[-1].seq
    finally:
        await store.close()
    if seen != acked or verified != len(acked) or run.head_seq != len(acked):
        raise BenchError(
            f"the ledger holds {verified} steps for {len(acked)} acknowledged ones "
            "(or under other seqs)"
        )
    return {"steps": verified, "verified": True}


def render(report: dict[str, Any]) -> str:
    """The human-readable summary."""
    rec, reh = report["record_step"], report["rehydrate"]
    lat, rlat = rec["latency_ms"], reh["latency_ms"]
    return "\n".join([
        f"mcp-checkpoint {report['version']} bench throughput — store {report['store']}",
        f"{report['processes']} server process(es) x {report['steps_per_process']} record_step "
        f"on one run: {rec['steps_per_second']} steps/s ({rec['calls']} in "
        f"{rec['wall_seconds']} s)",
        f"  record_step ms p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}",
        f"  rehydrate ({reh['head_seq']} steps, {reh['context_tokens']} tokens) ms "
        f"p50 {rlat['p50']}  p95 {rlat['p95']}  p99 {rlat['p99']}",
        f"  ledger: {report['ledger']['steps']} steps, each acknowledged step once, "
        "gap-free, hash chain verified",
    ])


def main(args: argparse.Namespace) -> int:
    """Run the benchmark; 0 when it ran, 1 when it could not (or the ledger is wrong)."""
    try:
        report = anyio.run(_bench, args)
    except (BenchError, CheckpointError) as exc:
        sys.stderr.write(f"mcp-checkpoint bench throughput: {exc}\n")
        return 1
    emit(render(report), report, args.json)
    return 0
