"""``python -m bench loop``: the checkpoint loop, measured through a real stdio client.

One SQLite file in a fresh temporary data directory, one server subprocess
(``python -m bench._server``: ``mcp-checkpoint serve`` plus the benchmark's ``noop`` tool),
one stdio MCP client. In order:

1. *Seeding* (before the server starts): two long runs are written straight into the same
   SQLite file through the store API (``make_store`` + ``Episodes.record_step``, the server's
   tokenizer), reusing the trajectories' steps cyclically and checkpointing whenever
   ``record_step`` says one is due, as the protocol asks an agent to do.
2. *Replay*: every ``*.traj`` (SWE-agent) becomes a run: ``start_run`` (objective: the
   problem statement of the file, else the first thought), ``record_step`` per step,
   ``checkpoint`` with no content whenever one is due (the server distils by its rules:
   this client offers no sampling), ``rehydrate`` after each checkpoint and at the end.
   Each ``record_step`` is paired with a ``noop`` call carrying the same payload, in
   alternating order, so both see the same conditions.
3. *Latency*: more paired ``record_step`` / ``noop`` calls on one more run, cycling through
   the trajectories' steps (checkpointing and rehydrating when due), for stable p99s; then
   as many pairs of a minimal step (a few bytes) on a run of its own: what recording costs
   apart from the payload's redaction, counting and hashing (statements, commit and, with
   ``synchronous=FULL``, the flush to disk).
4. *Scale*: ``rehydrate`` of the short and the long seeded run, interleaved, through the
   client.

Every context is checked against its budget (as reported, and recounted with the server's
tokenizer) and measured for compression and for how many of the paths and identifiers of
the steps it stands for it still names (extracted with this module's own regexes, not the
product's).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from bench._client import BenchError, TimedClient, spawn_server
from bench._loop_report import (
    FULL,
    QUICK,
    LoopRun,
    Profile,
    Rehydration,
    RunReport,
    Seeded,
    Tally,
    _report,
    render,
)
from bench._server import MINIMAL_TOOL
from bench._stats import emit
from bench._trajectories import Trajectory, TrajStep, _kept, _occurs, extract, load_trajectories
from mcp_checkpoint.config import Settings, SqliteSettings
from mcp_checkpoint.core.episodes import Episodes
from mcp_checkpoint.core.models import CheckpointPatch, RunId, Tenant
from mcp_checkpoint.core.redact import Redactor
from mcp_checkpoint.core.render import step_tokens
from mcp_checkpoint.core.tokens import HeuristicTokenizer
from mcp_checkpoint.errors import CheckpointError
from mcp_checkpoint.storage import make_store
from mcp_checkpoint.storage._urls import mask_url

__all__ = ["add_arguments", "main"]

TENANT = Tenant("bench")

_WARMUP_PAIRS = 10
_SCALE_WARMUP_CALLS = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bench loop``."""
    parser.add_argument("--data", required=True, type=Path, help="folder of SWE-agent *.traj files")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke-test scale: {QUICK.scale_small:,} vs {QUICK.scale_large:,} steps, "
        f"{QUICK.latency_pairs} extra latency pairs (default: {FULL.scale_small:,} vs "
        f"{FULL.scale_large:,}, {FULL.latency_pairs})",
    )
    parser.add_argument(
        "--budget",
        type=int,
        help="budget_tokens of every run (default: the server's rehydrate.default_budget_tokens)",
    )
    parser.add_argument(
        "--store-url",
        metavar="URL",
        help="the store to use instead of a fresh temporary SQLite file, e.g. "
        "postgresql://user@host/db (the benchmark writes under a new tenant of its own)",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment of the server process (repeatable), e.g. "
        "MCP_CHECKPOINT_SQLITE__SYNCHRONOUS=NORMAL; nothing else is inherited",
    )
    parser.add_argument(
        "--server-times",
        action="store_true",
        help="also time each tool call inside the server, from its request read to its "
        "answer written (the server notes when each line passes)",
    )


# -- the loop through the client ----------------------------------------------------------


