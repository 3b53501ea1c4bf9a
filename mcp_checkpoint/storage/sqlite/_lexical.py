"""SQLite lexical search: FTS5 finds the memories holding a word, and what the search
learnt about each word is kept until the memories change."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from mcp_checkpoint.core.lexical import bm25_idf, bm25_weight
from mcp_checkpoint.storage.sqlite._db import Conn

__all__ = ["Postings", "scoped_bm25"]


def _phrase(word: str) -> str:
    """A search word (``core.lexical.query_terms``) as an FTS5 string, so that no character
    of the user's text is ever read as FTS5 syntax."""
    # A word holds only letters, digits and "_", so it never contains a double quote; one
    # that the tokenizer reduces to nothing (like "_") is an empty phrase and matches nothing.
    return f'"{word}"'



_FTS5_K1 = 1.2
_FTS5_B = 0.75
"""The constants FTS5's ``bm25()`` fixes; term frequencies are read back through them."""


def _varint(blob: bytes, at: int = 0) -> tuple[int, int]:
    """The SQLite varint at ``at`` in ``blob`` (as FTS5 writes its records): (value, the
    offset after it)."""
    value = 0
    for i in range(8):
        byte = blob[at + i]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, at + i + 1
    return (value << 8) | blob[at + 8], at + 9


_CACHED_POSTINGS = 200_000
"""Most word matches the lexical search keeps between searches (tens of MB at most)."""

_Posting = tuple[int, str, float]
"""A memory holding a word: its row id, memory id and the word's BM25 weight in it."""


class Postings:
    """What lexical search learnt about each word among one searched set of memories
    (its matches and their weights) and how many memories that set holds, kept while the
    counter that every change to the memories table moves (migration 0006) stays put.

    Agents ask about the same people and things again and again: 58 % of the words of
    the LoCoMo questions were asked before in the same conversation. A search reads the
    counter first and its results after, so an entry never holds an older state than the
    counter it is filed under; every use runs under the store's connection lock.
    """

    def __init__(self, budget: int = _CACHED_POSTINGS) -> None:
        self._budget = budget
        self._version: int | None = None
        self._sizes: dict[tuple[Any, ...], int] = {}
        self._words: OrderedDict[tuple[Any, ...], tuple[_Posting, ...]] = OrderedDict()
        self._held = 0

    def at(self, version: int) -> None:
        """Forget everything learnt before the memories changed."""
        if version != self._version:
            self._sizes.clear()
            self._words.clear()
            self._held = 0
            self._version = version

    def size(self, searched: tuple[Any, ...]) -> int | None:
        return self._sizes.get(searched)

    def set_size(self, searched: tuple[Any, ...], size: int) -> None:
        if len(self._sizes) >= 4096:
            self._sizes.clear()
        self._sizes[searched] = size

    def get(self, key: tuple[Any, ...]) -> tuple[_Posting, ...] | None:
        postings = self._words.get(key)
        if postings is not None:
            self._words.move_to_end(key)
        return postings

    def put(self, key: tuple[Any, ...], postings: tuple[_Posting, ...]) -> None:
        if len(postings) > self._budget // 4:
            return  # a word in most of a huge set: it would push out everything else
        self._words[key] = postings
        self._held += len(postings)
        while self._held > self._budget:
            _, evicted = self._words.popitem(last=False)
            self._held -= len(evicted)


def scoped_bm25(
    conn: Conn, words: Sequence[str], where: str, params: tuple[Any, ...],
    cache: Postings,
) -> tuple[dict[int, float], dict[int, str]]:
    """BM25 (``core.lexical.bm25_weight``: no length normalisation) of every memory that
    ``where`` selects and that holds a word of ``words``, by row id, and its memory id;
    each word's idf taken from the memories ``where`` selects rather than from the whole
    index. What ``cache`` knows is not read again.

    FTS5's ``bm25()`` fixes k1 = 1.2 and b = 0.75 and weighs words index-wide, so here it
    only tells how often a word occurs in a memory: a one-word ``bm25()`` is
    ``-idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / average))``, with the
    index-wide idf, the memory's length in tokens (FTS5's ``_docsize`` table) and the
    average length (FTS5's averages record, row 1 of its ``_data`` table), which leaves
    tf. Per word: one count over the index, and one pass over its matches among the
    searched memories, which also counts them for the idf.
    """
    scores: dict[int, float] = {}
    ids: dict[int, str] = {}
    searched = cache.size(params)
    if searched is None:
        searched = conn.execute(
            f"SELECT count(*) FROM memories AS m WHERE {where}", params  # noqa: S608
        ).fetchone()[0]
        cache.set_size(params, searched)
    stats: tuple[int, float, float] | None = None
    for word in dict.fromkeys(words):
        postings = cache.get((params, word))
        if postings is None:
            if stats is None:
                stats = _index_stats(conn)
            postings = _postings(conn, word, where, params, searched, stats)
            cache.put((params, word), postings)
        for rowid, memory_id, weight in postings:
            scores[rowid] = scores.get(rowid, 0.0) + weight
            ids[rowid] = memory_id
    return scores, ids


def _index_stats(conn: Conn) -> tuple[int, float, float]:
    """How many memories FTS5 indexes, and its length normalisation of a memory of n
    tokens as fixed + per_token * n (from its averages record)."""
    averages = conn.execute("SELECT block FROM memories_fts_data WHERE id = 1").fetchone()
    indexed, at = _varint(averages[0]) if averages is not None else (0, 0)
    if not indexed:
        return 0, 0.0, 0.0
    per_token = _FTS5_K1 * _FTS5_B * indexed / _varint(averages[0], at)[0]
    return indexed, _FTS5_K1 * (1 - _FTS5_B), per_token


def _postings(
    conn: Conn, word: str, where: str, params: tuple[Any, ...], searched: int,
    stats: tuple[int, float, float],
) -> tuple[_Posting, ...]:
    """The memories ``where`` selects that hold ``word``, with its weight in each."""
    indexed, fixed, per_token = stats
    phrase = _phrase(word)
    overall = conn.execute(
        "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH ?", (phrase,)
    ).fetchone()[0]
    if not overall or not indexed:
        return ()
    rows = conn.execute(
        # CROSS JOIN keeps the FTS5 match outermost: the planner would otherwise walk the
        # searched memories and run the match again for each of them.
        "SELECT m.id, m.memory_id, bm25(memories_fts), d.sz FROM memories_fts "  # noqa: S608
        "CROSS JOIN memories AS m ON m.id = memories_fts.rowid "
        "CROSS JOIN memories_fts_docsize AS d ON d.id = m.id "
        f"WHERE memories_fts MATCH ? AND {where}",
        (phrase, *params),
    ).fetchall()
    index_idf = bm25_idf(indexed, overall)
    idf = bm25_idf(searched, len(rows))
    weights: dict[int, float] = {}  # by tf: most memories hold a word once
    postings: list[_Posting] = []
    for rowid, memory_id, rank, size in rows:
        length = size[0] if size[0] < 0x80 else _varint(size)[0]
        norm = fixed + per_token * length
        part = -rank / index_idf  # tf * (k1 + 1) / (tf + norm)
        room = _FTS5_K1 + 1 - part
        tf = max(1, round(part * norm / room)) if room > 0 else 1 << 16
        weight = weights.get(tf)
        if weight is None:
            weight = weights[tf] = bm25_weight(idf, tf)
        postings.append((rowid, memory_id, weight))
    return tuple(postings)


