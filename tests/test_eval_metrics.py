"""Ranking metrics against cases worked out by hand."""

import math

import pytest

from lookalike.eval.metrics import (mean_metrics, ndcg_at_k, precision_at_k, query_metrics, recall_at_k,
                                    reciprocal_rank)

# Ranking 10, 20, 30, 40, 50 with 20 and 50 relevant, and 99 relevant but never returned.
RANKED = [10, 20, 30, 40, 50]
RELEVANT = {20, 50, 99}


def test_precision_counts_relevant_hits_over_k():
    assert precision_at_k(RANKED, RELEVANT, 1) == 0.0
    assert precision_at_k(RANKED, RELEVANT, 2) == 0.5
    assert precision_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 5)


def test_precision_charges_a_short_ranking_for_missing_hits():
    assert precision_at_k([20], RELEVANT, 5) == pytest.approx(1 / 5)


def test_recall_divides_by_the_relevant_count():
    assert recall_at_k(RANKED, RELEVANT, 2) == pytest.approx(1 / 3)
    assert recall_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 3)


def test_reciprocal_rank_of_the_first_relevant_hit():
    assert reciprocal_rank(RANKED, RELEVANT) == 0.5
    assert reciprocal_rank(RANKED, {50}) == pytest.approx(1 / 5)
    assert reciprocal_rank(RANKED, {50}, k=3) == 0.0
    assert reciprocal_rank(RANKED, {7}) == 0.0


def test_ndcg_by_hand():
    # Gains at ranks 2 and 5: 1/log2(3) + 1/log2(6); ideal: three relevant at ranks 1..3.
    dcg = 1 / math.log2(3) + 1 / math.log2(6)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx(dcg / ideal)
    # At k=2 the ideal holds two relevant hits.
    assert ndcg_at_k(RANKED, RELEVANT, 2) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert ndcg_at_k([20, 50, 99], RELEVANT, 3) == pytest.approx(1.0)


def test_ndcg_gives_a_repeated_id_no_second_gain():
    assert ndcg_at_k([20, 20], {20, 50}, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_query_metrics_and_their_mean():
    a = query_metrics(RANKED, RELEVANT, ks=[1, 5])
    b = query_metrics([99, 1], RELEVANT, ks=[1, 5])
    assert a["precision@1"] == 0.0 and b["precision@1"] == 1.0
    assert mean_metrics([a, b])["precision@1"] == 0.5
    assert mean_metrics([a, b])["mrr"] == pytest.approx((0.5 + 1.0) / 2)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="at least one relevant"):
        precision_at_k(RANKED, [], 5)
    with pytest.raises(ValueError, match="k must be >= 1"):
        recall_at_k(RANKED, RELEVANT, 0)
    with pytest.raises(ValueError, match="no queries"):
        mean_metrics([])
    with pytest.raises(ValueError, match="query 1 has metrics"):
        mean_metrics([{"mrr": 1.0}, {"precision@1": 1.0}])
