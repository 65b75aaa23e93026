"""The evaluation harness: run a retriever over a labelled dataset and score it.

`evaluate` takes a `QTAPipeline` (or any function from a batch of queries to rankings) and a
`RetrievalDataset`, retrieves for every query in batches (so a rewriter generates in batches),
and returns an `EvaluationReport`: per-query rankings and rewrites, mean S@k / NDCG@k /
Recall@k (from `qta_integrations.metrics`, in %, like the paper) and timing.

`build_pipeline` builds the methods the CLI compares on the same catalogue (dense ones search
an exact cosine index: the frozen retriever's exact ranking, no approximate-search noise):

* ``"dense"``: all-MiniLM-L6-v2 alone (the paper's zero-shot row);
* ``"bm25"``: `BM25ToolIndex`, the lexical baseline;
* ``"hybrid"``: dense + BM25 with fixed weights (`HYBRID_WEIGHTS`), no labels;
* ``"base"``: the zero-label base (`FusionWeights.base`), what a retriever does before any
  label: dense plus BM25 trusted as far as the query's words are found in the catalogue;
* ``"qta"``: the fitted retriever: the example memory and the fusion weights learned from
  labelled examples (a trained adapter directory, or ``examples=``); without either, the
  zero-label base (the same as ``"base"``);
* ``"qta-paper"``: the paper's configuration: the query and its rewrite by a local LLM (the
  default SmolLM2-135M-Instruct, or the adapter's DPO-aligned one), fused with
  ``0.5 * s(q, t) + 0.5 * s(rewrite, t)``; no memory, no lexical signal.

When the retriever holds labelled examples, the report also splits the queries into those
whose gold tools appear in the labels (``covered``) and the others (``uncovered``).

`PAPER_RESULTS` holds the paper's Table 2 numbers, printed beside measured rows by
`format_reports`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qta_integrations.evaluation.datasets import RetrievalDataset
from qta_integrations.fusion import FusionWeights
from qta_integrations.metrics import ndcg_at_k, recall_at_k, sufficiency_at_k
from qta_integrations.pipeline import QTAPipeline
from qta_integrations.selection import ToolSelection
from qta_integrations.tools import ToolCatalog

__all__ = [
    "DEFAULT_METHODS",
    "HYBRID_WEIGHTS",
    "METHODS",
    "PAPER_RESULTS",
    "EvaluationReport",
    "QueryOutcome",
    "RetrieveFn",
    "build_pipeline",
    "evaluate",
    "format_reports",
]

METHODS = ("dense", "bm25", "hybrid", "base", "qta", "qta-paper")
DEFAULT_METHODS = ("dense", "bm25", "base", "qta")
"""What ``qta eval`` runs by default (qta-paper generates a rewrite per query: minutes)."""

HYBRID_WEIGHTS = FusionWeights(lexical=0.3)
"""The no-label hybrid baseline: dense z-scores plus 0.3 x BM25 z-scores."""

RetrieveFn = Callable[[Sequence[str], int], Sequence[Sequence[str]]]
"""A batch retriever: ``(queries, k) -> one ranking (tool ids, best first) per query``."""

_ZS = "all-MiniLM-L6-v2 ZS"
_QTA = "all-MiniLM-L6-v2 QTA (trained)"
PAPER_RESULTS: dict[str, dict[str, dict[str, float]]] = {
    "mtrb-restbench": {
        "dense": {"S@5": 15.56, "S@10": 34.44, "N@5": 52.55, "N@10": 52.76},
        "qta": {"S@5": 32.22, "S@10": 55.56, "N@5": 63.50, "N@10": 62.98},
        "bm25": {"S@5": 6.67, "S@10": 17.78, "N@5": 34.50, "N@10": 38.32},
    },
    "mtrb-metatool": {
        "dense": {"S@5": 81.11, "S@10": 84.44, "N@5": 71.99, "N@10": 71.65},
        "qta": {"S@5": 83.31, "S@10": 85.56, "N@5": 72.01, "N@10": 71.71},
        "bm25": {"S@5": 37.78, "S@10": 47.78, "N@5": 30.94, "N@10": 33.63},
    },
    # The paper's ToolBench has 2,391 tools; ours is the rebuilt 811-tool corpus.
    "mtrb-toolbench": {
        "dense": {"S@5": 24.44, "S@10": 44.44, "N@5": 67.16, "N@10": 65.33},
        "qta": {"S@5": 33.33, "S@10": 46.67, "N@5": 67.81, "N@10": 65.61},
    },
}
"""The paper's Table 2 (arXiv 2410.03212), in %: dataset -> method -> metric.

