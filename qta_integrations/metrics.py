"""Retrieval metrics over a ranked list of tool ids and a set of gold ids.

The same functions score evaluation runs and DPO candidates, so training optimises exactly
what the benchmark reports.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

__all__ = ["ndcg_at_k", "recall_at_k", "sufficiency_at_k"]


def _check(gold: Collection[str], k: int | None) -> None:
    if not gold:
        msg = "gold must name at least one tool id; got an empty collection."
        raise ValueError(msg)
    if k is not None and k < 1:
        msg = f"k must be >= 1, got {k}."
        raise ValueError(msg)


def sufficiency_at_k(ranked: Sequence[str], gold: Collection[str], k: int) -> float:
    """1.0 if every gold tool is in the top ``k``, else 0.0 (the paper's S@k)."""
    _check(gold, k)
    return float(set(gold) <= set(ranked[:k]))


def recall_at_k(ranked: Sequence[str], gold: Collection[str], k: int) -> float:
    """Fraction of gold tools in the top ``k``."""
    _check(gold, k)
    gold_set = set(gold)
    return len(gold_set & set(ranked[:k])) / len(gold_set)


def ndcg_at_k(ranked: Sequence[str], gold: Collection[str], k: int | None = None) -> float:
    """NDCG with binary gain and a log2 discount; the ideal places min(|gold|, k) hits first.

    ``k=None`` scores the whole ranking (used to grade DPO candidates finely).
    """
    _check(gold, k)
    gold_set = set(gold)
    depth = len(ranked) if k is None else k
    dcg = sum(1.0 / math.log2(i + 2) for i, t in enumerate(ranked[:depth]) if t in gold_set)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(gold_set), depth)))
    return dcg / ideal if ideal else 0.0
