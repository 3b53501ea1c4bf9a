"""The PostgreSQL store's own statements, and the shared ones (``storage._statements``) in
psycopg's parameter style."""

from __future__ import annotations

import functools

from mcp_checkpoint.storage._rows import MEMORY_COLUMNS as _COLUMNS
from mcp_checkpoint.storage._rows import STEP_COLUMNS
from mcp_checkpoint.storage._statements import psycopg

__all__ = [
    "HEAD_AND_KEY",
    "HOLDING_ALL",
    "LOCKED_MEMORIES",
    "MEMORY_COLUMNS",
    "MOVE_HEAD_AND_INSERT",
    "SEARCH",
    "SHARING_WORDS",
    "WORD_COUNTS",
    "pg",
]

pg = functools.cache(psycopg)
"""A shared statement as psycopg takes it (converted once)."""

MEMORY_COLUMNS = ", ".join(_COLUMNS)

# The run's head and, when the step has a key, the step already stored under it.
HEAD_AND_KEY = (
    "SELECT r.*, s.request_hash AS seen_request_hash, s.ack AS seen_ack FROM runs r "
    "LEFT JOIN steps s ON s.tenant = r.tenant AND s.run_id = r.run_id "
    "AND s.idempotency_key = %s WHERE r.tenant = %s AND r.run_id = %s"
)
# Moves the head and inserts the step in one statement, or does neither: the head must
# still be where the step was computed from (seq, episode, version). The step's columns
# are ``_rows.step_row``'s.
MOVE_HEAD_AND_INSERT = (
    "WITH head AS ("  # noqa: S608 - constant names
    " UPDATE runs SET head_seq = %(seq)s, step_count = %(step_count)s,"
    " head_hash = %(hash)s, head_tokens = %(cum_tokens)s, error_seq = %(error_seq)s,"
    " updated_at = %(created_at)s, updated_us = %(us)s"
    " WHERE tenant = %(tenant)s AND run_id = %(run_id)s AND head_seq = %(prev_seq)s"
    " AND head_hash = %(prev_hash)s"
    " AND checkpoint_count = %(checkpoints)s AND version = %(version)s"
    " RETURNING tenant, run_id) "
    f"INSERT INTO steps ({', '.join(STEP_COLUMNS)}) "
    "SELECT head.tenant, head.run_id, "
    + ", ".join(f"%({c})s" for c in STEP_COLUMNS if c not in ("tenant", "run_id"))
    + " FROM head RETURNING seq"
)
# The memories a commit targets, locked in memory_id order (two commits touching the same
# memories cannot deadlock).
LOCKED_MEMORIES = (
    f"SELECT {MEMORY_COLUMNS} FROM memories "  # noqa: S608 - constant names
    "WHERE tenant = %s AND memory_id = ANY(%s) ORDER BY memory_id FOR UPDATE"
)

