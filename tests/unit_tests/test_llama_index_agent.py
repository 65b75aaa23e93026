"""A LlamaIndex FunctionAgent choosing its tools through QTA (``tool_retriever=``), offline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.tools import FunctionTool

from qta_integrations import QTARetriever
from qta_integrations.fusion import FusionWeights
from qta_integrations.settings import RetrievalSettings
from qta_integrations.testing import FakeRewriter, KeywordEmbeddings

EXECUTED: list[tuple[str, dict[str, Any]]] = []


def get_weather(city: str) -> str:
    """Weather forecast for a city: temperature, rain, wind."""
    EXECUTED.append(("get_weather", {"city": city}))
    return f"Forecast for {city}: 18 C, light rain."


def get_stock_price(ticker: str) -> str:
    """Latest stock price of a company ticker symbol."""
    EXECUTED.append(("get_stock_price", {"ticker": ticker}))
    return f"{ticker}: 123.45 USD"


def send_email(to: str, body: str) -> str:
    """Send an email message to a recipient address."""
    EXECUTED.append(("send_email", {"to": to, "body": body}))
    return f"Email sent to {to}."


def plan_route(origin: str, destination: str) -> str:
    """Driving directions with travel time between two places."""
    EXECUTED.append(("plan_route", {"origin": origin, "destination": destination}))
    return f"{origin} -> {destination}: 4 h 30 min."


TOOLS = [
    FunctionTool.from_defaults(fn) for fn in (get_weather, get_stock_price, send_email, plan_route)
]


class ScriptedLLM:
    """The response generator of a ``MockFunctionCallingLLM``: it calls the scripted tool if (and
    only if) the agent offered it, then answers with the tool's output."""

    def __init__(self, tool_name: str, tool_kwargs: dict[str, Any]) -> None:
        self.tool_name = tool_name
        self.tool_kwargs = tool_kwargs
        self.offered: list[list[str]] = []

    def __call__(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        self.offered.append([t.metadata.name for t in kwargs.get("tools") or ()])
        if messages[-1].role == MessageRole.TOOL:
            return ChatMessage(
                role=MessageRole.ASSISTANT, content=f"Answer: {messages[-1].content}"
            )
        if self.tool_name not in self.offered[-1]:
            return ChatMessage(role=MessageRole.ASSISTANT, content="I have no suitable tool.")
        block = ToolCallBlock(
            tool_call_id="call-1", tool_name=self.tool_name, tool_kwargs=self.tool_kwargs
        )
        return ChatMessage(role=MessageRole.ASSISTANT, blocks=[block])


def _tool_retriever(rewrites: dict[str, str], k: int = 2) -> tuple[Any, FakeRewriter]:
    rewriter = FakeRewriter(rewrites)
    retriever = QTARetriever(
        tools=TOOLS,
        embeddings=KeywordEmbeddings(),
        rewriter=rewriter,
        k=k,
        # The paper's fusion weighs the rewrite, so the rewriter runs on every query.
        settings=RetrievalSettings(fusion=FusionWeights.paper()),
    )
    return retriever.as_tool_retriever(), rewriter


async def test_function_agent_calls_the_tool_qta_retrieved() -> None:
    EXECUTED.clear()
    query = "Will I need an umbrella in Paris?"
    tool_retriever, rewriter = _tool_retriever({query: "Weather forecast for a city."})
    script = ScriptedLLM("get_weather", {"city": "Paris"})
    agent = FunctionAgent(
        tool_retriever=tool_retriever,
        llm=MockFunctionCallingLLM(response_generator=script),
        streaming=False,
    )
    response = await agent.run(user_msg=query)
    assert script.offered[0][0] == "get_weather"  # QTA's top tool was offered first
    assert len(script.offered[0]) == 2  # k=2: only the retrieved tools, not the catalogue
    assert rewriter.calls == [query]
    assert EXECUTED == [("get_weather", {"city": "Paris"})]
    assert str(response) == "Answer: Forecast for Paris: 18 C, light rain."


async def test_without_the_rewrite_the_agent_gets_no_weather_tool() -> None:
    EXECUTED.clear()
    # No useful rewrite: the bag-of-words retriever sees nothing about weather in "umbrella" and
    # ranks send_email first ("address"), so the agent is not offered the weather tool.
    tool_retriever, _ = _tool_retriever({}, k=1)
    script = ScriptedLLM("get_weather", {"city": "Paris"})
    agent = FunctionAgent(
        tool_retriever=tool_retriever,
        llm=MockFunctionCallingLLM(response_generator=script),
        streaming=False,
    )
    response = await agent.run(user_msg="Will I need an umbrella on the way to this address?")
    assert script.offered[0] == ["send_email"]
    assert EXECUTED == []
    assert str(response) == "I have no suitable tool."
