"""Fusion: one ranking from the signals, with weights learned from the labels.

For a query ``q`` and a candidate tool ``t`` (any tool a weighted signal returned)::

    score(q, t) = sum over signals s of  weight_s * s(q, t)

with each signal's own scale (`qta_integrations.signals`): ``dense``, ``lexical``,
``labelled_lexical`` and ``rewrite`` standardised (z-scores), ``memory`` a similarity in
[0, 1] and ``prior`` a fraction. The dense weight is fixed to 1, so the other weights say how
much each signal may move a tool against the dense ranking. Without labels the weights are
`FusionWeights()`: dense only, the frozen retriever's own ranking.

`fit_weights` learns the weights from labelled examples, held out two ways:

* **covered**: each example is scored without its own entry (its query neither in the memory,
  nor in the lexical expansion, nor in the prior): a later query about tools the labels name;
* **uncovered** (tool-disjoint): each example is scored with its own tools unlabelled (no
  example's evidence for them), while every other labelled tool keeps its evidence and its
  lift: a later query about tools no label names, competing with the tools the labels do name,
  the case that matters when 10 labels meet a catalogue of 1,000 tools.

A grid of weights is searched for the best mean over the covered examples of
S@5 + S@10 + (NDCG@5 + NDCG@10) / 2 (`objective`). With the uncovered view given (the default,
``RetrievalSettings.label_fit="safe"``) the fit goes in two steps. First the signals that need
no labels (``lexical``, ``rewrite``): they score both views alike, so what helps them is a
lesson that transfers to every tool. Then the signals that speak only for labelled tools
(`LABEL_SIGNALS`), on top, refusing any weights that score the uncovered view below the first
step: the labels may lift the tools they name only where that costs no unlabelled tool its
place on held-out queries. Ties go to the smaller weights, and each step keeps what it starts
from unless it finds something strictly better: that is the shrinkage towards the default.
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
    "LABEL_SIGNALS",
    "SIGNAL_NAMES",
    "FusionFit",
    "FusionWeights",
    "fit_weights",
    "fuse",
    "objective",
]

SIGNAL_NAMES = ("dense", "lexical", "labelled_lexical", "memory", "prior", "rewrite")
"""The signals `FusionWeights` weighs, in the order candidates are gathered."""

LABEL_SIGNALS = frozenset({"labelled_lexical", "memory", "prior"})
"""The signals that speak only for labelled tools (the others score every tool alike)."""

DEFAULT_GRID: Mapping[str, tuple[float, ...]] = {
    "lexical": (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0),
    "labelled_lexical": (0.0, 0.3, 0.5, 1.0),
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
        lexical: BM25 over the tools' own texts.
        labelled_lexical: BM25 over tool texts extended with their labelled queries.
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
    labelled_lexical: float = 0.0
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


def _objectives(
    matrices: Sequence[tuple[list[str], np.ndarray]],
    golds: Sequence[Sequence[str]],
    vectors: np.ndarray,
) -> np.ndarray:
    """`objective` of every weight vector at once: ``vectors`` is ``combos x signals``.

    Equal to ranking each example's candidates by ``matrix @ vector`` with a stable sort and
    calling `objective`, without sorting: a gold tool's rank is the number of candidates
    scored higher, plus those scored equal that come first.
    """
    total = np.zeros(len(vectors))
    discount = 1.0 / np.log2(np.arange(2, 12))
    for (tools, matrix), gold in zip(matrices, golds, strict=True):
        fused = matrix @ vectors.T  # candidates x combos
        position = {t: i for i, t in enumerate(tools)}
        gold_set = list(dict.fromkeys(gold))
        order = np.arange(len(tools))[:, None]
        ranks = []
        for tool_id in gold_set:
            i = position.get(tool_id)
            if i is None:  # not a candidate: never ranked
                ranks.append(np.full(len(vectors), np.inf))
                continue
            higher = (fused > fused[i]).sum(axis=0)
            tied_before = ((fused == fused[i]) & (order < i)).sum(axis=0)
            ranks.append((higher + tied_before).astype(float))
        rank = np.stack(ranks)  # gold x combos
        score = (rank < 5).all(axis=0) + (rank < 10).all(axis=0).astype(float)
        for k in (5, 10):
            gains = np.where(rank < k, discount[np.minimum(rank, 9).astype(int)], 0.0)
            ideal = discount[: min(len(gold_set), k)].sum()
            score = score + 0.5 * gains.sum(axis=0) / ideal
        total += score
    return total / max(len(golds), 1)


@dataclass(frozen=True)
class FusionFit:
    """The outcome of `fit_weights`.

    Attributes:
        weights: The chosen weights.
        score: Their held-out objective on covered examples (`objective`).
        default_score: The objective of the default weights on the same examples.
        num_examples: Examples the fit used.
        tried: Weight combinations tried.
        uncovered_score: The chosen weights' objective with each example's tools unlabelled
            (None when the fit had no uncovered view).
        default_uncovered_score: The default weights' objective on that view.
    """

    weights: FusionWeights
    score: float
    default_score: float
    num_examples: int
    tried: int
    uncovered_score: float | None = None
    default_uncovered_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary."""
        return {**asdict(self), "weights": self.weights.to_dict()}


