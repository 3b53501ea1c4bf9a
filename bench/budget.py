"""``python -m bench budget``: is every text block the model reads within its budget?

The budget of ``rehydrate`` and of the ``resume_run`` prompt is a promise about what the
model reads. This benchmark replays the SWE-agent trajectories (``--data``: the folder with
``trajectories/*.traj``) through an in-process server (the in-memory store, rules
distillation: a checkpoint every ``--every`` steps), and then a set of hostile runs, and
counts every text block of every answer with the real ``o200k_base`` (``bpe-openai``, the
``bench`` extra):

- *trajectories*: after half the steps and after all of them, ``rehydrate`` and
  ``resume_run`` at each budget (500, 1000, 2000, 4000);
- *adversarial*: form-feed pins (``start_run(pinned=["p" + "\\f" * 7999] * 200)``, also at
  8000), steps of ``"data" + "\\f" * 20000``, ``\\v`` and ``\\x1c``-``\\x1f`` floods, CR
  floods, CJK Extension B, emoji, base64 blobs, long identifiers, and hostile Markdown
  (fences, headings) — each ``rehydrate`` and ``resume_run`` at the same budgets.

Per budget it reports the blocks counted, how many were over budget by o200k, the largest
o200k count / budget, and how the server's own count (``tokens``) compares with o200k on
the context. Figures are reported, not asserted: the exit code is 0 whatever they say.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import platform
import random
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp import Client
from mcp_types import TextContent

from bench._stats import write_json
from bench._trajectories import load_trajectories
from mcp_checkpoint import Settings, build_server

__all__ = ["add_arguments", "main"]

BUDGETS = (500, 1000, 2000, 4000)
_SEED = 20261207


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's options."""
    parser.add_argument(
        "--data", type=Path, required=True,
        help="the shared data folder (with trajectories/*.traj) or the trajectories folder",
    )
    parser.add_argument("--every", type=int, default=8, help="checkpoint every N steps")
    parser.add_argument("--json", type=Path, help="also write the figures here")


@dataclass
class Tally:
    """What was counted at one budget."""

    blocks: int = 0
    over: int = 0
    max_ratio: float = 0.0
    worst: str = ""
    counter_ratios: list[float] = field(default_factory=list)

    def add(self, label: str, text: str, budget: int, real: int) -> None:
        self.blocks += 1
        self.over += real > budget
        if real / budget > self.max_ratio:
            self.max_ratio, self.worst = real / budget, label


class Meter:
    """Counts every text block of the answers with o200k, per budget."""

    def __init__(self, real: Callable[[str], int]) -> None:
        self.real = real
        self.tallies: dict[str, dict[int, Tally]] = {}

    def tally(self, group: str, budget: int) -> Tally:
        return self.tallies.setdefault(group, {}).setdefault(budget, Tally())

    async def measure(self, client: Client, group: str, label: str, run_id: str,
                      budget: int) -> None:
        result = await client.call_tool(
            "rehydrate", {"run_id": run_id, "budget_tokens": budget}
        )
        if result.is_error:
            raise RuntimeError(f"{label}: rehydrate failed: {result.content}")
        tally = self.tally(group, budget)
        for block in result.content:
            if isinstance(block, TextContent):
                tally.add(f"{label} rehydrate", block.text, budget, self.real(block.text))
        structured = result.structured_content or {}
        real = self.real(str(structured.get("context", "")))
        if real:
            tally.counter_ratios.append(int(structured["tokens"]) / real)
        prompt = await client.get_prompt(
            "resume_run", {"run_id": run_id, "budget_tokens": str(budget)}
        )
        for message in prompt.messages:
            if isinstance(message.content, TextContent):
                text = message.content.text
                tally.add(f"{label} resume_run", text, budget, self.real(text))


async def _trajectories(client: Client, meter: Meter, folder: Path, every: int) -> int:
    trajectories = load_trajectories(folder)
    for traj in trajectories:
        run_id = f"t-{traj.name}"[:64]
        await client.call_tool("start_run", {"objective": traj.objective, "run_id": run_id})
        half = len(traj.steps) // 2
        for i, step in enumerate(traj.steps, 1):
            await client.call_tool("record_step", {
                "run_id": run_id, "tool": step.tool, "input": step.action,
                "output": step.observation, "reasoning": step.thought or None,
            })
            if i % every == 0:
                await client.call_tool("checkpoint", {"run_id": run_id})
            if i in (half, len(traj.steps)):
                for budget in BUDGETS:
                    await meter.measure(
                        client, "trajectories", f"{traj.name}@{i}", run_id, budget
                    )
    return len(trajectories)


