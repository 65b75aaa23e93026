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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from qta_integrations.signals import registered_signals
from qta_integrations.signals.base import SignalScores

__all__ = [
    "ANCHOR",
    "DEFAULT_GRID",  # noqa: F822 (module __getattr__: a view of the signal registry)
    "LABEL_SIGNALS",  # noqa: F822 (module __getattr__: a view of the signal registry)
    "SIGNAL_NAMES",  # noqa: F822 (module __getattr__: a view of the signal registry)
    "FusionFit",
    "FusionWeights",
    "fit_weights",
    "fuse",
    "objective",
]


def __getattr__(name: str) -> Any:
    # Views of the registry, computed when read: a signal registered later is in them.
    if name == "SIGNAL_NAMES":
        return tuple(registered_signals())
    if name == "LABEL_SIGNALS":
        return frozenset(n for n, spec in registered_signals().items() if spec.uses_labels)
    if name == "DEFAULT_GRID":
        return {n: spec.grid for n, spec in registered_signals().items() if n != ANCHOR}
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


ANCHOR = "dense"
"""The signal whose weight a fit holds at 1: the others say how far they move the dense ranking."""


def _check_weight(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"The {name} weight must be a number, got {value!r}."
        raise TypeError(msg)
    if not math.isfinite(value) or value < 0:
        msg = f"The {name} weight must be a finite number >= 0, got {value!r}."
        raise ValueError(msg)
    return float(value)


def _check_known(names: Iterable[str], *, where: str) -> None:
    known = registered_signals()
    unknown = sorted(n for n in names if n not in known)
    if unknown:
        msg = (
            f"Unknown signal(s) {unknown} {where}; registered signals: {list(known)}. Register "
            "a signal (qta_integrations.signals.register_signal) before giving it a weight."
        )
        raise ValueError(msg)


class FusionWeights:
    """Weights of the signals in the fused score, keyed by signal name (see the module).

    Any registered signal (`qta_integrations.signals.registered_signals`) may have a weight;
    a signal without one weighs 0. The dense weight is 1 unless given. Weights are read with
    `weight` (or as attributes: ``weights.lexical``).

    Args:
        weights: Signal name -> weight (>= 0).
        normalize: Standardise similarity signals; False fuses raw similarities (the paper).
        **named: More weights by name (``FusionWeights(lexical=0.5)``).

    Raises:
        ValueError: for a name no registered signal has, a negative or non-finite weight, or
            all weights 0.
        TypeError: for a weight that is not a number.

    Example:
        .. code-block:: python

            from qta_integrations.fusion import FusionWeights

            print(FusionWeights().active())  # ('dense',)
            print(FusionWeights(lexical=0.5).weight("lexical"))  # 0.5
            print(FusionWeights.paper().active())  # ('dense', 'rewrite')
    """

    __slots__ = ("_weights", "normalize")
    _weights: dict[str, float]
    normalize: bool

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        *,
        normalize: bool = True,
        **named: float,
    ) -> None:
        if weights is not None and not isinstance(weights, Mapping):
            msg = (
                f"weights must be a mapping of signal name -> weight, got "
                f"{type(weights).__name__}; e.g. FusionWeights({{'dense': 1.0, 'lexical': 0.5}})."
            )
            raise TypeError(msg)
        given = {ANCHOR: 1.0, **(weights or {}), **named}
        _check_known(given, where="in the fusion weights")
        checked = {n: _check_weight(n, v) for n, v in given.items()}
        # Zero weights are not kept (a weight of 0 and no weight are one thing), except the
        # anchor's, whose absence would read as 1.
        order = list(registered_signals())
        kept = {n: checked[n] for n in order if n in checked and (checked[n] or n == ANCHOR)}
        if not any(kept.values()):
            msg = "At least one fusion weight must be > 0; the default is dense=1."
            raise ValueError(msg)
        if not isinstance(normalize, bool):
            msg = f"normalize must be True or False, got {normalize!r}."
            raise TypeError(msg)
        object.__setattr__(self, "_weights", kept)
        object.__setattr__(self, "normalize", normalize)

    def __setattr__(self, name: str, value: Any) -> None:
        msg = "FusionWeights is immutable; build new weights (FusionWeights({...}))."
        raise AttributeError(msg)

    def __getattr__(self, name: str) -> float:
        # Attribute reads of a signal's weight (weights.lexical), for registered names only.
        if name.startswith("_") or name not in registered_signals():
            msg = f"{type(self).__name__!r} object has no attribute {name!r}"
            raise AttributeError(msg)
        return self.weight(name)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_weights, (dict(self._weights), self.normalize))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FusionWeights):
            return NotImplemented
        return self._weights == other._weights and self.normalize == other.normalize

    def __hash__(self) -> int:
        return hash((frozenset(self._weights.items()), self.normalize))

    def __repr__(self) -> str:
        named = ", ".join(f"{n}={v:g}" for n, v in self._weights.items())
        return f"FusionWeights({named}{'' if self.normalize else ', normalize=False'})"

    @classmethod
    def paper(cls, alpha: float = 0.5) -> FusionWeights:
        """The paper's fusion: ``(1 - alpha) * s(q, t) + alpha * s(rewrite, t)``, raw."""
        if not 0.0 <= alpha <= 1.0:
            msg = f"alpha must be in [0, 1], got {alpha!r}."
            raise ValueError(msg)
        return cls({ANCHOR: 1.0 - alpha, "rewrite": alpha}, normalize=False)

    @property
    def weights(self) -> dict[str, float]:
        """Signal name -> weight, for the signals with a weight (the anchor always listed)."""
        return dict(self._weights)

    def weight(self, name: str) -> float:
        """The weight of signal ``name`` (0 for a registered signal without one).

        Raises:
            KeyError: for a name no registered signal has.
        """
        if name not in registered_signals():
            msg = (
                f"No signal named {name!r} is registered; registered: {list(registered_signals())}."
            )
            raise KeyError(msg)
        return self._weights.get(name, 0.0)

    def active(self) -> tuple[str, ...]:
        """Names of the signals with a non-zero weight, in registration order."""
        return tuple(n for n, v in self._weights.items() if v > 0)

    def replace(self, **changes: float) -> FusionWeights:
        """A copy with some weights changed (``weights.replace(lexical=0.3)``)."""
        return FusionWeights({**self._weights, **changes}, normalize=self.normalize)

    @property
    def uses_rewrite(self) -> bool:
        """Whether retrieval calls the rewriter (a signal that reads it has a weight)."""
        specs = registered_signals()
        return any(specs[n].needs_rewrite for n in self.active() if n in specs)

    @property
    def dense_only(self) -> bool:
        """Whether the fused ranking is the dense ranking."""
        return self.active() == (ANCHOR,)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict: ``{"weights": {name: weight}, "normalize": bool}``."""
        return {"weights": dict(self._weights), "normalize": self.normalize}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FusionWeights:
        """Weights from `to_dict` output, or the flat dict of settings versions 1 to 3.

        The flat form is ``{"dense": 1.0, "lexical": 0.5, ..., "normalize": true}``.

        Raises:
            ValueError: for a signal name no registered signal has, naming it.
        """
        data = dict(data)
        normalize = data.pop("normalize", True)
        if "weights" in data:
            extra = sorted(set(data) - {"weights"})
            if extra:
                msg = f"Unknown fusion fields {extra}; expected 'weights' and 'normalize'."
                raise ValueError(msg)
            weights = data["weights"]
        else:
            weights = data
        if not isinstance(weights, Mapping):
            msg = f"The fusion weights must be a dict of signal name -> weight, got {weights!r}."
            raise ValueError(msg)
        _check_known(weights, where="in saved fusion weights")
        return cls(weights, normalize=normalize)


def _rebuild_weights(weights: dict[str, float], normalize: bool) -> FusionWeights:
    return FusionWeights(weights, normalize=normalize)


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
    names = [n for n in weights.active() if n in per_signal]
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
        grid: Weights to try per signal (default: each registered signal's `Signal.grid`);
            a signal missing from ``per_query`` is held at 0.

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
    specs = registered_signals()
    grid = dict(grid or {n: spec.grid for n, spec in specs.items()})
    views = [per_query] if uncovered is None else [per_query, uncovered]
    available = [
        n for n in specs if n != ANCHOR and all(n in scores for view in views for scores in view)
    ]
    names = [ANCHOR, *available]
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
        from_labels = np.asarray([specs[n].uses_labels for n in names])
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
            {
                ANCHOR: 1.0,
                **{n: float(v) for n, v in zip(available, vectors[best, 1:], strict=True)},
            },
            normalize=default.normalize,
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
