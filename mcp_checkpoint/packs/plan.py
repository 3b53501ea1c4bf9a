"""Planning and applying an import: ``plan_import`` compares a verified pack with the store
(already imported, new, or colliding ids, renamed with ``rename``); ``apply_import`` writes
the plan in one transaction (``Store.import_records``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from mcp_checkpoint.config import CheckpointSettings
from mcp_checkpoint.core.episodes import step_ack
from mcp_checkpoint.core.ledger import genesis_hash, request_hash, step_hash
from mcp_checkpoint.core.models import (
    BatchId,
    Memory,
    Proposal,
    Run,
    RunId,
    Step,
    StepDraft,
    Tenant,
)
from mcp_checkpoint.core.ports import ImportedRun, ImportedStep, ImportRecords, Store
from mcp_checkpoint.errors import ConflictError, NotFoundError
from mcp_checkpoint.packs.format import _PAGE, Pack, PackRun, Progress, _Counter

__all__ = ["ImportPlan", "RunOutcome", "apply_import", "plan_import"]

Kind = Literal["run", "batch", "memory"]
_PREFIX: dict[Kind, str] = {"run": "run", "batch": "batch", "memory": "mem"}
_RENAME_ORDER: tuple[Kind, ...] = ("run", "memory", "batch")


@dataclass(frozen=True)
class RunOutcome:
    """What an import does with one run of the pack."""

    pack_id: RunId
    run_id: RunId
    action: Literal["import", "identical"]
    steps: int
    checkpoints: int


@dataclass
class ImportPlan:
    """What importing a pack into a tenant would write (``records``) and why."""

    pack: Pack
    tenant: Tenant
    records: ImportRecords
    runs: list[RunOutcome]
    proposals_identical: int
    memories_identical: int
    renamed: dict[str, str] = field(default_factory=dict)
    """``"kind id"`` -> new id, for ids that collided with different records."""

    @property
    def nothing_to_do(self) -> bool:
        """True when everything in the pack is already in the store, identical."""
        r = self.records
        return not (r.runs or r.proposals or r.memories)

    def summary(self) -> dict[str, Any]:
        """The plan as JSON-ready data."""
        m = self.pack.manifest
        return {
            "pack": {
                "format_version": m.format_version,
                "schema_version": m.schema_version,
                "tool_version": m.tool_version,
                "created_at": m.created_at.isoformat(),
                "embedding_model": m.embedding_model,
                "embedding_dimension": m.embedding_dimension,
                "runs": len(self.pack.runs),
                "steps": self.pack.step_count,
                "checkpoints": self.pack.checkpoint_count,
                "proposals": len(self.pack.proposals),
                "memories": len(self.pack.memories),
            },
            "tenant": self.tenant,
            "runs": [
                {"pack_id": o.pack_id, "run_id": o.run_id, "action": o.action,
                 "steps": o.steps, "checkpoints": o.checkpoints}
                for o in self.runs
            ],
            "proposals": {"import": len(self.records.proposals),
                          "identical": self.proposals_identical},
            "memories": {"import": len(self.records.memories),
                         "identical": self.memories_identical},
            "renamed": dict(self.renamed),
            "nothing_to_do": self.nothing_to_do,
        }

    def lines(self) -> list[str]:
        """The plan as text, one line per decision."""
        m = self.pack.manifest
        out = [
            f"pack: format {m.format_version}, exported {m.created_at:%Y-%m-%d %H:%M:%S} UTC "
            f"by mcp-checkpoint {m.tool_version}; {len(self.pack.runs)} runs, "
            f"{self.pack.step_count} steps, {self.pack.checkpoint_count} checkpoints, "
            f"{len(self.pack.proposals)} memory batches, {len(self.pack.memories)} memories",
            "verified: every file's sha256 and size, every run's hash chain and head",
        ]
        for o in self.runs:
            if o.action == "identical":
                out.append(f"run {o.run_id}: already imported (identical), skipped")
            elif o.pack_id != o.run_id:
                out.append(f"run {o.pack_id}: import as {o.run_id} (the id is taken by another "
                           f"run), {o.steps} steps, {o.checkpoints} checkpoints")
            else:
                out.append(f"run {o.run_id}: import, {o.steps} steps, {o.checkpoints} "
                           "checkpoints")
        for what, new, same in (
            ("memory batches", len(self.records.proposals), self.proposals_identical),
            ("memories", len(self.records.memories), self.memories_identical),
        ):
            out.append(f"{what}: {new} to import, {same} already imported")
        for old, new_id in self.renamed.items():
            if not old.startswith("run "):
                out.append(f"{old}: import as {new_id} (the id is taken)")
        if m.embedding_model is not None and self.records.memories:
            out.append(f"vectors: not in the pack (exported with {m.embedding_model}); the "
                       "server embeds imported memories when it starts, or run "
                       "`mcp-checkpoint reindex`")
        return out


def _new_id(kind: Kind, old: str, digest: str) -> str:
    """A renamed id: the same for the same pack and id, so a second import with
    ``rename`` finds its first copy."""
    tail = hashlib.sha256(f"{digest}\n{kind}\n{old}".encode()).hexdigest()[:22]
    return f"{_PREFIX[kind]}_{tail}"


def _rehash(run: Run, steps: list[Step], new_id: RunId) -> tuple[Run, list[Step]]:
    """The run under another id: the hash chain starts from the new id's genesis hash."""
    prev = genesis_hash(new_id)
    out: list[Step] = []
    for step in steps:
        draft = StepDraft(
            tool=step.tool, input=step.input, output=step.output, reasoning=step.reasoning,
            status=step.status, idempotency_key=step.idempotency_key,
        )
        digest = step_hash(prev, new_id, step.seq, draft, step.created_at)
        out.append(step.model_copy(update={"run_id": new_id, "prev_hash": prev,
                                           "hash": digest}))
        prev = digest
    return run.model_copy(update={"run_id": new_id, "head_hash": prev}), out