class Driver:
    """Drives runs through the client and records what it sees."""

    def __init__(self, client: TimedClient, tally: Tally, budget: int | None) -> None:
        self.client = client
        self.tally = tally
        self.budget = budget
        self.tok = HeuristicTokenizer()
        self.redactor = Redactor()  # the server's default: it counts the step it stores
        self._pairs = 0

    async def start(self, run_id: str, objective: str, group: str, *, names: bool) -> LoopRun:
        """start_run."""
        args: dict[str, Any] = {"objective": objective, "run_id": run_id}
        if self.budget is not None:
            args["budget_tokens"] = self.budget
        await self.client.call("start_run", args)
        return LoopRun(run_id=run_id, group=group, track_names=names)

    async def step(self, run: LoopRun, step: TrajStep, *, timed: bool = True) -> None:
        """record_step paired with a noop of the same payload (alternating which goes
        first), then checkpoint + rehydrate if one is due."""
        ack, record_ms, noop_ms = await self._pair(run, step.arguments())
        if timed:
            self.tally.lat.record_step.append(record_ms)
            self.tally.lat.noop.append(noop_ms)
        draft = step.draft()
        red = self.redactor
        stored = draft.model_copy(update={
            "input": red.json(draft.input), "output": red.json(draft.output),
            "reasoning": red.text(draft.reasoning) if draft.reasoning else draft.reasoning,
        })
        run.cum_tokens.append(run.cum_tokens[-1] + step_tokens(stored, self.tok))
        if ack["seq"] != run.head_seq:
            raise BenchError(f"{run.run_id}: expected seq {run.head_seq}, got {ack['seq']}")
        # The server's working memory must be exactly our raw count since the checkpoint.
        if ack["working_tokens"] != run.cum_tokens[-1] - run.cum_tokens[run.covered_seq]:
            self.tally.ack_mismatches += 1
        if run.track_names:
            paths, names = extract(step.action + "\n" + step.observation)
            run.paths_seen |= paths
            run.ids_seen |= names
        if ack["checkpoint_due"]:
            self.tally.due_reasons[str(ack["due_reason"])] += 1
            await self.checkpoint(run, timed=timed)
            await self.rehydrate(run, timed=timed)

    async def minimal_step(self, run: LoopRun) -> None:
        """A record_step of a few bytes paired with a noop of the same payload,
        checkpointing when one is due (untimed)."""
        payload: dict[str, Any] = {"tool": MINIMAL_TOOL, "input": {"n": self._pairs},
                                   "output": "ok"}
        ack, record_ms, noop_ms = await self._pair(run, payload)
        self.tally.lat.record_minimal.append(record_ms)
        self.tally.lat.noop_minimal.append(noop_ms)
        if ack["checkpoint_due"]:
            await self.checkpoint(run, timed=False)

    async def _pair(
        self, run: LoopRun, payload: dict[str, Any]
    ) -> tuple[dict[str, Any], float, float]:
        """record_step of ``payload`` and a noop carrying the same payload, alternating
        which goes first; (the acknowledgement, record_step ms, noop ms)."""
        noop_first = self._pairs % 2 == 0
        self._pairs += 1
        if noop_first:
            _, noop_ms = await self.client.call("noop", {"payload": payload})
        ack, record_ms = await self.client.call("record_step", {"run_id": run.run_id, **payload})
        if not noop_first:
            _, noop_ms = await self.client.call("noop", {"payload": payload})
        return ack, record_ms, noop_ms

    async def checkpoint(self, run: LoopRun, *, timed: bool = True) -> None:
        """checkpoint with no content: the server distils."""
        result, ms = await self.client.call("checkpoint", {"run_id": run.run_id})
        if timed:
            self.tally.lat.checkpoint.append(ms)
            self.tally.checkpoint_sources[str(result["source"])] += 1
            self.tally.checkpoint_notes[str(result.get("note"))] += 1
        run.covered_seq = int(result["through_seq"])
        run.checkpoints += 1

    async def rehydrate(self, run: LoopRun, *, timed: bool = True) -> str:
        """rehydrate; records size, budget, compression and survival. Returns the text."""
        ctx, ms = await self.client.call("rehydrate", {"run_id": run.run_id})
        text = str(ctx["context"])
        record = Rehydration(
            group=run.group,
            run_id=run.run_id,
            head_seq=run.head_seq,
            raw_tokens=run.cum_tokens[-1],
            tokens=int(ctx["tokens"]),
            recount=self.tok.count(text),
            budget_tokens=int(ctx["budget_tokens"]),
            ms=ms,
        )
        if run.track_names:
            record.paths_seen = len(run.paths_seen)
            record.paths_kept = len(_kept(run.paths_seen, text))
            record.ids_seen = len(run.ids_seen)
            record.ids_kept = len(_kept(run.ids_seen, text))
        if timed:
            self.tally.lat.rehydrate.append(ms)
            self.tally.rehydrations.append(record)
        return text


