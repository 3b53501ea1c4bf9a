"""SQLite lexical search: FTS5 finds the memories holding a word and counts how often it
occurs in each (through ``highlight()``, its public interface); ``core.lexical.rank_bm25``
scores them. What a search learnt about each word is kept until the memories change."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from mcp_checkpoint.storage.sqlite._db import Conn

__all__ = [
    "Postings",
    "all_holders",
    "fts_words",
    "holders",
    "term_statistics",
    "word_count",
]

_CACHED_POSTINGS = 200_000
"""Most word matches the lexical search keeps between searches (tens of MB at most)."""

_Posting = tuple[str, int]
"""A memory holding a word: its memory id and how many times it holds the word."""


def _phrase(word: str) -> str:
    """A search word (``core.lexical.query_terms``) as an FTS5 string, so that no character
    of the user's text is ever read as FTS5 syntax."""
    # A word holds only letters, digits and "_", so it never contains a double quote; one
    # that the tokenizer reduces to nothing (like "_") is an empty phrase and matches nothing.
    return f'"{word}"'


def _string(word: str) -> str:
    """Any text as one FTS5 string (a phrase of its tokens): double quotes doubled."""
    return '"' + word.replace('"', '""') + '"'



def fts_words(words: Sequence[str]) -> str:
    """An FTS5 query matching any of ``words`` (each quoted: never FTS5 syntax); "" for
    none."""
    return " OR ".join(_phrase(word) for word in dict.fromkeys(words))


class Postings:
    """What lexical search learnt about each word among one searched set of memories
    (which memories hold it, how often) and how many memories that set holds, kept while
    the counter that every change to the memories table moves (migration 0006) stays put.

    Agents ask about the same people and things again and again, so most words of a
    conversation's questions were asked before. A search reads the counter first and its
    results after, so an entry never holds an older state than the counter it is filed
    under; every use runs under the store's connection lock.
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


def term_statistics(
    conn: Conn, words: Sequence[str], where: str, params: tuple[Any, ...], cache: Postings
) -> tuple[int, dict[str, int], list[tuple[str, str, int]]]:
    """What ``core.lexical.rank_bm25`` scores from, over the memories that ``where``
    selects: how many there are, how many hold each of ``words``, and (memory id, word,
    occurrences) for every match. What ``cache`` knows is not read again."""
    searched = cache.size(params)
    if searched is None:
        searched = conn.execute(
            f"SELECT count(*) FROM memories AS m WHERE {where}", params  # noqa: S608
        ).fetchone()[0]
        cache.set_size(params, searched)
    matching: dict[str, int] = {}
    occurrences: list[tuple[str, str, int]] = []
    for word in dict.fromkeys(words):
        postings = cache.get((params, word))
        if postings is None:
            postings = _postings(conn, word, where, params)
            cache.put((params, word), postings)
        if postings:
            matching[word] = len(postings)
            occurrences.extend((memory_id, word, tf) for memory_id, tf in postings)
    return searched, matching, occurrences


def _postings(
    conn: Conn, word: str, where: str, params: tuple[Any, ...]
) -> tuple[_Posting, ...]:
    """The memories ``where`` selects that hold ``word``, with how often each holds it:
    ``highlight()`` wraps every occurrence of a one-word phrase in a pair of one-character
    marks, so the text grows by two characters an occurrence."""
    rows = conn.execute(
        # CROSS JOIN keeps the FTS5 match outermost: the planner would otherwise walk the
        # searched memories and run the match again for each of them.
        "SELECT m.memory_id, length(highlight(memories_fts, 0, char(1), char(1))) "  # noqa: S608
        "- length(m.content) FROM memories_fts "
        "CROSS JOIN memories AS m ON m.id = memories_fts.rowid "
        f"WHERE memories_fts MATCH ? AND {where}",
        (_phrase(word), *params),
    ).fetchall()
    return tuple((memory_id, max(1, marks // 2)) for memory_id, marks in rows)


# The tenant's active memories holding a word, newest first, at most a limit of them: the
# match stays outermost (CROSS JOIN) and FTS5 walks its doclist backwards, so the walk stops
# at the limit instead of reading every memory that holds a common word.
_HOLDERS = (
    "SELECT memories_fts.rowid FROM memories_fts "
    "CROSS JOIN memories AS m ON m.id = memories_fts.rowid "
    "WHERE memories_fts MATCH ? AND m.tenant = ? AND m.status = 'active' "
    "ORDER BY memories_fts.rowid DESC LIMIT ?"
)


def word_count(conn: Conn, word: str, cap: int) -> int:
    """How many entries the index holds for ``word`` (memories of every tenant and
    status: what walking the word's doclist costs), counted up to ``cap``. Counting in
    FTS5 alone, without reading each memory's row, makes this a fraction of a lookup."""
    row = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM memories_fts WHERE memories_fts MATCH ? LIMIT ?)",
        (_string(word), cap),
    ).fetchone()
    return int(row[0])


def holders(conn: Conn, tenant: str, word: str, limit: int) -> list[int]:
    """The row ids of the ``limit`` newest active memories of the tenant holding ``word``."""
    return [row[0] for row in conn.execute(_HOLDERS, (_string(word), tenant, limit))]


def all_holders(conn: Conn, tenant: str, words: Sequence[str], limit: int) -> list[int]:
    """The row ids of the ``limit`` newest active memories of the tenant holding every one
    of ``words`` (FTS5 intersects the words' doclists in row id order and stops there)."""
    query = " AND ".join(_string(w) for w in dict.fromkeys(words))
    return [row[0] for row in conn.execute(_HOLDERS, (query, tenant, limit))] if query else []
