from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from langchain_core.vectorstores import InMemoryVectorStore
from llama_index.core import VectorStoreIndex

from qta_integrations.embeddings import to_llama_index_embeddings
from qta_integrations.fusion import FusionWeights
from qta_integrations.pipeline import QTAPipeline, RetrievalResult
from qta_integrations.ranking import fuse_hits
from qta_integrations.settings import RetrievalSettings
from qta_integrations.stores import (
    ExactToolIndex,
    LlamaIndexToolIndex,
    ToolHit,
    ToolIndex,
    VectorStoreToolIndex,
)
from qta_integrations.testing import FakeRewriter, KeywordEmbeddings
from qta_integrations.tools import Tool, ToolCatalog

QUERY = "will I need an umbrella in Paris"
REWRITE = "current weather forecast for a city"
REWRITES = {
    QUERY: REWRITE,
    "how much is AAPL": "latest price of a stock ticker symbol",
    "tell Bob I am late": "send an email message to a recipient",
}


PAPER = FusionWeights.paper()
"""The paper's fusion, 0.5 * s(q, t) + 0.5 * s(rewrite, t): the rewriter runs."""


class SpyIndex(ToolIndex):
    """Exact cosine search that records every query it is asked, and how deep."""

    def __init__(self, tools: Sequence[Tool]) -> None:
        self.inner = ExactToolIndex(KeywordEmbeddings(), tools)
        self.queries: list[str] = []
        self.depths: list[int] = []

    def add_tools(self, tools: Sequence[Tool]) -> None:
        self.inner.add_tools(tools)

    def search(self, query: str, k: int) -> list[ToolHit]:
        self.queries.append(query)
        self.depths.append(k)
        return self.inner.search(query, k)

    def search_many(self, queries: Sequence[str], k: int) -> list[list[ToolHit]]:
        self.queries.extend(queries)
        self.depths.extend([k] * len(queries))
        return self.inner.search_many(queries, k)


class CountingRewriter(FakeRewriter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.messages: list[list[dict[str, str]]] = []
        self.generate_calls = 0

    def _generate(self, messages: list[list[dict[str, str]]]) -> list[str]:
        self.generate_calls += 1
        self.messages.extend(messages)
        return super()._generate(messages)


@pytest.fixture
def catalog(tool_dicts: list[dict[str, str]]) -> ToolCatalog:
    return ToolCatalog.from_dicts(tool_dicts)


def _pipeline(catalog: ToolCatalog, rewriter: Any = None, **kwargs: Any) -> QTAPipeline:
    """A pipeline over a `SpyIndex` with a counting rewriter; the paper's fusion by default."""
    if rewriter is None:
        rewriter = CountingRewriter(REWRITES)
    kwargs.setdefault("fusion", PAPER)
    return QTAPipeline(catalog, SpyIndex(list(catalog)), rewriter, **kwargs)


def _summary(result: RetrievalResult) -> list[tuple[str, float, int]]:
    return [(t.tool.id, pytest.approx(t.score, abs=1e-6), t.rank) for t in result.tools]


def test_fusion_follows_the_formula_and_changes_the_ranking(catalog: ToolCatalog) -> None:
    exact = ExactToolIndex.from_catalog(catalog, KeywordEmbeddings())
    dense = {h.tool_id: h.score for h in exact.search(QUERY, len(catalog))}
    rewritten = {h.tool_id: h.score for h in exact.search(REWRITE, len(catalog))}
    dense_best = max(dense, key=dense.__getitem__)
    assert dense_best != "weather"  # the plain query misses the weather tool

    alpha = 0.5
    pipeline = _pipeline(catalog, fusion=FusionWeights.paper(alpha), k=len(catalog))
    assert pipeline.fusion == FusionWeights(dense=0.5, rewrite=0.5, normalize=False)
    result = pipeline.retrieve(QUERY)
    assert result.rewrites == (REWRITE,)
    assert result.tool_ids[0] == "weather"
    for item in result.tools:
        expected = (1 - alpha) * dense[item.tool.id] + alpha * rewritten[item.tool.id]
        assert item.score == pytest.approx(expected, abs=1e-6)
    scores = [t.score for t in result.tools]
    assert scores == sorted(scores, reverse=True)
    assert [t.rank for t in result.tools] == list(range(1, len(catalog) + 1))

    ignored_rewriter = CountingRewriter(REWRITES)
    ignored = _pipeline(catalog, ignored_rewriter, fusion=FusionWeights.paper(0.0)).retrieve(QUERY)
    assert ignored.tool_ids[0] == dense_best
    assert ignored.rewrites == ()
    assert ignored_rewriter.generate_calls == 0  # weight 0: the rewriter is not even called
    only_rewrite = _pipeline(catalog, fusion=FusionWeights.paper(1.0)).retrieve(QUERY)
    assert only_rewrite.tool_ids[0] == max(rewritten, key=rewritten.__getitem__)


@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.75])
def test_paper_fusion_matches_fuse_hits_with_floors_for_missing_tools(
    catalog: ToolCatalog, alpha: float
) -> None:
    # Shallow searches (fetch_k=3 of 6 tools): a tool one list missed gets that list's floor.
    exact = ExactToolIndex.from_catalog(catalog, KeywordEmbeddings())
    expected = fuse_hits(exact.search(QUERY, 3), [exact.search(REWRITE, 3)], alpha=alpha)
    pipeline = _pipeline(catalog, fusion=FusionWeights.paper(alpha), k=3, fetch_k=3)
    result = pipeline.retrieve(QUERY)
    assert result.tool_ids == [h.tool_id for h in expected[:3]]
    assert [t.score for t in result.tools] == pytest.approx([h.score for h in expected[:3]])


