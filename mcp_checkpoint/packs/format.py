"""The pack format: the zip's layout and versions, the manifest, and a pack read into memory.

A pack holds ``manifest.json`` and JSON / JSON Lines files::

    manifest.json              format and schema versions, the sha256 and size of every
                               other file, the embedding model, each run's ledger head
    runs/0001/run.json         the run record
    runs/0001/steps.jsonl      its whole ledger, seq 1..head_seq (hash chained)
    runs/0001/checkpoints.jsonl  its checkpoints, number 1..checkpoint_count
    proposals.jsonl            the memory batches that wrote the exported memories
    memories.jsonl             memories of the exported runs (and of the chosen scopes)
    blobs/<sha256>             workspace snapshot files and manifests (format 2)

The helpers at the end are shared by export, reading and planning: a pack holds whole
ledgers, errors name the pack, progress is reported by phase.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from mcp_checkpoint.core.models import Checkpoint, Memory, Proposal, Run, RunId, Step
from mcp_checkpoint.errors import InvalidArgumentError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "MEMORIES",
    "PROPOSALS",
    "READABLE_FORMAT_VERSIONS",
    "RUN_FILES",
    "SCHEMA_VERSION",
    "Manifest",
    "Pack",
    "PackFile",
    "PackRun",
    "PackRunEntry",
    "Progress",
]

FORMAT = "mcp-checkpoint-pack"
FORMAT_VERSION = 2
# Version 1 packs (no workspace blobs) are still read.
READABLE_FORMAT_VERSIONS = (1, 2)
"""Layout of the zip (file names, manifest fields). Readers refuse other versions."""
SCHEMA_VERSION = 1
"""Shape of the records (``resources/schemas``). Readers refuse other versions."""

MANIFEST = "manifest.json"
PROPOSALS = "proposals.jsonl"
MEMORIES = "memories.jsonl"
RUN_FILES = ("run.json", "steps.jsonl", "checkpoints.jsonl")

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: work done so far in a phase (total 0 when unknown)."""

_PAGE = 500
_CHUNK = 1 << 20
_RATIO_FLOOR = 1 << 16
"""Files smaller than this decompress to too little to matter: their ratio is not checked."""
_RUN_DIR = re.compile(r"runs/(\d{4,9})/")
# A workspace snapshot blob (format 2): its name is the sha256 of its bytes.
_BLOB = re.compile(r"blobs/([0-9a-f]{64})")



# -- the manifest ---------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PackFile(_Frozen):
    """One file of the pack: its path inside the zip, sha256 and size of its bytes."""

    path: str
    sha256: str
    size: int
    records: int


class PackRunEntry(_Frozen):
    """Where a run's files are, and the head of its ledger (to check against)."""

    run_id: RunId
    dir: str
    head_seq: int
    head_hash: str
    checkpoints: int


class Manifest(_Frozen):
    """``manifest.json``: what the pack holds and how to check it."""

    format: Literal["mcp-checkpoint-pack"]
    format_version: int
    schema_version: int
    tool_version: str
    created_at: datetime
    embedding_model: str | None
    embedding_dimension: int | None
    runs: list[PackRunEntry]
    files: list[PackFile]


@dataclass(frozen=True)
class PackRun:
    """A run with its ledger and checkpoints, in order."""

    run: Run
    steps: list[Step]
    checkpoints: list[Checkpoint]


@dataclass(frozen=True)
class Pack:
    """A pack read and verified: every hash and ledger chain checked."""

    manifest: Manifest
    digest: str
    runs: list[PackRun]
    proposals: list[Proposal]
    memories: list[Memory]
    blobs: dict[str, bytes] = field(default_factory=dict)
    """Workspace snapshot blobs (files and manifests) by sha256."""

    @property
    def step_count(self) -> int:
        """Steps of all runs."""
        return sum(len(r.steps) for r in self.runs)

    @property
    def checkpoint_count(self) -> int:
        """Checkpoints of all runs."""
        return sum(len(r.checkpoints) for r in self.runs)



def _bad(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"pack: {message}")


def _whole_ledger(run: Run, what: str) -> None:
    """InvalidArgumentError if retention compacted ``run``: a pack holds whole ledgers
    (steps from seq 1, checkpoints from number 1), which such a run no longer has."""
    if run.pruned_seq or run.pruned_checkpoints:
        raise InvalidArgumentError(
            f"run {run.run_id} was compacted by retention (steps 1-{run.pruned_seq} and "
            f"{run.pruned_checkpoints} checkpoints removed); a pack holds whole ledgers, so "
            f"it {what}"
        )


class _Counter:
    """Progress of one phase, reported every ``_PAGE`` items."""

    def __init__(self, progress: Progress | None, phase: str, total: int) -> None:
        self._progress = progress
        self._phase = phase
        self._total = total
        self.done = 0

    def add(self, count: int) -> None:
        self.done += count
        if self._progress is not None and count:
            self._progress(self._phase, self.done, self._total)