def _best(vectors: np.ndarray, scores: np.ndarray, allowed: np.ndarray, *, fallback: int) -> int:
    """The allowed row with the best score; ties go to the smaller total weight (shrinkage)."""
    if not allowed.any():
        return fallback
    candidates = np.flatnonzero(allowed)
    order = np.lexsort((vectors[candidates, 1:].sum(axis=1), -scores[candidates]))
    return int(candidates[order[0]])


def fit_weights(
    per_query: Sequence[Mapping[str, SignalScores]],
    golds: Sequence[Sequence[str]],
    *,
    uncovered: Sequence[Mapping[str, SignalScores]] | None = None,
    default: FusionWeights | None = None,
    grid: Mapping[str, Sequence[float]] | None = None,
) -> FusionFit:
    """Choose fusion weights on held-out signal scores (see the module docstring).

    Args:
        per_query: For each labelled example, signal name -> `SignalScores`, computed without
            the example's own entry (`QTAPipeline.fit_fusion` does that).
        golds: The gold tool ids of each example.
        uncovered: The same, computed without every example sharing a tool with it; when
            given, weights that score lower than the default on it are refused.
        default: The weights to keep unless another combination is strictly better
            (default `FusionWeights()`).
        grid: Weights to try per signal (default `DEFAULT_GRID`); a signal missing from
            ``per_query`` is held at 0.

    Returns:
        The fit: chosen weights, their scores and the default's.

    Raises:
        ValueError: if there are no examples, or the inputs differ in length.
    """
    for view, scores in (("", per_query), ("uncovered ", uncovered)):
        if scores is not None and len(scores) != len(golds):
            msg = f"Got {view}signal scores for {len(scores)} examples but {len(golds)} gold lists."
            raise ValueError(msg)
    if not golds:
        msg = "fit_weights needs at least one labelled example."
        raise ValueError(msg)
    default = default or FusionWeights()
    grid = dict(grid or DEFAULT_GRID)
    views = [per_query] if uncovered is None else [per_query, uncovered]
    available = [
        n for n in SIGNAL_NAMES[1:] if all(n in scores for view in views for scores in view)
    ]
    names = ["dense", *available]
    combos = np.asarray(
        [[1.0, *combo] for combo in itertools.product(*(grid.get(n, (0.0,)) for n in available))],
        dtype=np.float64,
    ).reshape(-1, len(names))
    default_vector = np.asarray([[1.0, *(default.weight(n) for n in available)]])
    vectors = np.vstack([default_vector, combos])
    covered = _objectives([candidate_matrix(s, names) for s in per_query], golds, vectors)
    unlabelled: np.ndarray | None = None
    if uncovered is None:
        best = _best(vectors, covered, covered > covered[0] + 1e-12, fallback=0)
    else:
        unlabelled = _objectives([candidate_matrix(s, names) for s in uncovered], golds, vectors)
        # First what needs no labels (it scores both views alike), then what the labels add,
        # as long as held-out queries about unlabelled tools score no lower than without it.
        from_labels = np.asarray([n in LABEL_SIGNALS for n in names])
        plain = ~(vectors[:, from_labels] > 0).any(axis=1)
        base = _best(vectors, covered, plain & (covered > covered[0] + 1e-12), fallback=0)
        same_base = (vectors[:, ~from_labels] == vectors[base, ~from_labels]).all(axis=1)
        allowed = (
            same_base & (covered > covered[base] + 1e-12) & (unlabelled >= unlabelled[base] - 1e-12)
        )
        best = _best(vectors, covered, allowed, fallback=base)
    chosen = (
        default
        if best == 0
        else FusionWeights(
            dense=1.0,
            normalize=default.normalize,
            **{n: float(v) for n, v in zip(available, vectors[best, 1:], strict=True)},
        )
    )
    return FusionFit(
        weights=chosen,
        score=float(covered[best]),
        default_score=float(covered[0]),
        num_examples=len(golds),
        tried=len(combos),
        uncovered_score=None if unlabelled is None else float(unlabelled[best]),
        default_uncovered_score=None if unlabelled is None else float(unlabelled[0]),
    )
