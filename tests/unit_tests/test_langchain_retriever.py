from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models import FakeListChatModel
from langchain_core.runnables import RunnableLambda

from qta_integrations import QTAPipeline, QTARetriever
from qta_integrations.fusion import FusionWeights
from qta_integrations.settings import RetrievalSettings
from qta_integrations.testing import FakeRewriter, KeywordEmbeddings
from tests.conftest import CountingRewriter

REWRITES = {
    "will I need an umbrella in Paris": "current weather forecast for a city",
    "how much is AAPL": "latest price of a stock ticker symbol",
    "tell Bob I am late": "send an email message to a recipient",
}
EXPECTED = {
    "will I need an umbrella in Paris": "weather",
    "how much is AAPL": "stock_quote",
    "tell Bob I am late": "email",
}

NAMES = {"weather": "get_weather", "stock_quote": "get_stock_quote", "email": "send_email"}

REWRITING = RetrievalSettings(fusion=FusionWeights.paper())
"""Settings whose fusion weighs the rewrite (the paper's): the rewriter runs on every query."""


class RecordingHandler(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_retriever_start(
        self, serialized: dict[str, Any], query: str, *, run_id: UUID, **kwargs: Any
    ) -> None:
        self.events.append(("start", query))

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.events.append(("end", [d.id for d in documents]))

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.events.append(("error", type(error).__name__))


def _close(retriever: QTARetriever) -> None:
    retriever.pipeline.index.vectorstore.delete_collection()  # type: ignore[attr-defined]


@pytest.fixture
def rewriter() -> CountingRewriter:
    return CountingRewriter(REWRITES)


@pytest.fixture
def retriever(
    tool_dicts: list[dict[str, str]], rewriter: CountingRewriter
) -> Iterator[QTARetriever]:
    built = QTARetriever(
        tools=tool_dicts,
        embeddings=KeywordEmbeddings(),
        rewriter=rewriter,
        k=2,
        settings=REWRITING,
    )
    try:
        yield built
    finally:
        _close(built)


def _check_documents(docs: list[Document], query: str, k: int = 2) -> None:
    assert len(docs) == k
    assert all(isinstance(d, Document) for d in docs)
    top = docs[0]
    assert top.id == EXPECTED[query]
    assert top.metadata["tool_id"] == top.id
    assert top.metadata["tool_name"] == NAMES[top.id]
    assert top.metadata["rewritten_query"] == REWRITES[query]
    assert top.metadata["query"] == query
    assert [d.metadata["rank"] for d in docs] == list(range(1, k + 1))
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)


def test_invoke(retriever: QTARetriever, tool_dicts: list[dict[str, str]]) -> None:
    for query in REWRITES:
        _check_documents(retriever.invoke(query), query)
    weather = retriever.invoke("will I need an umbrella in Paris")[0]
    assert weather.page_content == tool_dicts[0]["description"]
    assert weather.metadata["tool_name"] == "get_weather"


def test_invoke_with_k(retriever: QTARetriever) -> None:
    docs = retriever.invoke("how much is AAPL", k=3)
    assert len(docs) == 3
    assert [d.id for d in retriever.invoke("how much is AAPL", k=1)] == [docs[0].id]
    assert len(retriever.invoke("how much is AAPL")) == 2


async def test_ainvoke(retriever: QTARetriever) -> None:
    for query in REWRITES:
        docs = await retriever.ainvoke(query)
        _check_documents(docs, query)
        assert docs == retriever.invoke(query)
    assert len(await retriever.ainvoke("how much is AAPL", k=3)) == 3


def test_batch_generates_rewrites_in_one_call(
    retriever: QTARetriever, rewriter: CountingRewriter
) -> None:
    queries = list(REWRITES)
    results = retriever.batch(queries)
    for query, docs in zip(queries, results, strict=True):
        _check_documents(docs, query)
    assert rewriter.generate_calls == 1
    assert sorted(rewriter.calls) == sorted(queries)


async def test_abatch_generates_rewrites_in_one_call(
    retriever: QTARetriever, rewriter: CountingRewriter
) -> None:
    queries = list(REWRITES)
    results = await retriever.abatch(queries)
    for query, docs in zip(queries, results, strict=True):
        _check_documents(docs, query)
    assert rewriter.generate_calls == 1


def test_batch_with_a_bad_input_returns_the_exception(retriever: QTARetriever) -> None:
    results = retriever.batch(["how much is AAPL", "  "], return_exceptions=True)
    assert isinstance(results[0], list) and results[0][0].id == "stock_quote"
    assert isinstance(results[1], ValueError)


def test_callbacks_fire(retriever: QTARetriever) -> None:
    handler = RecordingHandler()
    retriever.invoke("how much is AAPL", config={"callbacks": [handler]})
    assert handler.events[0] == ("start", "how much is AAPL")
    assert handler.events[1][0] == "end" and handler.events[1][1][0] == "stock_quote"
    batch_handler = RecordingHandler()
    retriever.batch(list(REWRITES), config={"callbacks": [batch_handler]})
    starts = [q for kind, q in batch_handler.events if kind == "start"]
    assert sorted(starts) == sorted(REWRITES)
    assert sum(kind == "end" for kind, _ in batch_handler.events) == len(REWRITES)
    failing = RecordingHandler()
    with pytest.raises(ValueError):
        retriever.invoke("", config={"callbacks": [failing]})
    assert failing.events[-1] == ("error", "ValueError")


