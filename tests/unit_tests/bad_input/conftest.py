"""Shared pieces of the bad-input suite: one small retriever per module, entry-point tables."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from llama_index.core.schema import QueryBundle
from llama_index.core.tools import FunctionTool

from qta_integrations import QTARetriever
from qta_integrations.agents.langgraph import QTAToolSelector, bigtool_retrieve_functions
from qta_integrations.testing import FakeRewriter, KeywordEmbeddings

Call = Callable[[Any], Any]
AsyncCall = Callable[[Any], Awaitable[Any]]


def weather(city: str) -> str:
    """Current weather and forecast for a city."""
    return city


def quote(ticker: str) -> str:
    """Latest price of a stock ticker symbol."""
    return ticker


@pytest.fixture(scope="module")
def retriever() -> Iterator[QTARetriever]:
    """A two-tool retriever (keyword embeddings, scripted rewriter), built once per module."""
    tools = [FunctionTool.from_defaults(fn) for fn in (weather, quote)]
    built = QTARetriever(
        tools=tools,
        embeddings=KeywordEmbeddings(),
        rewriter=FakeRewriter({"weather please": "current weather forecast for a city"}),
        k=1,
    )
    try:
        yield built
    finally:
        built.pipeline.index.vectorstore.delete_collection()  # type: ignore[attr-defined]


def sync_entry_points(retriever: QTARetriever) -> dict[str, Call]:
    """Every synchronous way a query reaches the pipeline."""
    li = retriever.as_llama_index_retriever()
    tools = retriever.as_tool_retriever()
    retrieve, _ = bigtool_retrieve_functions(retriever, k=1)
    return {
        "invoke": retriever.invoke,
        "batch": lambda q: retriever.batch([q])[0],
        "pipeline.retrieve": retriever.pipeline.retrieve,
        "pipeline.retrieve_batch": lambda q: retriever.pipeline.retrieve_batch([q]),
        "llama_index.retrieve": li.retrieve,
        "llama_index.retrieve(QueryBundle)": lambda q: li.retrieve(QueryBundle(q)),
        "tool_retriever.retrieve": tools.retrieve,
        "bigtool.retrieve_tools": retrieve,
        "rewriter.rewrite": retriever.pipeline.rewriter.rewrite,  # type: ignore[union-attr]
    }


def async_entry_points(retriever: QTARetriever) -> dict[str, AsyncCall]:
    """Every asynchronous way a query reaches the pipeline."""
    li = retriever.as_llama_index_retriever()
    tools = retriever.as_tool_retriever()
    _, aretrieve = bigtool_retrieve_functions(retriever, k=1)
    return {
        "ainvoke": retriever.ainvoke,
        "abatch": lambda q: _first(retriever.abatch([q])),
        "pipeline.aretrieve": retriever.pipeline.aretrieve,
        "pipeline.aretrieve_batch": lambda q: retriever.pipeline.aretrieve_batch([q]),
        "llama_index.aretrieve": li.aretrieve,
        "tool_retriever.aretrieve": tools.aretrieve,
        "bigtool.aretrieve_tools": aretrieve,
        "rewriter.arewrite": retriever.pipeline.rewriter.arewrite,  # type: ignore[union-attr]
    }


async def _first(pending: Awaitable[list[Any]]) -> Any:
    return (await pending)[0]


def selector(retriever: QTARetriever) -> QTAToolSelector:
    """The LangGraph tool selector over the module's retriever."""
    return QTAToolSelector(retriever, [weather, quote], k=1)
