"""Evaluation protocols for learning from labels: the standard split and the tool-disjoint one.

Benchmarks with a fixed training split (MTRB's 10 training queries) hide how a retriever does
on tools that no label names: most test queries there need a tool that a training query
needs too. The **tool-disjoint** protocol measures exactly that case. For each draw:

1. the tools that any query of the pool (training and test queries) needs are split at random
   into two halves, and only the queries whose tools all lie in the first half may be labels;
2. ``num_labels`` of them are drawn as the labels;
3. the evaluation queries are the *test* queries that are not labels and none of whose gold
   tools is named by a label.

Nothing from an evaluated query enters the fit. Draws that leave too few candidate labels or
evaluation queries are skipped (the next seed is tried), so every draw has ``num_labels``
labels and at least ``min_eval`` evaluation queries.

Example:
    .. code-block:: python

        from qta_integrations.evaluation import load_mtrb, tool_disjoint_draws

        test, train = load_mtrb("restbench", "test", DIR), load_mtrb("restbench", "train", DIR)
        for draw in tool_disjoint_draws(test, train, draws=5):
            print(draw.seed, len(draw.labels), len(draw.evaluation))
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from qta_integrations.evaluation.datasets import LabelledQuery, RetrievalDataset
from qta_integrations.evaluation.harness import EvaluationReport, evaluate
from qta_integrations.fusion import FusionWeights
from qta_integrations.pipeline import QTAPipeline

__all__ = [
    "ToolDisjointDraw",
    "ToolDisjointReport",
    "evaluate_tool_disjoint",
    "tool_disjoint_draws",
]

MAX_SEEDS = 500
"""Seeds tried before giving up on finding the draws asked for."""


@dataclass(frozen=True)
class ToolDisjointDraw:
    """One draw of the tool-disjoint protocol.

    Attributes:
        seed: The seed of the draw (``random.Random(seed)``).
        labels: The labelled queries the retriever learns from.
        evaluation: The test queries none of whose gold tools a label names.
    """

    seed: int
    labels: tuple[LabelledQuery, ...]
    evaluation: RetrievalDataset

    @property
    def labelled_tools(self) -> frozenset[str]:
        """The tools the labels name."""
        return frozenset(t for q in self.labels for t in q.tool_ids)


def tool_disjoint_draws(
    test: RetrievalDataset,
    train: RetrievalDataset | None = None,
    *,
    draws: int = 10,
    num_labels: int = 10,
    min_eval: int = 10,
    seed: int = 0,
) -> list[ToolDisjointDraw]:
    """Draws of the tool-disjoint protocol (see the module docstring).

    Args:
        test: The test queries (evaluation queries come from here only) and the catalogue.
        train: Further queries that may be drawn as labels (e.g. a training split).
        draws: How many draws.
        num_labels: Labels per draw.
        min_eval: Fewest evaluation queries a draw may have.
        seed: The first seed tried.

    Raises:
        ValueError: for counts that are not positive, or when fewer than ``draws`` draws are
            found within `MAX_SEEDS` seeds (the catalogue's queries share too many tools).
    """
    for name, value in (("draws", draws), ("num_labels", num_labels), ("min_eval", min_eval)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            msg = f"{name} must be a positive int, got {value!r}."
            raise ValueError(msg)
    pool = [*(train.queries if train is not None else ()), *test.queries]
    test_positions = range(len(pool) - len(test.queries), len(pool))
    tools = sorted({t for q in pool for t in q.tool_ids})
    found: list[ToolDisjointDraw] = []
    for current in range(seed, seed + MAX_SEEDS):
        if len(found) == draws:
            break
        rng = random.Random(current)
        labellable = set(rng.sample(tools, len(tools) // 2))
        candidates = [i for i, q in enumerate(pool) if set(q.tool_ids) <= labellable]
        if len(candidates) < num_labels:
            continue
        chosen = rng.sample(candidates, num_labels)
        named = {t for i in chosen for t in pool[i].tool_ids}
        evaluation = [
            pool[i] for i in test_positions if i not in chosen and not named & set(pool[i].tool_ids)
        ]
        if len(evaluation) < min_eval:
            continue
        found.append(
            ToolDisjointDraw(
                seed=current,
                labels=tuple(pool[i] for i in chosen),
                evaluation=RetrievalDataset(
                    test.catalog, evaluation, name=f"{test.name} (tool-disjoint)"
                ),
            )
        )
    if len(found) < draws:
        msg = (
            f"Found {len(found)} tool-disjoint draws of {test.name!r} in {MAX_SEEDS} seeds, "
            f"not {draws}: its queries share too many tools for {num_labels} labels and "
            f"{min_eval} evaluation queries; ask for fewer labels or evaluation queries."
        )
        raise ValueError(msg)
    return found


@dataclass(frozen=True)
class ToolDisjointReport:
    """A fitted retriever against the zero-label base and dense, over the tool-disjoint draws.

    Attributes:
        dataset: The dataset's name.
        method: The fitted method's name.
        fitted: One report per draw for the retriever fitted on the draw's labels.
        dense: One report per draw for the dense retriever on the same queries.
        fits: For each draw, what the fit chose (`FusionFit.to_dict`) and its seed.
        base: One report per draw for the retriever without labels (the zero-label base).
    """

    dataset: str
    method: str
    fitted: list[EvaluationReport]
    dense: list[EvaluationReport]
    fits: list[dict[str, Any]] = field(default_factory=list)
    base: list[EvaluationReport] = field(default_factory=list)

    def summary(self, metric: str = "S@5", *, against: str = "base") -> dict[str, float]:
        """Statistics over the draws of ``metric``, in points.

        Mean and standard deviation of the fitted retriever, of the base, of dense and of
        the difference between the fitted retriever and ``against`` (``"base"`` or
        ``"dense"``), and the lowest difference (the worst draw).
        """
        if against not in ("base", "dense"):
            msg = f"against must be 'base' or 'dense', got {against!r}."
            raise ValueError(msg)
        fitted = [r.metrics[metric] for r in self.fitted]
        dense = [r.metrics[metric] for r in self.dense]
        base = [r.metrics[metric] for r in self.base] or dense
        reference = base if against == "base" else dense
        diff = [a - b for a, b in zip(fitted, reference, strict=True)]
        return {
            "fitted_mean": _mean(fitted),
            "fitted_std": _std(fitted),
            "base_mean": _mean(base),
            "base_std": _std(base),
            "dense_mean": _mean(dense),
            "dense_std": _std(dense),
            "diff_mean": _mean(diff),
            "diff_std": _std(diff),
            "diff_min": min(diff),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (per-draw metrics, no per-query rankings)."""
        metrics = sorted(self.fitted[0].metrics) if self.fitted else []
        return {
            "dataset": self.dataset,
            "method": self.method,
            "draws": [
                {
                    **fit,
                    "num_queries": a.num_queries,
                    "fitted": a.metrics,
                    "base": c.metrics,
                    "dense": b.metrics,
                }
                for fit, a, b, c in zip(
                    self.fits, self.fitted, self.dense, self.base or self.dense, strict=True
                )
            ],
            "summary": {m: self.summary(m) for m in metrics},
            "summary_against_dense": {m: self.summary(m, against="dense") for m in metrics},
        }


def evaluate_tool_disjoint(
    draws: Sequence[ToolDisjointDraw],
    *,
    embeddings: Any | None = None,
    method: str = "qta",
    ks: Sequence[int] = (5, 10),
    **settings: Any,
) -> ToolDisjointReport:
    """Fit a fresh retriever on each draw's labels; score it, the base and dense on its queries.

    The catalogue is embedded once (an exact cosine index, the frozen retriever's exact
    ranking); each draw's retriever starts with no labels and learns from the draw's alone.

    Args:
        draws: From `tool_disjoint_draws` (all over the same catalogue).
        embeddings: The embedding model; default all-MiniLM-L6-v2.
        method: Name in the reports.
        ks: Cutoffs.
        **settings: `RetrievalSettings` fields of the fitted retriever (``label_fit=...``).

    Raises:
        ValueError: if there are no draws.
    """
    from qta_integrations.embeddings import resolve_embeddings
    from qta_integrations.stores import ExactToolIndex

    if not draws:
        msg = "evaluate_tool_disjoint needs at least one draw (see tool_disjoint_draws)."
        raise ValueError(msg)
    catalog = draws[0].evaluation.catalog
    index = ExactToolIndex.from_catalog(catalog, resolve_embeddings(embeddings))
    dense = QTAPipeline(catalog, index, None, index_tools=False, fusion=FusionWeights())
    base = QTAPipeline(
        catalog,
        index,
        None,
        index_tools=False,
        **{k: v for k, v in settings.items() if k != "label_fit"},
    )
    fitted: list[EvaluationReport] = []
    dense_reports: list[EvaluationReport] = []
    base_reports: list[EvaluationReport] = []
    fits: list[dict[str, Any]] = []
    for draw in draws:
        # Pipelines over one index: each syncs its own examples in, the last draw's out.
        pipeline = QTAPipeline(catalog, index, None, index_tools=False, **settings)
        pipeline.add_examples(list(draw.labels))
        fit = pipeline.last_fit.to_dict() if pipeline.last_fit is not None else {}
        fits.append({"seed": draw.seed, "num_labels": len(draw.labels), **fit})
        fitted.append(
            evaluate(pipeline, draw.evaluation, ks=ks, method=method, show_progress=False)
        )
        dense_reports.append(
            evaluate(dense, draw.evaluation, ks=ks, method="dense", show_progress=False)
        )
        base_reports.append(
            evaluate(base, draw.evaluation, ks=ks, method="base", show_progress=False)
        )
    return ToolDisjointReport(
        draws[0].evaluation.name, method, fitted, dense_reports, fits, base_reports
    )


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else math.nan


def _std(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = _mean(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
