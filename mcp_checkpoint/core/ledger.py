"""The hash chain over a run's ledger: each step's hash covers its content and the hash
before it, so any edit, deletion or reordering of acknowledged steps is detectable.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from mcp_checkpoint.core.models import Run, RunId, Step, StepAck, StepDraft, Tenant
from mcp_checkpoint.core.ports import EpisodicStore
from mcp_checkpoint.errors import ConflictError

__all__ = [
    "ChainBreak",
    "append_step",
    "canonical_json",
    "genesis_hash",
    "request_hash",
    "retried_ack",
    "step_hash",
    "verify_chain",
    "verify_run",
]

_VERIFY_PAGE = 500


def canonical_json(value: Any) -> str:
    """A deterministic JSON text: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def genesis_hash(run_id: RunId) -> str:
    """The ``prev_hash`` of a run's first step."""
    return _sha256(f"mcp-checkpoint/genesis/{run_id}")


def request_hash(draft: StepDraft) -> str:
    """Identifies a record_step request, to tell a retry from a different call."""
    return _sha256(canonical_json(draft.model_dump(mode="json", exclude={"idempotency_key"})))


def step_hash(
    prev_hash: str, run_id: RunId, seq: int, draft: StepDraft, created_at: datetime
) -> str:
    """The hash of one step, chained to ``prev_hash``."""
    body = {
        "run_id": run_id,
        "seq": seq,
        "created_at": created_at.isoformat(),
        **draft.model_dump(mode="json"),
    }
    return _sha256(prev_hash + "\n" + canonical_json(body))


def append_step(
    run: Run, draft: StepDraft, *, tokens: int, now: datetime
) -> tuple[Step, Run]:
    """The step that ``draft`` becomes at the head of ``run``, and the run after it: the
    next seq, the current episode, chained to the run's head hash, with cumulative tokens.
    Stores call this inside the transaction that writes both."""
    seq = run.head_seq + 1
    step = Step(
        run_id=run.run_id,
        seq=seq,
        episode=run.episode,
        tool=draft.tool,
        input=draft.input,
        output=draft.output,
        reasoning=draft.reasoning,
        status=draft.status,
        idempotency_key=draft.idempotency_key,
        tokens=tokens,
        cum_tokens=run.head_tokens + tokens,
        created_at=now,
        prev_hash=run.head_hash,
        hash=step_hash(run.head_hash, run.run_id, seq, draft, now),
    )
    after = run.model_copy(update={
        "head_seq": seq,
        "step_count": run.step_count + 1,
        "head_hash": step.hash,
        "head_tokens": step.cum_tokens,
        "error_seq": seq if draft.status == "error" else run.error_seq,
        "updated_at": now,
    })
    return step, after


def retried_ack(
    key: str, stored_request_hash: str, stored_ack: StepAck, request_hash: str
) -> StepAck:
    """The answer to an append whose idempotency ``key`` a stored step already holds: that
    step's acknowledgement with ``duplicate=True``, if the request is the same one
    (``request_hash``); ConflictError if the key was used for a different step."""
    if stored_request_hash != request_hash:
        raise ConflictError(f"idempotency_key {key} was used for a different step")
    return stored_ack.model_copy(update={"duplicate": True})


class ChainBreak(ValueError):
    """The ledger does not verify; ``seq`` is the first step that fails."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"ledger breaks at seq {seq}: {reason}")
        self.seq = seq
        self.reason = reason


def verify_chain(run_id: RunId, steps: Iterable[Step], *, prev_hash: str | None = None) -> str:
    """Check that ``steps`` (in seq order, starting after ``prev_hash``) form an unbroken
    chain; return the last hash. Raises ChainBreak at the first inconsistency.
    """
    expected_prev = genesis_hash(run_id) if prev_hash is None else prev_hash
    expected_seq: int | None = None
    for step in steps:
        if expected_seq is not None and step.seq != expected_seq:
            raise ChainBreak(step.seq, f"expected seq {expected_seq}")
        if step.prev_hash != expected_prev:
            raise ChainBreak(step.seq, "prev_hash does not match the previous step")
        draft = StepDraft(
            tool=step.tool,
            input=step.input,
            output=step.output,
            reasoning=step.reasoning,
            status=step.status,
            idempotency_key=step.idempotency_key,
        )
        actual = step_hash(step.prev_hash, run_id, step.seq, draft, step.created_at)
        if actual != step.hash:
            raise ChainBreak(step.seq, "content does not match its hash")
        expected_prev = step.hash
        expected_seq = step.seq + 1
    return expected_prev


async def verify_run(store: EpisodicStore, tenant: Tenant, run_id: RunId) -> int:
    """Check a stored run's whole ledger page by page, up to its head; return the number of
    steps verified. Raises ChainBreak at the first step that does not verify (also when a
    step is missing or the run's head does not match the last step).

    After retention pruned steps ``1..pruned_seq``, the chain is checked from the anchor
    the run kept (``pruned_hash``, the hash of step ``pruned_seq``): the first remaining
    step must chain to it, so the remaining steps still prove their order and content.
    """
    run = await store.get_run(tenant, run_id)
    last_hash = genesis_hash(run_id)
    verified = 0
    if run.pruned_seq > 0:
        if run.pruned_hash is None:
            raise ChainBreak(run.pruned_seq + 1, "the pruned range has no anchor hash")
        last_hash = run.pruned_hash
        verified = run.pruned_seq
    start = verified
    while verified < run.head_seq:
        page = await store.get_steps(
            tenant, run_id, after_seq=verified, until_seq=run.head_seq, limit=_VERIFY_PAGE
        )
        if not page or page[0].seq != verified + 1:
            raise ChainBreak(verified + 1, "the step is missing")
        last_hash = verify_chain(run_id, page, prev_hash=last_hash)
        verified = page[-1].seq
    if last_hash != run.head_hash:
        raise ChainBreak(verified, "the run's head_hash does not match the last step")
    return verified - start
