"""QTA retrieval inside langgraph-bigtool's agent, end to end with a scripted model."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langgraph.prebuilt import ToolNode
from langgraph.store.memory import InMemoryStore
from langgraph_bigtool import create_agent

from qta_integrations.agents import bigtool_retrieve_functions
from qta_integrations.testing import FakeRewriter
from tests.unit_tests.test_langgraph_agent import (
    EXECUTED,
    PAPER,
    TOOLS,
    call,
    keyword_retriever,
    scripted,
)

REGISTRY = {t.name: t for t in TOOLS}


@pytest.fixture(autouse=True)
def _clear_executed() -> None:
    EXECUTED.clear()


@pytest.fixture(autouse=True)
def _bigtool_tool_node_compat(monkeypatch: pytest.MonkeyPatch) -> None:
    """langgraph-bigtool 0.0.3 (its latest release) routes every non-retrieval tool call through
    ``ToolNode.inject_tool_args(call, state, store)``, which langgraph-prebuilt 1.x removed: the
    ToolNode now injects state and store itself when it runs the call. Without this the agent
    fails with AttributeError on its first real tool call; docs/agents.md shows the same shim."""
    if not hasattr(ToolNode, "inject_tool_args"):
        monkeypatch.setattr(
            ToolNode, "inject_tool_args", lambda self, call, state, store: call, raising=False
        )


def test_functions_return_tool_ids() -> None:
    retrieve, aretrieve = bigtool_retrieve_functions(keyword_retriever(), k=2)
    assert retrieve.__name__ == "retrieve_tools"
    assert inspect.iscoroutinefunction(aretrieve)
    ids = retrieve("weather forecast for a city")
    assert ids[0] == "get_weather"
    assert len(ids) == 2
    assert set(ids) <= set(REGISTRY)


def test_k_is_validated() -> None:
    with pytest.raises(ValueError, match="k must be a positive int, got 0"):
        bigtool_retrieve_functions(keyword_retriever(), k=0)
    with pytest.raises(TypeError, match="or a QTAPipeline, got"):
        bigtool_retrieve_functions("not a retriever")


def _agent(model: Any, retriever: Any) -> Any:
    retrieve, aretrieve = bigtool_retrieve_functions(retriever, k=2)
    builder = create_agent(
        model, REGISTRY, retrieve_tools_function=retrieve, retrieve_tools_coroutine=aretrieve
    )
    return builder.compile(store=InMemoryStore())


def test_bigtool_agent_retrieves_binds_and_calls_the_tool() -> None:
    model = scripted(
        call("retrieve_tools", "r1", query="latest stock price of a company"),
        call("get_stock_price", "c1", ticker="ACME"),
        "ACME trades at 123.45 USD.",
    )
    state = _agent(model, keyword_retriever()).invoke(
        {"messages": [("user", "How much is one ACME share?")]}
    )
    assert state["selected_tool_ids"][0] == "get_stock_price"
    selection = state["messages"][2]
    assert isinstance(selection, ToolMessage)
    assert selection.content.startswith("Available tools: ['get_stock_price'")
    # First model call: only the retrieval tool; afterwards the retrieved tools too.
    assert model.bind_log[0] == ["retrieve_tools"]
    assert model.bind_log[1] == ["retrieve_tools", *state["selected_tool_ids"]]
    assert EXECUTED == [("get_stock_price", {"ticker": "ACME"})]
    assert state["messages"][-1].content == "ACME trades at 123.45 USD."


async def test_bigtool_agent_async_path_awaits_the_pipeline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rewriter = FakeRewriter({"mail to bob": "Send an email message to a recipient address."})
    retriever = keyword_retriever(rewriter=rewriter, fusion=PAPER)

    def no_sync(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the coroutine must use QTAPipeline.aretrieve")

    monkeypatch.setattr(retriever.pipeline, "retrieve", no_sync)
    model = scripted(
        call("retrieve_tools", "r1", query="mail to bob"),
        call("send_email", "c1", to="bob@example.com", body="hi"),
        "Done.",
    )
    state = await _agent(model, retriever).ainvoke({"messages": [("user", "Tell Bob hi.")]})
    assert state["selected_tool_ids"][0] == "send_email"
    assert rewriter.calls == ["mail to bob"]
    assert EXECUTED == [("send_email", {"to": "bob@example.com", "body": "hi"})]
