"""Fusion: one ranking from the signals, with weights learned from the labels.

For a query ``q`` and a candidate tool ``t`` (any tool a weighted signal returned)::

    score(q, t) = sum over signals s of  weight_s * s(q, t)

with each signal's own scale (`qta_integrations.signals`): ``dense``, ``lexical`` and
``rewrite`` standardised (z-scores), ``memory`` a similarity in [0, 1] and ``prior`` a
fraction. The dense weight is fixed to 1, so the other weights say how much each signal may
move a tool against the dense ranking. Without labels the weights are
`FusionWeights()`: dense only, the frozen retriever's own ranking.

`fit_weights` learns the weights from labelled examples by leave-one-out: each example is
scored with every signal computed *without its own memory entry* (its own query neither in the
memory, nor in the lexical expansion, nor in the prior), so an example never sees itself; then
a grid of weights is searched for the best mean over the examples of
S@5 + S@10 + (NDCG@5 + NDCG@10) / 2. Ties go to the smaller weights, and the fit keeps the
no-label default unless it is strictly better on the held-out examples: that is the shrinkage
towards the default, and it is what keeps the fitted retriever from falling below dense where
labels do not transfer (a catalogue whose queries rarely share tools).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from qta_integrations.signals.base import SignalScores

__all__ = [
    "DEFAULT_GRID",
    "SIGNAL_NAMES",
    "FusionFit",
    "FusionWeights",
    "fit_weights",
    "fuse",
    "objective",
]

SIGNAL_NAMES = ("dense", "lexical", "memory", "prior", "rewrite")
"""The signals `FusionWeights` weighs, in the order candidates are gathered."""

DEFAULT_GRID: Mapping[str, tuple[float, ...]] = {
    "lexical": (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0),
    "memory": (0.0, 0.5, 1.0, 2.5),
    "prior": (0.0, 0.5, 1.0, 2.5, 5.0),
    "rewrite": (0.0, 0.25, 0.5, 1.0),
}
"""The weights `fit_weights` tries for each signal (the dense weight stays 1).

The memory weight stops at 2.5: a similarity to one labelled example then moves a tool by at
most 2.5 standard deviations of the dense scores. Larger weights win the held-out score when a
few examples come in pairs (each validates the other) but then override dense for any query
loosely similar to an example (measured on `qta demo`'s catalogue: at 10, an umbrella question
went to the flights tool because a flights example named the same city).
"""


@dataclass(frozen=True)
class FusionWeights:
    """Weights of the signals in the fused score (see the module docstring).

    Attributes:
        dense: Query <-> tool similarity from the wrapped store.
        lexical: BM25 over tool texts extended with their labelled queries.
        memory: Similarity to the closest labelled example needing the tool.
        prior: Fraction of labelled examples needing the tool.
        rewrite: Rewrite <-> tool similarity. At 0 the rewriter is never called.
        normalize: Standardise similarity signals; False fuses raw similarities (the paper).

    Example:
        .. code-block:: python

            from qta_integrations.fusion import FusionWeights

            print(FusionWeights().active())  # ('dense',)
            print(FusionWeights.paper().active())  # ('dense', 'rewrite')
    """

    dense: float = 1.0
    lexical: float = 0.0
    memory: float = 0.0
    prior: float = 0.0
    rewrite: float = 0.0
    normalize: bool = True

    def __post_init__(self) -> None:
        for name in SIGNAL_NAMES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                msg = f"The {name} weight must be a number, got {value!r}."
                raise TypeError(msg)
            if not math.isfinite(value) or value < 0:
                msg = f"The {name} weight must be a finite number >= 0, got {value!r}."
                raise ValueError(msg)
            object.__setattr__(self, name, float(value))
        if self.dense == 0 and not any(getattr(self, n) for n in SIGNAL_NAMES):
            msg = "At least one fusion weight must be > 0; the default is dense=1."
            raise ValueError(msg)

    @classmethod
    def paper(cls, alpha: float = 0.5) -> FusionWeights:
        """The paper's fusion: ``(1 - alpha) * s(q, t) + alpha * s(rewrite, t)``, raw."""
        if not 0.0 <= alpha <= 1.0:
            msg = f"alpha must be in [0, 1], got {alpha!r}."
            raise ValueError(msg)
        return cls(dense=1.0 - alpha, rewrite=alpha, normalize=False)

    def weight(self, name: str) -> float:
        """The weight of signal ``name`` (0 for a signal this class does not know)."""
        return float(getattr(self, name, 0.0)) if name in SIGNAL_NAMES else 0.0

    def active(self) -> tuple[str, ...]:
        """Names of the signals with a non-zero weight."""
        return tuple(n for n in SIGNAL_NAMES if getattr(self, n) > 0)

    @property
    def uses_rewrite(self) -> bool:
        """Whether retrieval calls the rewriter."""
        return self.rewrite > 0

    @property
    def dense_only(self) -> bool:
        """Whether the fused ranking is the dense ranking."""
        return self.active() == ("dense",)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FusionWeights:
        """Weights from `to_dict` output.

        Raises:
            ValueError: for unknown keys, naming them.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            msg = f"Unknown fusion weights {unknown}; expected some of {sorted(known)}."
            raise ValueError(msg)
        return cls(**data)


# -- fusing ------------------------------------------------------------------------------------


def candidate_matrix(
    per_signal: Mapping[str, SignalScores], names: Sequence[str]
) -> tuple[list[str], np.ndarray]:
    """Candidates (in order of first appearance) and their ``candidates x signals`` scores."""
    order: dict[str, None] = {}
    for name in names:
        for tool_id in per_signal[name].scores:
            order.setdefault(tool_id, None)
    tools = list(order)
    matrix = np.empty((len(tools), len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        signal = per_signal[name]
        matrix[:, j] = [signal.scores.get(t, signal.floor) for t in tools]
    return tools, matrix


def fuse(per_signal: Mapping[str, SignalScores], weights: FusionWeights) -> list[tuple[str, float]]:
    """Fuse one query's signal scores into ``(tool id, score)`` pairs, best first.

    Args:
        per_signal: Signal name -> its `SignalScores` for the query.
        weights: The weights; signals without a score here count as weight 0.

    Ties keep the order in which the tools first appeared (dense first).
    """
    names = [n for n in SIGNAL_NAMES if weights.weight(n) > 0 and n in per_signal]
    if not names:
        return []
    tools, matrix = candidate_matrix(per_signal, names)
    fused = matrix @ np.asarray([weights.weight(n) for n in names])
    order = np.argsort(-fused, kind="stable")
    return [(tools[i], float(fused[i])) for i in order]


# -- fitting -----------------------------------------------------------------------------------


def objective(rankings: Sequence[Sequence[str]], golds: Sequence[Sequence[str]]) -> float:
    """Mean over the queries of S@5 + S@10 + (NDCG@5 + NDCG@10) / 2 (so in [0, 3])."""
    from qta_integrations.metrics import ndcg_at_k, sufficiency_at_k

    total = 0.0
    for ranking, gold in zip(rankings, golds, strict=True):
        total += sufficiency_at_k(ranking, gold, 5) + sufficiency_at_k(ranking, gold, 10)
        total += 0.5 * (ndcg_at_k(ranking, gold, 5) + ndcg_at_k(ranking, gold, 10))
    return total / max(len(golds), 1)


@dataclass(frozen=True)
class FusionFit:
    """The outcome of `fit_weights`.

    Attributes:
        weights: The chosen weights.
        score: Their leave-one-out objective (`objective`).
        default_score: The objective of the default weights on the same examples.
        num_examples: Examples the fit used.
        tried: Weight combinations tried.
    """

    weights: FusionWeights
    score: float
    default_score: float
    num_examples: int
    tried: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary."""
        return {**asdict(self), "weights": self.weights.to_dict()}