``"dense"`` is the all-MiniLM-L6-v2 zero-shot row, ``"qta"`` the row after QTA training (an
untuned rewriter is not expected to reach it), ``"bm25"`` the BM25 row. The ToolBench rows
are on MTRB's 2,391-tool corpus and not comparable with the rebuilt 811-tool one.
"""

PAPER_NOTES: dict[str, str] = {
    "mtrb-toolbench": "paper: 2,391-tool corpus, not comparable",
}
_METHOD_LABELS = {"dense": _ZS, "qta": _QTA, "qta-paper": _QTA, "bm25": "BM25"}
_PAPER_ROWS = {"qta-paper": "qta"}


@dataclass(frozen=True)
class QueryOutcome:
    """What happened for one query.

    Attributes:
        query: The query.
        gold: The gold tool ids.
        ranking: The retrieved tool ids, best first (``max(ks)`` of them).
        rewrite: The rewrite used, or None (no rewriter, or it fell back to the query).
        metrics: ``S@k``, ``N@k`` and ``R@k`` for this query, in [0, 1].
    """

    query: str
    gold: tuple[str, ...]
    ranking: tuple[str, ...]
    rewrite: str | None
    metrics: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "query": self.query,
            "gold": list(self.gold),
            "ranking": list(self.ranking),
            "rewrite": self.rewrite,
            "metrics": dict(self.metrics),
        }


@dataclass(frozen=True)
class EvaluationReport:
    """Scores of one method on one dataset.

    Attributes:
        dataset: The dataset's name.
        method: The method's name.
        ks: The cutoffs.
        metrics: Mean ``S@k`` (Sufficiency: all gold tools in the top k), ``N@k`` (NDCG, binary
            gain) and ``R@k`` (Recall) over the queries, **in %** like the paper.
        per_query: One `QueryOutcome` per query, in dataset order.
        seconds: Wall time of retrieval (rewriting included, indexing excluded).
        info: Extra facts recorded by the caller (catalogue size, indexing time, options).
        groups: Mean metrics (in %) and query counts per group of queries: ``"covered"`` (a
            gold tool appears in the retriever's labelled examples) and ``"uncovered"``; empty
            when the retriever holds no examples.

    Example:
        .. code-block:: python

            report = evaluate(pipeline, dataset)
            print(f"S@5 = {report.metrics['S@5']:.2f}%  ({report.seconds_per_query:.2f} s/query)")
    """

    dataset: str
    method: str
    ks: tuple[int, ...]
    metrics: dict[str, float]
    per_query: list[QueryOutcome]
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)
    groups: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def num_queries(self) -> int:
        """How many queries were scored."""
        return len(self.per_query)

    @property
    def seconds_per_query(self) -> float:
        """Mean retrieval time per query."""
        return self.seconds / max(1, self.num_queries)

    def paper(self) -> dict[str, float] | None:
        """The paper's numbers for this dataset and method, if it reports them."""
        return PAPER_RESULTS.get(self.dataset, {}).get(_PAPER_ROWS.get(self.method, self.method))

    def to_dict(self, *, per_query: bool = True) -> dict[str, Any]:
        """JSON-serialisable form (metrics in %)."""
        data: dict[str, Any] = {
            "dataset": self.dataset,
            "method": self.method,
            "ks": list(self.ks),
            "num_queries": self.num_queries,
            "metrics_percent": dict(self.metrics),
            "groups": {name: dict(values) for name, values in self.groups.items()},
            "paper_percent": self.paper(),
            "seconds": self.seconds,
            "seconds_per_query": self.seconds_per_query,
            "info": dict(self.info),
        }
        if per_query:
            data["per_query"] = [q.to_dict() for q in self.per_query]
        return data


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        msg = f"ks must be one or more positive ints, got {ks!r}."
        raise ValueError(msg)
    return tuple(sorted(set(ks)))


def score_ranking(
    ranking: Sequence[str], gold: Sequence[str], ks: Sequence[int]
) -> dict[str, float]:
    """``S@k``, ``N@k`` and ``R@k`` of one ranking for each ``k``, in [0, 1]."""
    scores: dict[str, float] = {}
    for k in ks:
        scores[f"S@{k}"] = sufficiency_at_k(ranking, gold, k)
        scores[f"N@{k}"] = ndcg_at_k(ranking, gold, k)
        scores[f"R@{k}"] = recall_at_k(ranking, gold, k)
    return scores


def evaluate(
    retriever: QTAPipeline | RetrieveFn,
    dataset: RetrievalDataset,
    *,
    ks: Sequence[int] = (5, 10),
    method: str = "custom",
    batch_size: int = 16,
    show_progress: bool = True,
    info: Mapping[str, Any] | None = None,
    labelled_tools: Collection[str] | None = None,
) -> EvaluationReport:
    """Retrieve for every query of ``dataset`` and score the rankings.

    Args:
        retriever: A `QTAPipeline` (its ``retrieve_batch`` is used, so rewrites are generated
            in batches) or a `RetrieveFn` ``(queries, k) -> rankings``.
        dataset: The labelled queries and their catalogue.
        ks: Cutoffs; rankings are retrieved to depth ``max(ks)``.
        method: Name recorded in the report (``"dense"``, ``"bm25"``, ``"qta"`` get the
            paper's numbers printed beside them).
        batch_size: Queries retrieved per call.
        show_progress: Show a tqdm progress bar over the queries.
        info: Extra facts to record in the report.
        labelled_tools: Tools that have labelled examples, to split the report into covered
            and uncovered queries (default: the tools of the pipeline's example memory).

    Raises:
        ValueError: for bad ``ks`` / ``batch_size``, or a retriever returning the wrong
            number of rankings.

    Example:
        .. code-block:: python

            from qta_integrations.evaluation import build_pipeline, evaluate, load_mtrb

            data = load_mtrb("restbench", data_dir="path/to/mtrb")
            report = evaluate(build_pipeline("dense", data.catalog), data, method="dense")
            print(round(report.metrics["S@5"], 2))  # 15.56
    """
    from tqdm.auto import tqdm

    ks = _check_ks(ks)
    if batch_size < 1:
        msg = f"batch_size must be >= 1, got {batch_size}."
        raise ValueError(msg)
    depth = max(ks)
    queries = [q.query for q in dataset.queries]
    rankings: list[tuple[str, ...]] = []
    rewrites: list[str | None] = []
    start = time.perf_counter()
    with tqdm(
        total=len(queries),
        desc=f"Evaluating {method} on {dataset.name}",
        unit="query",
        disable=not show_progress,
        smoothing=0.0,  # the time estimate is the mean over all batches so far
        miniters=1,
    ) as bar:
        for offset in range(0, len(queries), batch_size):
            chunk = queries[offset : offset + batch_size]
            # The bar moves once per batch (and then shows a time estimate): say what is running.
            bar.set_postfix_str(f"queries {offset + 1}-{offset + len(chunk)}", refresh=True)
            if isinstance(retriever, QTAPipeline):
                # The ranking itself, scored at every cutoff: no score cut-off, nothing appended.
                results = retriever.retrieve_batch(chunk, k=depth, selection=ToolSelection())
                chunk_rankings = [r.tool_ids for r in results]
                chunk_rewrites = [r.rewrites[0] if r.rewrites else None for r in results]
            else:
                chunk_rankings = [list(r) for r in retriever(chunk, depth)]
                chunk_rewrites = [None] * len(chunk)
            if len(chunk_rankings) != len(chunk):
                msg = (
                    f"The retriever returned {len(chunk_rankings)} rankings for {len(chunk)} "
                    "queries; it must return one ranking per query."
                )
                raise ValueError(msg)
            rankings.extend(tuple(r[:depth]) for r in chunk_rankings)
            rewrites.extend(chunk_rewrites)
            bar.update(len(chunk))
    seconds = time.perf_counter() - start
    outcomes = [
        QueryOutcome(
            query=item.query,
            gold=item.tool_ids,
            ranking=ranking,
            rewrite=rewrite,
            metrics=score_ranking(ranking, item.tool_ids, ks),
        )
        for item, ranking, rewrite in zip(dataset.queries, rankings, rewrites, strict=True)
    ]
    names = [f"{m}@{k}" for m in ("S", "N", "R") for k in ks]
    means = _means(outcomes, names)
    if labelled_tools is None and isinstance(retriever, QTAPipeline):
        labelled_tools = {t for example in retriever.memory for t in example.tool_ids}
    groups: dict[str, dict[str, float]] = {}
    if labelled_tools:
        labelled = set(labelled_tools)
        for name, covered in (("covered", True), ("uncovered", False)):
            members = [o for o in outcomes if bool(labelled & set(o.gold)) is covered]
            if members:
                groups[name] = {"num_queries": float(len(members)), **_means(members, names)}
    return EvaluationReport(
        groups=groups,
        dataset=dataset.name,
        method=method,
        ks=ks,
        metrics=means,
        per_query=outcomes,
        seconds=seconds,
        info={"num_tools": len(dataset.catalog), **(info or {})},
    )


def _means(outcomes: Sequence[QueryOutcome], names: Sequence[str]) -> dict[str, float]:
    return {n: 100.0 * math.fsum(o.metrics[n] for o in outcomes) / len(outcomes) for n in names}


def build_pipeline(
    method: str,
    catalog: ToolCatalog,
    *,
    embeddings: Any | None = None,
    rewriter: Any | None = None,
    adapter: str | Path | None = None,
    examples: Any | None = None,
    show_progress: bool = False,
    **kwargs: Any,
) -> QTAPipeline:
    """Build the `QTAPipeline` for one of `METHODS` over ``catalog`` (see the module docstring).

    Args:
        method: One of `METHODS`.
        catalog: The tools (indexed now).
        embeddings: For the dense methods; default all-MiniLM-L6-v2.
        rewriter: For qta / qta-paper: a `QueryRewriter` (or anything `resolve_rewriter`
            accepts) used instead of the default; mutually exclusive with ``adapter``.
        adapter: For qta / qta-paper: an adapter directory written by `QTATrainer` (qta uses
            its examples and fitted weights, qta-paper its DPO-aligned rewriter).
        examples: For qta: labelled examples to fit on now (`QTAPipeline.add_examples`).
        show_progress: Progress bar while indexing.
        **kwargs: `RetrievalSettings` fields (``k``, ``fetch_k``, ``num_context_tools``).

    Raises:
        ValueError: for an unknown method, or options the method does not take.
    """
    from qta_integrations.embeddings import resolve_embeddings
    from qta_integrations.stores import ExactToolIndex, ToolIndex

    if method not in METHODS:
        msg = f"Unknown method {method!r}; choose from {list(METHODS)}."
        raise ValueError(msg)
    if method not in ("qta", "qta-paper") and (rewriter is not None or adapter is not None):
        msg = f"rewriter/adapter apply to methods 'qta' and 'qta-paper' only, not {method!r}."
        raise ValueError(msg)
    if method != "qta" and examples is not None:
        msg = f"examples apply to method 'qta' only, not {method!r}."
        raise ValueError(msg)
    if rewriter is not None and adapter is not None:
        msg = "Pass either rewriter= or adapter=, not both."
        raise ValueError(msg)
    index: ToolIndex
    if method == "bm25":
        from qta_integrations.stores import BM25ToolIndex

        index = BM25ToolIndex()
    else:
        index = ExactToolIndex(resolve_embeddings(embeddings))
    spec: Any = None
    if method in ("qta", "qta-paper"):
        spec = rewriter if rewriter is not None else "default"
        if isinstance(spec, Path):
            spec = str(spec)
    if method == "hybrid":
        kwargs.setdefault("fusion", HYBRID_WEIGHTS)
    elif method == "dense":
        kwargs.setdefault("fusion", FusionWeights())
    pipeline: QTAPipeline
    if adapter is not None:  # its rewriter, fitted weights and labelled examples
        from qta_integrations import persist

        pipeline = persist.load(
            adapter, tools=catalog, index=index, show_progress=show_progress, **kwargs
        )
    else:
        pipeline = QTAPipeline(catalog, index, spec, show_progress=show_progress, **kwargs)
    if method == "qta-paper":
        # The paper's fusion over the (possibly aligned) rewriter: no labels on the tool side.
        pipeline.memory.clear()
        pipeline.settings = pipeline.settings.replace(fusion=FusionWeights.paper())
    if examples is not None:
        pipeline.add_examples(examples)
    return pipeline


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_reports(reports: Sequence[EvaluationReport], *, paper: bool = True) -> str:
    """A plain-text table of S@k, N@k then R@k per report, with the paper's row beside it.

    Args:
        reports: The reports (any datasets, methods and cutoffs).
        paper: Add a ``paper`` row under each measured row the paper reports.
    """
    ks = sorted({k for r in reports for k in r.ks})
    columns = [f"{m}@{k}" for m in ("S", "N", "R") for k in ks]
    header = ["dataset", "method", "source", *columns, "s/query"]
    rows: list[list[str]] = []
    for report in reports:
        rows.append(
            [
                report.dataset,
                report.method,
                "measured",
                *(_cell(report.metrics.get(c)) for c in columns),
                f"{report.seconds_per_query:.3f}",
            ]
        )
        for name, values in report.groups.items():
            rows.append(
                [
                    "",
                    "",
                    f"{name} ({int(values['num_queries'])} queries)",
                    *(_cell(values.get(c)) for c in columns),
                    "",
                ]
            )
        reference = report.paper() if paper else None
        if reference is not None:
            label = f"paper: {_METHOD_LABELS.get(report.method, report.method)}"
            note = PAPER_NOTES.get(report.dataset)
            rows.append(
                [
                    "",
                    "",
                    label if note is None else f"{label} ({note})",
                    *(_cell(reference.get(c)) for c in columns),
                    "",
                ]
            )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = [
        "  ".join(
            cell.ljust(w) if i < 3 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