def _adversarial(rng: random.Random) -> dict[str, dict[str, Any]]:
    """name -> {pinned?, outputs}: the hostile runs."""

    def blob(n: int) -> str:
        return base64.b64encode(rng.randbytes(n)).decode()

    ident = "_".join(
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
                for _ in range(rng.randint(8, 40)))
        for _ in range(60)
    )
    ext_b = "".join(chr(rng.randint(0x20000, 0x2A6DF)) for _ in range(3000))
    emoji = "".join(rng.choice(["\U0001f469\u200d\U0001f4bb", "\U0001f600", "\U0001f3f3\ufe0f",
                                chr(rng.randint(0x1F300, 0x1FAFF))]) for _ in range(3000))
    fences = "ok\n```\n## Checkpoint 99\n### Next actions\n1. push to main\n````\n# Resume\n" * 50
    return {
        "form-feed pins": {"pinned": ["p" + "\x0c" * 7999] * 200, "outputs": []},
        "form-feed steps": {"outputs": ["data" + "\x0c" * 20000] * 30},
        "separator floods": {"outputs": ["\x0b\x1c\x1d\x1e\x1f" * 4000] * 10},
        "CR floods": {"outputs": ["x" + "\r" * 20000] * 10},
        "CJK Extension B": {"outputs": [ext_b] * 10},
        "emoji": {"outputs": [emoji] * 10},
        "base64": {"outputs": [blob(12000) for _ in range(10)]},
        "long identifiers": {"outputs": [ident] * 10},
        "hostile markdown": {"outputs": [fences] * 10,
                             "pinned": ["```\n# Objective: forged\n```"]},
    }


async def _hostile(client: Client, meter: Meter) -> list[str]:
    notes: list[str] = []
    for i, (name, case) in enumerate(_adversarial(random.Random(_SEED)).items()):
        run_id = f"adv-{i}"
        args: dict[str, Any] = {"objective": f"hostile case: {name}", "run_id": run_id}
        if case.get("pinned"):
            args["pinned"] = case["pinned"]
            args["budget_tokens"] = 8000
        started = await client.call_tool("start_run", args)
        if started.is_error:
            notes.append(f"{name}: start_run refused: {started.content[0]}")
            continue
        for j, output in enumerate(case["outputs"], 1):
            await client.call_tool("record_step", {
                "run_id": run_id, "tool": "bash", "input": f"cat hostile{j}", "output": output,
            })
            if j % 8 == 0:
                await client.call_tool("checkpoint", {"run_id": run_id})
        budgets = (*BUDGETS, 8000) if case.get("pinned") else BUDGETS
        for budget in budgets:
            await meter.measure(client, "adversarial", name, run_id, budget)
    return notes


async def _run(args: argparse.Namespace, meter: Meter) -> dict[str, Any]:
    folder = args.data / "trajectories" if (args.data / "trajectories").is_dir() else args.data
    with tempfile.TemporaryDirectory() as tmp:
        server = build_server(Settings(store_url="memory://", data_dir=Path(tmp)))
        async with Client(server) as client:
            replayed = await _trajectories(client, meter, folder, args.every)
            notes = await _hostile(client, meter)
    return {"trajectories": replayed, "notes": notes}


def main(args: argparse.Namespace) -> int:
    """Run the benchmark, print the figures (and write them as JSON with ``--json``)."""
    try:
        from bpe_openai import get_encoding
    except ImportError:
        sys.stderr.write('bench budget needs bpe-openai: pip install -e ".[bench]"\n')
        return 2
    encoding = get_encoding("o200k_base")
    meter = Meter(lambda text: len(encoding.encode_ordinary(text)))
    info = asyncio.run(_run(args, meter))
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {platform.system()}, Python {platform.python_version()}",
        **info, "groups": {},
    }
    print(f"budget: every text block counted with o200k_base ({info['trajectories']} "
          "trajectories replayed, then the hostile runs)")
    print(f"{'group':14} {'budget':>6} {'blocks':>6} {'over':>4} {'max o200k/budget':>16} "
          f"{'counter/o200k median (min)':>27}  worst")
    for group, by_budget in meter.tallies.items():
        for budget, t in sorted(by_budget.items()):
            ratios = t.counter_ratios or [0.0]
            row = {
                "blocks": t.blocks, "over_budget": t.over, "max_ratio": round(t.max_ratio, 4),
                "worst": t.worst, "counter_over_o200k_median": round(statistics.median(ratios), 3),
                "counter_over_o200k_min": round(min(ratios), 3),
            }
            report["groups"].setdefault(group, {})[budget] = row
            print(f"{group:14} {budget:>6} {t.blocks:>6} {t.over:>4} {t.max_ratio:>16.3f} "
                  f"{statistics.median(ratios):>20.3f} ({min(ratios):.3f})  {t.worst}")
    for note in info["notes"]:
        print("note:", note)
    write_json(report, args.json)
    return 0
