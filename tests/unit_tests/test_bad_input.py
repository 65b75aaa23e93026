"""Bad input fails loudly, with the same errors through every entry point."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from llama_index.core.schema import QueryBundle
from llama_index.core.tools import FunctionTool

from qta_integrations import QTALlamaIndexRetriever, QTAPipeline, QTARetriever
from qta_integrations.index import ExactToolIndex
from qta_integrations.ranking import fuse_hits
from qta_integrations.testing import FakeRewriter, KeywordEmbeddings
from qta_integrations.tools import ToolCatalog

Call = Callable[[Any], Any]


def weather(city: str) -> str:
    """Current weather and forecast for a city."""
    return city


def quote(ticker: str) -> str:
    """Latest price of a stock ticker symbol."""
    return ticker


@pytest.fixture(scope="module")
def retriever() -> Iterator[QTARetriever]:
    tools = [FunctionTool.from_defaults(fn) for fn in (weather, quote)]
    built = QTARetriever(tools=tools, embeddings=KeywordEmbeddings(), rewriter=FakeRewriter(), k=1)
    try:
        yield built
    finally:
        built.core.index.vectorstore.delete_collection()  # type: ignore[attr-defined]


def _sync_entry_points(retriever: QTARetriever) -> dict[str, Call]:
    li = retriever.as_llama_index_retriever()
    tools = retriever.as_tool_retriever()
    return {
        "invoke": retriever.invoke,
        "batch": lambda q: retriever.batch([q])[0],
        "pipeline.retrieve": retriever.core.retrieve,
        "pipeline.retrieve_batch": lambda q: retriever.core.retrieve_batch([q]),
        "llama_index.retrieve": li.retrieve,
        "llama_index.retrieve(QueryBundle)": lambda q: li.retrieve(QueryBundle(q)),
        "tool_retriever.retrieve": tools.retrieve,
    }


def _async_entry_points(retriever: QTARetriever) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    li = retriever.as_llama_index_retriever()
    tools = retriever.as_tool_retriever()
    return {
        "ainvoke": retriever.ainvoke,
        "pipeline.aretrieve": retriever.core.aretrieve,
        "llama_index.aretrieve": li.aretrieve,
        "tool_retriever.aretrieve": tools.aretrieve,
    }


SYNC = [
    "invoke",
    "batch",
    "pipeline.retrieve",
    "pipeline.retrieve_batch",
    "llama_index.retrieve",
    "llama_index.retrieve(QueryBundle)",
    "tool_retriever.retrieve",
]
ASYNC = ["ainvoke", "pipeline.aretrieve", "llama_index.aretrieve", "tool_retriever.aretrieve"]
BLANK = ["", "   ", "\n\t"]
NOT_STRINGS = [42, None, ["weather"], b"weather"]


@pytest.mark.parametrize("query", BLANK)
@pytest.mark.parametrize("entry", SYNC)
def test_blank_query_is_a_value_error(retriever: QTARetriever, entry: str, query: str) -> None:
    with pytest.raises(ValueError, match="query must not be empty or whitespace"):
        _sync_entry_points(retriever)[entry](query)


@pytest.mark.parametrize("query", NOT_STRINGS)
@pytest.mark.parametrize("entry", SYNC)
def test_non_string_query_is_a_type_error(retriever: QTARetriever, entry: str, query: Any) -> None:
    with pytest.raises(TypeError, match=f"query must be a str, got {type(query).__name__}"):
        _sync_entry_points(retriever)[entry](query)


@pytest.mark.parametrize("entry", ASYNC)
async def test_async_bad_queries(retriever: QTARetriever, entry: str) -> None:
    call = _async_entry_points(retriever)[entry]
    for blank in BLANK:
        with pytest.raises(ValueError, match="query must not be empty"):
            await call(blank)
    for value in NOT_STRINGS:
        with pytest.raises(TypeError, match="query must be a str"):
            await call(value)


def test_good_query_still_works_after_bad_ones(retriever: QTARetriever) -> None:
    assert retriever.invoke("weather forecast for a city")[0].id == "weather"


@pytest.mark.parametrize("k", [0, -1, 2.5, "3", True])
def test_bad_k_per_call(retriever: QTARetriever, k: Any) -> None:
    with pytest.raises(ValueError, match=f"k must be a positive int, got {k!r}"):
        retriever.invoke("weather", k=k)
    with pytest.raises(ValueError, match="k must be a positive int"):
        retriever.core.retrieve("weather", k=k)
    with pytest.raises(ValueError, match="k must be a positive int"):
        retriever.as_llama_index_retriever(k=k)


@pytest.mark.parametrize("k", [0, -3])
async def test_bad_k_async(retriever: QTARetriever, k: int) -> None:
    with pytest.raises(ValueError, match="k must be a positive int"):
        await retriever.ainvoke("weather", k=k)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"k": 0}, "k must be a positive int, got 0"),
        ({"k": -2}, "k must be a positive int, got -2"),
        ({"fetch_k": 0}, "fetch_k must be a positive int, got 0"),
        ({"alpha": -0.1}, r"alpha must be in \[0, 1\], got -0.1"),
        ({"alpha": 1.5}, r"alpha must be in \[0, 1\], got 1.5"),
        ({"num_context_tools": -1}, "num_context_tools must be >= 0, got -1"),
    ],
)
def test_bad_settings(
    tool_dicts: list[dict[str, str]], kwargs: dict[str, Any], pattern: str
) -> None:
    catalog = ToolCatalog.from_dicts(tool_dicts)
    with pytest.raises(ValueError, match=pattern):
        QTAPipeline(catalog, ExactToolIndex(KeywordEmbeddings()), None, **kwargs)
    with pytest.raises(ValueError, match=pattern):
        QTARetriever(tools=tool_dicts, embeddings=KeywordEmbeddings(), rewriter=None, **kwargs)
    if set(kwargs) <= {"k", "alpha", "num_context_tools"}:
        with pytest.raises(ValueError, match=pattern):
            QTALlamaIndexRetriever.from_defaults(
                tool_dicts, embed_model=KeywordEmbeddings(), rewriter=None, **kwargs
            )


@pytest.mark.parametrize("alpha", [-0.5, 1.01])
def test_fuse_hits_rejects_bad_alpha(alpha: float) -> None:
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        fuse_hits([], [[]], alpha=alpha)


def test_unknown_label_ids(tool_dicts: list[dict[str, str]]) -> None:
    catalog = ToolCatalog.from_dicts(tool_dicts)
    with pytest.raises(ValueError, match=r"\['get_wether', 'stocks'\]"):
        catalog.check_ids(["weather", "get_wether", "stocks"])
