"""Rehydration: assembling a fresh context for a run, never over its token budget.

Which sections a context has and in what priority, how much of the budget each may take
(objective, checkpoint fields, what the server extracted, memories, steps), how many steps
and memories to read (O(budget), whatever the length of the run), and what was dropped.
``packing`` does the packing itself; ``Episodes`` offers this as ``rehydrate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from mcp_checkpoint.config import Settings
from mcp_checkpoint.core import packing
from mcp_checkpoint.core._limits import Limits
from mcp_checkpoint.core.models import (
    Checkpoint,
    Context,
    DroppedSection,
    Memory,
    MemoryId,
    Run,
    RunId,
    Step,
    Tenant,
)
from mcp_checkpoint.core.ports import Store, Tokenizer
from mcp_checkpoint.core.render import (
    CHECKPOINT_FIELDS,
    block,
    clip_middle,
    render_checkpoint,
    render_memory,
    render_step,
)
from mcp_checkpoint.errors import NotFoundError

__all__ = ["MemorySearch", "Rehydration"]

_STEP_PAGE = 64
_OBJECTIVE_SHARE = 0.2  # of a context's budget the objective keeps (head and tail)
_OBJECTIVE_MIN_TOKENS = 48
_EXTRACTED_SHARE = 0.3  # of a context's budget the server's extracted artifacts take early
_RULES_PROGRESS_SHARE = 0.1  # of a context's budget a rules checkpoint's progress takes early
_MEMORY_SHARE = 0.15  # of a context's budget that memories take before the newest steps
_MEMORY_MIN_TOKENS = 16  # memory candidates fetched: as many as could fill the budget...
_MAX_MEMORIES = 128  # ...up to this many


class MemorySearch:
    """What rehydrate needs from semantic memory (the memory service provides it)."""

    async def relevant(self, tenant: Tenant, query: str, k: int) -> list[Memory]:
        """Up to ``k`` active memories relevant to ``query``, best first."""
        raise NotImplementedError


class Rehydration:
    """The context assembly of ``Episodes`` (its base class): what it reads through the
    store, the tokenizer, the settings and semantic memory."""

    _store: Store
    _tok: Tokenizer
    _settings: Settings
    _limits: Limits
    _memory: MemorySearch | None

    if TYPE_CHECKING:  # ``Episodes`` reads checkpoints (with retention's wording)

        async def latest_checkpoint(self, tenant: Tenant, run: Run) -> Checkpoint | None: ...

        async def get_checkpoint(
            self, tenant: Tenant, run_id: str, checkpoint_id: str
        ) -> Checkpoint: ...

    async def rehydrate(
        self,
        tenant: Tenant,
        run_id: str,
        *,
        checkpoint_id: str | None = None,
        budget_tokens: int | None = None,
        query: str | None = None,
        reserve_tokens: int = 0,
    ) -> Context:
        """A fresh context for the run, never over ``budget_tokens``.

        Packs, in priority order: the objective (cut if it alone exceeds the budget), the
        acceptance criteria and constraints, pinned items, the checkpoint (next actions and
        state first), memories relevant to ``query`` (default: the objective and next
        actions), and the newest steps after the checkpoint. With an older
        ``checkpoint_id`` (time travel), the steps are those between it and the next
        checkpoint. Reads O(budget) rows, whatever the length of the run.

        ``reserve_tokens`` of the budget are left for text the caller wraps around the
        context (a prompt's instructions): the context itself gets the rest.
        """
        run = await self._store.get_run(tenant, RunId(run_id))
        budget = self._limits.budget(
            "budget_tokens", budget_tokens if budget_tokens is not None else run.budget_tokens
        )
        requested = budget
        if reserve_tokens > 0:
            budget = max(budget - reserve_tokens, 1)
        if query is not None:
            self._limits.query("query", query)

        checkpoint: Checkpoint | None
        upper = run.head_seq
        if checkpoint_id is not None:
            checkpoint = await self.get_checkpoint(tenant, run.run_id, checkpoint_id)
            following = await self._store.get_checkpoint_by_number(
                tenant, run.run_id, checkpoint.number + 1
            )
            if following is not None:
                upper = following.through_seq
        else:
            checkpoint = await self.latest_checkpoint(tenant, run)
        floor = checkpoint.through_seq if checkpoint else 0

        specs, items, objective_cut = self._run_items(run, budget)
        if checkpoint is not None:
            specs_cp, items_cp = self._checkpoint_items(checkpoint)
            specs += specs_cp
            items += items_cp

        memories: list[Memory] = []
        if self._memory is not None and self._settings.rehydrate.memories_k > 0:
            terms = query or " ".join(
                [run.objective, *(checkpoint.content.next_actions if checkpoint else [])]
            )
            # As many candidates as could fill the budget: the section takes its share by
            # relevance, and whatever the other sections leave.
            want = max(
                self._settings.rehydrate.memories_k,
                min(budget // _MEMORY_MIN_TOKENS, _MAX_MEMORIES),
            )
            memories = await self._memory.relevant(tenant, terms, want)
        memory_items = []
        for i, memory in enumerate(memories):
            text = render_memory(memory)
            memory_items.append(
                packing.Item("memories", text, memory.memory_id, i, tokens=self._tok.count(text))
            )

        # Count every other item once (pack reuses the counts) to know what steps may fill;
        # memories count up to their share and extracted artifacts not at all (beyond that
        # they only fill what the steps leave).
        items = [
            it if it.tokens is not None else replace(it, tokens=self._tok.count(it.text))
            for it in items
        ]

        def cost(section_items: list[packing.Item]) -> int:
            return sum((it.tokens or 0) + 1 for it in section_items)

        extracted = [it for it in items if it.section == "cp.auto_artifacts"]
        items = [it for it in items if it.section != "cp.auto_artifacts"]
        # The rules write progress, state and errors from the steps' own output: those are
        # no more what a model wrote than the extracted artifacts are.
        by_rules = (
            {"cp.progress", "cp.state", "cp.errors"}
            if checkpoint is not None and checkpoint.source == "rules"
            else set()
        )
        if extracted and self._written_fits(specs, items, budget, by_rules):
            # All a model wrote fits its share: the extracted artifacts (compact paths, ids,
            # URLs) take theirs before the raw steps, and fill before them too.
            specs = [
                replace(spec, share=_EXTRACTED_SHARE) if spec.name == "cp.auto_artifacts"
                else spec
                for spec in specs
            ]
        if by_rules:
            # The rules' progress lines (a count of tools, a step's first output line) fill
            # after the extracted artifacts and the newest steps, not before.
            specs = [
                replace(spec, share=_RULES_PROGRESS_SHARE, fill=2) if spec.name == "cp.progress"
                else spec
                for spec in specs
            ]
        # A section with a share is sure of no more than its share: count that much, so
        # the steps fetched can fill what its overflow would not get.
        shares = {spec.name: spec.share for spec in specs if spec.share is not None}
        used = sum(
            min(cost([it for it in items if it.section == name]), int(budget * shares[name]))
            if name in shares else cost([it for it in items if it.section == name])
            for name in {it.section for it in items}
        ) + min(cost(memory_items), int(budget * _MEMORY_SHARE))
        steps, step_items = await self._step_items(
            tenant, run, floor, upper, max(budget - used, 0), "steps"
        )
        spare = budget - used - cost(step_items)
        if floor > 0 and len(steps) == upper - floor and spare > 0:
            # Every uncovered step was fetched: spare budget goes to the newest steps the
            # checkpoint covers (exact paths and outputs a summary may have lost).
            _, earlier_items = await self._step_items(tenant, run, 0, floor, spare, "earlier")
        else:
            earlier_items = []
        specs.append(
            packing.SectionSpec(
                "memories", "## Relevant memories (most relevant first)", share=_MEMORY_SHARE,
                fill=3,
            )
        )
        if earlier_items:
            specs.append(
                packing.SectionSpec(
                    "earlier",
                    "## Earlier steps (covered by the checkpoint; newest kept)",
                    share=0.0,  # pass two only, after what the server extracted
                    contiguous=True,
                    fill=2,
                )
            )
        specs.append(
            packing.SectionSpec(
                "steps",
                "## Steps since the checkpoint (newest kept; full ledger: "
                f"ledger://{block(run.run_id)})",
                share=0.45,
                contiguous=True,
                fill=1,
            )
        )
        # Sections show in the order of ``specs``; items are in priority order: run,
        # checkpoint, what the server extracted (best first: trimmed before anything a
        # model wrote, kept before raw step output), steps, memories (most relevant
        # first), covered steps.
        items += extracted + step_items + memory_items + earlier_items

        packed = packing.pack(specs, items, budget, self._tok)
        if objective_cut and "objective" not in packed.cut:
            packed.cut.append("objective")
        # Candidates fetched beyond memories_k only fill spare room: leaving them out
        # drops nothing a caller asked for.
        shown_memories = set(packed.included.get("memories", []))
        left_out = [
            it for it in memory_items[: self._settings.rehydrate.memories_k]
            if it.key not in shown_memories
        ]
        packed.dropped.pop("memories", None)
        if left_out:
            packed.dropped["memories"] = (len(left_out), sum(it.tokens or 0 for it in left_out))

        dropped = self._dropped(packed)
        unfetched = (upper - floor) - len(steps)
        if unfetched > 0:
            oldest = steps[-1] if steps else None
            base = await self._cum_tokens_at(tenant, run, floor, checkpoint)
            top = (oldest.cum_tokens - oldest.tokens) if oldest else run.head_tokens
            # One entry for the steps: those fetched but left out join the older ones.
            fetched_out = [d for d in dropped if d.section == "steps"]
            dropped = [d for d in dropped if d.section != "steps"]
            dropped.append(
                DroppedSection(
                    section="steps",
                    items=unfetched + sum(d.items for d in fetched_out),
                    tokens=max(top - base, 0) + sum(d.tokens for d in fetched_out),
                    reason="older than the steps that fit the budget",
                )
            )

        def shown(section: str) -> list[int]:
            return sorted(int(k) for k in packed.included.get(section, []) if k is not None)

        return Context(
            run_id=run.run_id,
            context=packed.text,
            tokens=packed.tokens,
            budget_tokens=requested,
            checkpoint_id=checkpoint.checkpoint_id if checkpoint else None,
            through_seq=floor,
            steps_included=shown("steps"),
            covered_steps_included=shown("earlier"),
            memories_included=[
                MemoryId(str(k)) for k in packed.included.get("memories", []) if k is not None
            ],
            dropped=dropped,
            tokenizer=self._tok.name,
        )

    @staticmethod
    def _written_fits(
        specs: Sequence[packing.SectionSpec],
        items: Sequence[packing.Item],
        budget: int,
        ignore: set[str],
    ) -> bool:
        """Whether every item but the extracted ones, the steps and the ``ignore``d
        sections fits in pass one (each section within its share, all of them within half
        the budget)."""
        spent: dict[str, int] = {}
        for it in items:
            if it.section in ignore:
                continue
            spent[it.section] = spent.get(it.section, 0) + (it.tokens or 0) + 3
        for spec in specs:
            if spec.share is not None and spent.get(spec.name, 0) > spec.share * budget:
                return False
        return sum(spent.values()) <= budget // 2

    def _run_items(
        self, run: Run, budget: int
    ) -> tuple[list[packing.SectionSpec], list[packing.Item], bool]:
        # A long objective keeps its head and tail within a share of a small budget.
        room = max(int(budget * _OBJECTIVE_SHARE), _OBJECTIVE_MIN_TOKENS)
        objective = clip_middle(run.objective, room, self._tok)
        header = (
            f"# Resume: run {block(run.run_id)} ({run.status}, step {run.head_seq}, "
            f"episode {run.episode})\nObjective: {block(objective)}"
        )
        specs = [
            packing.SectionSpec("objective", None),
            packing.SectionSpec("acceptance_criteria", "## Acceptance criteria"),
            packing.SectionSpec("constraints", "## Constraints"),
            packing.SectionSpec("pinned", "## Pinned"),
        ]
        items = [packing.Item("objective", header, "objective", required=True)]
        for name in ("acceptance_criteria", "constraints", "pinned"):
            items += [
                packing.Item(name, f"- {block(text)}", i, i)
                for i, text in enumerate(getattr(run, name))
            ]
        return specs, items, objective != run.objective

    def _checkpoint_items(
        self, checkpoint: Checkpoint
    ) -> tuple[list[packing.SectionSpec], list[packing.Item]]:
        rendered = render_checkpoint(checkpoint.content)
        title = (
            f"## Checkpoint {checkpoint.number} (covers steps 1–{checkpoint.through_seq}, "
            f"{checkpoint.source}, {checkpoint.checkpoint_id})"
        )
        specs = [packing.SectionSpec("checkpoint", None)]
        specs += [
            packing.SectionSpec(f"cp.{name}", f"### {heading}", share=0.2 if name in
                                ("progress", "decisions", "artifacts") else None)
            for name, heading in CHECKPOINT_FIELDS if name != "auto_artifacts"
        ]
        # What the server extracted only fills what the rest leaves (before the covered
        # steps and memories beyond their share): trimmed before anything a model wrote.
        specs.insert(
            [name for name, _ in CHECKPOINT_FIELDS].index("auto_artifacts") + 1,
            packing.SectionSpec(
                "cp.auto_artifacts", f"### {dict(CHECKPOINT_FIELDS)['auto_artifacts']}",
                share=0.0, fill=1, sep=", ",
            ),
        )
        items = [packing.Item("checkpoint", title, "checkpoint")]
        # Priority: what to do next and the current state first; history (newest first) last.
        for name in ("next_actions", "state", "errors", "open_questions"):
            lines = rendered.get(name, [])
            items += [packing.Item(f"cp.{name}", line, i, i) for i, line in enumerate(lines)]
        for name in ("progress", "decisions", "artifacts"):
            lines = rendered.get(name, [])
            newest_first = reversed(list(enumerate(lines)))
            items += [packing.Item(f"cp.{name}", line, i, i) for i, line in newest_first]
        # What the server extracted comes last, best first: trimmed before anything a model
        # wrote.
        # Shown on one line, comma-separated: a few tokens each.
        items += [
            packing.Item("cp.auto_artifacts", block(a.value), i, i)
            for i, a in enumerate(checkpoint.content.auto_artifacts)
        ]
        return specs, items

    async def _step_items(
        self, tenant: Tenant, run: Run, floor: int, upper: int, budget: int, section: str
    ) -> tuple[list[Step], list[packing.Item]]:
        """The newest steps in (floor, upper], fetched page by page until they would
        overflow the whole budget (so reads are O(budget), not O(run))."""
        cap = self._settings.rehydrate.step_max_tokens
        steps: list[Step] = []
        items: list[packing.Item] = []
        cost = 0
        cursor = upper
        while cursor > floor and cost < budget:
            page = await self._store.get_steps(
                tenant, run.run_id, after_seq=floor, until_seq=cursor, limit=_STEP_PAGE,
                newest_first=True,
            )
            if not page:
                break
            for step in page:
                text, tokens = render_step(step, self._tok, cap)
                steps.append(step)
                items.append(packing.Item(section, text, step.seq, step.seq, tokens=tokens))
                cost += tokens + 1
                if cost >= budget:
                    break
            cursor = page[-1].seq - 1
        return steps, items

    async def _cum_tokens_at(
        self, tenant: Tenant, run: Run, seq: int, checkpoint: Checkpoint | None
    ) -> int:
        if seq == 0:
            return 0
        if checkpoint is not None and checkpoint.checkpoint_id == run.latest_checkpoint_id:
            return run.covered_tokens
        if seq == run.pruned_seq:  # the step is gone; the run kept its total
            return run.pruned_tokens
        found = await self._store.get_steps(
            tenant, run.run_id, after_seq=seq - 1, until_seq=seq, limit=1
        )
        if not found:
            raise NotFoundError(f"step {seq} of run {run.run_id}")
        return found[0].cum_tokens

    @staticmethod
    def _dropped(packed: packing.Packed) -> list[DroppedSection]:
        merged: dict[str, tuple[int, int]] = {}
        for section, (n, tokens) in packed.dropped.items():
            if section == "earlier":  # optional extras: leaving them out drops nothing
                continue
            key = "checkpoint" if section.startswith("cp.") else section
            old = merged.get(key, (0, 0))
            merged[key] = (old[0] + n, old[1] + tokens)
        out = [
            DroppedSection(section=s, items=n, tokens=t, reason="over the budget")
            for s, (n, t) in sorted(merged.items())
        ]
        out += [
            DroppedSection(section=s, items=1, tokens=0, reason="cut to fit the budget")
            for s in packed.cut
        ]
        return out
