"""The statements both SQL stores run, written once with named ``:name`` parameters (SQLite's
style; ``psycopg`` turns them into ``%(name)s`` for PostgreSQL). The two schemas keep the
same tables and columns; what only one backend can say stays in its own module.

The stores take their parameters from ``_rows`` (a record's columns) and from the plans of
``core.plans`` (what to write); a statement that applies a plan compares-and-sets on what
the plan was made from.
"""

from __future__ import annotations

import re

from mcp_checkpoint.storage._rows import (
    CHECKPOINT_COLUMNS,
    MEMORY_COLUMNS,
    PROPOSAL_COLUMNS,
    RUN_COLUMNS,
    STEP_COLUMNS,
    TOMBSTONE_COLUMNS,
)

__all__ = [
    "CHECKPOINT_BY_ID",
    "CHECKPOINT_BY_NUMBER",
    "CHECKPOINT_MARKS",
    "COMMIT_PROPOSAL",
    "DELETE_CHECKPOINTS_BELOW",
    "DELETE_STEPS_THROUGH",
    "EXPIRE_PROPOSAL",
    "FIND_CHECKPOINT",
    "FORGET",
    "FORGOTTEN",
    "INSERT_CHECKPOINT",
    "INSERT_MEMORY",
    "INSERT_PROPOSAL",
    "INSERT_RUN",
    "INSERT_STEP",
    "INSERT_TOMBSTONE",
    "LIST_CHECKPOINTS",
    "MEMORY",
    "MOVE_COVERED",
    "PROPOSAL",
    "RECORD_PRUNED",
    "RUN",
    "RUN_AND_THROUGH_TOKENS",
    "RUN_EXISTS",
    "SEEN_KEY",
    "STEP_STATS",
    "UPDATE_MEMORY",
    "UPDATE_RUN",
    "list_memories",
    "list_prunable_runs",
    "list_runs",
    "list_steps",
    "psycopg",
]


def _insert(table: str, columns: tuple[str, ...]) -> str:
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 - constant names
        f"VALUES ({', '.join(':' + column for column in columns)})"
    )


_PARAMETER = re.compile(r"(?<![:\w]):(\w+)")


def psycopg(sql: str) -> str:
    """``sql`` with psycopg's ``%(name)s`` parameters instead of ``:name``."""
    return _PARAMETER.sub(r"%(\1)s", sql.replace("%", "%%"))


INSERT_RUN = _insert("runs", RUN_COLUMNS)
INSERT_STEP = _insert("steps", STEP_COLUMNS)
INSERT_CHECKPOINT = _insert("checkpoints", CHECKPOINT_COLUMNS)
INSERT_PROPOSAL = _insert("proposals", PROPOSAL_COLUMNS)
INSERT_MEMORY = _insert("memories", MEMORY_COLUMNS)
INSERT_TOMBSTONE = _insert("pruned_checkpoints", TOMBSTONE_COLUMNS)

# -- runs and steps ------------------------------------------------------------------------

RUN = "SELECT * FROM runs WHERE tenant = :tenant AND run_id = :run_id"
RUN_EXISTS = "SELECT 1 FROM runs WHERE tenant = :tenant AND run_id = :run_id"
UPDATE_RUN = (
    "UPDATE runs SET version = version + 1, updated_at = :updated_at, "
    "updated_us = :updated_us, status = COALESCE(:status, status), "
    "pinned = COALESCE(:pinned, pinned) "
    "WHERE tenant = :tenant AND run_id = :run_id AND version = :expected_version"
)
SEEN_KEY = (
    "SELECT request_hash, ack FROM steps "
    "WHERE tenant = :tenant AND run_id = :run_id AND idempotency_key = :key"
)

# -- checkpoints ---------------------------------------------------------------------------

