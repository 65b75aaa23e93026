"""QTA tool selection in LangGraph: the selector, follow-ups, and the whole agent loop offline."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import BaseTool, tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import Field

from qta_integrations import QTAPipeline, QTARetriever, RunnableRewriter
from qta_integrations.agents import (
    ConversationQuery,
    QTAToolSelector,
    conversation_query,
    create_qta_agent,
)
from qta_integrations.fusion import FusionWeights
from qta_integrations.settings import RetrievalSettings
from qta_integrations.testing import FakeRewriter, KeywordEmbeddings

# -- tools that really run ---------------------------------------------------------------

EXECUTED: list[tuple[str, dict[str, Any]]] = []


@tool
def get_weather(city: str) -> str:
    """Weather forecast for a city: temperature, rain, wind."""
    EXECUTED.append(("get_weather", {"city": city}))
    return f"Forecast for {city}: 18 C, light rain."


@tool
def get_stock_price(ticker: str) -> str:
    """Latest stock price of a company ticker symbol."""
    EXECUTED.append(("get_stock_price", {"ticker": ticker}))
    return f"{ticker}: 123.45 USD"


@tool
def send_email(to: str, body: str) -> str:
    """Send an email message to a recipient address."""
    EXECUTED.append(("send_email", {"to": to, "body": body}))
    return f"Email sent to {to}."


@tool
def translate_text(text: str, language: str) -> str:
    """Translate text into another language, for example French."""
    EXECUTED.append(("translate_text", {"text": text, "language": language}))
    return f"[{language}] {text}"


@tool
def create_event(title: str, date: str) -> str:
    """Create a calendar event on a date such as tomorrow."""
    EXECUTED.append(("create_event", {"title": title, "date": date}))
    return f"Event {title!r} created on {date}."


@tool
def plan_route(origin: str, destination: str) -> str:
    """Driving directions with travel time between two places."""
    EXECUTED.append(("plan_route", {"origin": origin, "destination": destination}))
    return f"{origin} -> {destination}: 4 h 30 min."


TOOLS: list[BaseTool] = [
    get_weather,
    get_stock_price,
    send_email,
    translate_text,
    create_event,
    plan_route,
]


@pytest.fixture(autouse=True)
def _clear_executed() -> Iterator[None]:
    EXECUTED.clear()
    yield
    EXECUTED.clear()


# -- a scripted chat model with bind_tools -------------------------------------------------


class ScriptedToolModel(GenericFakeChatModel):
    """Replies from a script, records what was bound and seen, and (like a real tool-calling API)
    refuses a tool call to a tool that was not bound."""

    bound: list[str] = Field(default_factory=list)
    bind_log: list[list[str]] = Field(default_factory=list)
    seen: list[list[BaseMessage]] = Field(default_factory=list)

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedToolModel:  # type: ignore[override]
        names = [
            t.name if isinstance(t, BaseTool) else convert_to_openai_tool(t)["function"]["name"]
            for t in tools
        ]
        self.bind_log.append(names)
        # A shallow copy shares the script iterator and the logs with the original.
        return self.model_copy(update={"bound": names})

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.seen.append(list(messages))
        result = super()._generate(messages, *args, **kwargs)
        for call in result.generations[0].message.tool_calls:
            if call["name"] not in self.bound:
                msg = f"The model called {call['name']!r}, which is not bound ({self.bound})."
                raise AssertionError(msg)
        return result


def call(name: str, call_id: str, **args: Any) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}])


def scripted(*replies: AIMessage | str) -> ScriptedToolModel:
    return ScriptedToolModel(messages=iter(replies))


PAPER = FusionWeights.paper()
"""The paper's fusion: the rewrite is weighed, so the rewriter runs (the default never calls it)."""


def keyword_retriever(
    rewriter: Any = None, k: int = 2, *, fusion: FusionWeights | None = None
) -> QTARetriever:
    return QTARetriever(
        tools=TOOLS,
        embeddings=KeywordEmbeddings(),
        rewriter=rewriter,
        k=k,
        settings=RetrievalSettings(fusion=fusion or FusionWeights()),
    )


# -- conversation_query --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "context_turns", "expected"),
    [
        ([("user", "weather in Paris?")], 2, ConversationQuery("weather in Paris?")),
        (
            [("user", "weather in Paris?"), ("ai", "Sunny."), ("user", "and tomorrow?")],
            2,
            ConversationQuery(
                "and tomorrow?", ("weather in Paris?",), "weather in Paris? and tomorrow?"
            ),
        ),
        (
            [("user", "a"), ("user", "b"), ("user", "c"), ("user", "d")],
            2,
            ConversationQuery("d", ("a", "b", "c"), "b c d"),
        ),
        (
            [("user", "weather in Paris?"), ("user", "and tomorrow?")],
            0,
            ConversationQuery("and tomorrow?", ("weather in Paris?",), None),
        ),
        (
            [
                SystemMessage("be nice"),
                {"role": "user", "content": "weather in Paris?"},
                AIMessage("", tool_calls=[{"name": "get_weather", "args": {}, "id": "1"}]),
                ToolMessage("rain", tool_call_id="1"),
                HumanMessage([{"type": "text", "text": "and tomorrow?"}]),
                HumanMessage("   "),
            ],
            1,
            ConversationQuery(
                "and tomorrow?", ("weather in Paris?",), "weather in Paris? and tomorrow?"
            ),
        ),
    ],
)
def test_conversation_query(
    messages: list[Any], context_turns: int, expected: ConversationQuery
) -> None:
    assert conversation_query(messages, context_turns=context_turns) == expected