async def test_async_callbacks_fire(retriever: QTARetriever) -> None:
    handler = RecordingHandler()
    await retriever.ainvoke("tell Bob I am late", config={"callbacks": [handler]})
    assert handler.events[0] == ("start", "tell Bob I am late")
    assert handler.events[1][1][0] == "email"


def test_in_a_chain(retriever: QTARetriever) -> None:
    chain = retriever | RunnableLambda(lambda docs: [d.id for d in docs])
    assert chain.invoke("tell Bob I am late")[0] == "email"


def test_history_kwarg_reaches_the_rewriter(tool_dicts: list[dict[str, str]]) -> None:
    seen: list[str] = []

    def rewrite(messages: Any) -> str:
        seen.append(messages[-1].content)
        return "current weather forecast for a city"

    retriever = QTARetriever(
        tools=tool_dicts,
        embeddings=KeywordEmbeddings(),
        rewriter=RunnableLambda(rewrite),
        k=1,
        settings=REWRITING,
    )
    try:
        docs = retriever.invoke("and tomorrow?", history=["weather in Paris today?"])
        assert docs[0].id == "weather"
        assert "- weather in Paris today?" in seen[0]
    finally:
        _close(retriever)


def test_chat_model_rewriter(tool_dicts: list[dict[str, str]]) -> None:
    model = FakeListChatModel(responses=["Latest price of a stock ticker symbol."])
    retriever = QTARetriever(
        tools=tool_dicts, embeddings=KeywordEmbeddings(), rewriter=model, settings=REWRITING
    )
    try:
        docs = retriever.invoke("how much is AAPL", k=1)
        assert docs[0].id == "stock_quote"
        assert docs[0].metadata["rewritten_query"] == "Latest price of a stock ticker symbol."
    finally:
        _close(retriever)


def test_the_default_fusion_never_calls_the_rewriter(
    tool_dicts: list[dict[str, str]], rewriter: CountingRewriter
) -> None:
    retriever = QTARetriever(
        tools=tool_dicts, embeddings=KeywordEmbeddings(), rewriter=rewriter, k=2
    )
    try:
        assert retriever.pipeline.fusion == FusionWeights.base()
        docs = retriever.invoke("how much is AAPL")
        assert docs[0].metadata["rewritten_query"] is None
        retriever.batch(list(REWRITES))
        assert rewriter.generate_calls == 0
        assert rewriter.calls == []
    finally:
        _close(retriever)


def test_settings_k_is_the_default_unless_k_is_given(tool_dicts: list[dict[str, str]]) -> None:
    settings = RetrievalSettings(k=2, fetch_k=3)  # valid: fetch_k >= k
    retriever = QTARetriever(
        tools=tool_dicts, embeddings=KeywordEmbeddings(), rewriter=None, settings=settings
    )
    try:
        assert retriever.k == retriever.pipeline.k == 2
        assert retriever.pipeline.settings == settings
        assert len(retriever.invoke("latest stock ticker price")) == 2
        explicit = QTARetriever(
            tools=tool_dicts, embeddings=KeywordEmbeddings(), rewriter=None, settings=settings, k=3
        )
        assert explicit.k == explicit.pipeline.k == 3
        _close(explicit)
    finally:
        _close(retriever)


def test_no_rewriter_is_dense_retrieval(tool_dicts: list[dict[str, str]]) -> None:
    retriever = QTARetriever(tools=tool_dicts, embeddings=KeywordEmbeddings(), rewriter=None, k=3)
    try:
        docs = retriever.invoke("latest stock ticker price")
        assert docs[0].id == "stock_quote"
        assert docs[0].metadata["rewritten_query"] is None
        assert len(retriever.batch(["a stock price", "send email"])) == 2
    finally:
        _close(retriever)


def test_prebuilt_pipeline_is_shared(tool_dicts: list[dict[str, str]]) -> None:
    pipeline = QTAPipeline.from_tools(
        tool_dicts, embeddings=KeywordEmbeddings(), rewriter=FakeRewriter(REWRITES), k=3
    )
    try:
        retriever = QTARetriever(pipeline=pipeline)
        assert retriever.pipeline is pipeline
        assert len(retriever.invoke("how much is AAPL")) == 3  # the pipeline's k
        assert len(QTARetriever(pipeline=pipeline, k=1).invoke("how much is AAPL")) == 1
    finally:
        pipeline.index.vectorstore.delete_collection()  # type: ignore[attr-defined]


def test_needs_tools_or_a_pipeline() -> None:
    with pytest.raises(ValueError, match="needs `tools=`"):
        QTARetriever(rewriter=None)


def test_langchain_tools_as_the_catalogue() -> None:
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """Current weather and forecast for a city."""
        return f"Sunny in {city}"

    @tool
    def send_email(to: str, body: str) -> str:
        """Send an email message to a recipient."""
        return "sent"

    retriever = QTARetriever(
        tools=[get_weather, send_email], embeddings=KeywordEmbeddings(), rewriter=None, k=1
    )
    try:
        docs = retriever.invoke("send an email to Bob")
        assert docs[0].id == "send_email"
        assert retriever.pipeline.catalog[docs[0].id].obj is send_email
    finally:
        _close(retriever)
