"""An agent loop that outlives its context window, with a scripted fake model (offline).

The task: migrate N modules, three tool calls each (read, edit, test). The "model" keeps no
memory of its own between episodes: each episode starts from ``cp.context()`` alone, reads
where it stands from the checkpoint it wrote, and works until the checkpointer says a
checkpoint is due. Then it distils its progress into a checkpoint and the next episode
begins — a fresh, bounded context, however long the task runs.

Run it from a checkout:  python examples/long_task.py --modules 400 --budget 2000
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from mcp_checkpoint.checkpointer import Checkpointer, TriggerInput

NEXT = re.compile(r"continue with module (\d+)")


class FakeModel:
    """Decides the next tool call from what it can see: the episode's context plus the
    calls it made in this episode."""

    def __init__(self, context: str, total: int) -> None:
        found = NEXT.findall(context)
        self.module = int(found[-1]) if found else 0  # the checkpoint's next action
        self.total = total
        self.phase = 0

    def done(self) -> bool:
        return self.module >= self.total

    def act(self) -> tuple[str, dict[str, str], str, str]:
        """(tool, input, output, status) of the next call, run against a fake workspace."""
        path = f"src/pkg/module_{self.module:04d}.py"
        if self.phase == 0:
            call = ("read_file", {"path": path}, f"def handler_{self.module}(): ...\n" * 8, "ok")
        elif self.phase == 1:
            call = ("edit_file", {"path": path, "replace": "handler", "with": "endpoint"},
                    "1 replacement", "ok")
        else:
            call = ("bash", {"cmd": f"pytest tests/test_module_{self.module:04d}.py"},
                    f"tests/test_module_{self.module:04d}.py ... 3 passed", "ok")
        self.phase += 1
        if self.phase == 3:
            self.phase, self.module = 0, self.module + 1
        return call

    def distil(self) -> dict[str, list[str]]:
        """What the model writes into the checkpoint: where it stands, exactly."""
        return {
            "progress": [f"modules 0-{self.module - 1} migrated and tested"],
            "next_actions": [f"continue with module {self.module}"],
        }


def every_100_steps(step: TriggerInput) -> str | None:
    """A custom trigger: checkpoint at least every 100 steps, whatever the server says."""
    return "every 100 steps" if step.ack.seq % 100 == 0 else None


def run(modules: int, budget: int, store_url: str) -> dict[str, object]:
    """Run the whole task; returns what happened (contexts, episodes, steps)."""
    contexts: list[str] = []
    episodes = 0
    with Checkpointer.open(
        objective=f"Rename handler to endpoint in {modules} modules, with tests passing",
        budget_tokens=budget,
        store_url=store_url,
        triggers=[every_100_steps],
    ) as cp:
        context = cp.context()
        while True:
            contexts.append(context)
            episodes += 1
            model = FakeModel(context, modules)  # a fresh model: nothing but the context
            if model.done():
                break
            while not model.done() and not cp.should_checkpoint():
                tool, arguments, output, status = model.act()
                cp.record(tool, input=arguments, output=output, status=status)
            cp.checkpoint(model.distil())
            context = cp.context()
        steps = cp.last_ack.seq if cp.last_ack else 0
        cp.set_status("completed")
    return {"episodes": episodes, "steps": steps, "contexts": contexts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", type=int, default=400)
    parser.add_argument("--budget", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        out = run(args.modules, args.budget, f"sqlite:///{Path(folder) / 'run.db'}")
    contexts = out["contexts"]
    if not isinstance(contexts, list):
        raise TypeError("run() returns its contexts as a list")
    print(f"{out['steps']} steps in {out['episodes']} episodes; "
          f"longest context {max(len(c) for c in contexts)} characters")


if __name__ == "__main__":
    main()
