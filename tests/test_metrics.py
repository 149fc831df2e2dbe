"""Ranking metrics against values worked out by hand, and the next-slice ground truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recinc_cli.data.seen import SeenItems
from recinc_cli.evaluation.metrics import next_slice_truth, ranking_metrics

L3 = 1 / math.log2(3)  # discount of rank 2
L4 = 1 / math.log2(4)  # discount of rank 3

# k = 3, catalogue of 10 items.
#   user 0: top 1 2 3, truth {2, 5}        |G| = 2 < k   one hit at rank 2
#   user 1: top 4 5 6, truth {4 6 7 8 9}   |G| = 5 > k   hits at ranks 1 and 3
#   user 2: top 7 8 _, truth {1}           no hit (an empty slot is item 0)
#   user 3: top 9 _ _, truth {0}           an item new to the catalogue (index 0): never a hit
TOP = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 0], [9, 0, 0]])
ROWS = np.array([0, 0, 1, 1, 1, 1, 1, 2, 3])
ITEMS = np.array([2, 5, 4, 6, 7, 8, 9, 1, 0])

PER_USER = {
    #         recall  precision  f1                             ndcg                                mrr
    0: (1 / 2, 1 / 3, 2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2), L3 / (1 + L3), 1 / 2),
    1: (2 / 3, 2 / 3, 2 / 3, (1 + L4) / (1 + L3 + L4), 1.0),
    2: (0.0, 0.0, 0.0, 0.0, 0.0),
    3: (0.0, 0.0, 0.0, 0.0, 0.0),
}


def mean(col: int) -> float:
    return sum(v[col] for v in PER_USER.values()) / len(PER_USER)


def test_hand_computed_example() -> None:
    m = ranking_metrics(TOP, ROWS, ITEMS, k=3, n_catalogue=10)
    assert m["users"] == 4
    assert m["recall"] == pytest.approx(mean(0))
    assert m["precision"] == pytest.approx(mean(1))
    assert m["f1"] == pytest.approx(mean(2))
    assert m["ndcg"] == pytest.approx(mean(3))
    assert m["mrr"] == pytest.approx(mean(4))
    assert m["hit_rate"] == 0.5
    assert m["coverage"] == pytest.approx(9 / 10)  # items 1..9 were recommended
    # The literal values, so a change of both code and formula above does not go unnoticed.
    assert (round(m["recall"], 4), round(m["ndcg"], 4), m["mrr"]) == (0.2917, 0.2727, 0.375)


def test_cut_off_below_the_list_length() -> None:
    m = ranking_metrics(TOP, ROWS, ITEMS, k=2, n_catalogue=10)
    # user 0: hit at rank 2 of 2, |G| = 2: recall 1/2, ndcg L3 / (1 + L3)
    # user 1: hit at rank 1 only, min(2, 5) = 2: recall 1/2, ndcg 1 / (1 + L3)
    assert m["recall"] == pytest.approx((1 / 2 + 1 / 2) / 4)
    assert m["precision"] == pytest.approx((1 / 2 + 1 / 2) / 4)
    assert m["ndcg"] == pytest.approx((L3 / (1 + L3) + 1 / (1 + L3)) / 4)
    assert m["mrr"] == pytest.approx((1 / 2 + 1) / 4)
    assert m["coverage"] == pytest.approx(7 / 10)  # 1 2 4 5 7 8 9


def test_perfect_ranking_scores_one() -> None:
    top = np.array([[3, 1, 2], [2, 4, 5]])
    m = ranking_metrics(top, np.array([0, 0, 0, 1, 1]), np.array([1, 2, 3, 4, 2]), k=3, n_catalogue=5)
    assert (m["recall"], m["ndcg"], m["mrr"], m["hit_rate"]) == (1.0, 1.0, 1.0, 1.0)
    assert m["precision"] == pytest.approx((1 + 2 / 3) / 2)


def test_next_slice_truth_keeps_known_users_with_new_items() -> None:
    # Model knows users 1..3 and items 1..4; user 1 saw items 1 and 2, user 2 saw item 3.
    seen = SeenItems.empty(4).merge(np.array([1, 1, 2]), np.array([1, 2, 3]), n_users=4)
    user = np.array([1, 1, 1, 1, 2, 0, 3, 3, 3])
    item = np.array([1, 3, 3, 0, 3, 2, 0, 0, 4])
    key = np.array([10, 30, 30, 77, 30, 20, 77, 88, 40])  # raw-item codes: 77, 88 unknown items
    users, rows, truth = next_slice_truth(user, item, key, seen.contains)
    # user 1: item 1 seen, item 3 new (twice -> once), unknown item 77 new
    # user 2: only item 3, already seen -> not eligible; user 0 (unknown) never eligible
    # user 3: unknown items 77 and 88 stay distinct, plus item 4
    assert users.tolist() == [1, 3]
    got = sorted(zip(users[rows].tolist(), truth.tolist(), strict=True))
    assert got == [(1, 0), (1, 3), (3, 0), (3, 0), (3, 4)]