def test_the_default_fusion_is_the_zero_label_base_and_never_calls_the_rewriter(
    catalog: ToolCatalog,
) -> None:
    rewriter = CountingRewriter(REWRITES)
    pipeline = QTAPipeline(catalog, SpyIndex(list(catalog)), rewriter, k=3)
    assert pipeline.fusion == FusionWeights.base() == FusionWeights(lexical=1.5)
    assert not pipeline.fusion.dense_only and not pipeline.fusion.uses_labels
    result = pipeline.retrieve(QUERY)
    assert all(set(t.signals) == {"dense", "lexical"} for t in result.tools)
    assert result.rewrites == ()
    assert rewriter.generate_calls == 0
    assert rewriter.calls == []


def test_without_a_rewriter_it_is_dense_retrieval(catalog: ToolCatalog) -> None:
    for fusion in (FusionWeights(), PAPER):
        pipeline = QTAPipeline(catalog, SpyIndex(list(catalog)), None, k=3, fusion=fusion)
        result = pipeline.retrieve(REWRITE)
        exact = ExactToolIndex.from_catalog(catalog, KeywordEmbeddings())
        assert result.tool_ids == [h.tool_id for h in exact.search(REWRITE, 3)]
        assert result.rewrites == ()


def test_k_default_and_override(catalog: ToolCatalog) -> None:
    pipeline = _pipeline(catalog, k=2)
    assert len(pipeline.retrieve(QUERY).tools) == 2
    assert len(pipeline.retrieve(QUERY, k=4).tools) == 4
    assert len(pipeline.retrieve(QUERY, k=50).tools) == len(catalog)
    assert pipeline.retrieve(QUERY, k=1).tool_ids == pipeline.retrieve(QUERY, k=4).tool_ids[:1]


@pytest.mark.parametrize(
    ("k", "fetch_k", "expected"),
    [(1, None, 500), (5, None, 500), (200, None, 800), (2, 3, 3), (5, 5, 5), (5, 100, 100)],
)
def test_fetch_depth_rules(k: int, fetch_k: int | None, expected: int) -> None:
    settings = RetrievalSettings(k=k, fetch_k=fetch_k)
    assert settings.fetch_depth(k) == expected
    # A request for more tools than fetch_k fetches at least k.
    assert settings.fetch_depth(k + 200) >= k + 200


def test_fetch_k_below_k_is_refused(catalog: ToolCatalog) -> None:
    with pytest.raises(ValueError, match=r"fetch_k \(3\) must be >= k \(5\)"):
        RetrievalSettings(k=5, fetch_k=3)
    with pytest.raises(ValueError, match=r"fetch_k \(3\) must be >= k \(5\)"):
        _pipeline(catalog, k=5, fetch_k=3)
    with pytest.raises(ValueError, match=r"fetch_k \(2\) must be >= k \(3\)"):
        RetrievalSettings(k=2, fetch_k=2).replace(k=3)


def test_a_dense_only_pipeline_fetches_just_k_and_a_fused_one_fetches_deeper(
    catalog: ToolCatalog,
) -> None:
    dense = _pipeline(catalog, k=2, fusion=FusionWeights())
    dense.retrieve(QUERY)
    assert dense.index.depths == [2]  # type: ignore[attr-defined]

    fused = _pipeline(catalog, k=2, fetch_k=4)
    fused.retrieve(QUERY)
    # One search of the query and one of its rewrite, both fetch_k deep.
    assert fused.index.queries == [QUERY, REWRITE]  # type: ignore[attr-defined]
    assert fused.index.depths == [4, 4]  # type: ignore[attr-defined]
    unset = _pipeline(catalog, k=2)
    unset.retrieve(QUERY)
    assert unset.index.depths == [500, 500]  # type: ignore[attr-defined]


