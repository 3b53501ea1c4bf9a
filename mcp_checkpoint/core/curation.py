"""Read models for people: what the web view and the CLI show of runs, checkpoints and
memories (filters, a step timeline, the working-memory curve, checkpoint diffs, a Markdown
record of a run, the supersession chain of a memory).

Everything here reads through the store ports and costs what one screen shows, whatever
the length of a run: the timeline is a page of steps, the curve a bounded sample of them.
The rules of the domain stay where they are (``Episodes``, ``MemoryService``); this module
only arranges what they keep for reading.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from mcp_checkpoint.config import Settings
from mcp_checkpoint.core._limits import Limits
from mcp_checkpoint.core.ledger import ChainBreak, verify_run
from mcp_checkpoint.core.lexical import query_terms
from mcp_checkpoint.core.models import (
    BatchStatus,
    Checkpoint,
    Memory,
    MemoryId,
    MemoryKind,
    MemoryStatus,
    Proposal,
    Run,
    RunId,
    RunStatus,
    Step,
    StepStatus,
    Tenant,
)
from mcp_checkpoint.core.ports import DeletedRun, IdKind, StepQuery, StepStat, Store
from mcp_checkpoint.core.render import CHECKPOINT_FIELDS, render_checkpoint, render_json
from mcp_checkpoint.core.snapshots import collect_garbage
from mcp_checkpoint.errors import InvalidArgumentError, NotFoundError

__all__ = [
    "CheckpointMark",
    "Curation",
    "FieldDiff",
    "RunFilter",
    "StepHit",
    "TokenCurve",
    "VerifyStatus",
    "diff_checkpoints",
]

_SCAN_PAGE = 500
_CHAIN_MAX = 50
_CANDIDATES = 10
SNIPPET_CHARS = 240
"""Most characters of a step a search hit shows (its snippet)."""
STEP_RANK_DEPTH = 200
"""How many of the newest matching steps ``search_steps`` ranks (see the port): a common
word in a long ledger costs a bounded read, and the hits are the best of its recent
history, which is what a person searching what an agent just did looks for."""


@dataclass(frozen=True)
class RunFilter:
    """Which runs a person asked for: all of them when every field is None/empty.

    ``text`` matches the objective case-insensitively (both lower-cased, as the store
    compares them); ``since``/``until`` bound
    ``updated_at`` (``since <= updated_at < until``)."""

    status: RunStatus | None = None
    text: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    project: str | None = None

    @property
    def narrows(self) -> bool:
        """True when a row must be checked beyond the store's status filter."""
        return bool(self.text) or self.since is not None or self.until is not None

    def matches(self, run: Run) -> bool:
        """Whether ``run`` passes the filter."""
        if self.status is not None and run.status != self.status:
            return False
        if self.project is not None and run.project != self.project:
            return False
        if self.text and self.text.lower() not in run.objective.lower():
            return False
        if self.since is not None and run.updated_at < self.since:
            return False
        return not (self.until is not None and run.updated_at >= self.until)


@dataclass(frozen=True)
class CheckpointMark:
    """Where a checkpoint sits on the curve: taken after step ``head_seq``, covering
    steps up to ``through_seq``."""

    checkpoint_id: str
    number: int
    head_seq: int
    through_seq: int


@dataclass(frozen=True)
class TokenCurve:
    """Working-memory tokens over a window of a run (steps ``first_seq..head_seq``),
    sampled: ``points`` are (seq, working tokens after that step), in seq order; ``marks``
    the checkpoints shown; ``marks_omitted`` the run's other checkpoints; ``sampled`` is
    False when every step of the window is a point."""

    budget_tokens: int
    head_seq: int
    points: list[tuple[int, int]] = field(default_factory=list)
    marks: list[CheckpointMark] = field(default_factory=list)
    sampled: bool = False
    marks_omitted: int = 0
    first_seq: int = 1


@dataclass(frozen=True)
class FieldDiff:
    """How one checkpoint field changed: lines removed and added, in order."""

    name: str
    heading: str
    removed: list[str]
    added: list[str]
    kept: int