def test_conversation_query_errors() -> None:
    with pytest.raises(ValueError, match="no user message"):
        conversation_query([("ai", "hello"), SystemMessage("x")])
    with pytest.raises(ValueError, match="context_turns must be >= 0, got -1"):
        conversation_query([("user", "hi")], context_turns=-1)


# -- follow-ups: the context search, measured with KeywordEmbeddings and no rewriter ---------

# (first turn, follow-up, the tool the follow-up needs). The follow-ups alone share words with
# another tool ("tomorrow" -> create_event, "date" -> create_event, "address" -> send_email) or
# with the right one ("French" -> translate_text); the last one changes topic.
FOLLOW_UPS = [
    ("What is the weather forecast in Paris?", "And tomorrow?", "get_weather"),
    ("Latest stock price of ACME?", "And on that date last year?", "get_stock_price"),
    (
        "Driving directions from Paris to Lyon, please.",
        "What about from the address of my hotel?",
        "plan_route",
    ),
    ("Translate 'good morning' into Spanish.", "And into French?", "translate_text"),
    ("What is the weather forecast in Paris?", "Send an email message to Bob.", "send_email"),
]


def top1(selector: QTAToolSelector, first: str, follow_up: str) -> str:
    return selector.select([("user", first), ("ai", "Done."), ("user", follow_up)])[0]


def test_context_search_keeps_the_topic_of_follow_ups() -> None:
    retriever = keyword_retriever(k=2)
    with_context = QTAToolSelector(retriever)
    last_turn_only = QTAToolSelector(retriever, context_turns=0)
    hits_context = [top1(with_context, f, u) == gold for f, u, gold in FOLLOW_UPS]
    hits_last = [top1(last_turn_only, f, u) == gold for f, u, gold in FOLLOW_UPS]
    # Measured (this test): top-1 correct on 4/5 follow-ups with the context search, 2/5 without.
    # The miss: "date" is also a parameter of create_event, whose indexed text names it.
    assert hits_context == [True, False, True, True, True]
    assert hits_last == [False, False, False, True, True]


@pytest.mark.parametrize(("first", "follow_up", "gold"), FOLLOW_UPS)
async def test_aselect_matches_select(first: str, follow_up: str, gold: str) -> None:
    selector = QTAToolSelector(keyword_retriever(k=3))
    messages = [("user", first), ("user", follow_up)]
    assert await selector.aselect(messages) == selector.select(messages)
    assert gold in await selector.aselect(messages)  # bound, if not first (see above)


def test_rewriter_sees_the_earlier_turns() -> None:
    prompts: list[str] = []

    def chat(messages: list[BaseMessage]) -> str:
        prompt = messages[-1].text
        prompts.append(prompt)
        if "weather forecast" in prompt and "Request: And tomorrow?" in prompt:
            return "Weather forecast for a city tomorrow."
        return "Something unrelated."

    retriever = keyword_retriever(rewriter=RunnableRewriter(RunnableLambda(chat)), fusion=PAPER)
    # context_turns=0: only the rewriter can resolve the follow-up.
    selector = QTAToolSelector(retriever, context_turns=0, k=1)
    assert selector.select(
        [("user", "What is the weather forecast in Paris?"), ("user", "And tomorrow?")]
    ) == ["get_weather"]
    assert (
        "Earlier in the conversation the user said:\n- What is the weather forecast in Paris?"
        in prompts[-1]
    )


def test_selector_validates_tools_and_arguments() -> None:
    retriever = keyword_retriever()
    with pytest.raises(ValueError, match=r"have no tool in tools: \['plan_route'\]"):
        QTAToolSelector(retriever, TOOLS[:-1])
    with pytest.raises(TypeError, match="a QTAPipeline, got list"):
        QTAToolSelector([1, 2])
    with pytest.raises(ValueError, match="context_weight must be in"):
        QTAToolSelector(retriever, context_weight=1.5)
    with pytest.raises(ValueError, match="k must be a positive int, got 0"):
        QTAToolSelector(retriever, k=0)
    selector = QTAToolSelector(retriever)
    with pytest.raises(ValueError, match=r"No tool for id\(s\) \['nope'\]"):
        selector.tools_for(["nope"])
    with pytest.raises(TypeError, match="has no bind_tools"):
        selector.bind(object(), ["get_weather"])


