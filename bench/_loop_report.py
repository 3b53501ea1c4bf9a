"""What ``bench loop`` records (latencies, rehydrations, replayed runs, seeded runs), the
targets it reports against, and its report: JSON, and the text ``render`` prints.
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench._stats import percentile, ratio, summary
from bench._trajectories import Trajectory
from mcp_checkpoint import __version__

__all__ = ["FULL", "QUICK", "Profile", "Tally", "render"]

# Targets (DESIGN.md / the benchmark's brief). Reported, never asserted.
TARGET_RECORD_VS_NOOP_P50 = 1.5
TARGET_SCALE_RATIO = 1.5
TARGET_COMPRESSION = 10.0
TARGET_VIOLATIONS = 0
# Runs at least this long are where compression is judged (shorter ones may fit whole).
COMPRESSION_MIN_STEPS = 1000


@dataclass(frozen=True)
class Profile:
    """How much work a run of the benchmark does."""

    name: Literal["full", "quick"]
    latency_pairs: int
    scale_small: int
    scale_large: int
    scale_calls: int


FULL = Profile("full", latency_pairs=1000, scale_small=1_000, scale_large=100_000, scale_calls=30)
QUICK = Profile("quick", latency_pairs=150, scale_small=1_000, scale_large=10_000, scale_calls=20)


@dataclass
class Latencies:
    """Milliseconds per call, by tool, as the client saw them."""

    record_step: list[float] = field(default_factory=list)
    noop: list[float] = field(default_factory=list)
    # The same pairing with a minimal step: what recording costs beyond the payload's work.
    record_minimal: list[float] = field(default_factory=list)
    noop_minimal: list[float] = field(default_factory=list)
    checkpoint: list[float] = field(default_factory=list)
    rehydrate: list[float] = field(default_factory=list)


@dataclass
class Rehydration:
    """One rehydrate: its size against the budget and the raw steps it stands for."""

    group: str
    run_id: str
    head_seq: int
    raw_tokens: int
    tokens: int
    recount: int
    budget_tokens: int
    ms: float
    paths_seen: int = 0
    paths_kept: int = 0
    ids_seen: int = 0
    ids_kept: int = 0


@dataclass
class RunReport:
    """One replayed trajectory."""

    name: str
    run_id: str
    objective_source: str
    steps: int
    checkpoints: int = 0
    raw_tokens: int = 0
    final_tokens: int = 0
    peak_tokens: int = 0
    paths: int = 0
    paths_final: int = 0
    paths_outside_objective: int = 0
    paths_outside_objective_final: int = 0
    ids: int = 0
    ids_final: int = 0
    ids_outside_objective: int = 0
    ids_outside_objective_final: int = 0


@dataclass
class Tally:
    """What the whole benchmark observed."""

    lat: Latencies = field(default_factory=Latencies)
    rehydrations: list[Rehydration] = field(default_factory=list)
    runs: list[RunReport] = field(default_factory=list)
    checkpoint_sources: Counter[str] = field(default_factory=Counter)
    checkpoint_notes: Counter[str] = field(default_factory=Counter)
    due_reasons: Counter[str] = field(default_factory=Counter)
    ack_mismatches: int = 0
    # ``--server-times``: ms inside the server by tool (and "(minimal)"), else empty.
    server_ms: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class LoopRun:
    """A run driven through the client: its raw tokens by seq and what is covered."""

    run_id: str
    group: str
    cum_tokens: list[int] = field(default_factory=lambda: [0])
    covered_seq: int = 0
    checkpoints: int = 0
    paths_seen: set[str] = field(default_factory=set)
    ids_seen: set[str] = field(default_factory=set)
    track_names: bool = False

    @property
    def head_seq(self) -> int:
        return len(self.cum_tokens) - 1


@dataclass(frozen=True)
class Seeded:
    """A long run written through the store API."""

    run_id: str
    steps: int
    checkpoints: int
    head_tokens: int
    seconds: float


def _share(kept: int, total: int) -> float | None:
    return round(kept / total, 4) if total else None


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _compression(records: Sequence[Rehydration]) -> dict[str, Any]:
    """Raw tokens of the steps the run holds at its last rehydrate vs its peak context."""
    last = max(records, key=lambda r: r.head_seq)
    peak = max(r.tokens for r in records)
    return {
        "steps": last.head_seq,
        "raw_tokens": last.raw_tokens,
        "peak_context_tokens": peak,
        "ratio": ratio(last.raw_tokens, peak),
    }


def _report(
    args: argparse.Namespace,
    profile: Profile,
    trajectories: Sequence[Trajectory],
    tally: Tally,
    seeded: Sequence[Seeded],
    scale: dict[str, list[Rehydration]],
    latency_run: LoopRun,
    stored: dict[str, Any],
    env: dict[str, str],
    seconds: float,
) -> dict[str, Any]:
    lat = tally.lat
    record, noop = summary(lat.record_step), summary(lat.noop)
    record_minimal, noop_minimal = summary(lat.record_minimal), summary(lat.noop_minimal)
    small, large = seeded
    small_ms = [r.ms for r in scale[small.run_id]]
    large_ms = [r.ms for r in scale[large.run_id]]
    scale_ratio = ratio(percentile(large_ms, 50), percentile(small_ms, 50))

    all_rehydrations = tally.rehydrations + [r for rs in scale.values() for r in rs]
    violations = sum(1 for r in all_rehydrations if r.tokens > r.budget_tokens)
    recount_violations = sum(1 for r in all_rehydrations if r.recount > r.budget_tokens)
    mismatched_counts = sum(1 for r in all_rehydrations if r.recount != r.tokens)

    replay = [r for r in tally.rehydrations if r.group == "replay"]
    per_run_ratios = [ratio(r.raw_tokens, r.final_tokens) or 0.0 for r in tally.runs]
    long_runs: dict[str, dict[str, Any]] = {}
    latency_records = [r for r in tally.rehydrations if r.run_id == latency_run.run_id]
    for name, records in (
        ("latency_run", latency_records),
        (f"scale_{small.steps}", scale[small.run_id]),
        (f"scale_{large.steps}", scale[large.run_id]),
    ):
        long_runs[name] = _compression(records)
    judged = [v for v in long_runs.values() if v["steps"] >= COMPRESSION_MIN_STEPS]
    worst_long = min((v["ratio"] for v in judged if v["ratio"] is not None), default=None)

    def survival(kind: Literal["paths", "ids"]) -> dict[str, Any]:
        total = sum(getattr(r, kind) for r in tally.runs)
        final = sum(getattr(r, f"{kind}_final") for r in tally.runs)
        outside = sum(getattr(r, f"{kind}_outside_objective") for r in tally.runs)
        outside_final = sum(getattr(r, f"{kind}_outside_objective_final") for r in tally.runs)
        seen = [
            getattr(r, f"{kind}_kept") / getattr(r, f"{kind}_seen")
            for r in replay
            if getattr(r, f"{kind}_seen")
        ]
        return {
            "distinct": total,
            "final_share": _share(final, total),
            "final_share_outside_objective": _share(outside_final, outside),
            "outside_objective": outside,
            "mean_share_over_rehydrates": _mean(seen),
            "rehydrates": len(seen),
        }

    distilled = dict(tally.checkpoint_sources)
    targets = [
        _target(
            "record_step p50 / noop p50",
            "<= 1.5x",
            ratio(record["p50"], noop["p50"]),
            lambda v: v <= TARGET_RECORD_VS_NOOP_P50,
        ),
        _target(
            f"rehydrate median {large.steps:,} / {small.steps:,} steps",
            "<= 1.5x",
            scale_ratio,
            lambda v: v <= TARGET_SCALE_RATIO,
        ),
        _target(
            f"compression raw / peak context (runs >= {COMPRESSION_MIN_STEPS:,} steps)",
            ">= 10x",
            worst_long,
            lambda v: v >= TARGET_COMPRESSION,
        ),
        _target(
            "contexts over budget",
            "== 0",
            violations + recount_violations,
            lambda v: v == TARGET_VIOLATIONS,
        ),
    ]
    return {
        "benchmark": "loop",
        "version": __version__,
        "profile": profile.name,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "data": str(args.data),
        "seconds": round(seconds, 1),
        "server": {
            "command": f"{Path(sys.executable).name} -m mcp_checkpoint serve",
            "transport": "stdio",
            "store": stored,
            "env": {
                k: ("<tmp>" if k == "MCP_CHECKPOINT_DATA_DIR" else v)
                for k, v in env.items()
                if k != "MCP_CHECKPOINT_STORE_URL"
            },
        },
        "replay": {
            "trajectories": len(trajectories),
            "steps": sum(len(t.steps) for t in trajectories),
            "objectives": dict(Counter(t.objective_source for t in trajectories)),
            "checkpoints": sum(r.checkpoints for r in tally.runs),
            "rehydrates": len(replay),
        },
        "distillation": {
            "how": "checkpoint called with no content; the client offers no sampling, so the "
            "server distils by its deterministic rules",
            "sources": distilled,
            "notes": dict(tally.checkpoint_notes),
            "due_reasons": dict(tally.due_reasons),
        },
        "latency_ms": {
            "record_step": record,
            "noop": noop,
            "record_step_minimal": record_minimal,
            "noop_minimal": noop_minimal,
            "checkpoint": summary(lat.checkpoint),
            "rehydrate": summary(lat.rehydrate),
            "pairing": "each record_step is paired with a noop carrying the same payload, "
            "alternating which goes first; the minimal pairs carry a step of a few bytes "
            "(the store's own cost per step: statements, commit and, with synchronous=FULL, "
            "its flush to disk)",
        },
        "server_ms": {name: summary(values) for name, values in sorted(tally.server_ms.items())},
        "record_vs_noop": {
            "p50_ratio": ratio(record["p50"], noop["p50"]),
            "p99_ratio": ratio(record["p99"], noop["p99"]),
            "minimal_p50_ratio": ratio(record_minimal["p50"], noop_minimal["p50"]),
            "minimal_p99_ratio": ratio(record_minimal["p99"], noop_minimal["p99"]),
        },
        "scale": {
            "budget_tokens": scale[large.run_id][0].budget_tokens,
            "calls_each": profile.scale_calls,
            "seeding": "through the store API into the same store (SQLite: synchronous=NORMAL) "
            "before the server started; checkpoints taken whenever due",
            "runs": [
                {
                    "steps": s.steps,
                    "checkpoints": s.checkpoints,
                    "head_tokens": s.head_tokens,
                    "seed_seconds": round(s.seconds, 1),
                    "rehydrate_ms": summary([r.ms for r in scale[s.run_id]]),
                    "context_tokens": scale[s.run_id][-1].tokens,
                }
                for s in seeded
            ],
            "median_ratio": scale_ratio,
        },
        "compression": {
            "replay_runs": {
                "raw_tokens_total": sum(r.raw_tokens for r in tally.runs),
                "peak_context_tokens": max((r.peak_tokens for r in tally.runs), default=0),
                "final_ratio_median": round(percentile(per_run_ratios, 50), 3),
                "final_ratio_min": round(min(per_run_ratios), 3),
                "final_ratio_max": round(max(per_run_ratios), 3),
                "note": "short trajectories whose raw steps fit within the budget are kept "
                "almost whole; compression only shows once a run outgrows its budget",
            },
            "long_runs": long_runs,
        },
        "budget": {
            "rehydrates": len(all_rehydrations),
            "violations": violations,
            "recount_violations": recount_violations,
            "recount_differs": mismatched_counts,
            "working_tokens_mismatches": tally.ack_mismatches,
        },
        "survival": {
            "extractor": "the benchmark's own regexes over each step's action + observation",
            "paths": survival("paths"),
            "identifiers": survival("ids"),
        },
        "runs": [vars(r) for r in tally.runs],
        "targets": targets,
    }


def _target(name: str, goal: str, value: float | None, ok: Any) -> dict[str, Any]:
    return {
        "name": name,
        "target": goal,
        "value": value,
        "pass": bool(value is not None and ok(value)),
    }


def _pct(value: float | None) -> str:
    return "  n/a" if value is None else f"{value * 100:5.1f}%"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def render(report: dict[str, Any]) -> str:
    """The human-readable table of a report."""
    lines: list[str] = []
    add = lines.append
    rp, lat, srv = report["replay"], report["latency_ms"], report["server"]
    add(
        f"mcp-checkpoint {report['version']} bench loop ({report['profile']}) — "
        f"{rp['trajectories']} trajectories, {rp['steps']} steps, {report['seconds']} s"
    )
    sync = srv["env"].get("MCP_CHECKPOINT_SQLITE__SYNCHRONOUS", "FULL (default)")
    url = srv["store"]["url"]
    kind = f"SQLite store (synchronous={sync})" if url.startswith("sqlite") else f"store {url}"
    add(
        f"server: {srv['command']} over stdio; {kind}, "
        f"{srv['store']['runs']} runs / {srv['store']['steps']:,} steps in it afterwards"
    )
    dist = report["distillation"]
    add(f"objectives: {', '.join(f'{v} from the {k}' for k, v in rp['objectives'].items())}")
    add(
        f"checkpoints: called with NO content; the server distilled them by its rules "
        f"(sources {dist['sources']}; due: {dist['due_reasons']})"
    )
    add("")
    add(f"{'latency (ms, client-side)':<34}{'n':>6}{'p50':>9}{'p99':>9}")
    for name, label in (
        ("record_step", "record_step"),
        ("noop", "noop (same payload)"),
        ("record_step_minimal", "record_step, minimal step"),
        ("noop_minimal", "noop (same minimal payload)"),
        ("checkpoint", "checkpoint (rules)"),
        ("rehydrate", "rehydrate"),
    ):
        s = lat[name]
        p50 = "n/a" if s["p50"] is None else f"{s['p50']:.2f}"
        p99 = "n/a" if s["p99"] is None else f"{s['p99']:.2f}"
        add(f"  {label:<32}{s['n']:>6}{p50:>9}{p99:>9}")
    rv = report["record_vs_noop"]
    add(f"  {'record_step / noop':<32}{'':>6}{_x(rv['p50_ratio']):>9}{_x(rv['p99_ratio']):>9}")
    add(f"  {'minimal record_step / noop':<32}{'':>6}{_x(rv['minimal_p50_ratio']):>9}"
        f"{_x(rv['minimal_p99_ratio']):>9}")
    if report["server_ms"]:
        add(f"{'inside the server (ms)':<34}{'n':>6}{'p50':>9}{'p99':>9}")
        for name, s in report["server_ms"].items():
            add(f"  {name:<32}{s['n']:>6}{s['p50']:>9.2f}{s['p99']:>9.2f}")
    add("")
    sc = report["scale"]
    add(
        f"rehydrate at scale (budget {sc['budget_tokens']}, {sc['calls_each']} calls each, "
        f"interleaved; seeded through the store API)"
    )
    for run in sc["runs"]:
        ms = run["rehydrate_ms"]
        add(
            f"  {run['steps']:>8,} steps {run['checkpoints']:>6,} cps  median {ms['p50']:7.2f} ms"
            f"  p99 {ms['p99']:7.2f} ms  context {run['context_tokens']:,} tokens "
            f"(raw {run['head_tokens']:,})"
        )
    add(f"  ratio of medians {_x(sc['median_ratio'])}")
    add("")
    comp = report["compression"]
    rr = comp["replay_runs"]
    add("compression (raw tokens of steps 1..head / peak context tokens)")
    add(
        f"  replayed trajectories: final ratio median {_x(rr['final_ratio_median'])} "
        f"(min {_x(rr['final_ratio_min'])}, max {_x(rr['final_ratio_max'])}); "
        f"raw {rr['raw_tokens_total']:,} tokens in all, peak context {rr['peak_context_tokens']:,}"
    )
    for name, c in comp["long_runs"].items():
        add(
            f"  {name:<22}{c['steps']:>8,} steps  raw {c['raw_tokens']:>12,}  "
            f"peak context {c['peak_context_tokens']:>6,}  {_x(c['ratio'])}"
        )
    b = report["budget"]
    add(
        f"budget: {b['rehydrates']} contexts, {b['violations']} over budget as reported, "
        f"{b['recount_violations']} over on an independent recount; "
        f"working_tokens mismatches {b['working_tokens_mismatches']}"
    )
    add("")
    add("identifier survival (own regexes over actions + observations of the replayed steps)")
    add(
        f"  {'':<13}{'distinct':>9}{'in final':>10}{'(not in objective)':>20}"
        f"{'avg seen-so-far':>17}"
    )
    for key in ("paths", "identifiers"):
        s = report["survival"][key]
        add(
            f"  {key:<13}{s['distinct']:>9}{_pct(s['final_share']):>10}"
            f"{_pct(s['final_share_outside_objective']):>20}"
            f"{_pct(s['mean_share_over_rehydrates']):>17}"
        )
    add("")
    add(f"  {'trajectory':<30}{'steps':>6}{'cps':>4}{'raw':>8}{'ctx':>7}{'paths':>10}{'ids':>10}")
    for r in report["runs"]:
        add(
            f"  {r['name'][:30]:<30}{r['steps']:>6}{r['checkpoints']:>4}{r['raw_tokens']:>8,}"
            f"{r['final_tokens']:>7,}{r['paths_final']:>5}/{r['paths']:<4}"
            f"{r['ids_final']:>5}/{r['ids']:<4}"
        )
    add("")
    add("targets")
    for t in report["targets"]:
        value = t["value"]
        shown = "n/a" if value is None else (f"{value}" if isinstance(value, int) else _x(value))
        add(f"  {t['name']:<58}{t['target']:>9}{shown:>10}  {'PASS' if t['pass'] else 'FAIL'}")
    return "\n".join(lines)
