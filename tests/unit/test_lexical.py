"""core.lexical: the query's words and the BM25 weights every store scores with."""

from __future__ import annotations

import math

import pytest

from mcp_checkpoint.core.lexical import BM25_K1, bm25_idf, bm25_weight, query_terms


def test_query_terms_drop_stopwords_unless_nothing_else_is_left() -> None:
    assert query_terms("What did the team decide about the Cache?") == [
        "team", "decide", "cache"
    ]
    assert query_terms("what is it") == ["what", "is", "it"]
    assert query_terms("?!") == []


def test_bm25_idf_is_floored_for_words_in_most_documents() -> None:
    assert bm25_idf(10, 1) == pytest.approx(math.log(9.5 / 1.5))
    assert bm25_idf(10, 9) == 1e-6


def test_bm25_weight_is_the_idf_for_one_occurrence() -> None:
    assert bm25_weight(2.5, 1) == pytest.approx(2.5)


def test_bm25_weight_saturates_with_repeats() -> None:
    weights = [bm25_weight(1.0, tf) for tf in (1, 2, 3, 1000)]

    assert weights == sorted(weights)
    assert weights[1] - weights[0] > weights[2] - weights[1]
    assert weights[3] < 1.0 * (BM25_K1 + 1)
    assert weights[1] == pytest.approx(2 * (BM25_K1 + 1) / (2 + BM25_K1))
