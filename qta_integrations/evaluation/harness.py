"""The evaluation harness: run a retriever over a labelled dataset and score it.

`evaluate` takes a `QTAPipeline` (or any function from a batch of queries to rankings) and a
`RetrievalDataset`, retrieves for every query in batches (so a rewriter generates in batches),
and returns an `EvaluationReport`: per-query rankings and rewrites, mean S@k / NDCG@k /
Recall@k (from `qta_integrations.metrics`, in %, like the paper) and timing.

`build_pipeline` builds the three methods the CLI compares on the same catalogue:

* ``"dense"``: all-MiniLM-L6-v2 alone (the paper's zero-shot row), exact cosine search;
* ``"bm25"``: `BM25ToolIndex`, the lexical baseline;
* ``"qta"``: dense retrieval with the query and its rewrite by a local LLM, fused
  (`QTAPipeline`'s default fusion); the default untuned SmolLM2-135M-Instruct or a trained
  adapter directory.

`PAPER_RESULTS` holds the paper's Table 2 numbers, printed beside measured rows by
`format_reports`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qta_integrations.evaluation.datasets import RetrievalDataset
from qta_integrations.metrics import ndcg_at_k, recall_at_k, sufficiency_at_k
from qta_integrations.pipeline import QTAPipeline
from qta_integrations.rewriter import QueryRewriter
from qta_integrations.tools import ToolCatalog

__all__ = [
    "METHODS",
    "PAPER_RESULTS",
    "EvaluationReport",
    "QueryOutcome",
    "RetrieveFn",
    "build_pipeline",
    "evaluate",
    "format_reports",
]

METHODS = ("dense", "bm25", "qta")

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
_METHOD_LABELS = {"dense": _ZS, "qta": _QTA, "bm25": "BM25"}


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
        return PAPER_RESULTS.get(self.dataset, {}).get(self.method)

    def to_dict(self, *, per_query: bool = True) -> dict[str, Any]:
        """JSON-serialisable form (metrics in %)."""
        data: dict[str, Any] = {
            "dataset": self.dataset,
            "method": self.method,
            "ks": list(self.ks),
            "num_queries": self.num_queries,
            "metrics_percent": dict(self.metrics),
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

    Raises:
        ValueError: for bad ``ks`` / ``batch_size``, or a retriever returning the wrong
            number of rankings.

    Example:
        .. code-block:: python

            from qta_integrations.evaluation import build_pipeline, evaluate, load_mtrb

            data = load_mtrb("restbench", data_dir="../shared/data/mtrb")
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
    ) as bar:
        for offset in range(0, len(queries), batch_size):
            chunk = queries[offset : offset + batch_size]
            if isinstance(retriever, QTAPipeline):
                results = retriever.retrieve_batch(chunk, k=depth)
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
    means = {n: 100.0 * math.fsum(o.metrics[n] for o in outcomes) / len(outcomes) for n in names}
    return EvaluationReport(
        dataset=dataset.name,
        method=method,
        ks=ks,
        metrics=means,
        per_query=outcomes,
        seconds=seconds,
        info={"num_tools": len(dataset.catalog), **(info or {})},
    )


def build_pipeline(
    method: str,
    catalog: ToolCatalog,
    *,
    embeddings: Any | None = None,
    rewriter: Any | None = None,
    adapter: str | Path | None = None,
    show_progress: bool = False,
    **kwargs: Any,
) -> QTAPipeline:
    """Build the `QTAPipeline` for one of `METHODS` over ``catalog``.

    Dense and QTA use an exact cosine index (`ExactToolIndex`: the frozen retriever's exact
    ranking, no approximate-search noise); BM25 uses `BM25ToolIndex`.

    Args:
        method: ``"dense"``, ``"bm25"`` or ``"qta"``.
        catalog: The tools (indexed now).
        embeddings: For dense/qta; default all-MiniLM-L6-v2.
        rewriter: For qta: a `QueryRewriter` (or anything `resolve_rewriter` accepts) used
            instead of the default; mutually exclusive with ``adapter``.
        adapter: For qta: a trained adapter directory, loaded with
            `HuggingFaceRewriter.from_pretrained`.
        show_progress: Progress bar while indexing.
        **kwargs: Passed to `QTAPipeline` (``alpha``, ``num_context_tools``, ``fetch_k``).

    Raises:
        ValueError: for an unknown method, or rewriter options given to a method without one.
    """
    from qta_integrations.embeddings import resolve_embeddings
    from qta_integrations.index import ExactToolIndex, ToolIndex

    if method not in METHODS:
        msg = f"Unknown method {method!r}; choose from {list(METHODS)}."
        raise ValueError(msg)
    if method != "qta" and (rewriter is not None or adapter is not None):
        msg = f"rewriter/adapter apply to method 'qta' only, not {method!r}."
        raise ValueError(msg)
    if rewriter is not None and adapter is not None:
        msg = "Pass either rewriter= or adapter=, not both."
        raise ValueError(msg)
    index: ToolIndex
    if method == "bm25":
        from qta_integrations.evaluation.bm25 import BM25ToolIndex

        index = BM25ToolIndex()
    else:
        index = ExactToolIndex(resolve_embeddings(embeddings))
    resolved: QueryRewriter | None = None
    if method == "qta":
        from qta_integrations.rewriter import HuggingFaceRewriter, resolve_rewriter

        if adapter is not None:
            resolved = HuggingFaceRewriter.from_pretrained(adapter)
        else:
            resolved = resolve_rewriter("default" if rewriter is None else rewriter)
    return QTAPipeline(catalog, index, resolved, show_progress=show_progress, **kwargs)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_reports(reports: Sequence[EvaluationReport], *, paper: bool = True) -> str:
    """A plain-text table of S@k then N@k per report, with the paper's row beside it.

    Args:
        reports: The reports (any datasets, methods and cutoffs).
        paper: Add a ``paper`` row under each measured row the paper reports.
    """
    ks = sorted({k for r in reports for k in r.ks})
    columns = [f"S@{k}" for k in ks] + [f"N@{k}" for k in ks]
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
