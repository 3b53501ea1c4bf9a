"""The checkpoint loop: start_run, record_step, checkpoint, rehydrate.

``Episodes`` is the service the MCP tools call. It validates arguments against the
configured limits, keeps the triggers, merges checkpoints, and packs contexts (the assembly
is ``core.rehydrate``, its base class); the store keeps identity, ordering and atomicity.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import anyio

from mcp_checkpoint.config import CheckpointSettings, Settings
from mcp_checkpoint.core._ids import Clock, new_id, utc_now
from mcp_checkpoint.core._limits import Limits
from mcp_checkpoint.core.events import DomainEvent, EventSink
from mcp_checkpoint.core.ledger import canonical_json, genesis_hash, request_hash
from mcp_checkpoint.core.models import (
    Checkpoint,
    CheckpointId,
    CheckpointPatch,
    CheckpointSource,
    Run,
    RunId,
    RunStatus,
    SnapshotEntry,
    Step,
    StepAck,
    StepDraft,
    Tenant,
)
from mcp_checkpoint.core.ports import Store, Tokenizer
from mcp_checkpoint.core.redact import Redactor
from mcp_checkpoint.core.rehydrate import MemorySearch, Rehydration
from mcp_checkpoint.core.render import (
    render_checkpoint,
    step_tokens,
)
from mcp_checkpoint.core.snapshots import Snapshots
from mcp_checkpoint.errors import (
    CheckpointError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    PayloadTooLargeError,
)

__all__ = ["CheckpointResult", "Episodes", "SamplingRequest", "step_ack"]

logger = logging.getLogger(__name__)

_CHECKPOINT_RETRIES = 5
_STEP_PAGE = 64
# A step larger than this is prepared (redacted, counted, hashed) on a worker thread.
_INLINE_STEP_BYTES = 16_384
_DISTILL_STEPS = 200


@dataclass(frozen=True)
class SamplingRequest:
    """What to ask the client's model to distil a checkpoint."""

    system_prompt: str
    text: str
    max_tokens: int


@dataclass(frozen=True)
class CheckpointResult:
    """A stored checkpoint and the working memory left after it."""

    checkpoint: Checkpoint
    working_steps: int
    working_tokens: int
    distill_note: str | None = None
    created: bool = True  # False: nothing new to distil, ``checkpoint`` is the latest


@functools.lru_cache(maxsize=16)
def _patterns(sources: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(source, re.MULTILINE) for source in sources)


def _triggered(cfg: CheckpointSettings, step: Step) -> bool:
    """Whether the declarative triggers (tool names, output patterns) fire on ``step``."""
    if step.tool in cfg.trigger_tools:
        return True
    if not cfg.trigger_output_patterns or step.output is None:
        return False
    text = step.output if isinstance(step.output, str) else canonical_json(step.output)
    return any(p.search(text) for p in _patterns(tuple(cfg.trigger_output_patterns)))


def step_ack(cfg: CheckpointSettings, run: Run, step: Step) -> StepAck:
    """The acknowledgement of ``step``, given the run just after it was appended: working
    memory, and whether (and why) a checkpoint is due under ``cfg``. An error anywhere in
    working memory keeps a checkpoint due (reason ``error``) until one covers it. A step of
    one of ``cfg.trigger_tools``, or whose output matches one of
    ``cfg.trigger_output_patterns``, makes one due (reason ``trigger``)."""
    reason: str | None = None
    if cfg.trigger_on_error and (step.status == "error" or run.error_seq > run.covered_seq):
        reason = "error"
    elif _triggered(cfg, step):
        reason = "trigger"
    elif run.working_tokens >= cfg.trigger_token_share * run.budget_tokens:
        reason = "tokens"
    elif run.working_steps >= cfg.trigger_steps:
        reason = "steps"
    return StepAck(
        run_id=run.run_id,
        seq=step.seq,
        episode=step.episode,
        working_steps=run.working_steps,
        working_tokens=run.working_tokens,
        budget_tokens=run.budget_tokens,
        checkpoint_due=reason is not None,
        due_reason=reason,  # type: ignore[arg-type]
    )