async def _replay(driver: Driver, trajectories: Sequence[Trajectory]) -> None:
    for index, traj in enumerate(trajectories):
        run_id = f"traj-{index:02d}-{re.sub(r'[^A-Za-z0-9_.-]', '-', traj.name)}"[:100]
        run = await driver.start(run_id, traj.objective, "replay", names=True)
        for step in traj.steps:
            await driver.step(run, step)
        final = await driver.rehydrate(run)
        report = RunReport(
            name=traj.name,
            run_id=run_id,
            objective_source=traj.objective_source,
            steps=run.head_seq,
            checkpoints=run.checkpoints,
            raw_tokens=run.cum_tokens[-1],
            final_tokens=driver.tally.rehydrations[-1].tokens,
            peak_tokens=max(r.tokens for r in driver.tally.rehydrations if r.run_id == run_id),
        )
        outside_paths = {p for p in run.paths_seen if not _occurs(p, traj.objective)}
        outside_ids = {n for n in run.ids_seen if not _occurs(n, traj.objective)}
        report.paths = len(run.paths_seen)
        report.paths_final = len(_kept(run.paths_seen, final))
        report.paths_outside_objective = len(outside_paths)
        report.paths_outside_objective_final = len(_kept(outside_paths, final))
        report.ids = len(run.ids_seen)
        report.ids_final = len(_kept(run.ids_seen, final))
        report.ids_outside_objective = len(outside_ids)
        report.ids_outside_objective_final = len(_kept(outside_ids, final))
        driver.tally.runs.append(report)


def _cycle(trajectories: Sequence[Trajectory]) -> list[TrajStep]:
    return [step for traj in trajectories for step in traj.steps]


async def _latency(driver: Driver, steps: Sequence[TrajStep], pairs: int) -> LoopRun:
    run = await driver.start(
        "bench-latency",
        "Latency: replay the SWE-agent trajectories' steps cyclically.",
        "latency",
        names=False,
    )
    for i in range(pairs):
        await driver.step(run, steps[i % len(steps)])
    await driver.rehydrate(run)
    return run


async def _minimal(driver: Driver, pairs: int) -> None:
    run = await driver.start(
        "bench-minimal", "Latency: steps of a few bytes.", "minimal", names=False
    )
    for _ in range(pairs):
        await driver.minimal_step(run)


async def _warm_up(driver: Driver, steps: Sequence[TrajStep]) -> None:
    """Untimed calls first: imports, caches and the SQLite page cache warm up."""
    run = await driver.start("bench-warmup", "Warm-up (not measured).", "warmup", names=False)
    for i in range(_WARMUP_PAIRS):
        await driver.step(run, steps[i % len(steps)], timed=False)
    await driver.rehydrate(run, timed=False)


# -- seeding (straight into the SQLite file, before the server starts) -------------------


async def _seed(
    settings: Settings, run_id: str, steps: Sequence[TrajStep], count: int, budget: int | None
) -> Seeded:
    store = make_store(settings)
    await store.open()
    try:
        tenant = Tenant(settings.tenant)
        episodes = Episodes(store, HeuristicTokenizer(), settings)
        await episodes.start_run(
            tenant,
            f"Scale: {count:,} SWE-agent steps replayed cyclically (seeded).",
            run_id=run_id,
            budget_tokens=budget,
        )
        drafts = [s.draft() for s in steps]
        checkpoints = 0
        start = time.perf_counter()
        for i in range(count):
            ack = await episodes.record_step(tenant, run_id, drafts[i % len(drafts)])
            if ack.checkpoint_due:
                await episodes.checkpoint(tenant, run_id, CheckpointPatch())
                checkpoints += 1
            if (i + 1) % 10_000 == 0:
                _progress(f"seeded {i + 1:,}/{count:,} steps of {run_id}")
        seconds = time.perf_counter() - start
        run = await store.get_run(tenant, RunId(run_id))
        return Seeded(run_id, run.step_count, checkpoints, run.head_tokens, seconds)
    finally:
        await store.close()


async def _scale(
    driver: Driver, seeded: Sequence[Seeded], calls: int
) -> dict[str, list[Rehydration]]:
    """Interleaved rehydrates of the seeded runs (order alternating per round)."""
    out: dict[str, list[Rehydration]] = {s.run_id: [] for s in seeded}
    for i in range(_SCALE_WARMUP_CALLS + calls):
        order = list(seeded) if i % 2 == 0 else list(reversed(seeded))
        for s in order:
            ctx, ms = await driver.client.call("rehydrate", {"run_id": s.run_id})
            text = str(ctx["context"])
            if i >= _SCALE_WARMUP_CALLS:
                out[s.run_id].append(
                    Rehydration(
                        group=f"scale-{s.steps}",
                        run_id=s.run_id,
                        head_seq=s.steps,
                        raw_tokens=s.head_tokens,
                        tokens=int(ctx["tokens"]),
                        recount=driver.tok.count(text),
                        budget_tokens=int(ctx["budget_tokens"]),
                        ms=ms,
                    )
                )
    return out


# -- orchestration -------------------------------------------------------------------------


