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
    "GATE_WIDTH",
    "LABEL_SIGNALS",  # noqa: F822 (module __getattr__: a view of the signal registry)
    "SIGNAL_NAMES",  # noqa: F822 (module __getattr__: a view of the signal registry)
    "FusionFit",
    "FusionWeights",
    "fit_weights",
    "fuse",
    "gate_opening",
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


BASE_LEXICAL_WEIGHT = 1.5
"""The lexical weight of `FusionWeights.base`."""

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


GATE_WIDTH = 0.1
"""The width of the label gate's ramp, in units of similarity (`gate_opening`)."""


def _check_gate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        msg = f"label_gate must be a finite number (a similarity margin) or None, got {value!r}."
        raise ValueError(msg)
    return float(value)


def gate_opening(margin: float, threshold: float | None) -> float:
    """How far the label signals count for a query: 0 (not at all) to 1 (in full).

    ``margin`` is how much closer the query is to its nearest labelled example than to its
    nearest tool (`SignalContext.label_margin`); the gate opens around ``threshold``, over a
    ramp `GATE_WIDTH` wide. Without a threshold the gate is always open. Non-decreasing in
    ``margin``.

    Example:
        .. code-block:: python

            from qta_integrations.fusion import gate_opening

            print([round(gate_opening(m, 0.0), 2) for m in (-0.2, 0.0, 0.02, 0.2)])
            # [0.0, 0.5, 0.7, 1.0]
    """
    if threshold is None:
        return 1.0
    if not math.isfinite(margin):
        return 1.0 if margin > 0 else 0.0
    return min(1.0, max(0.0, 0.5 + (margin - threshold) / GATE_WIDTH))


