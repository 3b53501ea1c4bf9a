"""core.lexical: the query's words and the BM25 weights every store scores with."""

from __future__ import annotations

import math

import pytest

from mcp_checkpoint.core.lexical import BM25_K1, bm25_idf, bm25_weight, query_terms, rank_bm25


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


def test_rank_bm25_sums_each_terms_weight_from_the_searched_statistics() -> None:
    ranked = rank_bm25(
        10, {"cache": 2, "redis": 5},
        [("m1", "cache", 1), ("m1", "redis", 2), ("m2", "cache", 3)],
        limit=5,
    )

    cache, redis = bm25_idf(10, 2), bm25_idf(10, 5)
    assert ranked == [
        ("m2", pytest.approx(bm25_weight(cache, 3))),
        ("m1", pytest.approx(bm25_weight(cache, 1) + bm25_weight(redis, 2))),
    ]


def test_rank_bm25_orders_equal_scores_by_id_and_keeps_at_most_limit() -> None:
    occurrences = [(doc, "cache", 1) for doc in ("m3", "m1", "m2")]

    assert [doc for doc, _ in rank_bm25(10, {"cache": 3}, occurrences, limit=2)] == [
        "m1", "m2"
    ]
    assert rank_bm25(10, {"cache": 3}, occurrences, limit=0) == []
