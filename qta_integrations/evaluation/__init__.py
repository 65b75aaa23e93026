"""Evaluation: labelled datasets (generic files, MTRB), the BM25 baseline and the harness.

Example:
    .. code-block:: python

        from qta_integrations.evaluation import build_pipeline, evaluate, format_reports, load_mtrb

        data = load_mtrb("restbench", data_dir="path/to/mtrb")
        report = evaluate(build_pipeline("dense", data.catalog), data, method="dense")
        print(format_reports([report]))

The same from the command line: ``qta eval --dataset mtrb-restbench --method dense bm25 qta``.
"""

from __future__ import annotations

from qta_integrations.evaluation.bm25 import BM25ToolIndex
from qta_integrations.evaluation.datasets import (
    MTRB_SUBSETS,
    LabelledQuery,
    RetrievalDataset,
    load_mtrb,
    load_retrieval_dataset,
)
from qta_integrations.evaluation.harness import (
    METHODS,
    PAPER_RESULTS,
    EvaluationReport,
    QueryOutcome,
    build_pipeline,
    evaluate,
    format_reports,
)
from qta_integrations.evaluation.protocols import (
    ToolDisjointDraw,
    ToolDisjointReport,
    evaluate_tool_disjoint,
    tool_disjoint_draws,
)

__all__ = [
    "METHODS",
    "MTRB_SUBSETS",
    "PAPER_RESULTS",
    "BM25ToolIndex",
    "EvaluationReport",
    "LabelledQuery",
    "QueryOutcome",
    "RetrievalDataset",
    "ToolDisjointDraw",
    "ToolDisjointReport",
    "build_pipeline",
    "evaluate",
    "evaluate_tool_disjoint",
    "format_reports",
    "load_mtrb",
    "load_retrieval_dataset",
    "tool_disjoint_draws",
]