def test_selector_takes_a_mapping_for_catalogues_with_their_own_ids() -> None:
    dicts = [
        {"id": f"t{i}", "name": t.name, "description": t.description} for i, t in enumerate(TOOLS)
    ]
    pipeline = QTAPipeline.from_tools(dicts, embeddings=KeywordEmbeddings(), rewriter=None, k=1)
    with pytest.raises(ValueError, match="pass tools="):
        QTAToolSelector(pipeline)  # the catalogue holds no LangChain tools
    selector = QTAToolSelector(pipeline, {f"t{i}": t for i, t in enumerate(TOOLS)})
    ids = selector.select([("user", "send an email message to Bob")])
    assert ids == ["t2"]
    assert selector.tools_for(ids) == [send_email]


def test_plain_functions_become_tools() -> None:
    def shout(text: str) -> str:
        """Repeat text in capital letters."""
        return text.upper()

    dicts = [{"id": "shout", "name": "shout", "description": "Repeat text in capital letters."}]
    pipeline = QTAPipeline.from_tools(dicts, embeddings=KeywordEmbeddings(), rewriter=None, k=1)
    selector = QTAToolSelector(pipeline, [shout])
    (bound,) = selector.tools_for(selector.select([("user", "capital letters please")]))
    assert bound.invoke({"text": "hi"}) == "HI"


# -- the whole agent loop --------------------------------------------------------------------


def test_agent_loop_binds_the_retrieved_tools_and_runs_them_over_two_turns() -> None:
    model = scripted(
        call("get_weather", "c1", city="Paris"),
        "It will rain in Paris.",
        call("get_weather", "c2", city="Paris (tomorrow)"),
        "Tomorrow: rain again.",
    )
    agent = create_qta_agent(
        model,
        TOOLS,
        keyword_retriever(k=2),
        prompt="You are a travel assistant.",
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": "t1"}}

    state = agent.invoke({"messages": [("user", "What is the weather forecast in Paris?")]}, config)
    assert state["selected_tool_ids"][0] == "get_weather"
    assert len(state["selected_tool_ids"]) == 2
    assert model.bind_log == [state["selected_tool_ids"]] * 2  # bound for each model call
    assert EXECUTED == [("get_weather", {"city": "Paris"})]
    tool_message = state["messages"][-2]
    assert isinstance(tool_message, ToolMessage)
    assert tool_message.content == "Forecast for Paris: 18 C, light rain."
    assert state["messages"][-1].content == "It will rain in Paris."
    assert isinstance(model.seen[0][0], SystemMessage)
    assert model.seen[0][0].content == "You are a travel assistant."

    # The follow-up alone ("And tomorrow?") matches create_event; the conversation keeps weather.
    state = agent.invoke({"messages": [("user", "And tomorrow?")]}, config)
    assert state["selected_tool_ids"][0] == "get_weather"
    assert EXECUTED[-1] == ("get_weather", {"city": "Paris (tomorrow)"})
    assert state["messages"][-1].content == "Tomorrow: rain again."
    assert [m.type for m in state["messages"]] == ["human", "ai", "tool", "ai"] * 2


def test_agent_cannot_call_a_tool_that_was_not_retrieved() -> None:
    model = scripted(call("plan_route", "c1", origin="a", destination="b"))
    agent = create_qta_agent(model, TOOLS, keyword_retriever(k=1))
    with pytest.raises(AssertionError, match="'plan_route', which is not bound"):
        agent.invoke({"messages": [("user", "Send an email message to Bob.")]})


async def test_agent_loop_async_uses_the_async_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    rewriter = FakeRewriter(
        {"Need to mail Bob the notes.": "Send an email message to a recipient."}
    )
    retriever = keyword_retriever(rewriter=rewriter, k=1, fusion=PAPER)

    def no_sync(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the async graph must not call the sync pipeline")

    monkeypatch.setattr(retriever.pipeline, "retrieve", no_sync)
    monkeypatch.setattr(retriever.pipeline.index, "search", no_sync)
    model = scripted(call("send_email", "c1", to="bob@example.com", body="notes"), "Sent.")
    agent = create_qta_agent(model, TOOLS, retriever)
    state = await agent.ainvoke({"messages": [("user", "Need to mail Bob the notes.")]})
    assert state["selected_tool_ids"] == ["send_email"]
    assert rewriter.calls == ["Need to mail Bob the notes."]
    assert EXECUTED == [("send_email", {"to": "bob@example.com", "body": "notes"})]
    assert state["messages"][-1].content == "Sent."


def test_selector_node_in_a_custom_graph() -> None:
    from langgraph.graph import END, START, StateGraph

    from qta_integrations.agents import QTAAgentState

    selector = QTAToolSelector(keyword_retriever(k=1))
    builder = StateGraph(QTAAgentState)
    builder.add_node("select_tools", selector.as_node())
    builder.add_edge(START, "select_tools")
    builder.add_edge("select_tools", END)
    graph = builder.compile()
    state = graph.invoke({"messages": [("user", "Translate this into French")]})
    assert state["selected_tool_ids"] == ["translate_text"]
    state = asyncio.run(graph.ainvoke({"messages": [("user", "latest stock price of ACME")]}))
    assert state["selected_tool_ids"] == ["get_stock_price"]
