"""Agents and documentation pages with the real embedded models (MiniLM + SmolLM2-135M)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit_tests.test_docs_snippets import DOCS, is_slow, pages, run_page
from tests.unit_tests.test_langgraph_agent import EXECUTED, TOOLS, call, scripted

SLOW_PAGES = [p for p in pages() if is_slow(p)]


@pytest.mark.slow
def test_create_qta_agent_with_the_default_models_over_a_follow_up() -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    from qta_integrations.agents import create_qta_agent

    EXECUTED.clear()
    model = scripted(
        call("get_weather", "c1", city="Paris"),
        "Light rain.",
        call("get_weather", "c2", city="Paris"),
        "Rain again.",
    )
    # retriever=None: MiniLM + embedded Chroma, built from the tools. Without labelled examples
    # the fusion is dense only, so the follow-up is resolved by the conversation query.
    agent = create_qta_agent(model, TOOLS, k=2, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "slow"}}
    state = agent.invoke({"messages": [("user", "What is the weather forecast in Paris?")]}, config)
    assert state["selected_tool_ids"][0] == "get_weather"
    state = agent.invoke({"messages": [("user", "And tomorrow?")]}, config)
    assert "get_weather" in state["selected_tool_ids"]
    assert EXECUTED == [("get_weather", {"city": "Paris"})] * 2
    assert state["messages"][-1].content == "Rain again."


@pytest.mark.slow
@pytest.mark.parametrize("page", SLOW_PAGES, ids=[str(p.relative_to(DOCS)) for p in SLOW_PAGES])
def test_docs_page_with_real_models(page: Path, tmp_path: Path) -> None:
    run_page(page, tmp_path)
