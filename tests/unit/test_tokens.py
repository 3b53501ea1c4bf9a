"""The offline token counter: conservative, prefix-safe truncation, no downloads."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_checkpoint.core.packing import Item, SectionSpec, pack
from mcp_checkpoint.core.tokens import HeuristicTokenizer

TOK = HeuristicTokenizer()


def test_count_of_empty_text_is_zero_and_words_cost_at_least_one() -> None:
    assert TOK.count("") == 0
    assert TOK.count("hello") >= 1
    assert TOK.count("hello world, this is a sentence.") >= 7


def test_count_charges_random_blobs_more_than_prose_of_the_same_length() -> None:
    prose = "the quick brown fox jumps over the lazy dog and runs away " * 3
    blob = "q8Zr0Vb1xK9mPq2LwE7tYh3NcJ5sDf6GaU4iOo0XeRz1Bn8MvC2kQl7Wj3Hy9Tg5Sd" * 2
    assert len(blob) <= len(prose)
    assert TOK.count(blob) > TOK.count(prose)


def test_count_charges_non_ascii_text_conservatively() -> None:
    # o200k_base needs about one token per CJK character or two; we never go below that.
    assert TOK.count("上下文窗口很小") >= 7


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=400), limit=st.integers(min_value=-3, max_value=120))
def test_truncate_returns_a_prefix_within_the_limit(text: str, limit: int) -> None:
    cut = TOK.truncate(text, limit)
    assert text.startswith(cut)
    assert TOK.count(cut) <= max(limit, 0)
    if TOK.count(text) <= limit:
        assert cut == text


@settings(max_examples=150, deadline=None)
@given(
    budget=st.integers(min_value=16, max_value=600),
    texts=st.lists(st.text(max_size=200), max_size=20),
)
def test_packing_holds_the_budget_under_the_shipped_counter(
    budget: int, texts: list[str]
) -> None:
    specs = [SectionSpec("a", "## A", share=0.5), SectionSpec("b", "## B", contiguous=True)]
    items = [Item("a" if i % 2 else "b", t, i, i) for i, t in enumerate(texts)]
    packed = pack(specs, items, budget, TOK)
    assert TOK.count(packed.text) == packed.tokens <= budget


@settings(max_examples=400, deadline=None)
@given(text=st.text(alphabet=st.characters(max_codepoint=127), max_size=300))
def test_ascii_fast_path_splits_exactly_like_the_unicode_pattern(text: str) -> None:
    from mcp_checkpoint.core import tokens

    assert tokens._pieces(text) == tokens._PIECE_RE.findall(text)


@settings(max_examples=500)
@given(st.text(alphabet=st.sampled_from([chr(c) for c in range(0x20, 0x7F)] + ["\t", "\n", "\r"])))
def test_the_ascii_piece_pattern_splits_as_the_general_one_does(text: str) -> None:
    import re

    from mcp_checkpoint.core.tokens import _PIECE_RE, _PIECE_RE_ASCII

    assert _PIECE_RE_ASCII.findall(text) == re.compile(_PIECE_RE.pattern, re.ASCII).findall(text)
    assert _PIECE_RE_ASCII.findall(text) == _PIECE_RE.findall(text)
