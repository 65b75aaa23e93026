"""The faces over one pipeline: ``.pipeline``, one lifecycle, ``k`` owned by the settings."""

from __future__ import annotations

import inspect

import pytest
from llama_index.core.tools import FunctionTool

from qta_integrations import (
    QTALlamaIndexRetriever,
    QTAPipeline,
    QTARetriever,
    QTAToolRetriever,
    QTAToolSelector,
)
from qta_integrations.retrievers import as_pipeline
from qta_integrations.retrievers.base import RetrieverLifecycle
from qta_integrations.stores import ExactToolIndex
from qta_integrations.testing import KeywordEmbeddings
from qta_integrations.tools import ToolCatalog


def get_weather(city: str) -> str:
    """Weather forecast for a city: temperature, rain and wind."""
    return f"Sunny in {city}"


def get_stock_price(ticker: str) -> str:
    """Latest stock price of a company ticker symbol."""
    return f"{ticker}: 123.4"


def send_email(to: str, body: str) -> str:
    """Send an email message to a recipient address."""
    return "sent"


@pytest.fixture
def pipeline() -> QTAPipeline:
    tools = [FunctionTool.from_defaults(fn) for fn in (get_weather, get_stock_price, send_email)]
    catalog = ToolCatalog.from_any(tools)
    return QTAPipeline(catalog, ExactToolIndex(KeywordEmbeddings()), None, k=2)


def test_every_face_reaches_the_core_through_pipeline(pipeline: QTAPipeline) -> None:
    faces = {
        "QTARetriever": QTARetriever(pipeline=pipeline),
        "QTALlamaIndexRetriever": QTALlamaIndexRetriever(pipeline),
        "QTAToolRetriever": QTAToolRetriever(pipeline),
    }
    for name, face in faces.items():
        assert face.pipeline is pipeline, name
    assert pipeline.pipeline is pipeline  # the pipeline answers the same attribute
    # The LangChain tools of the selector are only looked up by id: any tools with those ids.
    from langchain_core.tools import tool

    registry = {
        tool_id: tool(fn)
        for tool_id, fn in zip(pipeline.catalog.ids, (get_weather,) * 3, strict=True)
    }
    selector = QTAToolSelector(faces["QTARetriever"], registry)
    assert selector.pipeline is pipeline


def test_the_lifecycle_is_written_once() -> None:
    names = ("from_mcp", "afrom_mcp", "update_catalog", "add_examples", "remove_examples")
    for face in (QTARetriever, QTALlamaIndexRetriever, QTAToolRetriever):
        assert issubclass(face, RetrieverLifecycle)
        for name in (*names, "persist"):
            static = inspect.getattr_static(face, name)
            assert static is inspect.getattr_static(RetrieverLifecycle, name), (face, name)


def test_lifecycle_methods_act_on_the_shared_pipeline(pipeline: QTAPipeline) -> None:
    tool_retriever = QTAToolRetriever(pipeline)
    added = tool_retriever.add_examples([{"query": "umbrella today?", "tools": ["get_weather"]}])
    assert [e.query for e in added] == ["umbrella today?"]
    assert [e.query for e in QTARetriever(pipeline=pipeline).pipeline.memory] == ["umbrella today?"]
    removed = QTALlamaIndexRetriever(pipeline).remove_examples("umbrella today?")
    assert [e.query for e in removed] == ["umbrella today?"] and not len(pipeline.memory)
    with pytest.raises(TypeError, match="has no tool object"):
        tool_retriever.update_catalog([{"id": "x", "name": "x", "description": "A dict tool."}])
    assert pipeline.catalog.ids == ["get_weather", "get_stock_price", "send_email"]


def test_deprecated_aliases_warn_and_name_the_new_attribute(pipeline: QTAPipeline) -> None:
    retriever = QTARetriever(pipeline=pipeline)
    with pytest.warns(DeprecationWarning, match=r"QTARetriever\.core is deprecated; use "):
        assert retriever.core is pipeline
    tool_retriever = QTAToolRetriever(pipeline)
    with pytest.warns(DeprecationWarning, match=r"qta_retriever is deprecated; use .*\.pipeline"):
        assert tool_retriever.qta_retriever is tool_retriever.retriever
    assert tool_retriever.retriever.pipeline is pipeline
    with pytest.warns(DeprecationWarning, match=r"as_pipeline\(retriever\) is deprecated"):
        assert as_pipeline(tool_retriever) is pipeline  # it missed QTAToolRetriever before
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match="got list"):
        as_pipeline([])


def test_k_has_one_owner_the_settings(pipeline: QTAPipeline) -> None:
    retriever = QTARetriever(pipeline=pipeline)
    llama = QTALlamaIndexRetriever(pipeline)
    assert retriever.k == llama.k == llama.similarity_top_k == pipeline.settings.k == 2
    retriever.k = 1  # written to the settings: every face over the pipeline reads it
    assert pipeline.settings.k == llama.k == QTAToolRetriever(pipeline).k == 1
    assert len(llama.retrieve("weather forecast for Paris")) == 1
    QTALlamaIndexRetriever(pipeline, similarity_top_k=3)
    assert pipeline.settings.k == retriever.k == 3
    QTARetriever(pipeline=pipeline, k=2)
    assert pipeline.settings.k == 2
    assert pipeline.state_dict()["settings"]["k"] == 2  # saved with the fitted state
    with pytest.raises(ValueError, match="k must be"):
        retriever.k = 0
    assert pipeline.settings.k == 2


def test_a_retriever_built_from_tools_keeps_k_in_its_settings() -> None:
    tools = [{"id": "weather", "name": "get_weather", "description": "Weather for a city."}]
    retriever = QTARetriever(tools=tools, embeddings=KeywordEmbeddings(), rewriter=None, k=3)
    try:
        assert retriever.pipeline.settings.k == retriever.k == 3
        assert "k" not in retriever.model_dump()  # not a second copy beside the settings
    finally:
        retriever.pipeline.index.close()


def test_the_selector_asks_the_pipeline_for_its_selection(pipeline: QTAPipeline) -> None:
    from langchain_core.tools import tool

    registry = {tool_id: tool(get_weather) for tool_id in pipeline.catalog.ids}
    selector = QTAToolSelector(pipeline, registry, k=1)
    assert pipeline.settings.k == 1  # the selector's k is the settings' too
    messages = [("user", "weather forecast for Paris?"), ("user", "and for Berlin?")]
    expected = pipeline.retrieve_turn(
        "and for Berlin?",
        history=["weather forecast for Paris?"],
        context_query="weather forecast for Paris? and for Berlin?",
    )
    assert selector.select(messages) == expected.tool_ids == ["get_weather"]


async def test_retrieve_turn_async_matches_sync(pipeline: QTAPipeline) -> None:
    options = {"history": ["stock price of ACME?"], "context_query": "stock price of ACME? email"}
    sync = pipeline.retrieve_turn("email it to Bob", **options)  # type: ignore[arg-type]
    asynchronous = await pipeline.aretrieve_turn("email it to Bob", **options)  # type: ignore[arg-type]
    assert asynchronous == sync and len(sync.tools) == 2
    with pytest.raises(ValueError, match=r"context_weight must be in \[0, 1\], got 2"):
        pipeline.retrieve_turn("email", context_weight=2)