def _apply_renames(pack: Pack, names: dict[tuple[Kind, str], str]) -> Pack:
    if not names:
        return pack

    def rid(value: RunId | None) -> Any:
        return None if value is None else names.get(("run", value), value)

    def bid(value: BatchId | None) -> Any:
        return None if value is None else names.get(("batch", value), value)

    def mid(value: str | None) -> Any:
        return None if value is None else names.get(("memory", value), value)

    runs: list[PackRun] = []
    for item in pack.runs:
        new = RunId(rid(item.run.run_id))
        if new == item.run.run_id:
            runs.append(item)
            continue
        run, steps = _rehash(item.run, item.steps, new)
        checkpoints = [c.model_copy(update={"run_id": new}) for c in item.checkpoints]
        runs.append(PackRun(run, steps, checkpoints))
    proposals = [
        p.model_copy(update={
            "batch_id": bid(p.batch_id),
            "run_id": rid(p.run_id),
            "memory_ids": {i: mid(m) for i, m in p.memory_ids.items()},
            "items": [
                it.model_copy(update={"target_id": mid(it.target_id),
                                      "superseded_by": mid(it.superseded_by)})
                for it in p.items
            ],
        })
        for p in pack.proposals
    ]
    memories = [
        m.model_copy(update={
            "memory_id": mid(m.memory_id), "batch_id": bid(m.batch_id), "run_id": rid(m.run_id),
            "superseded_by": mid(m.superseded_by),
        })
        for m in pack.memories
    ]
    return Pack(pack.manifest, pack.digest, runs, proposals, memories)


@dataclass
class _Classified:
    new_runs: list[PackRun]
    same_runs: list[PackRun]
    new_proposals: list[Proposal]
    same_proposals: int
    new_memories: list[Memory]
    same_memories: int
    collisions: list[tuple[Kind, str]]


async def _classify(store: Store, tenant: Tenant, pack: Pack) -> _Classified:
    found = _Classified([], [], [], 0, [], 0, [])
    for item in pack.runs:
        try:
            stored = await store.get_run(tenant, item.run.run_id)
        except NotFoundError:
            found.new_runs.append(item)
            continue
        same = stored == item.run
        if same and item.checkpoints:
            newest = await store.list_checkpoints(
                tenant, stored.run_id, limit=len(item.checkpoints) + 1, offset=0
            )
            same = list(reversed(newest)) == item.checkpoints
        if same:
            found.same_runs.append(item)
        else:
            found.collisions.append(("run", item.run.run_id))
    for proposal in pack.proposals:
        try:
            stored_batch = await store.get_proposal(tenant, proposal.batch_id)
        except NotFoundError:
            found.new_proposals.append(proposal)
            continue
        if stored_batch == proposal:
            found.same_proposals += 1
        else:
            found.collisions.append(("batch", proposal.batch_id))
    for start in range(0, len(pack.memories), _PAGE):
        chunk = pack.memories[start : start + _PAGE]
        stored_memories = {
            m.memory_id: m
            for m in await store.get_memories(tenant, [m.memory_id for m in chunk])
        }
        for memory in chunk:
            existing = stored_memories.get(memory.memory_id)
            if existing is None:
                found.new_memories.append(memory)
            elif existing == memory:
                found.same_memories += 1
            else:
                found.collisions.append(("memory", memory.memory_id))
    return found


