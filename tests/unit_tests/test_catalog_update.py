"""`QTAPipeline.update_catalog`: a new tool list re-syncs the index; everything built from the
old catalogue (BM25, the lexical signal's expansions, labelled examples, the adapters' maps)
follows."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.tools import BaseTool, tool
from llama_index.core.tools import FunctionTool

from qta_integrations import QTAPipeline, QTAToolRetriever
from qta_integrations.agents import QTAToolSelector
from qta_integrations.fusion import FusionWeights
from qta_integrations.stores import SyncResult
from qta_integrations.testing import KeywordEmbeddings
from qta_integrations.tools import Tool, ToolParameter
from tests.conftest import TOOLS

NEW_TOOL = {"id": "parcel", "name": "track_parcel", "description": "Track a parcel delivery."}


class RecordingEmbeddings(KeywordEmbeddings):
    def __init__(self) -> None:
        super().__init__()
        self.embedded: list[str] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.embedded.extend(texts)
        return super().embed_documents(texts)


@pytest.fixture
def embeddings() -> RecordingEmbeddings:
    return RecordingEmbeddings()


@pytest.fixture
def pipeline(embeddings: RecordingEmbeddings) -> Iterator[QTAPipeline]:
    built = QTAPipeline.from_tools([dict(t) for t in TOOLS], embeddings=embeddings, rewriter=None)
    try:
        yield built
    finally:
        built.index.close()


def _changed() -> list[dict[str, Any]]:
    tools = [dict(t) for t in TOOLS if t["id"] != "route"]  # removed
    tools[0]["description"] = "Hourly weather forecast and rain radar for a city."  # edited
    return [*tools, dict(NEW_TOOL)]  # added


def test_only_new_and_edited_tools_are_embedded(
    pipeline: QTAPipeline, embeddings: RecordingEmbeddings
) -> None:
    embeddings.embedded.clear()
    result = pipeline.update_catalog(_changed())
    assert result == SyncResult(num_added=1, num_updated=1, num_skipped=4, num_deleted=1)
    assert sorted(embeddings.embedded) == sorted(
        [pipeline.catalog["weather"].text, pipeline.catalog["parcel"].text]
    )
    stored = pipeline.index.list_entries("tool")
    assert stored is not None and sorted(stored) == sorted(pipeline.catalog.ids)
    assert pipeline.retrieve("track my parcel delivery", k=1).tool_ids == ["parcel"]
    assert "route" not in pipeline.retrieve("driving directions", k=6).tool_ids


def test_examples_of_removed_tools_are_dropped_and_the_fusion_refitted(
    pipeline: QTAPipeline, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline.add_examples(
        [
            {"query": "directions to the airport", "tools": ["route"]},
            {"query": "how to get to Lyon by car", "tools": ["route", "weather"]},
            {"query": "umbrella needed in Oslo?", "tools": ["weather"]},
            {"query": "what does ACME trade at", "tools": ["stock_quote"]},
        ]
    )
    with caplog.at_level(logging.WARNING, logger="qta_integrations.pipeline"):
        pipeline.update_catalog(_changed())
    assert (
        "2 of 4 labelled examples name tools that left the catalogue (e.g. ['route'] for "
        "'directions to the airport'); they are dropped and the fusion is refitted on the 2 left."
    ) in caplog.text
    assert [e.query for e in pipeline.memory] == [
        "umbrella needed in Oslo?",
        "what does ACME trade at",
    ]
    assert pipeline.last_fit is not None and pipeline.last_fit.num_examples == 2
    stored = pipeline.index.list_entries("example")
    assert stored is not None and sorted(stored) == sorted(pipeline.memory.entry_ids())


def test_bm25_and_the_lexical_expansions_follow_the_new_catalogue(pipeline: QTAPipeline) -> None:
    pipeline.add_examples([{"query": "umbrella needed in Oslo?", "tools": ["weather"]}], fit=False)
    pipeline.settings = pipeline.settings.replace(fusion=FusionWeights(lexical=1.0, memory=1.0))
    before = pipeline.retrieve("track a parcel delivery", k=6)
    assert "parcel" not in before.tool_ids
    pipeline.update_catalog(_changed())
    after = pipeline.retrieve("track a parcel delivery", k=1)
    assert after.tool_ids == ["parcel"]
    assert after.tools[0].signals["lexical"] > 0  # BM25 knows the new tool
    # The labelled query still extends its tool's text in the rebuilt BM25 index.
    assert pipeline.retrieve("umbrella needed in Oslo?", k=1).tool_ids == ["weather"]


def test_a_bad_catalogue_leaves_everything_as_it_was(pipeline: QTAPipeline) -> None:
    catalog = pipeline.catalog
    with pytest.raises(ValueError, match="Duplicate tool id 'weather'"):
        pipeline.update_catalog([dict(TOOLS[0]), dict(TOOLS[0])])
    with pytest.raises(TypeError, match="Unsupported tools argument int"):
        pipeline.update_catalog(42)
    assert pipeline.catalog is catalog
    stored = pipeline.index.list_entries("tool")
    assert stored is not None and sorted(stored) == sorted(catalog.ids)


def test_parameters_are_part_of_what_is_synced(pipeline: QTAPipeline) -> None:
    tools = list(pipeline.catalog)
    tools[0] = Tool(
        id=tools[0].id,
        name=tools[0].name,
        description=tools[0].description,
        parameters=(ToolParameter("city", "City to forecast"),),
    )
    result = pipeline.update_catalog(tools)
    assert result == SyncResult(num_updated=1, num_skipped=5)


@tool
def get_weather(city: str) -> str:
    """Weather forecast for a city."""
    return city


@tool
def send_email(to: str, body: str) -> str:
    """Send an email message to a recipient."""
    return to


@tool
def track_parcel(number: str) -> str:
    """Track a parcel delivery."""
    return number


def test_the_tool_selector_follows_a_replaced_catalogue() -> None:
    pipeline = QTAPipeline.from_tools(
        [get_weather, send_email], embeddings=KeywordEmbeddings(), rewriter=None, k=1
    )
    try:
        selector = QTAToolSelector(pipeline)
        pipeline.update_catalog([get_weather, send_email, track_parcel])
        ids = selector.select([("user", "track my parcel delivery")])
        assert ids == ["track_parcel"]
        tools: list[BaseTool] = selector.tools_for(ids)
        assert tools == [track_parcel]
    finally:
        pipeline.index.close()


def test_the_llama_index_tool_retriever_follows_and_checks_a_replaced_catalogue() -> None:
    def weather(city: str) -> str:
        """Weather forecast for a city."""
        return city

    def parcel(number: str) -> str:
        """Track a parcel delivery."""
        return number

    first = [FunctionTool.from_defaults(weather)]
    retriever = QTAToolRetriever.from_defaults(
        first, embed_model=KeywordEmbeddings(), rewriter=None, k=1
    )
    try:
        with pytest.raises(TypeError, match="Tool 'parcel' has no tool object"):
            retriever.update_catalog([dict(NEW_TOOL)])
        assert retriever.retrieve("track my parcel delivery") == first  # left as it was
        added = FunctionTool.from_defaults(parcel)
        retriever.update_catalog([*first, added])
        assert retriever.retrieve("track my parcel delivery") == [added]
        assert retriever.retrieve("parcel") == [added]  # looked up by name, as agents do
    finally:
        retriever.pipeline.index.close()
