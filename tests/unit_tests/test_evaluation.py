"""The harness and the BM25 index, on fake embeddings and a scripted rewriter."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qta_integrations.evaluation import (
    BM25ToolIndex,
    EvaluationReport,
    LabelledQuery,
    RetrievalDataset,
    build_pipeline,
    evaluate,
    format_reports,
)
from qta_integrations.evaluation.harness import score_ranking
from qta_integrations.fusion import FusionWeights
from qta_integrations.pipeline import QTAPipeline
from qta_integrations.stores import ExactToolIndex
from qta_integrations.testing import FakeRewriter, KeywordEmbeddings
from qta_integrations.tools import Tool, ToolCatalog
from tests.conftest import CountingRewriter

UMBRELLA = "do I need an umbrella on my route?"


@pytest.fixture
def catalog(tool_dicts: list[dict[str, str]]) -> ToolCatalog:
    return ToolCatalog.from_dicts(tool_dicts)


@pytest.fixture
def dataset(catalog: ToolCatalog) -> RetrievalDataset:
    return RetrievalDataset(
        catalog,
        [
            LabelledQuery("translate text into another language", ("translate",)),
            LabelledQuery(
                "send an email message and create a calendar event", ("email", "calendar")
            ),
            LabelledQuery(UMBRELLA, ("weather",)),
        ],
        name="toy",
    )


# -- BM25 ---------------------------------------------------------------------------------


def test_bm25_ranks_by_shared_words(catalog: ToolCatalog) -> None:
    index = BM25ToolIndex()
    index.add_tools(list(catalog))
    hits = index.search("driving directions between two places", k=3)
    assert hits[0].tool_id == "route"
    assert hits[0].score > hits[1].score
    assert [len(h) for h in index.search_many(["stock price", "email"], k=2)] == [2, 2]
    assert index.search_many(["stock price", "email"], k=1)[1][0].tool_id == "email"


def test_bm25_upsert_and_ties(catalog: ToolCatalog) -> None:
    index = BM25ToolIndex()
    index.add_tools(list(catalog))
    # A query with only stopwords scores 0 everywhere: catalogue order, deterministic.
    assert [h.tool_id for h in index.search("the of and", k=6)] == catalog.ids
    assert all(h.score == 0.0 for h in index.search("the of and", k=6))
    index.add_tools([Tool(id="weather", name="w", description="Quantum chromodynamics lattice.")])
    assert index.ids == catalog.ids  # upserted, not appended
    assert index.search("quantum lattice", k=1)[0].tool_id == "weather"
    assert index.search("forecast", k=1)[0].score == 0.0  # the old text is gone


def test_bm25_empty_index() -> None:
    with pytest.raises(RuntimeError, match="call add_tools"):
        BM25ToolIndex().search("anything", k=1)


def test_bm25_plugs_into_the_pipeline(catalog: ToolCatalog) -> None:
    pipeline = build_pipeline("bm25", catalog)
    assert isinstance(pipeline.index, BM25ToolIndex)
    assert pipeline.rewriter is None
    assert pipeline.retrieve("translate this text", k=1).tool_ids == ["translate"]


# -- evaluate -----------------------------------------------------------------------------


def test_evaluate_callable_exact_numbers(dataset: RetrievalDataset) -> None:
    fixed = {
        "translate text into another language": ["translate", "email", "route"],
        "send an email message and create a calendar event": ["email", "route", "calendar"],
        UMBRELLA: ["route", "email", "stock_quote"],
    }
    seen_k: list[int] = []

    def retrieve(queries: list[str], k: int) -> list[list[str]]:
        seen_k.append(k)
        return [fixed[q] for q in queries]

    report = evaluate(retrieve, dataset, ks=(1, 3), method="fixed", show_progress=False)
    assert seen_k == [3]
    # S@1: only query 0; S@3: queries 0 and 1.
    assert report.metrics["S@1"] == pytest.approx(100 / 3)
    assert report.metrics["S@3"] == pytest.approx(200 / 3)
    # R@1: 1 + 1/2 + 0.
    assert report.metrics["R@1"] == pytest.approx(50.0)
    # N@3 of query 1: (1 + 1/log2(4)) / (1 + 1/log2(3)).
    n3 = (1 + 0.5) / (1 + 1 / 1.584962500721156)
    assert report.metrics["N@3"] == pytest.approx(100 * (1 + n3 + 0) / 3)
    assert report.per_query[1].ranking == ("email", "route", "calendar")
    assert report.per_query[1].metrics == score_ranking(
        fixed[dataset.queries[1].query], ("email", "calendar"), (1, 3)
    )
    assert report.num_queries == 3
    assert report.info["num_tools"] == 6
    assert report.seconds >= 0.0


def test_evaluate_dense_pipeline(dataset: RetrievalDataset) -> None:
    pipeline = build_pipeline("dense", dataset.catalog, embeddings=KeywordEmbeddings())
    assert isinstance(pipeline.index, ExactToolIndex)
    report = evaluate(pipeline, dataset, ks=(1, 2), method="dense", show_progress=False)
    assert report.per_query[0].ranking[0] == "translate"
    assert report.per_query[1].metrics["S@2"] == 1.0
    # The umbrella query shares words with plan_route and send_email, none with the weather tool.
    assert report.per_query[2].ranking == ("route", "email")
    assert report.per_query[2].metrics["S@2"] == 0.0
    assert all(o.rewrite is None for o in report.per_query)
    assert report.metrics["S@2"] == pytest.approx(200 / 3)
    assert all(len(o.ranking) == 2 for o in report.per_query)


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [("qta", {"fusion": FusionWeights.paper(0.7)}), ("qta-paper", {})],
    ids=["qta-with-paper-fusion", "qta-paper"],
)
def test_evaluate_qta_pipeline_uses_batched_rewrites(
    dataset: RetrievalDataset, method: str, kwargs: dict[str, Any]
) -> None:
    rewriter = CountingRewriter({UMBRELLA: "current weather forecast for a city"})
    pipeline = build_pipeline(
        method, dataset.catalog, embeddings=KeywordEmbeddings(), rewriter=rewriter, **kwargs
    )
    assert pipeline.fusion.uses_rewrite
    report = evaluate(pipeline, dataset, ks=(1,), method=method, batch_size=16, show_progress=False)
    assert report.per_query[2].ranking == ("weather",)  # "route" without the rewrite
    assert report.per_query[2].rewrite == "current weather forecast for a city"
    assert report.per_query[0].rewrite is None  # unchanged query: no rewrite used
    assert sorted(rewriter.calls) == sorted(q.query for q in dataset.queries)
    assert rewriter.generate_calls == 1  # one batch for the whole dataset


def test_qta_without_labels_is_the_zero_label_base_and_never_rewrites(
    dataset: RetrievalDataset,
) -> None:
    rewriter = CountingRewriter({UMBRELLA: "current weather forecast for a city"})
    pipeline = build_pipeline(
        "qta", dataset.catalog, embeddings=KeywordEmbeddings(), rewriter=rewriter
    )
    assert pipeline.fusion == FusionWeights.base()
    report = evaluate(pipeline, dataset, ks=(1, 2), method="qta", show_progress=False)
    dense = build_pipeline("dense", dataset.catalog, embeddings=KeywordEmbeddings())
    hybrid = QTAPipeline(dataset.catalog, dense.index, None, index_tools=False)
    assert [o.ranking for o in report.per_query] == [
        tuple(hybrid.retrieve(q.query, k=2).tool_ids) for q in dataset.queries
    ]
    assert all(o.rewrite is None for o in report.per_query)
    assert rewriter.calls == []
    assert rewriter.generate_calls == 0


def test_batch_size_does_not_change_results(dataset: RetrievalDataset) -> None:
    pipeline = build_pipeline("dense", dataset.catalog, embeddings=KeywordEmbeddings())
    one = evaluate(pipeline, dataset, batch_size=1, show_progress=False)
    many = evaluate(pipeline, dataset, batch_size=16, show_progress=False)
    assert [o.ranking for o in one.per_query] == [o.ranking for o in many.per_query]
    assert one.metrics == many.metrics


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ks": ()}, "ks must be one or more positive ints"),
        ({"ks": (0, 5)}, "ks must be one or more positive ints"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
    ],
)
def test_evaluate_bad_arguments(dataset: RetrievalDataset, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        evaluate(lambda qs, k: [[] for _ in qs], dataset, show_progress=False, **kwargs)


def test_evaluate_rejects_wrong_number_of_rankings(dataset: RetrievalDataset) -> None:
    with pytest.raises(ValueError, match="returned 1 rankings for 3 queries"):
        evaluate(lambda qs, k: [["weather"]], dataset, show_progress=False)


def test_build_pipeline_errors(catalog: ToolCatalog) -> None:
    with pytest.raises(
        ValueError, match=r"Unknown method 'sparse'.*dense.*bm25.*hybrid.*qta.*qta-paper"
    ):
        build_pipeline("sparse", catalog)
    for method in ("dense", "bm25", "hybrid"):
        with pytest.raises(ValueError, match="apply to methods 'qta' and 'qta-paper' only"):
            build_pipeline(method, catalog, embeddings=KeywordEmbeddings(), adapter="x")
        with pytest.raises(ValueError, match="apply to methods 'qta' and 'qta-paper' only"):
            build_pipeline(method, catalog, embeddings=KeywordEmbeddings(), rewriter=FakeRewriter())
    with pytest.raises(ValueError, match="examples apply to method 'qta' only, not 'qta-paper'"):
        build_pipeline("qta-paper", catalog, rewriter=FakeRewriter(), examples=[])
    for method in ("qta", "qta-paper"):
        with pytest.raises(ValueError, match="either rewriter= or adapter="):
            build_pipeline(method, catalog, rewriter=FakeRewriter(), adapter="x")
    with pytest.raises(TypeError, match="unexpected keyword argument 'alpha'"):
        build_pipeline("qta", catalog, embeddings=KeywordEmbeddings(), alpha=0.5)


# -- reports ------------------------------------------------------------------------------


def _report(dataset: str, method: str, s5: float) -> EvaluationReport:
    metrics = {"S@5": s5, "S@10": 50.0, "N@5": 40.0, "N@10": 45.0, "R@5": 1.0, "R@10": 2.0}
    return EvaluationReport(dataset, method, (5, 10), metrics, [], seconds=0.0)


def test_format_reports_puts_the_paper_beside() -> None:
    table = format_reports(
        [_report("mtrb-restbench", "dense", 15.555), _report("toy", "bm25", 3.0)]
    )
    lines = table.splitlines()
    assert lines[0].split() == [
        "dataset",
        "method",
        "source",
        "S@5",
        "S@10",
        "N@5",
        "N@10",
        "R@5",
        "R@10",
        "s/query",
    ]
    assert lines[2].split()[:4] == ["mtrb-restbench", "dense", "measured", "15.55"]
    assert "paper: all-MiniLM-L6-v2 ZS" in lines[3]
    assert lines[3].split()[-6:] == ["15.56", "34.44", "52.55", "52.76", "-", "-"]
    assert lines[2].split()[-3:] == ["1.00", "2.00", "0.000"]  # R@5, R@10, s/query
    assert lines[4].split()[:4] == ["toy", "bm25", "measured", "3.00"]
    assert len(lines) == 5  # no paper row for a dataset the paper does not have
    assert "paper" not in format_reports([_report("mtrb-metatool", "qta", 1.0)], paper=False)


def test_toolbench_paper_row_is_marked_not_comparable() -> None:
    table = format_reports([_report("mtrb-toolbench", "dense", 20.0)])
    assert "not comparable" in table


def test_report_to_dict_is_json(dataset: RetrievalDataset) -> None:
    pipeline = QTAPipeline(dataset.catalog, ExactToolIndex(KeywordEmbeddings()))
    report = evaluate(pipeline, dataset, method="dense", show_progress=False)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["dataset"] == "toy"
    assert data["paper_percent"] is None
    assert data["metrics_percent"]["S@5"] == report.metrics["S@5"]
    assert data["per_query"][0]["gold"] == ["translate"]
    assert "per_query" not in report.to_dict(per_query=False)
