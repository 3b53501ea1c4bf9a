"""The analysis of a proposed memory batch: which stored memories and which other items
each item nearly duplicates or likely contradicts, how an item's stored near duplicates are
looked up without walking postings lists that grow with the store, and the suggested op.
Pure functions; ``core.memory.MemoryService`` reads the store and calls them."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mcp_checkpoint.core._neardup import batch_neighbours, jaccard, words
from mcp_checkpoint.core.lexical import STOPWORDS
from mcp_checkpoint.core.models import ProposalAnalysis, ProposalItem, RelatedMemory

_WORD = re.compile(r"\w+", re.UNICODE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_NEGATION = {"not", "no", "never", "dont", "don't", "doesn't", "isn't", "without", "cannot"}
_RELATED = 0.35
RELATED_COSINE = 0.75  # MiniLM: unrelated chat turns of one topic often reach 0.6
# How an item's stored near duplicates are found without walking postings lists that grow
# with the store (see lookup_words): a near duplicate holds most of the item's words, so
# it holds the item's rare words, and a rare word has few holders whatever the store
# holds. The item's _COUNTED longest words (longer words are rarer: Zipf's law of
# abbreviation) have their holders counted, no further than COUNT_CAP each; the
# _QUERY_WORDS rarest held by fewer than PER_WORD are looked up (every holder read), and
# the memories holding the most of them are candidates; so are the newest memories
# holding all of the item's _ALL_WORDS rarest held words (an item made of common words
# only still finds its copies: together, common words are rare).
_COUNTED = 12
COUNT_CAP = 256
PER_WORD = 64
_QUERY_WORDS = 4
_ALL_WORDS = 4
SNIPPET_CHARS = 160
"""Characters of a related memory's (or item's) text that an analysis shows."""
_LISTED = 5  # duplicates, and conflicts, listed per item


def _words(text: str) -> set[str]:
    return set(words(text))


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of the two texts' word sets, in [0, 1]."""
    return jaccard(words(a), words(b))


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The start of ``text``, at most ``limit`` characters ("..." marks a cut)."""
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def counted_words(text: str) -> list[str]:
    """The words of ``text`` whose holders are counted to pick the lookup words: its
    ``_COUNTED`` longest distinct casefolded words, stopwords left out unless fewer than
    ``_ALL_WORDS`` others remain (ties keep their first-seen order)."""
    every = list(dict.fromkeys(w.casefold() for w in _WORD.findall(text)))
    found = [w for w in every if w not in STOPWORDS]
    if len(found) < _ALL_WORDS:
        found = every  # "You too!": its stopwords are most of what it says
    found.sort(key=len, reverse=True)  # stable: equal lengths keep their first-seen order
    return found[:_COUNTED]


@dataclass(frozen=True)
class Lookup:
    """How one item's stored near duplicates are looked up: the memories holding the
    most of ``rare`` (every holder of each is read), and the newest holding all of
    ``all_of``."""

    rare: list[str]
    all_of: list[str]


def lookup_words(words: Sequence[str], held: Mapping[str, int], per_word: int) -> Lookup:
    """Order ``words`` (longest first) by how many memories hold each (``held``; ties
    keep their order), leaving out those no memory holds (they find nothing): the first
    ``_QUERY_WORDS`` held by fewer than ``per_word`` are ``rare``, the first
    ``_ALL_WORDS`` of all are ``all_of``."""
    ranked = sorted((w for w in words if held.get(w, 0) > 0), key=lambda w: held[w])
    rare = [w for w in ranked if held[w] < per_word]
    return Lookup(rare=rare[:_QUERY_WORDS], all_of=ranked[:_ALL_WORDS])


def _contradicts(a: str, b: str) -> bool:
    """Related texts that differ in their numbers or in negation likely conflict."""
    na, nb = set(_NUMBER.findall(a)), set(_NUMBER.findall(b))
    if (na or nb) and na != nb:
        return True
    return bool(_words(a) & _NEGATION) != bool(_words(b) & _NEGATION)


def decide(
    items: Sequence[ProposalItem],
    stored: Sequence[Sequence[RelatedMemory]],
    vectors: Sequence[Sequence[float]] | None,
    method: str,
    threshold: float,
) -> list[ProposalItem]:
    """Each item with its analysis: near duplicates and likely conflicts among ``stored``
    (full texts) and the other items, a suggested op. The answer is bounded: at most
    ``_LISTED`` duplicates and conflicts per item, each text cut to a snippet."""
    related_floor = _RELATED if vectors is None else RELATED_COSINE
    texts = [item.content or "" for item in items]
    in_batch = batch_neighbours(texts, vectors, related_floor)
    analysed: list[ProposalItem] = []
    for i, item in enumerate(items):
        if item.op in ("supersede", "deprecate"):
            analysed.append(item.model_copy(
                update={"analysis": ProposalAnalysis(suggested_op=item.op)}
            ))
            continue
        text = texts[i]
        mine = words(text) if vectors is None else frozenset()
        related = [
            r if r.similarity >= 0 else r.model_copy(
                update={"similarity": round(jaccard(mine, words(r.content)), 4)}
            )
            for r in stored[i]
        ]
        related = [r for r in related if r.similarity >= related_floor]
        related += [
            RelatedMemory(item_index=j, similarity=round(sim, 4), content=texts[j])
            for j, sim in in_batch[i]
        ]
        related.sort(key=lambda r: -r.similarity)
        duplicates = [r for r in related if r.similarity >= threshold]
        conflicts = [
            r for r in related if r.similarity < threshold and _contradicts(text, r.content)
        ][:_LISTED]
        suggested: str = item.op
        note = ""
        stored_dup = next((d for d in duplicates if d.memory_id is not None), None)
        batch_dup = next(
            (d for d in duplicates if d.item_index is not None and d.item_index < i), None
        )
        named = stored_dup or batch_dup
        duplicates = duplicates[:_LISTED]
        if named is not None and named not in duplicates:  # the one the note names is listed
            duplicates[-1] = named
        if item.op == "add" and stored_dup is not None:
            suggested, note = "skip", f"near duplicate of {stored_dup.memory_id}"
        elif item.op == "add" and batch_dup is not None:
            suggested, note = "skip", f"near duplicate of item #{batch_dup.item_index}"
        elif item.op == "add" and conflicts and conflicts[0].memory_id is not None:
            suggested = "supersede"
            note = f"may contradict {conflicts[0].memory_id}; supersede it if this replaces it"
        analysed.append(item.model_copy(update={"analysis": ProposalAnalysis(
            duplicates=[cut(r) for r in duplicates],
            conflicts=[cut(r) for r in conflicts],
            suggested_op=suggested,  # type: ignore[arg-type]
            note=f"{note}; similarity: {method}" if note else f"similarity: {method}",
        )}))
    return analysed


def cut(related: RelatedMemory) -> RelatedMemory:
    return related.model_copy(update={"content": snippet(related.content)})