class Episodes(Rehydration):
    """The episodic loop over one store."""

    def __init__(
        self,
        store: Store,
        tokenizer: Tokenizer,
        settings: Settings,
        *,
        memory: MemorySearch | None = None,
        events: EventSink | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._events = events
        self._tok = tokenizer
        self._settings = settings
        self._limits = Limits(settings.limits)
        self._memory = memory
        self._clock = clock
        self._snapshots = Snapshots(store, settings.snapshots)
        self._redactor = Redactor(
            settings.redaction.extra_patterns, enabled=settings.redaction.enabled
        )

    # -- runs ---------------------------------------------------------------------------

    async def start_run(
        self,
        tenant: Tenant,
        objective: str,
        *,
        acceptance_criteria: Sequence[str] | None = None,
        constraints: Sequence[str] | None = None,
        pinned: Sequence[str] | None = None,
        run_id: str | None = None,
        budget_tokens: int | None = None,
        project: str | None = None,
    ) -> Run:
        """Create a run. A caller-chosen ``run_id`` that exists already is a conflict.
        ``project`` names what the run belongs to (an adapter passes its working
        directory), so the project's runs can be found again."""
        lim = self._limits
        rid = RunId(lim.ident("run_id", run_id) if run_id is not None else new_id("run"))
        budget = lim.budget(
            "budget_tokens",
            budget_tokens
            if budget_tokens is not None
            else self._settings.rehydrate.default_budget_tokens,
        )
        now = self._clock()
        run = Run(
            run_id=rid,
            objective=lim.text("objective", objective, required=True),
            acceptance_criteria=lim.texts("acceptance_criteria", acceptance_criteria),
            constraints=lim.texts("constraints", constraints),
            pinned=lim.texts("pinned", pinned),
            project=lim.text("project", project, required=True) if project is not None else None,
            budget_tokens=budget,
            created_at=now,
            updated_at=now,
            head_hash=genesis_hash(rid),
        )
        return await self._store.create_run(tenant, run)

    async def get_run(self, tenant: Tenant, run_id: str) -> Run:
        """The run (NotFoundError if unknown)."""
        return await self._store.get_run(tenant, RunId(run_id))

    async def list_runs(
        self,
        tenant: Tenant,
        *,
        status: RunStatus | None = None,
        limit: int = 50,
        offset: int = 0,
        project: str | None = None,
    ) -> list[Run]:
        """The tenant's runs, most recently updated first; only ``project``'s when given."""
        self._limits.page("limit", limit)
        if offset < 0:
            raise InvalidArgumentError("offset must not be negative")
        return await self._store.list_runs(
            tenant, status=status, limit=limit, offset=offset, project=project
        )

    async def set_run(
        self,
        tenant: Tenant,
        run_id: str,
        *,
        status: RunStatus | None = None,
        pinned: Sequence[str] | None = None,
        expected_version: int | None = None,
    ) -> Run:
        """Change a run's status or pinned items, bumping its ``version``.

        With ``expected_version`` the change applies only to that version of the run: a
        run changed since (by another agent, process or person) is a ConflictError naming
        its current version, and nothing changes. Without it, the change applies to
        whatever the run is now (read, then compare-and-set, retried on a race).
        """
        checked = self._limits.texts("pinned", pinned) if pinned is not None else None
        if expected_version is not None:
            if expected_version < 1:
                raise InvalidArgumentError("expected_version must be a version (1 or more)")
            before, after = await self._set_run_at(
                tenant, run_id, expected_version, status, checked
            )
        else:
            before, after = await self._set_run_now(tenant, run_id, status, checked)
        if self._events is not None and after.status != before.status:
            self._events.publish(DomainEvent(
                type="run.status_changed", tenant=tenant, at=after.updated_at,
                run_id=after.run_id,
                data={"from": before.status, "to": after.status, "version": after.version},
            ))
        return after

    async def _set_run_now(
        self,
        tenant: Tenant,
        run_id: str,
        status: RunStatus | None,
        pinned: list[str] | None,
    ) -> tuple[Run, Run]:
        for _ in range(_CHECKPOINT_RETRIES):
            run = await self._store.get_run(tenant, RunId(run_id))
            try:
                return run, await self._store.update_run(
                    tenant,
                    run.run_id,
                    expected_version=run.version,
                    status=status,
                    pinned=pinned,
                    now=self._clock(),
                )
            except ConflictError:
                continue
        raise ConflictError(f"run {run_id} kept changing; try again")

    async def _set_run_at(
        self,
        tenant: Tenant,
        run_id: str,
        expected_version: int,
        status: RunStatus | None,
        pinned: list[str] | None,
    ) -> tuple[Run, Run]:
        run = await self._store.get_run(tenant, RunId(run_id))
        if run.version == expected_version:
            try:
                return run, await self._store.update_run(
                    tenant,
                    run.run_id,
                    expected_version=expected_version,
                    status=status,
                    pinned=pinned,
                    now=self._clock(),
                )
            except ConflictError:
                run = await self._store.get_run(tenant, RunId(run_id))  # changed meanwhile
        raise ConflictError(
            f"run {run_id} is at version {run.version}, not expected_version "
            f"{expected_version}: it changed since you read it; read it again and retry"
        )

    # -- steps --------------------------------------------------------------------------

    def _check_step(self, draft: StepDraft) -> int:
        """Check ``draft`` against the limits; its payload's size in UTF-8 bytes."""
        lim = self._limits
        lim.text("tool", draft.tool, required=True)
        if draft.idempotency_key is not None:
            lim.ident("idempotency_key", draft.idempotency_key)
        payload = canonical_json([draft.input, draft.output, draft.reasoning])
        # One bracket is the list around the three: the values may nest one level less.
        if payload.count("[") + payload.count("{") > self._settings.limits.max_json_depth + 1:
            lim.nesting("input", draft.input)
            lim.nesting("output", draft.output)
        size = len(payload.encode("utf-8"))
        lim.size(
            "the step (input + output + reasoning)",
            size,
            self._settings.limits.max_step_bytes,
            "limits.max_step_bytes",
        )
        if "\x00" in payload.replace("\\u0000", "\x00"):
            raise InvalidArgumentError("the step must not contain NUL characters")
        return size

    def _make_ack(self, run: Run, step: Step) -> StepAck:
        return step_ack(self._settings.checkpoint, run, step)

    def redact(self, draft: StepDraft) -> StepDraft:
        """``draft`` with secrets in its input, output and reasoning replaced (settings:
        ``redaction``); what ``record_step`` stores."""
        red = self._redactor
        if not red.enabled:
            return draft
        return draft.model_copy(
            update={
                "input": red.json(draft.input),
                "output": red.json(draft.output),
                "reasoning": red.text(draft.reasoning) if draft.reasoning else draft.reasoning,
            }
        )

    async def record_step(self, tenant: Tenant, run_id: str, draft: StepDraft) -> StepAck:
        """Append a step durably, secrets redacted; see ``EpisodicStore.append_step``."""
        if self._check_step(draft) > _INLINE_STEP_BYTES:
            # Redacting, counting and hashing grow with the step: off the event loop.
            draft, tokens, digest = await anyio.to_thread.run_sync(self._prepare, draft)
        else:
            draft, tokens, digest = self._prepare(draft)
        return await self._store.append_step(
            tenant,
            RunId(run_id),
            draft,
            tokens=tokens,
            request_hash=digest,
            now=self._clock(),
            make_ack=self._make_ack,
        )

    def _prepare(self, draft: StepDraft) -> tuple[StepDraft, int, str]:
        """The step as stored (redacted), its tokens and its request hash."""
        redacted = self.redact(draft)
        return redacted, step_tokens(redacted, self._tok), request_hash(redacted)

    async def ledger(
        self, tenant: Tenant, run_id: str, *, after_seq: int = 0, limit: int = 50
    ) -> list[Step]:
        """A page of the run's ledger, oldest first."""
        self._limits.page("limit", limit)
        if after_seq < 0:
            raise InvalidArgumentError("cursor must not be negative")
        return await self._store.get_steps(
            tenant, RunId(run_id), after_seq=after_seq, limit=limit
        )

    # -- checkpoints --------------------------------------------------------------------

    async def latest_checkpoint(self, tenant: Tenant, run: Run) -> Checkpoint | None:
        """The run's latest checkpoint, or None before the first."""
        if run.latest_checkpoint_id is None:
            return None
        return await self._store.get_checkpoint(tenant, run.run_id, run.latest_checkpoint_id)

    async def get_checkpoint(self, tenant: Tenant, run_id: str, checkpoint_id: str) -> Checkpoint:
        """A checkpoint of the run (NotFoundError if unknown, saying so if retention
        removed it)."""
        try:
            return await self._store.get_checkpoint(
                tenant, RunId(run_id), CheckpointId(checkpoint_id)
            )
        except NotFoundError:
            ref = await self._store.find_checkpoint(tenant, CheckpointId(checkpoint_id))
            if ref is not None and ref.pruned and ref.run_id == run_id:
                raise NotFoundError(
                    f"checkpoint {checkpoint_id} of run {run_id} was removed by retention "
                    f"(runs prune); the run's latest checkpoint carries its content"
                ) from None
            raise

    # -- workspace snapshots ------------------------------------------------------------

    async def snapshot(
        self, tenant: Tenant, run_id: str, checkpoint_id: str | None = None
    ) -> tuple[Checkpoint, list[SnapshotEntry]]:
        """The checkpoint and the files of its snapshot: ``checkpoint_id``'s (NotFoundError
        if it kept no files), or the newest checkpoint's that kept some."""
        if checkpoint_id is not None:
            found = await self.get_checkpoint(tenant, run_id, checkpoint_id)
            if found.content.snapshot is None:
                raise NotFoundError(f"checkpoint {checkpoint_id} kept no files")
            return found, await self._snapshots.manifest(tenant, found.content.snapshot)
        offset = 0
        while True:
            page = await self._store.list_checkpoints(
                tenant, RunId(run_id), limit=_STEP_PAGE, offset=offset
            )
            for checkpoint in page:
                if checkpoint.content.snapshot is not None:
                    files = await self._snapshots.manifest(tenant, checkpoint.content.snapshot)
                    return checkpoint, files
            if len(page) < _STEP_PAGE:
                raise NotFoundError(f"no checkpoint of run {run_id} kept files")
            offset += len(page)

    async def snapshot_files(
        self, tenant: Tenant, files: Sequence[SnapshotEntry]
    ) -> dict[str, bytes]:
        """The bytes of these snapshot files by path, each verified against its SHA-256."""
        return await self._snapshots.read(tenant, files)

    async def blob(self, tenant: Tenant, name: str) -> bytes:
        """One stored blob by its SHA-256 (NotFoundError if the tenant holds none such)."""
        found = await self._store.get_blobs(tenant, [name])
        if name not in found:
            raise NotFoundError(f"blob {name[:64]}")
        return found[name]

    def _check_patch(self, patch: CheckpointPatch) -> None:
        lim = self._limits
        for name in ("progress", "decisions", "next_actions", "open_questions", "errors"):
            lim.texts(name, getattr(patch, name))
        lim.texts("artifacts", patch.artifacts)
        if patch.state is not None:
            if len(patch.state) > self._settings.limits.max_list_items:
                raise PayloadTooLargeError(
                    f"state has {len(patch.state)} keys; limits.max_list_items is "
                    f"{self._settings.limits.max_list_items}"
                )
            for key in patch.state:
                lim.text("state key", key, required=True)
            # Stored checkpoints are read back by a JSON parser with a recursion limit.
            lim.nesting("state", patch.state)

    async def _covered_steps(
        self, tenant: Tenant, run: Run, through_seq: int
    ) -> tuple[list[Step], int]:
        """The newest (up to a bound) steps a checkpoint through ``through_seq`` covers,
        and how many older ones were left out."""
        steps = await self._store.get_steps(
            tenant, run.run_id, after_seq=run.covered_seq, until_seq=through_seq,
            limit=_DISTILL_STEPS, newest_first=True,
        )
        return steps, max(through_seq - run.covered_seq - len(steps), 0)

    async def sampling_request(
        self, tenant: Tenant, run_id: str, *, through_seq: int | None = None
    ) -> SamplingRequest | None:
        """The request that asks the client's model to distil the run's working memory,
        or None when sampling is disabled or there is nothing to distil. Deterministic for
        the same state (the protocol re-sends it on retries)."""
        cfg = self._settings.sampling
        if not cfg.enabled:
            return None
        run = await self._store.get_run(tenant, RunId(run_id))
        target = run.head_seq if through_seq is None else through_seq
        if not run.covered_seq < target <= run.head_seq:
            return None
        previous = await self.latest_checkpoint(tenant, run)
        steps, _ = await self._covered_steps(tenant, run, target)
        from mcp_checkpoint.core.distill import SAMPLING_SYSTEM_PROMPT, sampling_prompt

        text = sampling_prompt(
            run, previous.content if previous else None, steps, self._tok, cfg.max_input_tokens
        )
        return SamplingRequest(SAMPLING_SYSTEM_PROMPT, text, cfg.max_tokens)

    async def checkpoint(
        self,
        tenant: Tenant,
        run_id: str,
        patch: CheckpointPatch,
        *,
        through_seq: int | None = None,
        sampled: str | None = None,
        sampling_note: str | None = None,
        files: Sequence[tuple[str, bytes]] | None = None,
    ) -> CheckpointResult:
        """Store a checkpoint covering steps up to ``through_seq`` (default: the head).

        A non-empty ``patch`` is the model's own distillation. With an empty one the server
        distils: ``sampled`` is the client model's answer to ``sampling_request`` (parsed,
        validated; rules take over if it is unusable), else rules. ``sampling_note`` says
        why sampling was not used, for the result's note. Steps recorded after
        ``through_seq`` — also concurrently — stay in working memory. ``files`` (path,
        bytes) are kept with the checkpoint as a workspace snapshot; the patch's name,
        stage and notes label this checkpoint whoever distils.

        With no content, no files and no step after the latest checkpoint (up to
        ``through_seq``), nothing is distilled: the latest checkpoint comes back unchanged,
        ``created`` False, with a note saying so.
        """
        self._check_patch(patch)
        labels = {"name": patch.name, "stage": patch.stage, "notes": patch.notes}
        for key, value in labels.items():
            if value is not None:
                self._limits.text(key, value)
        checked_files = self._snapshots.check_files(files) if files is not None else None
        run = await self._store.get_run(tenant, RunId(run_id))
        if through_seq is not None and not run.covered_seq <= through_seq <= run.head_seq:
            raise InvalidArgumentError(
                f"through_seq is {through_seq}; it must lie between the latest checkpoint's "
                f"through_seq ({run.covered_seq}) and the run's head_seq ({run.head_seq})"
            )
        target = run.head_seq if through_seq is None else through_seq
        note: str | None = None
        source: CheckpointSource = "model"
        previous = await self.latest_checkpoint(tenant, run)
        nothing_new = (
            patch.is_empty()
            and checked_files is None
            and all(value is None for value in labels.values())
            and target <= run.covered_seq
        )
        if nothing_new and previous is not None:
            return CheckpointResult(
                checkpoint=previous,
                working_steps=run.working_steps,
                working_tokens=run.working_tokens,
                distill_note=(
                    f"no steps since checkpoint {previous.number} (through step "
                    f"{previous.through_seq}): returned it unchanged"
                ),
                created=False,
            )
        prev_content = previous.content if previous else None
        steps, omitted = await self._covered_steps(tenant, run, target)
        # Imported here: only a checkpoint distils (start-up need not import it).
        from mcp_checkpoint.core.distill import (
            DistillError,
            RulesDistiller,
            carry_over,
            check_sampled,
            merge_checkpoint,
            parse_patch,
        )

        rules = RulesDistiller(self._settings.checkpoint)
        ruled = await rules.distill(run, prev_content, steps, omitted)
        if patch.is_empty():
            source = "rules"
            patch = ruled
            if sampled is not None:
                try:
                    patch = parse_patch(sampled)
                    self._check_patch(patch)
                    patch = check_sampled(patch, steps, ruled)
                    source = "sampling"
                except (DistillError, CheckpointError) as exc:
                    patch = ruled
                    note = f"sampling failed ({exc}); distilled by rules instead"
                    logger.info("checkpoint %s: %s", run.run_id, note)
            elif sampling_note is not None:
                note = f"{sampling_note}; distilled by rules instead"
        # Whoever distilled, the files and names the covered steps touched are kept, apart
        # from what a model wrote (a context trims them first), and what the steps settled
        # leaves the lists carried over from the previous checkpoint.
        patch = carry_over(patch, prev_content, steps, ruled).model_copy(update=labels)
        snapshot = (
            await self._snapshots.store(tenant, checked_files, now=self._clock())
            if checked_files is not None
            else None
        )
        for _ in range(_CHECKPOINT_RETRIES):
            previous = await self.latest_checkpoint(tenant, run)
            content = merge_checkpoint(
                previous.content if previous else None, patch, self._settings.checkpoint
            ).model_copy(update={"snapshot": snapshot})
            self._limits.size(
                "the merged checkpoint",
                len(content.model_dump_json().encode("utf-8")),
                self._settings.limits.max_checkpoint_bytes,
                "limits.max_checkpoint_bytes",
            )
            tokens = sum(
                self._tok.count(line) + 1
                for lines in render_checkpoint(content).values()
                for line in lines
            )
            try:
                checkpoint = await self._store.add_checkpoint(
                    tenant,
                    run.run_id,
                    checkpoint_id=CheckpointId(new_id("cp")),
                    parent_id=run.latest_checkpoint_id,
                    through_seq=max(target, run.covered_seq),
                    content=content,
                    source=source,
                    tokens=tokens,
                    now=self._clock(),
                )
            except ConflictError:
                # Another checkpoint landed first: merge onto it instead.
                run = await self._store.get_run(tenant, run.run_id)
                continue
            after = await self._store.get_run(tenant, run.run_id)
            if self._events is not None:
                self._events.publish(DomainEvent(
                    type="checkpoint.created", tenant=tenant, at=checkpoint.created_at,
                    run_id=run.run_id,
                    data={
                        "checkpoint_id": checkpoint.checkpoint_id,
                        "number": checkpoint.number,
                        "through_seq": checkpoint.through_seq,
                        "source": checkpoint.source,
                        "next_actions": list(checkpoint.content.next_actions),
                    },
                ))
            return CheckpointResult(
                checkpoint=checkpoint,
                working_steps=after.head_seq - checkpoint.through_seq,
                working_tokens=after.head_tokens - after.covered_tokens
                if after.latest_checkpoint_id == checkpoint.checkpoint_id
                else after.working_tokens,
                distill_note=note,
            )
        raise ConflictError(f"run {run_id}: checkpoints kept racing; try again")
