from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from langchain_core.vectorstores import InMemoryVectorStore
from llama_index.core import VectorStoreIndex

from qta_integrations.embeddings import to_llama_index_embeddings
from qta_integrations.index import (
    ExactToolIndex,
    LlamaIndexToolIndex,
    ToolHit,
    ToolIndex,
    VectorStoreToolIndex,
)
from qta_integrations.pipeline import QTAPipeline, RetrievalResult
from qta_integrations.testing import FakeRewriter, KeywordEmbeddings
from qta_integrations.tools import Tool, ToolCatalog

QUERY = "will I need an umbrella in Paris"
REWRITE = "current weather forecast for a city"
REWRITES = {
    QUERY: REWRITE,
    "how much is AAPL": "latest price of a stock ticker symbol",
    "tell Bob I am late": "send an email message to a recipient",
}


class SpyIndex(ToolIndex):
    """Exact cosine search that records every query it is asked."""

    def __init__(self, tools: Sequence[Tool]) -> None:
        self.inner = ExactToolIndex(KeywordEmbeddings(), tools)
        self.queries: list[str] = []

    def add_tools(self, tools: Sequence[Tool]) -> None:
        self.inner.add_tools(tools)

    def search(self, query: str, k: int) -> list[ToolHit]:
        self.queries.append(query)
        return self.inner.search(query, k)

    def search_many(self, queries: Sequence[str], k: int) -> list[list[ToolHit]]:
        self.queries.extend(queries)
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
    if rewriter is None:
        rewriter = CountingRewriter(REWRITES)
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
    result = _pipeline(catalog, alpha=alpha, k=len(catalog)).retrieve(QUERY)
    assert result.rewrites == (REWRITE,)
    assert result.tool_ids[0] == "weather"
    for item in result.tools:
        expected = (1 - alpha) * dense[item.tool.id] + alpha * rewritten[item.tool.id]
        assert item.score == pytest.approx(expected, abs=1e-6)
    scores = [t.score for t in result.tools]
    assert scores == sorted(scores, reverse=True)
    assert [t.rank for t in result.tools] == list(range(1, len(catalog) + 1))

    ignored = _pipeline(catalog, alpha=0.0).retrieve(QUERY)
    assert ignored.tool_ids[0] == dense_best
    only_rewrite = _pipeline(catalog, alpha=1.0).retrieve(QUERY)
    assert only_rewrite.tool_ids[0] == max(rewritten, key=rewritten.__getitem__)


def test_without_a_rewriter_it_is_dense_retrieval(catalog: ToolCatalog) -> None:
    pipeline = QTAPipeline(catalog, SpyIndex(list(catalog)), None, k=3)
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


@pytest.mark.parametrize(("k", "fetch_k", "expected"), [(1, None, 6), (2, 3, 3), (5, 100, 6)])
def test_fetch_k_is_capped_by_the_catalogue(
    catalog: ToolCatalog, k: int, fetch_k: int | None, expected: int
) -> None:
    assert _pipeline(catalog, k=k, fetch_k=fetch_k)._fetch_k(k) == expected


def test_fallback_rewrite_means_no_second_search(catalog: ToolCatalog) -> None:
    pipeline = _pipeline(catalog)
    result = pipeline.retrieve("query the rewriter leaves alone")
    assert result.rewrites == ()
    assert pipeline.index.queries == ["query the rewriter leaves alone"]  # type: ignore[attr-defined]


async def test_async_fallback_means_no_second_search(catalog: ToolCatalog) -> None:
    pipeline = _pipeline(catalog)
    result = await pipeline.aretrieve("query the rewriter leaves alone")
    assert result.rewrites == ()
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


def test_unknown_ids_from_the_index_are_logged_and_left_out(
    catalog: ToolCatalog, caplog: pytest.LogCaptureFixture
) -> None:
    index = SpyIndex(list(catalog))
    index.add_tools([Tool(id="ghost", name="ghost", description="current weather forecast city")])
    pipeline = QTAPipeline(catalog, index, None, k=3, index_tools=False)
    with caplog.at_level(logging.WARNING, logger="qta_integrations.pipeline"):
        result = pipeline.retrieve(REWRITE)
    assert "ghost" not in result.tool_ids
    assert len(result.tools) == 3
    assert "tool id 'ghost', which is not in the catalogue" in caplog.text


# -- from_tools backends ------------------------------------------------------------------------


@pytest.fixture
def chroma_pipeline(tool_dicts: list[dict[str, str]]) -> Iterator[QTAPipeline]:
    pipeline = QTAPipeline.from_tools(
        tool_dicts, embeddings=KeywordEmbeddings(), rewriter=FakeRewriter(REWRITES), k=2
    )
    try:
        yield pipeline
    finally:
        pipeline.index.vectorstore.delete_collection()  # type: ignore[attr-defined]


def test_from_tools_defaults_to_embedded_chroma(chroma_pipeline: QTAPipeline) -> None:
    assert isinstance(chroma_pipeline.index, VectorStoreToolIndex)
    assert type(chroma_pipeline.index.vectorstore).__name__ == "Chroma"
    assert chroma_pipeline.retrieve(QUERY).tool_ids[0] == "weather"


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
    pipeline = QTAPipeline.from_tools(
        tool_dicts, rewriter=FakeRewriter(REWRITES), k=2, **{backend: store}
    )
    assert isinstance(pipeline.index, expected_index)
    result = pipeline.retrieve(QUERY)
    assert result.tool_ids[0] == "weather"
    assert result.rewrites == (REWRITE,)


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
