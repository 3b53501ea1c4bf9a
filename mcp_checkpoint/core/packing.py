"""Pure packing of sections into a token budget.

Items arrive in priority order (most important first) and are shown grouped by section, in
each section's display order. Two passes: the first caps each section at its share of the
budget so no section starves the others (a share of 0 keeps a section out of it); the
second spends what is left on the items that did not fit, section by section in ``fill``
order (then priority order), and the final trim drops in the reverse of that order. A
``contiguous`` section (recent steps) never skips an item to include a lower-priority one
after it, so the steps shown are always the newest run of them. Items are estimated one by
one; when the whole text counts less than their sum, a top-up spends the difference in
pass-two order, recounting the whole text.

The guarantee: ``tokenizer.count(result.text) <= budget``, checked on the final text (so it
holds even if the tokenizer is not exactly additive over joined pieces).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mcp_checkpoint.core.ports import Tokenizer

__all__ = ["Item", "Packed", "SectionSpec", "pack"]

_TOP_UP_ROUNDS = 4


@dataclass(frozen=True)
class SectionSpec:
    """A section of the packed text."""

    name: str
    title: str | None
    share: float | None = None
    contiguous: bool = False
    fill: int = 0  # pass two: lower fills first
    sep: str = "\n"  # between the section's items (", " shows them on one line)


@dataclass(frozen=True)
class Item:
    """One unit that is shown whole or not at all (``required`` ones are cut to fit)."""

    section: str
    text: str
    key: str | int | None = None
    order: int = 0
    required: bool = False
    tokens: int | None = None  # known count (or an upper bound) of ``text``, if any


@dataclass
class Packed:
    """The packed text and what went into it."""

    text: str
    tokens: int
    included: dict[str, list[str | int | None]] = field(default_factory=dict)
    dropped: dict[str, tuple[int, int]] = field(default_factory=dict)
    cut: list[str] = field(default_factory=list)


def _render(specs: Sequence[SectionSpec], chosen: dict[str, list[Item]]) -> str:
    lines: list[str] = []
    for spec in specs:
        items = chosen.get(spec.name)
        if not items:
            continue
        if lines:
            lines.append("")
        if spec.title is not None:
            lines.append(spec.title)
        lines.append(spec.sep.join(item.text for item in sorted(items, key=lambda it: it.order)))
    return "\n".join(lines)


def pack(
    specs: Sequence[SectionSpec],
    items: Sequence[Item],
    budget: int,
    tokenizer: Tokenizer,
) -> Packed:
    """Pack ``items`` (priority order) into at most ``budget`` tokens."""
    by_name = {spec.name: spec for spec in specs}
    unknown = {item.section for item in items} - by_name.keys()
    if unknown:
        raise ValueError(f"items name unknown sections: {sorted(unknown)}")

    costs = [
        (item.tokens if item.tokens is not None else tokenizer.count(item.text)) + 1
        for item in items
    ]
    title_cost = {
        s.name: (tokenizer.count(s.title) + 2 if s.title is not None else 1) for s in specs
    }
    texts = [item.text for item in items]
    cut: list[str] = []

    remaining = budget
    spent: dict[str, int] = {}
    chosen_idx: set[int] = set()

    def try_take(i: int, cap: int | None) -> bool:
        nonlocal remaining
        item = items[i]
        opening = 0 if spent.get(item.section) else title_cost[item.section]
        cost = costs[i] + opening
        within_cap = cap is None or spent.get(item.section, 0) + cost <= cap
        if cost <= remaining and within_cap:
            chosen_idx.add(i)
            spent[item.section] = spent.get(item.section, 0) + cost
            remaining -= cost
            return True
        return False

    # Required items first: cut to fit rather than dropped.
    for i, item in enumerate(items):
        if not item.required:
            continue
        if not try_take(i, None):
            opening = 0 if spent.get(item.section) else title_cost[item.section]
            room = max(remaining - opening - 1, 0)
            texts[i] = tokenizer.truncate(item.text, room)
            costs[i] = tokenizer.count(texts[i]) + 1
            cut.append(item.section)
            try_take(i, None)

    def rank(i: int) -> tuple[int, int]:
        return by_name[items[i].section].fill, i

    for cap_pass in (True, False):
        # A contiguous section closes at its first miss, so what it shows is always a
        # prefix of its items (pass two resumes right after pass one's prefix).
        closed: set[str] = set()
        order = range(len(items)) if cap_pass else sorted(range(len(items)), key=rank)
        for i in order:
            item = items[i]
            if i in chosen_idx or item.required or item.section in closed:
                continue
            spec = by_name[item.section]
            cap = int(budget * spec.share) if cap_pass and spec.share is not None else None
            if not try_take(i, cap) and spec.contiguous:
                closed.add(item.section)

    def assemble() -> str:
        chosen: dict[str, list[Item]] = {}
        for i in sorted(chosen_idx):
            it = items[i]
            shown = it if texts[i] == it.text else Item(it.section, texts[i], it.key, it.order)
            chosen.setdefault(it.section, []).append(shown)
        return _render(specs, chosen)

    text = assemble()
    tokens = tokenizer.count(text)
    # The per-item estimate can be off by a token per join; drop the lowest-priority
    # optional items until the real count of the whole text fits.
    while tokens > budget:
        optional = [i for i in chosen_idx if not items[i].required]
        if not optional:
            text = tokenizer.truncate(text, budget)
            tokens = tokenizer.count(text)
            break
        chosen_idx.discard(max(optional, key=rank))
        text = assemble()
        tokens = tokenizer.count(text)

    # Each item was counted alone, with its own rounding and margin, so the whole text
    # usually counts less than the sum: top up with what did not fit (pass-two order, a
    # contiguous section still never skipping), recounting the whole text each round.
    for _ in range(_TOP_UP_ROUNDS):
        slack = budget - tokens
        before = set(chosen_idx)
        shown = {items[i].section for i in chosen_idx}
        closed = set()
        for i in sorted(range(len(items)), key=rank):
            item = items[i]
            if i in chosen_idx or item.section in closed:
                continue
            cost = costs[i] + (0 if item.section in shown else title_cost[item.section])
            if cost <= slack:
                chosen_idx.add(i)
                shown.add(item.section)
                slack -= cost
            elif by_name[item.section].contiguous:
                closed.add(item.section)
        if chosen_idx == before:
            break
        topped = assemble()
        topped_tokens = tokenizer.count(topped)
        if topped_tokens > budget:
            chosen_idx = before
            break
        text, tokens = topped, topped_tokens

    packed = Packed(text=text, tokens=tokens, cut=cut)
    for i, item in enumerate(items):
        if i in chosen_idx:
            packed.included.setdefault(item.section, []).append(item.key)
        else:
            n, t = packed.dropped.get(item.section, (0, 0))
            packed.dropped[item.section] = (n + 1, t + costs[i] - 1)
    return packed