def _imported_run(item: PackRun, cfg: CheckpointSettings, counter: _Counter) -> ImportedRun:
    """The run with what ``append_step`` would have kept for each step: its request hash
    and the acknowledgement a retry gets (working memory as it was after that step)."""
    run = item.run
    covered: list[tuple[int, int]] = [(0, 0)]
    for checkpoint in item.checkpoints:
        through = checkpoint.through_seq
        covered.append((through, item.steps[through - 1].cum_tokens if through else 0))
    steps: list[ImportedStep] = []
    error_seq = 0
    for step in item.steps:
        covered_seq, covered_tokens = covered[step.episode - 1]
        error_seq = step.seq if step.status == "error" else error_seq
        then = run.model_copy(update={
            "head_seq": step.seq, "head_tokens": step.cum_tokens,
            "checkpoint_count": step.episode - 1, "covered_seq": covered_seq,
            "covered_tokens": covered_tokens, "error_seq": error_seq,
        })
        draft = StepDraft(
            tool=step.tool, input=step.input, output=step.output, reasoning=step.reasoning,
            status=step.status, idempotency_key=step.idempotency_key,
        )
        steps.append(ImportedStep(step, request_hash(draft), step_ack(cfg, then, step)))
        if step.seq % _PAGE == 0:
            counter.add(_PAGE)
    counter.add(len(item.steps) % _PAGE)
    return ImportedRun(run, steps, list(item.checkpoints))


async def plan_import(
    store: Store,
    tenant: Tenant,
    pack: Pack,
    *,
    checkpoint_settings: CheckpointSettings,
    rename: bool = False,
    progress: Progress | None = None,
) -> ImportPlan:
    """Compare a verified pack with the store and decide what to write.

    A record whose id is free is imported; one that is stored already, identical, is
    skipped (so importing twice writes nothing the second time). An id taken by a
    *different* record is a collision: ConflictError naming the ids, unless ``rename``,
    which gives each colliding record a new id derived from the pack and the old id (the
    same every time) and rewrites every reference to it (a renamed run's hash chain is
    recomputed from its new id's genesis hash). Reads only.
    """
    names: dict[tuple[Kind, str], str] = {}
    while True:
        current = _apply_renames(pack, names)
        found = await _classify(store, tenant, current)
        if not found.collisions:
            break
        reverse = {new: old for (kind, old), new in names.items()}
        if not rename or any(record_id in reverse for _, record_id in found.collisions):
            shown = ", ".join(f"{kind} {record_id}" for kind, record_id in
                              found.collisions[:10])
            more = len(found.collisions) - 10
            raise ConflictError(
                f"these ids exist with other content: {shown}"
                + (f" (and {more} more)" if more > 0 else "")
                + "; import with --rename to give them new ids"
            )
        # One kind at a time, referenced kinds first: a record that differs only because it
        # points at a renamed one is then renamed by reference, not given an id of its own
        # (so a second import with rename finds the first one's copies identical).
        first = next(k for k in _RENAME_ORDER if any(c[0] == k for c in found.collisions))
        for kind, record_id in found.collisions:
            if kind == first:
                names[(kind, record_id)] = _new_id(kind, record_id, pack.digest)
    outcomes: list[RunOutcome] = []
    new_ids = {item.run.run_id for item in found.new_runs}
    for original, item in zip(pack.runs, current.runs, strict=True):
        outcomes.append(RunOutcome(
            pack_id=original.run.run_id,
            run_id=item.run.run_id,
            action="import" if item.run.run_id in new_ids else "identical",
            steps=len(item.steps),
            checkpoints=len(item.checkpoints),
        ))
    counter = _Counter(progress, "planning", sum(len(i.steps) for i in found.new_runs))
    records = ImportRecords(
        runs=[_imported_run(item, checkpoint_settings, counter) for item in found.new_runs],
        proposals=found.new_proposals,
        memories=found.new_memories,
    )
    return ImportPlan(
        pack=pack,
        tenant=tenant,
        records=records,
        runs=outcomes,
        proposals_identical=found.same_proposals,
        memories_identical=found.same_memories,
        renamed={f"{kind} {old}": new for (kind, old), new in names.items()},
    )


async def apply_import(store: Store, plan: ImportPlan) -> None:
    """Write the plan in one transaction (nothing when there is nothing to do).
    ConflictError, with nothing written, if another writer took one of its ids meanwhile."""
    if plan.records.runs and plan.pack.blobs:
        # Content-addressed, so written first: if the import then fails, the blobs are
        # unreferenced and garbage collection removes them.
        await store.put_blobs(plan.tenant, plan.pack.blobs, now=plan.pack.manifest.created_at)
    if not plan.nothing_to_do:
        await store.import_records(plan.tenant, plan.records)
