"""Packing sections into a token budget."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_checkpoint.core.packing import Item, SectionSpec, pack
from tests.unit.conftest import WordTokenizer

TOK = WordTokenizer()
SPECS = [
    SectionSpec("head", None),
    SectionSpec("notes", "## Notes", share=0.3),
    SectionSpec("steps", "## Steps", share=0.5, contiguous=True),
]


def test_pack_keeps_sections_in_display_order_and_items_in_their_order() -> None:
    items = [
        Item("head", "Objective: x", required=True),
        Item("steps", "step 3", 3, order=3),
        Item("steps", "step 2", 2, order=2),
        Item("notes", "a note", 0),
    ]
    packed = pack(SPECS, items, 1000, TOK)
    assert packed.text == "Objective: x\n\n## Notes\na note\n\n## Steps\nstep 2\nstep 3"
    assert packed.included["steps"] == [3, 2] and packed.dropped == {}


def test_pack_contiguous_section_never_skips_to_a_smaller_older_item() -> None:
    items = [
        Item("head", "h", required=True),
        Item("steps", "newest", 3, order=3),
        Item("steps", "x" * 400, 2, order=2),
        Item("steps", "old", 1, order=1),
    ]
    packed = pack(SPECS, items, 40, TOK)
    assert packed.included["steps"] == [3]
    assert packed.dropped["steps"][0] == 2


def test_pack_cuts_a_required_item_that_alone_exceeds_the_budget() -> None:
    packed = pack(SPECS, [Item("head", "word " * 500, required=True)], 50, TOK)
    assert TOK.count(packed.text) <= 50 and packed.cut == ["head"]


def test_pack_shares_cap_a_section_in_the_first_pass_only() -> None:
    items = [Item("head", "h", required=True)]
    items += [Item("notes", "n" * 36, i, i) for i in range(10)]  # 10 tokens each
    packed = pack(SPECS, items, 100, TOK)
    # Alone, notes may spend what the other sections leave unused.
    assert len(packed.included["notes"]) > 3


@settings(max_examples=300, deadline=None)
@given(
    budget=st.integers(min_value=1, max_value=400),
    texts=st.lists(
        st.tuples(st.sampled_from(["head", "notes", "steps"]), st.text(max_size=300)),
        max_size=25,
    ),
)
def test_pack_never_exceeds_the_budget(budget: int, texts: list[tuple[str, str]]) -> None:
    items = [Item(section, text, i, i) for i, (section, text) in enumerate(texts)]
    packed = pack(SPECS, items, budget, TOK)
    assert packed.tokens == TOK.count(packed.text) <= budget
    shown = sum(len(keys) for keys in packed.included.values())
    assert shown + sum(n for n, _ in packed.dropped.values()) == len(items)


def test_pack_a_later_fill_section_only_gets_what_the_others_leave() -> None:
    specs = [
        SectionSpec("written", "## Written", share=0.2),
        SectionSpec("extracted", "## Extracted", share=0.0, fill=1),
        SectionSpec("extra", "## Extra", share=0.2, fill=2),
    ]
    items = [
        *(Item("written", f"w{i} " * 3, f"w{i}", i) for i in range(6)),
        *(Item("extracted", f"e{i} " * 3, f"e{i}", i) for i in range(6)),
        *(Item("extra", f"x{i} " * 3, f"x{i}", i) for i in range(6)),
    ]
    tight = pack(specs, items, 40, TOK)
    roomy = pack(specs, items, 200, TOK)

    # Tight: the extra section keeps its share, written overflows its share, and the
    # extracted section (no share, filled after written) gets only what is left.
    assert len(tight.included["written"]) == 6
    assert len(tight.included.get("extracted", [])) < 6
    assert tight.included["extra"]
    assert tight.tokens <= 40
    assert set(roomy.included) == {"written", "extracted", "extra"}
    assert len(roomy.included["extracted"]) == 6


def test_pack_tops_up_with_what_the_per_item_estimates_left_out() -> None:
    # Each item is estimated with a token per join and two per title; the whole text
    # counts less, and the packer spends the difference.
    specs = [SectionSpec("notes", "## Notes")]
    items = [Item("notes", f"n{i}", i, i) for i in range(40)]
    packed = pack(specs, items, 30, TOK)
    assert TOK.count(packed.text) == packed.tokens <= 30
    assert len(packed.included["notes"]) > 30 // 2 - 2  # more than the estimate allows


def test_pack_a_section_with_a_separator_shows_its_items_on_one_line() -> None:
    specs = [SectionSpec("head", None), SectionSpec("found", "## Found", sep=", ")]
    items = [Item("head", "Objective: x", required=True)]
    items += [Item("found", f"src/m{i}.py", i, i) for i in range(3)]
    packed = pack(specs, items, 100, TOK)
    assert packed.text == "Objective: x\n\n## Found\nsrc/m0.py, src/m1.py, src/m2.py"
