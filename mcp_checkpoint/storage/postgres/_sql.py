"""The PostgreSQL store's longer statements."""

from __future__ import annotations

from mcp_checkpoint.storage._rows import RUN_COLUMNS

__all__ = [
    "HEAD_AND_KEY",
    "INSERT_RUN",
    "MEMORY_COLUMNS",
    "MOVE_HEAD_AND_INSERT",
    "SEARCH",
]

# The run's head and, when the step has a key, the step already stored under it.
HEAD_AND_KEY = (
    "SELECT r.*, s.request_hash AS seen_request_hash, s.ack AS seen_ack FROM runs r "
    "LEFT JOIN steps s ON s.tenant = r.tenant AND s.run_id = r.run_id "
    "AND s.idempotency_key = %s WHERE r.tenant = %s AND r.run_id = %s"
)
# Moves the head and inserts the step in one statement, or does neither: the head must
# still be where the step was computed from (seq, episode, version).
MOVE_HEAD_AND_INSERT = (
    "WITH head AS ("
    " UPDATE runs SET head_seq = %(seq)s, step_count = %(step_count)s,"
    " head_hash = %(hash)s, head_tokens = %(cum_tokens)s,"
    " updated_at = %(at)s, updated_us = %(us)s"
    " WHERE tenant = %(tenant)s AND run_id = %(run_id)s AND head_seq = %(prev_seq)s"
    " AND head_hash = %(prev_hash)s"
    " AND checkpoint_count = %(checkpoints)s AND version = %(version)s"
    " RETURNING tenant, run_id) "
    "INSERT INTO steps (tenant, run_id, seq, episode, tool, input, output, "
    "reasoning, status, idempotency_key, tokens, cum_tokens, created_at, "
    "prev_hash, hash, request_hash, ack) "
    "SELECT head.tenant, head.run_id, %(seq)s, %(episode)s, %(tool)s, "
    "%(input)s, %(output)s, %(reasoning)s, %(status)s, %(key)s, %(tokens)s, "
    "%(cum_tokens)s, %(at)s, %(prev_hash)s, %(hash)s, %(request_hash)s, "
    "%(ack)s FROM head RETURNING seq"
)

INSERT_RUN = (
    f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) "  # noqa: S608 - constant column names
    f"VALUES ({', '.join('%(' + column + ')s' for column in RUN_COLUMNS)})"
)
MEMORY_COLUMNS = (
    "tenant, memory_id, content, kind, scope, status, confidence, source_refs, batch_id, "
    "run_id, superseded_by, created_at, updated_at, version"
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

