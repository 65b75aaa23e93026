"""Metrics on hand-made rankings (values worked out by hand in the comments)."""

from __future__ import annotations

import math

import pytest

from qta_integrations.metrics import ndcg_at_k, recall_at_k, sufficiency_at_k

RANKING = ["a", "b", "c", "d", "e", "f"]


def _d(position: int) -> float:
    """The log2 discount of a 1-based position."""
    return 1.0 / math.log2(position + 1)


@pytest.mark.parametrize(
    ("gold", "k", "expected"),
    [
        ({"a"}, 1, 1.0),
        ({"b"}, 1, 0.0),
        ({"a", "c"}, 2, 0.0),  # c is at rank 3
        ({"a", "c"}, 3, 1.0),
        ({"a", "f"}, 5, 0.0),  # one gold tool missing is not sufficient
        ({"a", "f"}, 6, 1.0),
        ({"a", "f"}, 100, 1.0),  # k beyond the ranking
        ({"z"}, 6, 0.0),  # a gold tool that was never retrieved
    ],
)
def test_sufficiency_at_k(gold: set[str], k: int, expected: float) -> None:
    assert sufficiency_at_k(RANKING, gold, k) == expected


@pytest.mark.parametrize(
    ("gold", "k", "expected"),
    [
        ({"a"}, 1, 1.0),
        ({"a", "c"}, 2, 0.5),
        ({"a", "c", "z"}, 3, 2 / 3),
        ({"e", "f"}, 4, 0.0),
        ({"e", "f"}, 6, 1.0),
    ],
)
def test_recall_at_k(gold: set[str], k: int, expected: float) -> None:
    assert recall_at_k(RANKING, gold, k) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("gold", "k", "expected"),
    [
        # Perfect ranking: the gold tools fill the top positions.
        ({"a", "b"}, 5, 1.0),
        # One gold tool at rank 2: DCG = 1/log2(3); ideal (1 gold tool) = 1.
        ({"b"}, 5, _d(2)),
        # Gold at ranks 1 and 3: DCG = 1 + 1/log2(4) = 1.5; ideal = 1 + 1/log2(3).
        ({"a", "c"}, 5, (1 + _d(3)) / (1 + _d(2))),
        # Gold at rank 6 is outside the top 5.
        ({"f"}, 5, 0.0),
        # Ideal over min(|gold|, k): 3 gold tools but k = 2, both top-2 are gold -> 1.0.
        ({"a", "b", "c"}, 2, 1.0),
        # 3 gold, k = 2, only "a" retrieved in the top 2: DCG = 1; ideal = 1 + 1/log2(3).
        ({"a", "d", "e"}, 2, 1 / (1 + _d(2))),
        # A gold tool that is never retrieved still counts in the ideal.
        ({"a", "z"}, 5, 1 / (1 + _d(2))),
    ],
)
def test_ndcg_at_k(gold: set[str], k: int, expected: float) -> None:
    assert ndcg_at_k(RANKING, gold, k) == pytest.approx(expected)


def test_ndcg_full_ranking_when_k_is_none() -> None:
    # "f" at rank 6 scores over the whole ranking, and not at all in the top 5.
    assert ndcg_at_k(RANKING, {"f"}) == pytest.approx(_d(6))
    assert ndcg_at_k(RANKING, {"f"}, 5) == 0.0


def test_binary_gain_ignores_duplicates_in_gold() -> None:
    assert ndcg_at_k(RANKING, ["a", "a"], 5) == 1.0
    assert recall_at_k(RANKING, ["a", "a"], 5) == 1.0


@pytest.mark.parametrize("metric", [sufficiency_at_k, recall_at_k, ndcg_at_k])
def test_empty_gold_is_rejected(metric: object) -> None:
    with pytest.raises(ValueError, match="gold must name at least one tool"):
        metric(RANKING, set(), 5)  # type: ignore[operator]


@pytest.mark.parametrize("metric", [sufficiency_at_k, recall_at_k, ndcg_at_k])
def test_non_positive_k_is_rejected(metric: object) -> None:
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        metric(RANKING, {"a"}, 0)  # type: ignore[operator]