@dataclass(frozen=True)
class VerifyStatus:
    """The result of checking a run's hash chain."""

    ok: bool
    checked: int
    message: str


@dataclass(frozen=True)
class StepHit:
    """A step found by ``search_steps``: where it is, and a bounded snippet of its text
    around the first word that matched."""

    run_id: RunId
    seq: int
    episode: int
    tool: str
    status: StepStatus
    created_at: datetime
    score: float
    snippet: str


def snippet(text: str, words: list[str], width: int = SNIPPET_CHARS) -> str:
    """At most ``width`` characters of ``text`` (whitespace collapsed) around the first of
    ``words`` it holds, with an ellipsis where it was cut."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    lowered = flat.casefold()
    found = [i for w in words if (i := lowered.find(w.casefold())) >= 0]
    at = min(found) if found else 0
    start = max(min(at - width // 4, len(flat) - width + 2), 0)
    end = start + width - (1 if start else 0) - 1
    return ("…" if start else "") + flat[start:end] + ("…" if end < len(flat) else "")


def step_text(step: Step) -> str:
    """What a step search reads of a step: tool, reasoning, input, output."""
    return " ".join(
        part for part in (step.tool, step.reasoning or "", render_json(step.input),
                          render_json(step.output)) if part
    )


def diff_checkpoints(a: Checkpoint, b: Checkpoint) -> list[FieldDiff]:
    """Field by field, what changed from checkpoint ``a`` to ``b`` (lines as rendered in
    a context); fields equal in both are left out."""
    import difflib  # only a diff needs it (not start-up)

    left, right = render_checkpoint(a.content), render_checkpoint(b.content)
    out: list[FieldDiff] = []
    for name, heading in CHECKPOINT_FIELDS:
        old, new = left.get(name, []), right.get(name, [])
        if old == new:
            continue
        removed: list[str] = []
        added: list[str] = []
        kept = 0
        matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                kept += i2 - i1
                continue
            removed += old[i1:i2]
            added += new[j1:j2]
        out.append(FieldDiff(name, heading, removed, added, kept))
    return out


class Curation:
    """Read models over one store, per tenant, and the curation acts that are not a rule
    of the loop: deleting a run, searching steps, resolving abbreviated ids."""

    def __init__(self, store: Store, settings: Settings | None = None) -> None:
        self._store = store
        self._settings = settings if settings is not None else Settings()
        self._limits = Limits(self._settings.limits)

    # -- ids ------------------------------------------------------------------------------

    async def resolve(self, tenant: Tenant, kind: IdKind, text: str) -> str:
        """The one id of ``kind`` that is ``text`` or starts with it (as ``git`` takes a
        commit prefix). NotFoundError when none does; InvalidArgumentError listing the
        candidates when several do."""
        if not text:
            raise InvalidArgumentError(f"the {kind} id must not be empty")
        found = await self._store.match_ids(tenant, kind, text, limit=_CANDIDATES + 1)
        if text in found or len(found) == 1:
            return text if text in found else found[0]
        if not found:
            raise NotFoundError(f"{kind} {text} (no {kind} id starts with it)")
        shown = ", ".join(found[:_CANDIDATES]) + (", …" if len(found) > _CANDIDATES else "")
        raise InvalidArgumentError(
            f"the {kind} id prefix {text!r} is ambiguous; it matches {shown}"
        )

    async def complete(self, tenant: Tenant, kind: IdKind, prefix: str, *, limit: int
                       ) -> list[str]:
        """Ids of ``kind`` that start with ``prefix``, in id order (completion)."""
        return await self._store.match_ids(tenant, kind, prefix, limit=limit)

    # -- curation acts --------------------------------------------------------------------

    async def step_stats(self, tenant: Tenant, run_id: str) -> list[StepStat]:
        """The run's stored steps counted by tool and status, with their tokens."""
        return await self._store.step_stats(tenant, RunId(run_id))

    async def delete_run(self, tenant: Tenant, run_id: str) -> DeletedRun:
        """Delete a run with its steps and checkpoints (see ``EpisodicStore.delete_run``),
        and the workspace-snapshot blobs no other checkpoint refers to."""
        deleted = await self._store.delete_run(tenant, RunId(run_id))
        await collect_garbage(self._store, tenant)
        return deleted

    async def search_steps(
        self, tenant: Tenant, query: StepQuery, *, k: int = 10
    ) -> list[StepHit]:
        """Steps holding the words of ``query.text``, best first, each with a snippet of
        at most ``SNIPPET_CHARS`` characters."""
        self._limits.query("query", query.text)
        if not query.text.strip():
            raise InvalidArgumentError("query must not be empty")
        self._limits.count("k", k, "max_search_k")
        if query.since is not None and query.until is not None and query.since >= query.until:
            raise InvalidArgumentError("since must be before until")
        words = query_terms(query.text)
        found = await self._store.search_steps(
            tenant, query, limit=k, depth=max(k, STEP_RANK_DEPTH)
        )
        return [
            StepHit(step.run_id, step.seq, step.episode, step.tool, step.status,
                    step.created_at, round(score, 6), snippet(step_text(step), words))
            for step, score in found
        ]

    async def batches(
        self, tenant: Tenant, *, status: BatchStatus | None, limit: int, offset: int = 0
    ) -> list[Proposal]:
        """The tenant's memory batches, newest first."""
        return await self._store.list_proposals(tenant, status=status, limit=limit,
                                                offset=offset)

    # -- runs ---------------------------------------------------------------------------

    async def find_runs(
        self, tenant: Tenant, where: RunFilter, *, limit: int, offset: int = 0
    ) -> tuple[list[Run], bool]:
        """Runs passing ``where``, newest ``updated_at`` first, and whether more follow:
        one page of the store's list, filtered by the database (objective text included,
        so a page costs the same however many runs the tenant has)."""
        self._limits.page("limit", limit)
        if offset < 0:
            raise InvalidArgumentError("offset must not be negative")
        if where.text:
            self._limits.query("text", where.text)
        page = await self._store.list_runs(
            tenant, status=where.status, limit=limit + 1, offset=offset,
            project=where.project, text=where.text or None, since=where.since,
            until=where.until,
        )
        return page[:limit], len(page) > limit

    async def timeline(
        self, tenant: Tenant, run: Run, *, before_seq: int | None, limit: int
    ) -> list[Step]:
        """A page of the run's steps, newest first, with ``seq < before_seq`` (from the
        head when None). Reads one page, whatever the length of the run."""
        upper = run.head_seq if before_seq is None else min(before_seq - 1, run.head_seq)
        if upper <= run.pruned_seq:
            return []
        return await self._store.get_steps(
            tenant, run.run_id, after_seq=run.pruned_seq, until_seq=upper, limit=limit,
            newest_first=True,
        )

    async def token_curve(
        self,
        tenant: Tenant,
        run: Run,
        checkpoints: Sequence[Checkpoint] | None = None,
        *,
        samples: int = 60,
        max_marks: int = 40,
    ) -> TokenCurve:
        """Working-memory tokens over the episodes of ``checkpoints`` (a page of the run's
        checkpoints, newest first; default: the newest ``max_marks``): after each of up to
        ``samples`` evenly spread steps, and right after each checkpoint, with where the
        checkpoints were taken.

        Working memory after step ``s`` is the tokens recorded since the checkpoint that
        was latest when ``s`` was recorded (``cum_tokens(s) - cum_tokens(through_seq)``
        of checkpoint ``episode(s) - 1``). The window runs from the oldest checkpoint's
        ``through_seq`` (the first step when there is none) to the newest one's
        ``head_seq`` — or to the run's head for the newest page — so every step in it
        has its checkpoint at hand: at most two reads, whatever the length of the run."""
        if checkpoints is None:
            checkpoints = await self._store.list_checkpoints(
                tenant, run.run_id, limit=max_marks, offset=0
            )
        newest_page = not checkpoints or checkpoints[0].checkpoint_id == run.latest_checkpoint_id
        if checkpoints and checkpoints[-1].number > run.pruned_checkpoints + 1:
            lo = max(checkpoints[-1].through_seq, run.pruned_seq + 1)
        else:
            lo = run.pruned_seq + 1
        hi = run.head_seq if newest_page else checkpoints[0].head_seq
        if hi < lo:
            return TokenCurve(run.budget_tokens, run.head_seq)
        span = hi - lo + 1
        if span <= samples:
            seqs = list(range(lo, hi + 1))
        else:
            seqs = sorted({lo + (span - 1) * i // (samples - 1) for i in range(samples)})
        by_number = {cp.number: cp for cp in checkpoints}
        marks = [
            CheckpointMark(cp.checkpoint_id, cp.number, cp.head_seq, cp.through_seq)
            for cp in reversed(checkpoints)
        ]
        wanted = {*seqs, *(m.head_seq for m in marks), *(m.through_seq for m in marks)}
        read = await self._store.step_points(
            tenant, run.run_id, sorted(s for s in wanted if s > run.pruned_seq)
        )
        cum: dict[int, int] = {0: 0, run.pruned_seq: run.pruned_tokens}
        episodes: dict[int, int] = {}
        for seq, episode, cumulative in read:
            cum[seq] = cumulative
            episodes[seq] = episode
        points: list[tuple[int, int]] = []
        for seq in seqs:
            if seq not in episodes:
                continue
            if episodes[seq] == 1:
                base: int | None = 0
            else:
                previous = by_number.get(episodes[seq] - 1)
                base = None if previous is None else cum.get(previous.through_seq)
            if base is not None:
                points.append((seq, cum[seq] - base))
        # Right after a checkpoint, working memory is what it left: steps after through_seq.
        for mark in marks:
            top, base = cum.get(mark.head_seq), cum.get(mark.through_seq)
            if top is not None and base is not None:
                points.append((mark.head_seq, top - base))
        points.sort(key=lambda p: (p[0], -p[1]))
        return TokenCurve(
            budget_tokens=run.budget_tokens,
            head_seq=hi,
            points=points,
            marks=marks,
            sampled=span > samples,
            marks_omitted=max(run.checkpoint_count - run.pruned_checkpoints - len(marks), 0),
            first_seq=lo,
        )

    async def verify(self, tenant: Tenant, run_id: str) -> VerifyStatus:
        """Check the run's whole hash chain (reads every step: seconds for long runs)."""
        try:
            checked = await verify_run(self._store, tenant, RunId(run_id))
        except ChainBreak as exc:
            return VerifyStatus(False, 0, f"broken at step {exc.seq}: {exc.reason}")
        return VerifyStatus(True, checked, f"{checked} steps verified; the chain is intact")

    async def markdown(self, tenant: Tenant, run_id: str) -> AsyncIterator[str]:
        """A readable record of the run in Markdown, piece by piece: objective, criteria,
        the latest checkpoint, every checkpoint's decisions, then every step (read page by
        page, so a long run streams in constant memory)."""
        run = await self._store.get_run(tenant, RunId(run_id))
        yield f"# Run {run.run_id}\n\n"
        yield f"- **Objective:** {run.objective}\n"
        yield f"- **Status:** {run.status}\n"
        yield (
            f"- **Steps:** {run.step_count} (head seq {run.head_seq}), "
            f"**checkpoints:** {run.checkpoint_count}, **episode:** {run.episode}\n"
        )
        yield (
            f"- **Created:** {run.created_at:%Y-%m-%d %H:%M:%S} UTC, "
            f"**updated:** {run.updated_at:%Y-%m-%d %H:%M:%S} UTC\n"
        )
        for name, title in (
            ("acceptance_criteria", "Acceptance criteria"),
            ("constraints", "Constraints"),
            ("pinned", "Pinned"),
        ):
            values: list[str] = getattr(run, name)
            if values:
                yield f"\n## {title}\n\n" + "".join(f"- {v}\n" for v in values)
        checkpoints: list[Checkpoint] = []
        offset = 0
        while True:
            page = await self._store.list_checkpoints(
                tenant, run.run_id, limit=_SCAN_PAGE, offset=offset
            )
            checkpoints += page
            offset += len(page)
            if len(page) < _SCAN_PAGE:
                break
        checkpoints.reverse()
        if checkpoints:
            latest = checkpoints[-1]
            yield (
                f"\n## Latest checkpoint ({latest.number}, {latest.checkpoint_id}, "
                f"covers steps 1–{latest.through_seq})\n"
            )
            rendered = render_checkpoint(latest.content)
            for name, heading in CHECKPOINT_FIELDS:
                if name in rendered:
                    yield f"\n### {heading}\n\n" + "".join(f"{line}\n" for line in rendered[name])
            yield "\n## Checkpoints\n\n"
            for cp in checkpoints:
                yield (
                    f"- {cp.number}. `{cp.checkpoint_id}` — {cp.created_at:%Y-%m-%d %H:%M:%S}, "
                    f"steps 1–{cp.through_seq}, {cp.source}, "
                    f"{len(cp.content.decisions)} decisions\n"
                )
        if run.pruned_seq:
            yield f"\n_Steps 1–{run.pruned_seq} were removed by retention._\n"
        yield "\n## Steps\n"
        after = run.pruned_seq
        while after < run.head_seq:
            steps = await self._store.get_steps(
                tenant, run.run_id, after_seq=after, until_seq=run.head_seq, limit=_SCAN_PAGE
            )
            if not steps:
                break
            chunk: list[str] = []
            for step in steps:
                chunk.append(
                    f"\n### {step.seq}. {step.tool} ({step.status}) — "
                    f"{step.created_at:%Y-%m-%d %H:%M:%S}, {step.tokens} tokens, "
                    f"episode {step.episode}\n\n"
                )
                if step.reasoning:
                    chunk.append(f"Why: {step.reasoning}\n\n")
                for label, value in (("Input", step.input), ("Output", step.output)):
                    text = render_json(value)
                    if text:
                        chunk.append(f"{label}:\n\n{_fence(text)}\n")
            yield "".join(chunk)
            after = steps[-1].seq

    # -- memories -----------------------------------------------------------------------

    async def browse_memories(
        self,
        tenant: Tenant,
        *,
        status: MemoryStatus | None,
        scope: str | None = None,
        kind: MemoryKind | None = None,
        after: str | None = None,
        limit: int,
    ) -> tuple[list[Memory], str | None]:
        """Memories in id (so creation) order after the ``after`` id, filtered exactly by
        ``status``/``scope``/``kind``, and the cursor of the next page (None at the end)."""
        self._limits.page("limit", limit)
        found: list[Memory] = []
        key = (tenant, MemoryId(after)) if after else None
        while len(found) < limit:
            page = await self._store.list_memories(
                tenant, status=status, after=key, limit=_SCAN_PAGE
            )
            for _, memory in page:
                if (scope is None or memory.scope == scope) and (
                    kind is None or memory.kind == kind
                ):
                    found.append(memory)
                    if len(found) == limit:
                        return found, memory.memory_id
            if len(page) < _SCAN_PAGE:
                return found, None
            key = (tenant, page[-1][1].memory_id)
        return found, None

    async def forgotten(self, tenant: Tenant, memory_ids: Sequence[str]) -> dict[str, datetime]:
        """When each of ``memory_ids`` that ``forget`` deleted was forgotten (the others
        are left out)."""
        found = await self._store.forgotten_memories(
            tenant, [MemoryId(i) for i in memory_ids if i])
        return {str(memory_id): at for memory_id, at in found.items()}

    async def supersession_chain(self, tenant: Tenant, memory: Memory) -> list[Memory]:
        """The memories that replaced ``memory``, one after the other (``superseded_by``),
        up to the one that is current; a missing link ends the chain."""
        chain: list[Memory] = []
        seen = {memory.memory_id}
        current = memory
        while current.superseded_by is not None and len(chain) < _CHAIN_MAX:
            if current.superseded_by in seen:
                break
            try:
                current = await self._store.get_memory(tenant, current.superseded_by)
            except NotFoundError:
                break
            seen.add(current.memory_id)
            chain.append(current)
        return chain


def _fence(text: str) -> str:
    """``text`` in a Markdown code fence longer than any backtick run inside it."""
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}\n"