def test_fallback_rewrite_means_no_second_search(catalog: ToolCatalog) -> None:
    pipeline = _pipeline(catalog)
    result = pipeline.retrieve("query the rewriter leaves alone")
    assert result.rewrites == ()
    assert pipeline.rewriter.calls == ["query the rewriter leaves alone"]  # type: ignore[union-attr]
    assert pipeline.index.queries == ["query the rewriter leaves alone"]  # type: ignore[attr-defined]


async def test_async_fallback_means_no_second_search(catalog: ToolCatalog) -> None:
    pipeline = _pipeline(catalog)
    result = await pipeline.aretrieve("query the rewriter leaves alone")
    assert result.rewrites == ()
    assert pipeline.rewriter.calls == ["query the rewriter leaves alone"]  # type: ignore[union-attr]
    assert pipeline.index.queries == ["query the rewriter leaves alone"]  # type: ignore[attr-defined]


def test_retrieve_batch_equals_retrieve_per_query(catalog: ToolCatalog) -> None:
    queries = [*REWRITES, "query the rewriter leaves alone", QUERY]
    batched_pipeline = _pipeline(catalog, k=3)
    batched = batched_pipeline.retrieve_batch(queries)
    single = [_pipeline(catalog, k=3).retrieve(q) for q in queries]
    assert [_summary(r) for r in batched] == [_summary(r) for r in single]
    assert [r.rewrites for r in batched] == [r.rewrites for r in single]
    assert batched_pipeline.rewriter.generate_calls == 1  # type: ignore[union-attr]
    assert batched_pipeline.retrieve_batch([]) == []


async def test_async_retrieval_equals_sync(catalog: ToolCatalog) -> None:
    queries = [*REWRITES, "query the rewriter leaves alone"]
    sync = [_pipeline(catalog, k=3).retrieve(q) for q in queries]
    for query, expected in zip(queries, sync, strict=True):
        result = await _pipeline(catalog, k=3).aretrieve(query)
        assert _summary(result) == _summary(expected)
        assert result.rewrites == expected.rewrites
    batched = await _pipeline(catalog, k=3).aretrieve_batch(queries)
    assert [_summary(r) for r in batched] == [_summary(r) for r in sync]


async def test_history_reaches_the_rewriter(catalog: ToolCatalog) -> None:
    rewriter = CountingRewriter(REWRITES)
    pipeline = _pipeline(catalog, rewriter=rewriter)
    pipeline.retrieve("and tomorrow?", history=["weather in Paris today?"])
    await pipeline.aretrieve("and in Rome?", history=["weather in Paris today?", "and tomorrow?"])
    pipeline.retrieve_batch(["and on Sunday?"], histories=[["is it sunny?"]])
    first, second, third = (m[-1]["content"] for m in rewriter.messages)
    assert "Earlier in the conversation the user said:\n- weather in Paris today?" in first
    assert "- weather in Paris today?\n- and tomorrow?\n\nRequest: and in Rome?" in second
    assert "- is it sunny?" in third
    with pytest.raises(ValueError, match="Got 1 histories for 2 queries"):
        pipeline.retrieve_batch(["a", "b"], histories=[["x"]])


def test_rewriter_sees_the_top_tools_for_the_query(catalog: ToolCatalog) -> None:
    rewriter = CountingRewriter(REWRITES)
    pipeline = _pipeline(catalog, rewriter=rewriter, num_context_tools=2)
    pipeline.retrieve(QUERY)
    top = ExactToolIndex.from_catalog(catalog, KeywordEmbeddings()).search(QUERY, 2)
    message = rewriter.messages[0][-1]["content"]
    shown = [line[2:] for line in message.splitlines() if line.startswith("- ")]
    assert shown == [catalog[h.tool_id].text for h in top]

    none = CountingRewriter(REWRITES)
    _pipeline(catalog, rewriter=none, num_context_tools=0).retrieve(QUERY)
    assert "Tool documentation" not in none.messages[0][-1]["content"]