def fit_weights(
    per_query: Sequence[Mapping[str, SignalScores]],
    golds: Sequence[Sequence[str]],
    *,
    default: FusionWeights | None = None,
    grid: Mapping[str, Sequence[float]] | None = None,
) -> FusionFit:
    """Choose fusion weights on held-out signal scores (see the module docstring).

    Args:
        per_query: For each labelled example, signal name -> `SignalScores`, computed without
            the example's own memory entry (the pipeline's `QTAPipeline.fit_fusion` does that).
        golds: The gold tool ids of each example.
        default: The weights to keep unless another combination is strictly better
            (default `FusionWeights()`).
        grid: Weights to try per signal (default `DEFAULT_GRID`); a signal missing from
            ``per_query`` is held at 0.

    Returns:
        The fit: chosen weights, their score and the default's.

    Raises:
        ValueError: if there are no examples, or ``per_query`` and ``golds`` differ in length.
    """
    if len(per_query) != len(golds):
        msg = f"Got signal scores for {len(per_query)} examples but {len(golds)} gold lists."
        raise ValueError(msg)
    if not golds:
        msg = "fit_weights needs at least one labelled example."
        raise ValueError(msg)
    default = default or FusionWeights()
    grid = dict(grid or DEFAULT_GRID)
    available = [n for n in SIGNAL_NAMES[1:] if all(n in scores for scores in per_query)]
    axes = [tuple(grid.get(n, (0.0,))) for n in available]
    names = ["dense", *available]
    matrices = [candidate_matrix(scores, names) for scores in per_query]

    def evaluate(weights: Sequence[float]) -> float:
        vector = np.asarray(weights, dtype=np.float64)
        rankings = []
        for tools, matrix in matrices:
            fused = matrix @ vector
            rankings.append([tools[i] for i in np.argsort(-fused, kind="stable")])
        return objective(rankings, golds)

    default_vector = [1.0, *(default.weight(n) for n in available)]
    default_score = evaluate(default_vector)
    best_key = (default_score, 0.0)
    best = default_vector
    tried = 0
    for combo in itertools.product(*axes):
        tried += 1
        candidate = [1.0, *combo]
        score = evaluate(candidate)
        # Strictly better wins; equal scores prefer the smaller total weight (shrinkage).
        key = (score, -float(sum(combo)))
        if score > default_score + 1e-12 and key > best_key:
            best_key, best = key, candidate
    chosen = (
        default
        if best is default_vector
        else FusionWeights(
            dense=1.0, normalize=default.normalize, **dict(zip(available, best[1:], strict=True))
        )
    )
    return FusionFit(
        weights=chosen,
        score=best_key[0],
        default_score=default_score,
        num_examples=len(golds),
        tried=tried,
    )
