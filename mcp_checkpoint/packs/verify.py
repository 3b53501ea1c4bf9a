"""Verifying a pack's records: they must be a consistent, untampered copy of a store's
state (hash chains, seq and episode order, token totals, checkpoint numbering and parents,
ids and sizes within the limits, whole workspace snapshots).
"""

from __future__ import annotations

from mcp_checkpoint.config import LimitSettings
from mcp_checkpoint.core._limits import Limits
from mcp_checkpoint.core.ledger import ChainBreak, canonical_json, genesis_hash, verify_chain
from mcp_checkpoint.core.models import CheckpointId
from mcp_checkpoint.core.snapshots import check_path, parse_manifest
from mcp_checkpoint.errors import BackendError, InvalidArgumentError, PayloadTooLargeError
from mcp_checkpoint.packs.format import (
    _PAGE,
    Pack,
    PackRun,
    Progress,
    _bad,
    _Counter,
    _whole_ledger,
)


def _verify(pack: Pack, limits: LimitSettings, progress: Progress | None = None) -> None:
    """Check that the records are a consistent, untampered copy of a store's state."""
    lim = Limits(limits)
    counter = _Counter(progress, "verifying ledgers", pack.step_count)
    run_ids = [r.run.run_id for r in pack.runs]
    if len(set(run_ids)) != len(run_ids):
        raise _bad("a run appears twice")
    for entry, item in zip(pack.manifest.runs, pack.runs, strict=True):
        run = item.run
        if run.run_id != entry.run_id:
            raise _bad(f"{entry.dir}run.json holds run {run.run_id!r}, not {entry.run_id!r}")
        _ident(lim, "run_id", run.run_id)
        try:
            _whole_ledger(run, "cannot be imported")
        except InvalidArgumentError as exc:
            raise _bad(exc.message) from None
        _verify_steps(item, lim, limits, counter)
        _verify_checkpoints(item, lim)
        if run.head_hash != entry.head_hash or run.head_seq != entry.head_seq:
            raise _bad(f"run {run.run_id}: its ledger head differs from the manifest's")
        _verify_snapshots(item, pack.blobs)
    for what, ids in (
        ("batch", [p.batch_id for p in pack.proposals]),
        ("memory", [m.memory_id for m in pack.memories]),
    ):
        if len(set(ids)) != len(ids):
            raise _bad(f"a {what} appears twice")
        for record_id in ids:
            _ident(lim, f"{what} id", record_id)
    for proposal in pack.proposals:
        if len(proposal.items) > limits.max_batch_items:
            raise PayloadTooLargeError(
                f"pack: batch {proposal.batch_id} has {len(proposal.items)} items; "
                f"limits.max_batch_items is {limits.max_batch_items}"
            )
    for memory in pack.memories:
        lim.text(f"memory {memory.memory_id} content", memory.content, required=True)
        lim.ident(f"memory {memory.memory_id} scope", memory.scope)


def _verify_snapshots(item: PackRun, blobs: dict[str, bytes]) -> None:
    """Every snapshot a checkpoint names is in the pack, whole: its manifest and each file
    (the bytes were checked against their names when read)."""
    for checkpoint in item.checkpoints:
        ref = checkpoint.content.snapshot
        if ref is None:
            continue
        where = f"run {item.run.run_id} checkpoint {checkpoint.number}"
        if ref.manifest not in blobs:
            raise _bad(f"{where}: its snapshot's manifest is not in the pack")
        try:
            entries = parse_manifest(blobs[ref.manifest])
        except BackendError:
            raise _bad(f"{where}: its snapshot's manifest is malformed") from None
        for entry in entries:
            try:
                check_path(entry.path, field_name="a snapshot path")
            except InvalidArgumentError as exc:
                raise _bad(f"{where}: {exc.message}") from None
            data = blobs.get(entry.sha256)
            if data is None or len(data) != entry.size:
                raise _bad(f"{where}: snapshot file {entry.path!r} is not in the pack")


def _ident(lim: Limits, field: str, value: str) -> None:
    try:
        lim.ident(field, value)
    except InvalidArgumentError as exc:
        raise _bad(exc.message) from None


def _verify_steps(item: PackRun, lim: Limits, limits: LimitSettings, counter: _Counter) -> None:
    run = item.run
    where = f"run {run.run_id}"
    if len(item.steps) != run.head_seq or run.step_count != run.head_seq:
        raise _bad(f"{where}: {len(item.steps)} steps for head_seq {run.head_seq}")
    keys: set[str] = set()
    cum = 0
    episode = 1
    for position, step in enumerate(item.steps, start=1):
        if step.run_id != run.run_id or step.seq != position:
            raise _bad(f"{where}: step {position} is out of place")
        if step.tokens < 0 or step.cum_tokens != cum + step.tokens:
            raise _bad(f"{where}: step {position} has inconsistent token totals")
        cum = step.cum_tokens
        if not episode <= step.episode <= run.checkpoint_count + 1:
            raise _bad(f"{where}: step {position} has an impossible episode")
        episode = step.episode
        if step.idempotency_key is not None:
            if step.idempotency_key in keys:
                raise _bad(f"{where}: idempotency_key used twice")
            keys.add(step.idempotency_key)
        payload = canonical_json([step.input, step.output, step.reasoning])
        lim.size(f"pack: step {position} of run {run.run_id}", len(payload.encode("utf-8")),
                 limits.max_step_bytes, "limits.max_step_bytes")
    head = genesis_hash(run.run_id)
    for start in range(0, len(item.steps), 5 * _PAGE):
        page = item.steps[start : start + 5 * _PAGE]
        try:
            head = verify_chain(run.run_id, page, prev_hash=head)
        except ChainBreak as exc:
            raise _bad(f"{where}: {exc}") from None
        counter.add(len(page))
    if head != run.head_hash:
        raise _bad(f"{where}: head_hash does not match the last step")
    if cum != run.head_tokens:
        raise _bad(f"{where}: head_tokens does not match the steps")


def _verify_checkpoints(item: PackRun, lim: Limits) -> None:
    run = item.run
    where = f"run {run.run_id}"
    if len(item.checkpoints) != run.checkpoint_count:
        raise _bad(f"{where}: {len(item.checkpoints)} checkpoints for checkpoint_count "
                   f"{run.checkpoint_count}")
    parent: CheckpointId | None = None
    through = 0
    for number, checkpoint in enumerate(item.checkpoints, start=1):
        _ident(lim, "checkpoint id", checkpoint.checkpoint_id)
        if (checkpoint.run_id != run.run_id or checkpoint.number != number
                or checkpoint.parent_id != parent):
            raise _bad(f"{where}: checkpoint {number} is out of place")
        if not through <= checkpoint.through_seq <= checkpoint.head_seq <= run.head_seq:
            raise _bad(f"{where}: checkpoint {number} covers an impossible range")
        lim.size(f"pack: checkpoint {number} of run {run.run_id}",
                 len(checkpoint.content.model_dump_json().encode("utf-8")),
                 lim.s.max_checkpoint_bytes, "limits.max_checkpoint_bytes")
        parent = checkpoint.checkpoint_id
        through = checkpoint.through_seq
    covered_tokens = item.steps[through - 1].cum_tokens if through else 0
    if (run.latest_checkpoint_id != parent or run.covered_seq != through
            or run.covered_tokens != covered_tokens):
        raise _bad(f"{where}: its latest checkpoint does not match its checkpoints")