def test_rewrite_requests_match_what_retrieval_shows_the_rewriter(catalog: ToolCatalog) -> None:
    rewriter = CountingRewriter(REWRITES)
    pipeline = _pipeline(catalog, rewriter=rewriter, num_context_tools=2)
    requests = pipeline.rewrite_requests([QUERY, "and in Rome?"], [[], ["weather in Paris?"]])
    pipeline.retrieve_batch([QUERY, "and in Rome?"], histories=[[], ["weather in Paris?"]])
    assert [pipeline.rewriter.prompt.messages(r) for r in requests] == rewriter.messages
    assert [len(r.context) for r in requests] == [2, 2]
    with pytest.raises(ValueError, match="Got 1 histories for 2 queries"):
        pipeline.rewrite_requests(["a", "b"], [["x"]])


@pytest.mark.parametrize("fusion", [FusionWeights(), PAPER], ids=["dense", "paper"])
def test_unknown_ids_from_the_index_are_logged_and_left_out(
    catalog: ToolCatalog, caplog: pytest.LogCaptureFixture, fusion: FusionWeights
) -> None:
    index = SpyIndex(list(catalog))
    index.add_tools([Tool(id="ghost", name="ghost", description="current weather forecast city")])
    pipeline = QTAPipeline(catalog, index, None, k=3, index_tools=False, fusion=fusion)
    assert "ghost" in [h.tool_id for h in index.inner.search(REWRITE, 3)]  # a stale entry
    with caplog.at_level(logging.WARNING, logger="qta_integrations.pipeline"):
        result = pipeline.retrieve(REWRITE)
    assert "ghost" not in result.tool_ids
    assert all(t in catalog for t in result.tool_ids)
    assert [t.rank for t in result.tools] == list(range(1, len(result.tools) + 1))
    assert "tool id 'ghost', which is not in the catalogue" in caplog.text
    if fusion.dense_only:
        # Dense only fetches just k: the stale entry takes one of the k places.
        assert len(result.tools) == 2
    else:
        # A fused pipeline fetches deeper, so the list is still filled.
        assert len(result.tools) == 3


# -- from_tools backends ------------------------------------------------------------------------


@pytest.fixture
def chroma_pipeline(tool_dicts: list[dict[str, str]]) -> Iterator[QTAPipeline]:
    pipeline = QTAPipeline.from_tools(
        tool_dicts,
        embeddings=KeywordEmbeddings(),
        rewriter=FakeRewriter(REWRITES),
        k=2,
        fusion=PAPER,
    )
    try:
        yield pipeline
    finally:
        pipeline.index.vectorstore.delete_collection()  # type: ignore[attr-defined]


def test_from_tools_defaults_to_embedded_chroma(chroma_pipeline: QTAPipeline) -> None:
    assert isinstance(chroma_pipeline.index, VectorStoreToolIndex)
    assert type(chroma_pipeline.index.vectorstore).__name__ == "Chroma"
    assert chroma_pipeline.settings == RetrievalSettings(k=2, fusion=PAPER)
    result = chroma_pipeline.retrieve(QUERY)
    assert result.tool_ids[0] == "weather"
    assert result.rewrites == (REWRITE,)


@pytest.mark.parametrize("backend", ["vectorstore", "llama_index"])
def test_from_tools_with_other_backends(tool_dicts: list[dict[str, str]], backend: str) -> None:
    embeddings = KeywordEmbeddings()
    store: Any
    if backend == "vectorstore":
        store = InMemoryVectorStore(embeddings)
        expected_index: type[ToolIndex] = VectorStoreToolIndex
    else:
        store = VectorStoreIndex(nodes=[], embed_model=to_llama_index_embeddings(embeddings))
        expected_index = LlamaIndexToolIndex
    rewriter = FakeRewriter(REWRITES)
    pipeline = QTAPipeline.from_tools(
        tool_dicts,
        rewriter=rewriter,
        settings=RetrievalSettings(k=2, fusion=PAPER),
        **{backend: store},
    )
    assert isinstance(pipeline.index, expected_index)
    result = pipeline.retrieve(QUERY)
    assert result.tool_ids[0] == "weather"
    assert result.rewrites == (REWRITE,)
    assert rewriter.calls == [QUERY]
    # The same store with the default fusion: the dense ranking, and no rewrite.
    dense = QTAPipeline.from_tools(tool_dicts, rewriter=rewriter, k=2, **{backend: store})
    assert dense.retrieve(QUERY).tool_ids[0] != "weather"
    assert rewriter.calls == [QUERY]


def test_from_tools_rejects_two_backends(tool_dicts: list[dict[str, str]]) -> None:
    with pytest.raises(
        ValueError, match=r"Pass only one of.*\['vectorstore', 'persist_directory'\]"
    ):
        QTAPipeline.from_tools(
            tool_dicts,
            vectorstore=InMemoryVectorStore(KeywordEmbeddings()),
            persist_directory="/tmp/unused",
            rewriter=None,
        )