RUN_AND_THROUGH_TOKENS = (
    # The run, and the cum_tokens of the step a new checkpoint would end at (core.plans).
    # A subquery, not a join: its seq is then an index condition in every plan.
    "SELECT r.*, (SELECT s.cum_tokens FROM steps AS s WHERE s.tenant = r.tenant "
    "AND s.run_id = r.run_id AND s.seq = COALESCE(:through_seq, r.head_seq)) "
    "AS through_tokens FROM runs AS r WHERE r.tenant = :tenant AND r.run_id = :run_id"
)
MOVE_COVERED = (
    # Applies a CheckpointPlan: only if no other checkpoint was added since it was made.
    "UPDATE runs SET checkpoint_count = :checkpoint_count, "
    "latest_checkpoint_id = :latest_checkpoint_id, covered_seq = :covered_seq, "
    "covered_tokens = :covered_tokens, updated_at = :updated_at, updated_us = :updated_us "
    "WHERE tenant = :tenant AND run_id = :run_id AND checkpoint_count = :expected_count"
)
CHECKPOINT_BY_ID = (
    "SELECT * FROM checkpoints "
    "WHERE tenant = :tenant AND run_id = :run_id AND checkpoint_id = :checkpoint_id"
)
CHECKPOINT_BY_NUMBER = (
    "SELECT * FROM checkpoints WHERE tenant = :tenant AND run_id = :run_id AND number = :number"
)
LIST_CHECKPOINTS = (
    "SELECT * FROM checkpoints WHERE tenant = :tenant AND run_id = :run_id "
    "ORDER BY number DESC LIMIT :limit OFFSET :offset"
)
FIND_CHECKPOINT = (
    "SELECT run_id, number, through_seq, 0 AS pruned FROM checkpoints "
    "WHERE tenant = :tenant AND checkpoint_id = :checkpoint_id "
    "UNION ALL SELECT run_id, number, through_seq, 1 FROM pruned_checkpoints "
    "WHERE tenant = :tenant AND checkpoint_id = :checkpoint_id LIMIT 1"
)

# -- retention -----------------------------------------------------------------------------

_THROUGH_STEP = (
    "FROM steps AS s WHERE s.tenant = c.tenant AND s.run_id = c.run_id "
    "AND s.seq = c.through_seq"
)
CHECKPOINT_MARKS = (
    # A run's stored checkpoints, oldest first, with the step each one's range ends at
    # (subqueries: one index lookup each, whatever plan the database picks).
    f"SELECT c.checkpoint_id, c.number, c.through_seq, (SELECT s.hash {_THROUGH_STEP}) "  # noqa: S608
    f"AS step_hash, (SELECT s.cum_tokens {_THROUGH_STEP}) AS step_tokens "
    "FROM checkpoints AS c WHERE c.tenant = :tenant AND c.run_id = :run_id ORDER BY c.number"
)
DELETE_STEPS_THROUGH = (
    "DELETE FROM steps WHERE tenant = :tenant AND run_id = :run_id AND seq <= :seq"
)
DELETE_CHECKPOINTS_BELOW = (
    "DELETE FROM checkpoints WHERE tenant = :tenant AND run_id = :run_id AND number < :number"
)
RECORD_PRUNED = (
    # Applies a PrunePlan to the run (pruning is not activity: updated_at stays).
    "UPDATE runs SET version = :version, pruned_seq = :pruned_seq, "
    "pruned_hash = :pruned_hash, pruned_tokens = :pruned_tokens, "
    "pruned_checkpoints = :pruned_checkpoints "
    "WHERE tenant = :tenant AND run_id = :run_id AND version = :expected_version"
)

# -- proposals and memories ----------------------------------------------------------------

PROPOSAL = "SELECT * FROM proposals WHERE tenant = :tenant AND batch_id = :batch_id"
EXPIRE_PROPOSAL = (
    "UPDATE proposals SET status = 'expired' "
    "WHERE tenant = :tenant AND batch_id = :batch_id AND status = 'pending'"
)
COMMIT_PROPOSAL = (
    "UPDATE proposals SET status = :status, committed_at = :committed_at, "
    "accepted = :accepted, rejected = :rejected, memory_ids = :memory_ids "
    "WHERE tenant = :tenant AND batch_id = :batch_id AND status = 'pending'"
)
MEMORY = (
    f"SELECT {', '.join(MEMORY_COLUMNS)} FROM memories "  # noqa: S608 - constant names
    "WHERE tenant = :tenant AND memory_id = :memory_id"
)
FORGOTTEN = (
    "SELECT forgotten_at FROM forgotten_memories WHERE tenant = :tenant "
    "AND memory_id = :memory_id"
)
FORGET = (
    # The tombstone of a forgotten memory (a second forget of a re-imported id updates it).
    "INSERT INTO forgotten_memories (tenant, memory_id, forgotten_at) "
    "VALUES (:tenant, :memory_id, :forgotten_at) ON CONFLICT (tenant, memory_id) "
    "DO UPDATE SET forgotten_at = excluded.forgotten_at"
)
UPDATE_MEMORY = (
    # Applies a MemoryWrite of a commit plan.
    "UPDATE memories SET content = :content, status = :status, confidence = :confidence, "
    "source_refs = :source_refs, batch_id = :batch_id, superseded_by = :superseded_by, "
    "updated_at = :updated_at, version = :version "
    "WHERE tenant = :tenant AND memory_id = :memory_id AND version = :expected_version"
)