SEARCHED = (
    "m.tenant = %(tenant)s AND m.status = %(status)s "
    "AND (%(scope)s::text IS NULL OR m.scope = %(scope)s) "
    "AND (%(kind)s::text IS NULL OR m.kind = %(kind)s)"
)
# One round trip: the query's words normalized as the memories are, each lexeme quoted as a
# tsquery operand (no character of the user's text is read as tsquery syntax) and OR-ed;
# the best matches by ts_rank_cd (GIN index), with the frequency of every query lexeme in
# each; and the statistics of the searched memories that BM25 weighs words by (how many,
# how many hold each lexeme).
SEARCH = rf"""
WITH terms AS (
    SELECT lexeme,
           ('''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || '''')::tsquery
               AS operand
    FROM (SELECT DISTINCT lexeme
          FROM unnest(to_tsvector('mcpck_english'::regconfig, %(text)s))) AS words
),
query AS (
    SELECT string_agg(operand::text, ' | ')::tsquery AS q, array_agg(lexeme) AS lexemes
    FROM terms
),
best AS (
    SELECT m.*, ts_rank_cd(m.tsv, query.q) AS rank
    FROM memories AS m, query
    WHERE m.tsv @@ query.q AND {SEARCHED}
    ORDER BY rank DESC, m.memory_id
    LIMIT %(depth)s
)
SELECT {MEMORY_COLUMNS},
    (SELECT jsonb_object_agg(u.lexeme, coalesce(array_length(u.positions, 1), 1))
     FROM unnest(best.tsv) AS u WHERE u.lexeme = ANY(query.lexemes)) AS tf,
    stats.documents, stats.matching
FROM best CROSS JOIN query CROSS JOIN (
    SELECT (SELECT count(*) FROM memories AS m WHERE {SEARCHED}) AS documents,
           (SELECT coalesce(jsonb_object_agg(t.lexeme, (
                SELECT count(*) FROM memories AS m WHERE m.tsv @@ t.operand AND {SEARCHED}
            )), '{{}}'::jsonb) FROM terms AS t) AS matching
) AS stats
ORDER BY best.rank DESC, best.memory_id
"""  # noqa: S608 - constant fragments; every value is a bound parameter


# A word as the memories' text search configuration reads it (a stopword reads as nothing:
# numnode 0, and it matches no memory, without the notice an empty tsquery raises).
_WORD_QUERY = "plainto_tsquery('mcpck_english'::regconfig, w.word)"

# For each word, how many of the tenant's active memories hold it, counted up to a cap.
WORD_COUNTS = f"""
SELECT w.word, (
    SELECT count(*) FROM (
        SELECT 1 FROM memories AS m, {_WORD_QUERY} AS q
        WHERE numnode(q) > 0 AND m.tsv @@ q
          AND m.tenant = %(tenant)s AND m.status = 'active'
        LIMIT %(cap)s
    ) AS held
) AS held
FROM unnest(%(words)s::text[]) AS w(word)
"""  # noqa: S608 - constant fragments; every value is a bound parameter

# The tenant's active memories holding the most of the words, each word looked up among
# its newest holders only.
SHARING_WORDS = f"""
WITH hits AS (
    SELECT h.memory_id
    FROM (SELECT DISTINCT word FROM unnest(%(words)s::text[]) AS u(word)) AS w,
    LATERAL (
        SELECT m.memory_id FROM memories AS m, {_WORD_QUERY} AS q
        WHERE numnode(q) > 0 AND m.tsv @@ q
          AND m.tenant = %(tenant)s AND m.status = 'active'
        ORDER BY m.created_at DESC, m.memory_id DESC
        LIMIT %(per_word)s
    ) AS h
),
ranked AS (SELECT memory_id AS held_id, count(*) AS held FROM hits GROUP BY memory_id)
SELECT {MEMORY_COLUMNS} FROM (
    SELECT m.*, ranked.held FROM ranked
    JOIN memories AS m ON m.tenant = %(tenant)s AND m.memory_id = ranked.held_id
) AS found
ORDER BY held DESC, created_at DESC, memory_id DESC
LIMIT %(limit)s
"""  # noqa: S608 - constant fragments; every value is a bound parameter

# The tenant's newest active memories holding every one of the words.
HOLDING_ALL = f"""
SELECT {MEMORY_COLUMNS} FROM memories AS m
WHERE m.tenant = %(tenant)s AND m.status = 'active' AND m.tsv @@ (
    SELECT tsquery_and_all FROM (
        SELECT string_agg(q::text, ' & ')::tsquery AS tsquery_and_all
        FROM unnest(%(words)s::text[]) AS w(word),
             {_WORD_QUERY} AS q
        WHERE numnode(q) > 0
    ) AS combined
)
ORDER BY m.created_at DESC, m.memory_id DESC
LIMIT %(limit)s
"""  # noqa: S608 - constant fragments; every value is a bound parameter