def _progress(message: str) -> None:
    sys.stderr.write(f"bench loop: {message}\n")
    sys.stderr.flush()


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or ``exc`` itself."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _server_env(
    store_url: str, tenant: Tenant, data_dir: Path, extra: Sequence[str]
) -> dict[str, str]:
    env = {
        "MCP_CHECKPOINT_DATA_DIR": str(data_dir),
        "MCP_CHECKPOINT_STORE_URL": store_url,
        "MCP_CHECKPOINT_TENANT": tenant,
        "MCP_CHECKPOINT_LOG_LEVEL": "WARNING",
    }
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BenchError(f"--server-env wants KEY=VALUE, got {item!r}")
        env[key] = value
    return env


async def _verify_store(settings: Settings) -> dict[str, Any]:
    """After the server exits: the store holds what the benchmark wrote."""
    store = make_store(settings)
    await store.open()
    try:
        runs = await store.list_runs(
            Tenant(settings.tenant), status=None, limit=10_000, offset=0
        )
        return {"runs": len(runs), "steps": sum(r.step_count for r in runs)}
    finally:
        await store.close()


async def _bench(args: argparse.Namespace, profile: Profile) -> dict[str, Any]:
    started = time.perf_counter()
    trajectories = load_trajectories(args.data)
    steps = _cycle(trajectories)
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="mcp-checkpoint-bench-") as tmp:
        data_dir = Path(tmp)
        db = data_dir / "bench.db"
        store_url = args.store_url or f"sqlite:///{db}"
        # A given store may hold earlier benchmarks' runs: this one writes a tenant of its own.
        tenant = Tenant(f"{TENANT}-{uuid.uuid4().hex[:8]}") if args.store_url else TENANT
        env = _server_env(store_url, tenant, data_dir, args.server_env)
        times_path = data_dir / "server-times.json"
        if args.server_times:
            env["BENCH_SERVER_TIMES"] = str(times_path)
        # Seeding needs no per-commit fsync; the server keeps its own (default) setting.
        seed_settings = Settings(
            data_dir=data_dir,
            store_url=store_url,
            tenant=tenant,
            sqlite=SqliteSettings(synchronous="NORMAL"),
        )
        seeded: list[Seeded] = []
        for count in (profile.scale_small, profile.scale_large):
            _progress(f"seeding a {count:,}-step run into {mask_url(store_url)}")
            seeded.append(await _seed(seed_settings, f"scale-{count}", steps, count, args.budget))
        errlog_path = data_dir / "server-stderr.log"
        try:
            with errlog_path.open("w", encoding="utf-8") as errlog:
                async with spawn_server(env, errlog, noop=True) as client:
                    driver = Driver(client, tally, args.budget)
                    _progress("server up; warming up")
                    await _warm_up(driver, steps)
                    _progress(f"replaying {len(trajectories)} trajectories")
                    await _replay(driver, trajectories)
                    _progress(f"{profile.latency_pairs} more record_step/noop pairs")
                    latency_run = await _latency(driver, steps, profile.latency_pairs)
                    _progress(f"{profile.latency_pairs} record_step/noop pairs of minimal steps")
                    await _minimal(driver, profile.latency_pairs)
                    _progress(f"rehydrate at scale ({profile.scale_calls} calls each)")
                    scale = await _scale(driver, seeded, profile.scale_calls)
        except Exception as exc:
            # The client's task groups wrap what went wrong: our own BenchError (a tool
            # error) passes as it is; anything else (the server died, the transport broke)
            # is reported with the end of the server's stderr.
            leaves = _leaves(exc)
            own = [e for e in leaves if isinstance(e, BenchError)]
            if own:
                raise own[0] from exc
            tail = errlog_path.read_text(encoding="utf-8")[-2000:] if errlog_path.exists() else ""
            what = "; ".join(repr(e) for e in leaves)
            raise BenchError(f"the server failed ({what}); its stderr ends with:\n{tail}") from exc
        if args.server_times:
            if not times_path.exists():
                raise BenchError("the server wrote no call times")
            server_times = json.loads(times_path.read_text(encoding="utf-8"))
            tally.server_ms = {name: [t * 1000.0 for t in values]
                               for name, values in server_times.items()}
        stored = await _verify_store(seed_settings)
        if args.store_url:
            stored |= {"url": mask_url(store_url), "tenant": tenant}
        else:
            stored |= {"url": "sqlite:///<tmp>/bench.db", "file_bytes": db.stat().st_size}
    return _report(
        args,
        profile,
        trajectories,
        tally,
        seeded,
        scale,
        latency_run,
        stored,
        env,
        time.perf_counter() - started,
    )


def main(args: argparse.Namespace) -> int:
    """Run the benchmark: print the table (and write JSON with ``--json``). Exit code 0
    whatever the targets say; 1 when the benchmark itself could not run."""
    profile = QUICK if args.quick else FULL
    try:
        report = anyio.run(_bench, args, profile)
    except (BenchError, CheckpointError) as exc:
        sys.stderr.write(f"mcp-checkpoint bench loop: {exc}\n")
        return 1
    emit(render(report), report, args.json)
    return 0
