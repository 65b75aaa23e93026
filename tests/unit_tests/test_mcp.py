"""MCP servers as tool catalogues, against real servers started by the tests.

Three FastMCP servers of 30 tools each (`tests.unit_tests.mcp_servers`): ``weather`` over stdio
(a subprocess per session), ``crm`` and ``files`` over streamable HTTP on 127.0.0.1. Listed
through langchain-mcp-adapters, indexed with the bag-of-words test embeddings in an in-memory
Chroma, retrieved, called, and re-synced after the servers changed their tools.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from llama_index.core.tools import FunctionTool

from qta_integrations import QTARetriever, QTAToolRetriever
from qta_integrations.agents import create_qta_agent
from qta_integrations.sources.mcp import aload_mcp_tools, load_mcp_tools
from qta_integrations.stores import SyncResult
from qta_integrations.testing import KeywordEmbeddings
from tests.unit_tests import mcp_servers
from tests.unit_tests.mcp_servers import HttpServer, build_server, catalogue, write_spec
from tests.unit_tests.test_langgraph_agent import call, scripted


class RecordingEmbeddings(KeywordEmbeddings):
    """KeywordEmbeddings that record every text embedded as a document."""

    def __init__(self) -> None:
        super().__init__()
        self.embedded: list[str] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.embedded.extend(texts)
        return super().embed_documents(texts)


@dataclass
class Fleet:
    """The three running servers and how to reach them."""

    connections: dict[str, dict[str, Any]]
    weather_spec: Path
    crm: HttpServer
    files: HttpServer


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    spec = write_spec(tmp_path / "weather.json", "weather", catalogue("weather"))
    with contextlib.ExitStack() as stack:  # stops every server that started, whatever happens
        crm = stack.enter_context(HttpServer(build_server("crm", catalogue("crm"))))
        files = stack.enter_context(HttpServer(build_server("files", catalogue("files"))))
        connections = {
            "weather": mcp_servers.stdio_connection(spec),
            "crm": crm.connection,
            "files": files.connection,
        }
        yield Fleet(connections, spec, crm, files)


def _retriever(tools: Any, **kwargs: Any) -> QTARetriever:
    kwargs.setdefault("embeddings", KeywordEmbeddings())
    return QTARetriever(tools=tools, rewriter=None, **kwargs)


def _close(retriever: QTARetriever) -> None:
    retriever.pipeline.index.close()  # drops the in-memory Chroma collection


QUERIES = {
    "compare the humidity of two cities": "weather.compare_humidity",
    "find a customer deal by keyword": "crm.find_deal",
    "share a stored photo with a colleague by email": "files.share_photo",
    "subscribe to an alert when the pollen changes": "weather.alert_pollen",
}


def test_three_servers_are_listed_indexed_and_retrieved(fleet: Fleet) -> None:
    tools = load_mcp_tools(fleet.connections)
    assert len(tools) == 90
    assert [t.id for t in tools[:2]] == ["weather.get_forecast", "weather.compare_forecast"]
    assert {t.metadata["mcp_server"] for t in tools} == {"weather", "crm", "files"}
    forecast = tools[0]
    assert forecast.name == "get_forecast"  # what the model is bound to and calls
    assert forecast.metadata == {"mcp_server": "weather", "mcp_tool": "get_forecast"}
    assert isinstance(forecast.obj, BaseTool) and forecast.obj.name == "get_forecast"
    assert forecast.text == (
        "get_forecast: Get the current forecast for a city. Parameters: city (Name of the city)."
    )
    retriever = _retriever(tools, k=3)
    try:
        for query, expected in QUERIES.items():
            docs = retriever.invoke(query)
            assert docs[0].id == expected, (query, [d.id for d in docs])
            assert docs[0].metadata["mcp_server"] == expected.split(".")[0]
    finally:
        _close(retriever)


async def test_afrom_mcp_and_a_tool_called_end_to_end(fleet: Fleet) -> None:
    http_only = {k: v for k, v in fleet.connections.items() if k != "weather"}
    retriever = await QTARetriever.afrom_mcp(
        http_only, embeddings=KeywordEmbeddings(), rewriter=None, k=2
    )
    try:
        docs = await retriever.ainvoke("share a stored photo with a colleague by email")
        assert docs[0].id == "files.share_photo"
        tool = retriever.pipeline.catalog[docs[0].id].obj
        content = await tool.ainvoke({"path": "/holiday.jpg", "email": "bob@example.com"})
        text = content[0]["text"] if isinstance(content, list) else content
        assert (
            text == 'share_photo called with {"email": "bob@example.com", "path": "/holiday.jpg"}'
        )
    finally:
        _close(retriever)


def test_a_tool_over_stdio_is_called(fleet: Fleet) -> None:
    import asyncio

    tools = load_mcp_tools({"weather": fleet.connections["weather"]})
    forecast = next(t for t in tools if t.id == "weather.get_forecast")
    content = asyncio.run(forecast.obj.ainvoke({"city": "Oslo"}))
    assert content[0]["text"] == 'get_forecast called with {"city": "Oslo"}'


async def test_load_mcp_tools_works_inside_a_running_loop(fleet: Fleet) -> None:
    # Jupyter runs cells in a loop: the sync entry point must not call asyncio.run there.
    tools = load_mcp_tools({"crm": fleet.connections["crm"]})
    assert len(tools) == 30


def test_resync_after_the_servers_changed(fleet: Fleet, caplog: pytest.LogCaptureFixture) -> None:
    embeddings = RecordingEmbeddings()
    retriever = _retriever(load_mcp_tools(fleet.connections), embeddings=embeddings, k=3)
    try:
        retriever.add_examples(
            [
                {"query": "jot down what the customer said", "tools": ["crm.delete_note"]},
                {"query": "is it windy in Bergen", "tools": ["weather.get_wind"]},
                {"query": "put my holiday pictures online", "tools": ["files.upload_photo"]},
            ]
        )
        # The servers change: weather edits one description (its spec file is read at each
        # start), crm removes one tool and adds another while it runs.
        specs = catalogue("weather")
        specs[0]["description"] = "Hour by hour weather forecast for a city, for the next week."
        write_spec(fleet.weather_spec, "weather", specs)
        fleet.crm.mcp.remove_tool("delete_note")
        mcp_servers.add_tool(
            fleet.crm.mcp,
            {
                "name": "merge_contact",
                "description": "Merge two duplicate customer contacts into one.",
                "params": {"keep_id": "Contact to keep", "drop_id": "Contact merged into it"},
            },
        )
        embeddings.embedded.clear()
        new_tools = load_mcp_tools(fleet.connections)
        with caplog.at_level(logging.WARNING, logger="qta_integrations.pipeline"):
            result = retriever.update_catalog(new_tools)

        assert result == SyncResult(num_added=1, num_updated=1, num_skipped=88, num_deleted=1)
        # Of the catalogue's texts, only the edited and the added tool were embedded again.
        catalogue_texts = {t.text for t in retriever.pipeline.catalog}
        re_embedded = [t for t in embeddings.embedded if t in catalogue_texts]
        assert sorted(re_embedded) == sorted(
            [
                retriever.pipeline.catalog["weather.get_forecast"].text,
                retriever.pipeline.catalog["crm.merge_contact"].text,
            ]
        )
        # The store equals the catalogue: nothing stale, nothing duplicated.
        stored = retriever.pipeline.index.list_entries("tool")
        assert stored is not None and sorted(stored) == sorted(retriever.pipeline.catalog.ids)
        # The labelled example of the removed tool is dropped, and the fusion refitted.
        assert "crm.delete_note" in caplog.text and "dropped" in caplog.text
        assert [e.query for e in retriever.pipeline.memory] == [
            "is it windy in Bergen",
            "put my holiday pictures online",
        ]
        fit = retriever.pipeline.last_fit
        assert fit is not None and fit.num_examples == 2
        # Retrieval sees the new catalogue.
        assert retriever.invoke("merge two duplicate contacts")[0].id == "crm.merge_contact"
        ids = [d.id for d in retriever.invoke("delete a customer note permanently")]
        assert "crm.delete_note" not in ids
        # Listing again without a change re-embeds nothing.
        embeddings.embedded.clear()
        again = retriever.update_catalog(load_mcp_tools(fleet.connections))
        assert again == SyncResult(num_skipped=90)
        assert not [t for t in embeddings.embedded if t in catalogue_texts]
    finally:
        _close(retriever)


async def test_langgraph_agent_selects_among_mcp_servers_and_calls_the_tool(
    fleet: Fleet,
) -> None:
    http_only = {k: v for k, v in fleet.connections.items() if k != "weather"}
    retriever = await QTARetriever.afrom_mcp(
        http_only, embeddings=KeywordEmbeddings(), rewriter=None, k=3
    )
    try:
        model = scripted(
            call("find_invoice", "c1", keyword="ACME", owner="Dana"),
            "Found the ACME invoice.",
        )
        agent = create_qta_agent(model, retriever=retriever)
        state = await agent.ainvoke(
            {"messages": [("user", "Find the customer invoice of ACME by keyword")]}
        )
        assert state["selected_tool_ids"][0] == "crm.find_invoice"
        assert model.bind_log[0][0] == "find_invoice"  # three tools bound, not sixty
        assert len(model.bind_log[0]) == 3
        results = [m for m in state["messages"] if isinstance(m, ToolMessage)]
        assert len(results) == 1
        assert 'find_invoice called with {"keyword": "ACME", "owner": "Dana"}' in results[0].text
        assert state["messages"][-1].content == "Found the ACME invoice."
    finally:
        _close(retriever)


async def test_llama_index_tool_retriever_from_mcp(fleet: Fleet) -> None:
    http_only = {k: v for k, v in fleet.connections.items() if k != "weather"}
    tool_retriever = await QTAToolRetriever.afrom_mcp(
        http_only, embed_model=KeywordEmbeddings(), rewriter=None, k=2
    )
    try:
        found = await tool_retriever.aretrieve("search stored files for a backup by name")
        assert isinstance(found[0], FunctionTool)
        assert found[0].metadata.name == "search_backup"
        schema = found[0].metadata.get_parameters_dict()
        assert schema["properties"]["query"]["description"] == "Name to search"
        assert schema["required"] == ["query"]
        output = await found[0].acall(query="2024")
        assert output.content == 'search_backup called with {"query": "2024"}'
        # LlamaIndex agents look a called tool up by its name.
        assert tool_retriever.retrieve("search_backup") == [found[0]]
    finally:
        tool_retriever.pipeline.index.close()


async def test_aload_and_the_llama_index_retriever_follow_a_resync(fleet: Fleet) -> None:
    connections = {"files": fleet.connections["files"]}
    tool_retriever = QTAToolRetriever.from_mcp(
        connections, embed_model=KeywordEmbeddings(), rewriter=None, k=1
    )
    try:
        mcp_servers.add_tool(
            fleet.files.mcp,
            {"name": "print_label", "description": "Print a shipping label for a parcel."},
        )
        tools = await aload_mcp_tools(connections, framework="llama_index")
        assert tool_retriever.update_catalog(tools).num_added == 1
        found = tool_retriever.retrieve("print a shipping label for my parcel")
        assert found[0].metadata.name == "print_label"
        assert tool_retriever.retrieve("print_label")[0] is found[0]
    finally:
        tool_retriever.pipeline.index.close()


def test_duplicate_names_with_tool_name_prefix(tmp_path: Path) -> None:
    import asyncio

    search = {"name": "search", "description": "Search the {} for a keyword.", "params": {}}
    with contextlib.ExitStack() as stack:
        servers = {
            name: stack.enter_context(
                HttpServer(
                    build_server(
                        name, [{**search, "description": search["description"].format(name)}]
                    )
                )
            )
            for name in ("wiki", "tickets")
        }
        connections = {name: s.connection for name, s in servers.items()}
        tools = load_mcp_tools(connections, tool_name_prefix=True)
        assert [(t.id, t.name) for t in tools] == [
            ("wiki.search", "wiki_search"),
            ("tickets.search", "tickets_search"),
        ]
        # The bound name carries the prefix; the server is still called with its own name.
        content = asyncio.run(tools[1].obj.ainvoke({}))
        assert content[0]["text"] == "search called with {}"
