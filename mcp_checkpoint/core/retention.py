"""Retention: remove old steps and checkpoints of finished runs, keep what still matters.

A finished run (status ``completed``, ``failed`` or ``abandoned``) that has not changed for
a while keeps its newest checkpoints and the steps after the oldest of them; older
checkpoints and the steps they cover go. What stays is still whole:

- every kept checkpoint: a checkpoint's content is the merge of all its ancestors, made
  when it was written, so it reads nothing that is removed (the latest is always kept,
  so a run that is reopened merges its next checkpoint onto it);
- the ledger's hash chain: the run keeps the hash of the last removed step as the anchor
  the remaining steps chain from (``ledger.verify_run`` checks from there);
- provenance: ``resolve_refs`` tells a memory's ``step:RUN:SEQ`` and ``checkpoint:ID``
  references that were removed (``pruned: true``) from those that never existed.

Active runs are never touched, and each run is pruned in one transaction of the store.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from mcp_checkpoint.core.models import CheckpointId, RunId, Tenant
from mcp_checkpoint.core.ports import EpisodicStore, PruneResult, Store
from mcp_checkpoint.core.snapshots import collect_garbage
from mcp_checkpoint.errors import InvalidArgumentError, NotFoundError

__all__ = [
    "RefResolution",
    "RetentionPolicy",
    "parse_duration",
    "prune_runs",
    "resolve_refs",
]

_PAGE = 200
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_STEP_REF = re.compile(r"^step:(?P<run>.+)[:#](?P<seq>\d+)$")


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w`` or ``45s`` as a timedelta.
    InvalidArgumentError for anything else."""
    match = _DURATION.match(text)
    if match is None:
        raise InvalidArgumentError(
            f"duration {text[:40]!r} is not a number followed by s, m, h, d or w (e.g. 30d)"
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@dataclass(frozen=True)
class RetentionPolicy:
    """Which runs to prune and how much of each to keep."""

    older_than: timedelta
    """A finished run qualifies once it has not changed (``updated_at``) for this long."""
    keep_checkpoints: int = 1
    """The newest checkpoints each pruned run keeps (at least 1)."""

    def __post_init__(self) -> None:
        if self.keep_checkpoints < 1:
            raise InvalidArgumentError("keep_checkpoints must be at least 1")
        if self.older_than < timedelta(0):
            raise InvalidArgumentError("older_than must not be negative")


async def prune_runs(
    store: Store,
    policy: RetentionPolicy,
    *,
    tenant: Tenant | None,
    now: datetime,
    dry_run: bool,
    run_ids: Sequence[RunId] | None = None,
) -> list[PruneResult]:
    """Prune every finished run of ``tenant`` (every tenant's when None) that the policy
    selects, or only ``run_ids`` (of ``tenant``, which is then required); one transaction
    per run. Returns a result per run considered, in (tenant, run_id) order; with
    ``dry_run`` nothing is written and the results say what would be removed. The
    workspace-snapshot blobs that only removed checkpoints referred to go too."""
    results = await _prune(store, policy, tenant=tenant, now=now, dry_run=dry_run,
                           run_ids=run_ids)
    if not dry_run:
        for owner in sorted({r.tenant for r in results if r.checkpoint_ids}):
            await collect_garbage(store, owner)
    return results


async def _prune(
    store: Store,
    policy: RetentionPolicy,
    *,
    tenant: Tenant | None,
    now: datetime,
    dry_run: bool,
    run_ids: Sequence[RunId] | None,
) -> list[PruneResult]:
    cutoff = now - policy.older_than
    results: list[PruneResult] = []
    if run_ids is not None:
        if tenant is None:
            raise InvalidArgumentError("pruning named runs needs a tenant")
        for run_id in run_ids:
            result = await store.prune_run(
                tenant, run_id, keep_checkpoints=policy.keep_checkpoints,
                finished_before=cutoff, dry_run=dry_run, now=now,
            )
            results.append(result)
        return results
    after: tuple[Tenant, RunId] | None = None
    while True:
        page = await store.list_prunable_runs(
            tenant, finished_before=cutoff, after=after, limit=_PAGE
        )
        for owner, run in page:
            results.append(await store.prune_run(
                owner, run.run_id, keep_checkpoints=policy.keep_checkpoints,
                finished_before=cutoff, dry_run=dry_run, now=now,
            ))
        if len(page) < _PAGE:
            return results
        after = (page[-1][0], page[-1][1].run_id)


@dataclass(frozen=True)
class RefResolution:
    """What one provenance reference (a memory's ``source_refs`` entry) points at now."""

    ref: str
    kind: Literal["step", "checkpoint", "other"]
    run_id: RunId | None = None
    found: bool = False
    """The step or checkpoint is stored and can be read."""
    pruned: bool = False
    """It existed, and retention removed it."""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (for the ``memory://`` resource)."""
        return {
            "ref": self.ref, "kind": self.kind, "run_id": self.run_id,
            "found": self.found, "pruned": self.pruned,
        }


async def _resolve(store: EpisodicStore, tenant: Tenant, ref: str) -> RefResolution:
    step = _STEP_REF.match(ref)
    if step is not None:
        run_id, seq = RunId(step.group("run")), int(step.group("seq"))
        try:
            run = await store.get_run(tenant, run_id)
        except NotFoundError:
            return RefResolution(ref, "step", run_id)
        if 0 < seq <= run.pruned_seq:
            return RefResolution(ref, "step", run_id, pruned=True)
        found = await store.get_steps(tenant, run_id, after_seq=seq - 1, until_seq=seq, limit=1)
        return RefResolution(ref, "step", run_id, found=bool(found))
    if ref.startswith("checkpoint:"):
        located = await store.find_checkpoint(tenant, CheckpointId(ref.removeprefix("checkpoint:")))
        if located is None:
            return RefResolution(ref, "checkpoint")
        return RefResolution(
            ref, "checkpoint", located.run_id, found=not located.pruned, pruned=located.pruned
        )
    return RefResolution(ref, "other")


async def resolve_refs(
    store: EpisodicStore, tenant: Tenant, refs: Sequence[str]
) -> list[RefResolution]:
    """Resolve provenance references in order: ``step:RUN:SEQ`` (or ``step:RUN#SEQ``) and
    ``checkpoint:ID`` are looked up (``found``, or ``pruned`` when retention removed
    them); anything else (a URL, free text) is ``kind="other"`` and left alone."""
    return [await _resolve(store, tenant, ref) for ref in refs]