# -- listings, built from the filters given ------------------------------------------------


def list_runs(
    *, status: bool, project: bool, text: str | None = None, since: bool = False,
    until: bool = False,
) -> str:
    """A page of a tenant's runs, newest first; filtered by ``:status``, ``:project`` and
    the ``:since_us``/``:until_us`` bounds of ``updated_us`` when those are given, and by
    ``text``: the backend's condition that the objective holds ``:text`` (lower-cased)."""
    where = ["tenant = :tenant"]
    where += ["status = :status"] if status else []
    where += ["project = :project"] if project else []
    where += [text] if text else []
    where += ["updated_us >= :since_us"] if since else []
    where += ["updated_us < :until_us"] if until else []
    return (
        f"SELECT * FROM runs WHERE {' AND '.join(where)} "  # noqa: S608 - constants
        "ORDER BY updated_us DESC, run_id DESC LIMIT :limit OFFSET :offset"
    )


STEP_STATS = (
    "SELECT tool, status, COUNT(*) AS steps, SUM(tokens) AS tokens FROM steps "
    "WHERE tenant = :tenant AND run_id = :run_id GROUP BY tool, status"
)


def list_steps(*, newest_first: bool) -> str:
    """Steps ``:after_seq < seq <= :until_seq`` of a run, at most ``:limit``."""
    return (
        # Named columns: PostgreSQL's steps also hold a search vector no page needs.
        f"SELECT {', '.join(STEP_COLUMNS)} FROM steps "  # noqa: S608 - constant names
        "WHERE tenant = :tenant AND run_id = :run_id "
        "AND seq > :after_seq AND seq <= :until_seq "
        f"ORDER BY seq {'DESC' if newest_first else 'ASC'} LIMIT :limit"
    )


def list_prunable_runs(*, tenant: bool, after: bool, collate: str = "") -> str:
    """Finished runs updated before ``:finished_us``, by (tenant, run_id) after
    (``:after_tenant``, ``:after_run``), at most ``:limit``; ``collate`` makes ids compare
    bytewise where the database would not."""
    where = ["status <> 'active'", "updated_us < :finished_us"]
    where += ["tenant = :tenant"] if tenant else []
    where += [
        f"(tenant, run_id) > (:after_tenant{collate}, :after_run{collate})"
    ] if after else []
    return (
        f"SELECT * FROM runs WHERE {' AND '.join(where)} "  # noqa: S608 - constants
        f"ORDER BY tenant{collate}, run_id{collate} LIMIT :limit"
    )


def list_memories(*, tenant: bool, status: bool, after: bool) -> str:
    """Memories by (tenant, memory_id) after (``:after_tenant``, ``:after_memory``), at most
    ``:limit``; one ``:tenant``'s and of one ``:status`` when those are given."""
    where = ["tenant = :tenant"] if tenant else []
    where += ["status = :status"] if status else []
    where += ["(tenant, memory_id) > (:after_tenant, :after_memory)"] if after else []
    return (
        f"SELECT {', '.join(MEMORY_COLUMNS)} FROM memories "  # noqa: S608 - constants
        f"{'WHERE ' + ' AND '.join(where) if where else ''} "
        "ORDER BY tenant, memory_id LIMIT :limit"
    )


def list_proposals(*, status: bool) -> str:
    """A page of a tenant's batches, newest first; of one ``:status`` when it is given."""
    where = ["tenant = :tenant"]
    where += ["status = :status"] if status else []
    return (
        f"SELECT * FROM proposals WHERE {' AND '.join(where)} "  # noqa: S608 - constants
        "ORDER BY created_at DESC, batch_id DESC LIMIT :limit OFFSET :offset"
    )


def match_ids(table: str, column: str, *, bounded: bool) -> str:
    """The ids of ``column`` in ``table`` (one of ``_rows.ID_TABLES``) in ``[:low, :high)``
    (``:high`` only when ``bounded``), in order, at most ``:limit``: one range scan of the
    (tenant, id) index."""
    bound = f" AND {column} < :high" if bounded else ""
    return (
        f"SELECT {column} FROM {table} WHERE tenant = :tenant AND {column} >= :low"  # noqa: S608
        f"{bound} ORDER BY {column} LIMIT :limit"
    )