class FusionWeights:
    """Weights of the signals in the fused score, keyed by signal name (see the module).

    Any registered signal (`qta_integrations.signals.registered_signals`) may have a weight;
    a signal without one weighs 0. The dense weight is 1 unless given. Weights are read with
    `weight` (or as attributes: ``weights.lexical``).

    Args:
        weights: Signal name -> weight (>= 0).
        normalize: Standardise similarity signals; False fuses raw similarities (the paper).
        label_gate: When set, the label signals (`Signal.uses_labels`) of each query count
            as far as `gate_opening` of its label margin at this threshold says: fully for
            a query much closer to a labelled example than to any tool, not at all for one
            that is not. None: they always count in full.
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

    __slots__ = ("_weights", "label_gate", "normalize")
    _weights: dict[str, float]
    normalize: bool
    label_gate: float | None

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        *,
        normalize: bool = True,
        label_gate: float | None = None,
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
        if label_gate is not None:
            label_gate = _check_gate(label_gate)
        object.__setattr__(self, "_weights", kept)
        object.__setattr__(self, "normalize", normalize)
        object.__setattr__(self, "label_gate", label_gate)

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
        return (_rebuild_weights, (dict(self._weights), self.normalize, self.label_gate))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FusionWeights):
            return NotImplemented
        return (
            self._weights == other._weights
            and self.normalize == other.normalize
            and self.label_gate == other.label_gate
        )

    def __hash__(self) -> int:
        return hash((frozenset(self._weights.items()), self.normalize, self.label_gate))

    def __repr__(self) -> str:
        named = ", ".join(f"{n}={v:g}" for n, v in self._weights.items())
        if not self.normalize:
            named += ", normalize=False"
        if self.label_gate is not None:
            named += f", label_gate={self.label_gate:g}"
        return f"FusionWeights({named})"

    @classmethod
    def base(cls) -> FusionWeights:
        """The zero-label base: dense plus trust-scaled BM25 at 1.5 (``lexical=1.5``).

        What a retriever uses before any label (`RetrievalSettings().fusion`). Chosen on five
        tool catalogues as a whole (docs/benchmarks.md): +8.5 points of S@5 over dense on
        average, and no catalogue below dense.
        """
        return cls({ANCHOR: 1.0, "lexical": BASE_LEXICAL_WEIGHT})

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
        return FusionWeights(
            {**self._weights, **changes}, normalize=self.normalize, label_gate=self.label_gate
        )

    def without_labels(self) -> FusionWeights:
        """The same weights with every label signal at 0 and no label gate."""
        specs = registered_signals()
        kept = {n: w for n, w in self._weights.items() if not specs[n].uses_labels}
        return FusionWeights(kept, normalize=self.normalize)

    @property
    def uses_labels(self) -> bool:
        """Whether a signal that speaks only for labelled tools has a weight."""
        specs = registered_signals()
        return any(specs[n].uses_labels for n in self.active())

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
        """A JSON-serialisable dict: ``{"weights": {name: weight}, "normalize": bool}``.

        ``"label_gate"`` is there too when the label signals are gated.
        """
        data: dict[str, Any] = {"weights": dict(self._weights), "normalize": self.normalize}
        if self.label_gate is not None:
            data["label_gate"] = self.label_gate
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FusionWeights:
        """Weights from `to_dict` output, or the flat dict of settings versions 1 to 3.

        The flat form is ``{"dense": 1.0, "lexical": 0.5, ..., "normalize": true}``.

        Raises:
            ValueError: for a signal name no registered signal has, naming it.
        """
        data = dict(data)
        normalize = data.pop("normalize", True)
        label_gate = data.pop("label_gate", None)
        if "weights" in data:
            extra = sorted(set(data) - {"weights"})
            if extra:
                msg = (
                    f"Unknown fusion fields {extra}; expected 'weights', 'normalize' and "
                    "'label_gate'."
                )
                raise ValueError(msg)
            weights = data["weights"]
        else:
            weights = data
        if not isinstance(weights, Mapping):
            msg = f"The fusion weights must be a dict of signal name -> weight, got {weights!r}."
            raise ValueError(msg)
        _check_known(weights, where="in saved fusion weights")
        return cls(weights, normalize=normalize, label_gate=label_gate)


def _rebuild_weights(
    weights: dict[str, float], normalize: bool, label_gate: float | None
) -> FusionWeights:
    return FusionWeights(weights, normalize=normalize, label_gate=label_gate)


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


def fuse(
    per_signal: Mapping[str, SignalScores],
    weights: FusionWeights,
    *,
    label_margin: float = math.inf,
) -> list[tuple[str, float]]:
    """Fuse one query's signal scores into ``(tool id, score)`` pairs, best first.

    Args:
        per_signal: Signal name -> its `SignalScores` for the query.
        weights: The weights; signals without a score here count as weight 0.
        label_margin: The query's label margin (`SignalContext.label_margin`), read by the
            label gate when ``weights.label_gate`` is set.

    Ties keep the order in which the tools first appeared (dense first).
    """
    names = [n for n in weights.active() if n in per_signal]
    if not names:
        return []
    tools, matrix = candidate_matrix(per_signal, names)
    opening = gate_opening(label_margin, weights.label_gate)
    specs = registered_signals()
    fused = matrix @ np.asarray(
        [weights.weight(n) * (opening if specs[n].uses_labels else 1.0) for n in names]
    )
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
    scales: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """`objective` of every weight vector at once: ``vectors`` is ``combos x signals``.

    Equal to ranking each example's candidates by ``matrix @ vector`` with a stable sort and
    calling `objective`, without sorting: a gold tool's rank is the number of candidates
    scored higher, plus those scored equal that come first. ``scales`` gives, per example, a
    factor per signal (the label gate's opening on its label signals).
    """
    total = np.zeros(len(vectors))
    discount = 1.0 / np.log2(np.arange(2, 12))
    for e, ((tools, matrix), gold) in enumerate(zip(matrices, golds, strict=True)):
        if scales is not None:
            matrix = matrix * scales[e]
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


FREE_SHRINKAGE = 10.0
"""How strongly a fit holds the label-free weights to the base: moving one by its signal's
whole grid costs ``FREE_SHRINKAGE / n`` of the objective (n labelled examples; the objective
counts up to 3 per example), so fewer labels must gain more. The base was chosen on hundreds
of queries over five catalogues; a handful of labels rarely says better."""

LABEL_SHRINKAGE = 3.0
"""The same for the label signals, held to 0 (measured on the development suite: at 1, the
tool-disjoint protocol's worst draw on MTRB-RestBench fell 6 points below the base; at 3, 3)."""

UNCOVERED_TOLERANCE = 0.0
"""How much of the objective (per example, times n) the uncovered view may lose to the labels."""

LABEL_GATE_GRID: tuple[float | None, ...] = (-0.1, -0.05, 0.0, 0.05, 0.1)
"""The label gate thresholds a fit tries (None would let the label signals always count)."""


@dataclass(frozen=True)
class FusionFit:
    """The outcome of `fit_weights`.

    Attributes:
        weights: The chosen weights.
        score: Their held-out objective on covered examples (`objective`).
        default_score: The base weights' objective on the same examples.
        num_examples: Examples the fit used.
        tried: Weight combinations tried.
        uncovered_score: The chosen weights' objective with each example's tools unlabelled
            (None when the fit had no uncovered view).
        default_uncovered_score: The base weights' objective on that view.
        coverage: The share of future queries the labels were expected to cover (the
            leave-one-out estimate the fit weighed the two views by; None without an
            uncovered view).
    """

    weights: FusionWeights
    score: float
    default_score: float
    num_examples: int
    tried: int
    uncovered_score: float | None = None
    default_uncovered_score: float | None = None
    coverage: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary."""
        return {**asdict(self), "weights": self.weights.to_dict()}


def _best(scores: np.ndarray, allowed: np.ndarray, cost: np.ndarray, *, fallback: int) -> int:
    """The allowed row with the best score; ties go to the smallest ``cost`` (the shrinkage)."""
    if not allowed.any():
        return fallback
    candidates = np.flatnonzero(allowed)
    order = np.lexsort((cost[candidates], -np.round(scores[candidates], 12)))
    return int(candidates[order[0]])


def fit_weights(
    per_query: Sequence[Mapping[str, SignalScores]],
    golds: Sequence[Sequence[str]],
    *,
    uncovered: Sequence[Mapping[str, SignalScores]] | None = None,
    default: FusionWeights | None = None,
    grid: Mapping[str, Sequence[float]] | None = None,
    margins: Sequence[float] | None = None,
    uncovered_margins: Sequence[float] | None = None,
    coverage: float | None = None,
    gates: Sequence[float | None] | None = None,
    shrinkage: tuple[float, float] | None = None,
) -> FusionFit:
    """Choose fusion weights on held-out signal scores (see the module docstring).

    Args:
        per_query: For each labelled example, signal name -> `SignalScores`, computed without
            the example's own entry (`QTAPipeline.fit_fusion` does that).
        golds: The gold tool ids of each example.
        uncovered: The same, computed with each example's own tools unlabelled; when given,
            label weights that score lower than the label-free fit on it are refused.
        default: The base: the weights kept unless another combination is better by more
            than its distance from them costs (default `FusionWeights()`, dense only).
        grid: Weights to try per signal (default: each registered signal's `Signal.grid`);
            a signal missing from ``per_query`` is held at 0.
        margins: Each example's label margin (`SignalContext.label_margin`) in the covered
            view; with ``uncovered_margins``, the label gate thresholds in ``gates`` are tried.
        uncovered_margins: The same in the uncovered view.
        coverage: The share of future queries the labels are expected to cover
            (`ExampleMemory.coverage`): the label signals are chosen for
            ``coverage * covered + (1 - coverage) * uncovered``. Default 1 (covered alone).
        gates: Label gate thresholds to try, None among them for no gate (default
            `LABEL_GATE_GRID`).
        shrinkage: How strongly the fit holds the label-free and the label weights to the
            base (default `FREE_SHRINKAGE`, `LABEL_SHRINKAGE`).

    Returns:
        The fit: chosen weights, their scores and the base's.

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
    n = len(golds)
    from_labels = np.asarray([specs[name].uses_labels for name in names])
    base_vector = np.asarray([[1.0, *(default.weight(name) for name in available)]])
    combos = np.asarray(
        [[1.0, *combo] for combo in itertools.product(*(grid.get(a, (0.0,)) for a in available))],
        dtype=np.float64,
    ).reshape(-1, len(names))
    vectors = np.vstack([base_vector, combos])
    # The cost of a weight's distance from the base: a whole grid's span costs shrinkage / n.
    span = np.asarray([1.0, *(max(max(grid.get(a, (0.0,))), 1e-9) for a in available)])
    distance = (np.abs(vectors - base_vector) / span)[:, 1:]
    matrices = [candidate_matrix(q, names) for q in per_query]
    covered = _objectives(matrices, golds, vectors)
    free_shrinkage, label_shrinkage = shrinkage or (FREE_SHRINKAGE, LABEL_SHRINKAGE)
    penalty_free = free_shrinkage / n * distance[:, ~from_labels[1:]].sum(axis=1)
    penalty_labels = label_shrinkage / n * distance[:, from_labels[1:]].sum(axis=1)
    no_labels = ~(vectors[:, from_labels] > 0).any(axis=1)

    # 1. What needs no labels: it scores both views alike, so what the labels teach about it
    #    transfers to every tool. Away from the base only on evidence (the shrinkage).
    free_score = covered - penalty_free
    moved = distance[:, ~from_labels[1:]].sum(axis=1)
    free = _best(free_score, no_labels & (free_score > free_score[0] + 1e-12), moved, fallback=0)
    # 2. What the labels add on top, gated per query, for the traffic the labels predict.
    same_free = (vectors[:, ~from_labels] == vectors[free, ~from_labels]).all(axis=1)
    with_labels = same_free & ~no_labels
    share = 1.0 if uncovered is None or coverage is None else min(1.0, max(0.0, coverage))
    unc_matrices = [candidate_matrix(q, names) for q in uncovered] if uncovered else None
    tried_gates = (
        list(LABEL_GATE_GRID if gates is None else gates) if margins is not None else [None]
    )
    # The best so far: (score, -label weight, row, gate, covered score, uncovered score).
    best: tuple[float, float, int, float | None, float, float | None] | None = None
    free_unc = float(_objectives(unc_matrices, golds, vectors[[free]])[0]) if unc_matrices else None
    rows = np.flatnonzero(with_labels)
    free_mix = share * covered[free] + ((1.0 - share) * free_unc if free_unc is not None else 0.0)
    for threshold in tried_gates if len(rows) else []:
        cov = _objectives(
            matrices, golds, vectors[rows], _gate_scales(margins, threshold, from_labels, n)
        )
        if unc_matrices is not None:
            unc = _objectives(
                unc_matrices,
                golds,
                vectors[rows],
                _gate_scales(uncovered_margins, threshold, from_labels, n),
            )
            allowed = unc >= float(free_unc or 0.0) - UNCOVERED_TOLERANCE / n - 1e-12
            mix = share * cov + (1.0 - share) * unc
        else:
            unc = None
            allowed = np.ones(len(rows), dtype=bool)
            mix = cov
        mix = mix - penalty_labels[rows]
        weight = vectors[rows][:, from_labels].sum(axis=1)
        for j in np.flatnonzero(allowed & (mix > free_mix + 1e-12)):
            # Ties go to the smaller label weights, then to the first gate tried.
            key = (float(mix[j]), -float(weight[j]))
            if (
                best is None
                or key[0] > best[0] + 1e-12
                or (abs(key[0] - best[0]) <= 1e-12 and key[1] > best[1] + 1e-12)
            ):
                unc_j = None if unc is None else float(unc[j])
                best = (*key, int(rows[j]), threshold, float(cov[j]), unc_j)
    if best is None:
        chosen_row, gate = free, None
        score, unc_score = float(covered[free]), free_unc
    else:
        _, _, chosen_row, gate, score, unc_score = best
    chosen = (
        default
        if chosen_row == 0
        else FusionWeights(
            {
                # A signal the fit could not score keeps the base's weight.
                **default.weights,
                ANCHOR: 1.0,
                **{a: float(v) for a, v in zip(available, vectors[chosen_row, 1:], strict=True)},
            },
            normalize=default.normalize,
            label_gate=gate if (vectors[chosen_row, from_labels] > 0).any() else None,
        )
    )
    default_unc = float(_objectives(unc_matrices, golds, vectors[[0]])[0]) if unc_matrices else None
    return FusionFit(
        weights=chosen,
        score=score,
        default_score=float(covered[0]),
        num_examples=n,
        tried=len(combos) * max(1, len(tried_gates)),
        uncovered_score=unc_score,
        default_uncovered_score=default_unc,
        coverage=None if uncovered is None or coverage is None else share,
    )


def _gate_scales(
    margins: Sequence[float] | None,
    threshold: float | None,
    from_labels: np.ndarray,
    n: int,
) -> list[np.ndarray] | None:
    """Per example, a factor per signal: the gate's opening on label signals, 1 elsewhere."""
    if margins is None or threshold is None:
        return None
    return [
        np.where(from_labels, gate_opening(float(margins[e]), threshold), 1.0) for e in range(n)
    ]
