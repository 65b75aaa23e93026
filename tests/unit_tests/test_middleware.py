"""QTAToolSelectorMiddleware in a real langchain.agents.create_agent, offline: 50 tools, a scripted
chat model that records the tools offered on each call, several turns, sync and async."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from langchain.agents import create_agent
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool, StructuredTool, tool
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import Field

import qta_integrations.agents
from qta_integrations import QTARetriever, ToolSelection
from qta_integrations.agents import QTAToolSelector, QTAToolSelectorMiddleware
from qta_integrations.agents.middleware import SELECTION_RUN_NAME
from qta_integrations.testing import KeywordEmbeddings

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
def create_event(title: str, date: str) -> str:
    """Create a calendar event on a date such as tomorrow."""
    EXECUTED.append(("create_event", {"title": title, "date": date}))
    return f"Event {title!r} created on {date}."


NOUNS = [
    "invoice",
    "shipment",
    "pallet",
    "vendor",
    "warehouse",
    "coupon",
    "refund",
    "badge",
    "locker",
    "printer",
    "laptop",
    "license",
    "voucher",
    "parcel",
    "ledger",
]
VERBS = ("archive", "audit", "count")


def _filler(verb: str, noun: str) -> BaseTool:
    def run(record_id: str) -> str:
        EXECUTED.append((f"{verb}_{noun}", {"record_id": record_id}))
        return f"{verb} {noun} {record_id}: done"

    return StructuredTool.from_function(
        run, name=f"{verb}_{noun}", description=f"{verb.title()} a {noun} record by its id."
    )


NEEDED = [get_weather, get_stock_price, send_email, create_event]
FILLER = [*(_filler(v, n) for n in NOUNS for v in VERBS), _filler("tag", "parcel")]
TOOLS: list[BaseTool] = [*NEEDED, *FILLER]
assert len(TOOLS) == 50 and len({t.name for t in TOOLS}) == 50


@pytest.fixture(autouse=True)
def _clear_executed() -> Iterator[None]:
    EXECUTED.clear()
    yield
    EXECUTED.clear()


class RecordingModel(GenericFakeChatModel):
    """Replies from a script and records the names of the tools bound for each call."""

    bind_log: list[list[str]] = Field(default_factory=list)
    seen: list[list[BaseMessage]] = Field(default_factory=list)

    def bind_tools(self, tools: Any, **kwargs: Any) -> RecordingModel:  # type: ignore[override]
        self.bind_log.append([t.name if isinstance(t, BaseTool) else t["name"] for t in tools])
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


def call(name: str, call_id: str, **args: Any) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}])


def scripted(*replies: AIMessage | str) -> RecordingModel:
    return RecordingModel(messages=iter(replies))


def keyword_retriever(tools: list[BaseTool] = TOOLS, **kwargs: Any) -> QTARetriever:
    return QTARetriever(tools=tools, embeddings=KeywordEmbeddings(), rewriter=None, **kwargs)


class SelectionRuns(BaseCallbackHandler):
    """Collects the outputs of the traced selection runs."""

    def __init__(self) -> None:
        self.names: dict[UUID, str] = {}
        self.outputs: list[Any] = []

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kw: Any) -> None:
        self.names[run_id] = kw.get("name") or ""

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kw: Any) -> None:
        if self.names.get(run_id) == SELECTION_RUN_NAME:
            self.outputs.append(outputs)


def count_selections(monkeypatch: pytest.MonkeyPatch, selector: QTAToolSelector) -> list[str]:
    """Record the last user turn of every selection the selector computes (sync and async)."""
    calls: list[str] = []
    sync, asynchronous = selector.select_scored, selector.aselect_scored

    def counted(messages: Any) -> Any:
        calls.append(messages[-1].text)
        return sync(messages)

    async def acounted(messages: Any) -> Any:
        calls.append(messages[-1].text)
        return await asynchronous(messages)

    monkeypatch.setattr(selector, "select_scored", counted)
    monkeypatch.setattr(selector, "aselect_scored", acounted)
    return calls


TURNS = [
    "What is the weather forecast in Berlin?",
    "and in Paris?",
    "Latest stock price of ACME?",
    "Send an email message to Bob with the summary",
]


def script() -> RecordingModel:
    return scripted(
        call("get_weather", "c1", city="Berlin"),
        "Light rain in Berlin.",
        call("get_weather", "c2", city="Paris"),
        "Light rain in Paris.",
        call("get_stock_price", "c5", ticker="ACME"),
        "123.45 USD.",
        # get_weather is not offered for this turn: the model calls it anyway (from an earlier
        # turn), and send_email, which is offered.
        AIMessage(
            content="",
            tool_calls=[
                {"name": "get_weather", "args": {"city": "Rome"}, "id": "c3"},
                {"name": "send_email", "args": {"to": "bob", "body": "rain"}, "id": "c4"},
            ],
        ),
        "Done.",
    )


def turn_logs(model: RecordingModel) -> list[list[list[str]]]:
    """The tools bound on each model call, grouped by the user turn the call answered."""
    grouped: dict[str, list[list[str]]] = {}
    for messages, bound in zip(model.seen, model.bind_log, strict=True):
        last_user = next(m.text for m in reversed(messages) if isinstance(m, HumanMessage))
        grouped.setdefault(last_user, []).append(bound)
    return [grouped[t] for t in TURNS]


def check_turns(model: RecordingModel, max_tools: int, always: list[str]) -> None:
    weather, follow_up, stock, email = turn_logs(model)
    for calls in (weather, follow_up, stock, email):
        assert len(calls) == 2  # the tool loop: a call with tool calls, then the answer
        assert calls[0] == calls[1]  # the same selection for both calls of the turn
        bound = calls[0]
        assert len(bound) <= max_tools + len(always)
        assert bound[len(bound) - len(always) :] == always
    assert "get_weather" in weather[0]
    assert "get_weather" in follow_up[0]  # "and in Paris?" keeps the topic
    assert "get_stock_price" in stock[0]
    assert "send_email" in email[0]
    assert "get_weather" not in email[0]
    assert ("get_weather", {"city": "Rome"}) in EXECUTED  # ran although not offered
    assert ("send_email", {"to": "bob", "body": "rain"}) in EXECUTED


def test_agent_offers_the_selected_tools_over_several_turns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    middleware = QTAToolSelectorMiddleware(
        retriever=keyword_retriever(), max_tools=2, always_include=["count_ledger"]
    )
    assert middleware.selector is not None
    selections = count_selections(monkeypatch, middleware.selector)
    model = script()
    agent = create_agent(model, TOOLS, middleware=[middleware], checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t1"}}
    runs = SelectionRuns()
    states = [
        agent.invoke({"messages": [("user", turn)]}, {**config, "callbacks": [runs]})
        for turn in TURNS
    ]

    check_turns(model, max_tools=2, always=["count_ledger"])
    assert selections == TURNS  # one selection per turn, none inside a turn's tool loop
    assert len(model.bind_log) == 8
    rome = [
        m for m in states[3]["messages"] if isinstance(m, ToolMessage) and m.tool_call_id == "c3"
    ]
    assert rome[0].status == "success" and rome[0].text.startswith("Forecast for Rome")
    assert states[3]["messages"][-1].text == "Done."
    # The trace shows each turn's selection: names and scores, in the order offered.
    assert len(runs.outputs) == 4
    first = runs.outputs[0]
    assert [r["name"] for r in first] == model.bind_log[0]
    assert first[0]["name"] == "get_weather" and isinstance(first[0]["score"], float)
    assert first[-1] == {
        "name": "count_ledger",
        "id": "count_ledger",
        "score": None,
        "always_included": True,
    }


async def test_agent_async_path_awaits_the_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    middleware = QTAToolSelectorMiddleware(
        retriever=keyword_retriever(), max_tools=2, always_include=["count_ledger"]
    )
    assert middleware.selector is not None
    selections = count_selections(monkeypatch, middleware.selector)

    def no_sync(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the async agent called the sync selection")

    monkeypatch.setattr(middleware.selector.pipeline, "retrieve", no_sync)
    model = script()
    agent = create_agent(model, TOOLS, middleware=[middleware], checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t1"}}
    for turn in TURNS:
        await agent.ainvoke({"messages": [("user", turn)]}, config)

    check_turns(model, max_tools=2, always=["count_ledger"])
    assert selections == TURNS


def test_selection_matches_the_selector_and_the_retriever() -> None:
    retriever = keyword_retriever(k=2)
    middleware = QTAToolSelectorMiddleware(retriever=retriever)  # max_tools: the retriever's k
    conversation = [("user", "Latest stock price of ACME?")]
    records = middleware.select(conversation)
    assert [r["id"] for r in records] == QTAToolSelector(retriever).select(conversation)
    # A first turn has no context search: the selection is the retriever's own ranking.
    documents = retriever.invoke("Latest stock price of ACME?")
    assert [r["id"] for r in records] == [d.id for d in documents]
    assert [r["score"] for r in records] == pytest.approx(
        [d.metadata["score"] for d in documents], abs=1e-5
    )


async def test_aselect_matches_select() -> None:
    middleware = QTAToolSelectorMiddleware(retriever=keyword_retriever(), max_tools=2)
    conversation = [("user", "weather forecast in Berlin?"), ("user", "and in Paris?")]
    assert await middleware.aselect(conversation) == middleware.select(conversation)


def test_margin_cut_off_and_min_k() -> None:
    retriever = keyword_retriever()
    conversation = [("user", "What is the weather forecast in Berlin?")]
    tight = QTAToolSelectorMiddleware(retriever=retriever, max_tools=5, margin=0.0)
    assert [r["name"] for r in tight.select(conversation)] == ["get_weather"]
    floor = QTAToolSelectorMiddleware(retriever=retriever, max_tools=5, margin=0.0, min_k=3)
    assert len(floor.select(conversation)) == 3
    wide = QTAToolSelectorMiddleware(retriever=retriever, max_tools=5, margin=100.0)
    assert len(wide.select(conversation)) == 5


def test_built_from_the_agents_tools_on_the_first_model_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import qta_integrations.pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "resolve_embeddings", lambda _: KeywordEmbeddings())
    middleware = QTAToolSelectorMiddleware(max_tools=2)  # as LLMToolSelectorMiddleware(...)
    assert middleware.selector is None
    model = scripted(call("get_stock_price", "c1", ticker="ACME"), "123.45 USD.")
    agent = create_agent(model, TOOLS, middleware=[middleware])
    state = agent.invoke({"messages": [("user", "Latest stock price of ACME?")]})
    assert state["messages"][-1].text == "123.45 USD."
    assert middleware.selector is not None
    assert len(middleware.selector.pipeline.catalog) == 50
    assert len(model.bind_log[0]) == 2 and model.bind_log[0][0] == "get_stock_price"
    assert EXECUTED == [("get_stock_price", {"ticker": "ACME"})]


def test_built_from_tools_given_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    import qta_integrations.pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "resolve_embeddings", lambda _: KeywordEmbeddings())
    middleware = QTAToolSelectorMiddleware(tools=TOOLS, max_tools=1)
    assert [r["name"] for r in middleware.select([("user", "Send an email to Ann")])] == [
        "send_email"
    ]


def test_tools_the_retriever_does_not_know_are_passed_on() -> None:
    extra = _filler("shred", "memo")
    middleware = QTAToolSelectorMiddleware(retriever=keyword_retriever(), max_tools=2)
    model = scripted("Sunny.")
    agent = create_agent(model, [*TOOLS, extra], middleware=[middleware])
    agent.invoke({"messages": [("user", "Weather forecast in Oslo?")]})
    assert model.bind_log[0][0] == "get_weather"
    assert model.bind_log[0][-1] == "shred_memo"
    assert len(model.bind_log[0]) == 3


def test_never_sends_an_empty_selection() -> None:
    # The retriever knows only get_weather; the request (another agent) offers none of its tools.
    middleware = QTAToolSelectorMiddleware(retriever=keyword_retriever([get_weather]))
    model = scripted("No weather tool here.")
    agent = create_agent(model, [send_email, get_stock_price], middleware=[middleware])
    agent.invoke({"messages": [("user", "Weather forecast in Oslo?")]})
    assert model.bind_log == [["send_email", "get_stock_price"]]


def test_the_retrievers_own_selection_is_kept() -> None:
    retriever = keyword_retriever(k=2, selection=ToolSelection(always_include=["count_ledger"]))
    middleware = QTAToolSelectorMiddleware(retriever=retriever, always_include=["tag_parcel"])
    names = [r["name"] for r in middleware.select([("user", "Send an email to Ann")])]
    assert names[0] == "send_email" and names[2:] == ["count_ledger", "tag_parcel"]
    assert len(names) == 4


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "3"])
def test_max_tools_below_one_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"max_tools must be an int >= 1.*got .*None for"):
        QTAToolSelectorMiddleware(retriever=keyword_retriever(), max_tools=bad)


def test_bad_arguments_are_refused_with_their_fix() -> None:
    retriever = keyword_retriever()
    with pytest.raises(
        ValueError, match=r"always_include names \['get_wether'\].*did you mean 'get_weather'"
    ):
        QTAToolSelectorMiddleware(retriever=retriever, always_include=["get_wether"])
    with pytest.raises(TypeError, match=r"wrap a single name: always_include=\['get_weather'\]"):
        QTAToolSelectorMiddleware(retriever=retriever, always_include="get_weather")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_k=2 applies to a score cut-off: pass margin="):
        QTAToolSelectorMiddleware(retriever=retriever, min_k=2)
    with pytest.raises(ValueError, match="margin must be >= 0"):
        QTAToolSelectorMiddleware(retriever=retriever, margin=-1.0)
    with pytest.raises(TypeError, match="retriever must be a QTARetriever"):
        QTAToolSelectorMiddleware(retriever="not a retriever")
    with pytest.raises(ValueError, match="context_turns must be an int >= 0, got -1"):
        QTAToolSelectorMiddleware(context_turns=-1)
    with pytest.raises(ValueError, match=r"context_weight must be in \[0, 1\], got 2"):
        QTAToolSelectorMiddleware(context_weight=2)
    lazy = QTAToolSelectorMiddleware()
    with pytest.raises(RuntimeError, match="pass retriever= or tools="):
        lazy.select([("user", "hi")])


def test_unknown_always_include_is_refused_on_the_first_call_when_built_lazily(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import qta_integrations.pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "resolve_embeddings", lambda _: KeywordEmbeddings())
    middleware = QTAToolSelectorMiddleware(always_include=["search_more_tools"])
    agent = create_agent(scripted("hi"), TOOLS, middleware=[middleware])
    with pytest.raises(ValueError, match=r"always_include names \['search_more_tools'\]"):
        agent.invoke({"messages": [("user", "Weather in Oslo?")]})


def test_a_request_without_a_user_message_is_refused() -> None:
    middleware = QTAToolSelectorMiddleware(retriever=keyword_retriever())
    agent = create_agent(scripted("hi"), TOOLS, middleware=[middleware])
    with pytest.raises(ValueError, match="no user message to select tools for"):
        agent.invoke({"messages": [AIMessage("Hello, how can I help?")]})


def test_turn_cache_is_bounded() -> None:
    middleware = QTAToolSelectorMiddleware(retriever=keyword_retriever(), cache_size=2)
    agent = create_agent(scripted("a", "b", "c"), TOOLS, middleware=[middleware])
    for question in ("Weather in Oslo?", "Stock price of ACME?", "Email Ann"):
        agent.invoke({"messages": [("user", question)]})
    assert len(middleware._turns._items) == 2


def test_exported_lazily_with_an_error_naming_the_extra() -> None:
    assert qta_integrations.agents.__all__ == [
        "ConversationQuery",
        "QTAAgentState",
        "QTAToolSelector",
        "QTAToolSelectorMiddleware",
        "bigtool_retrieve_functions",
        "conversation_query",
        "create_qta_agent",
    ]
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        _ = qta_integrations.agents.Nope  # type: ignore[attr-defined]
    code = (
        "import sys\nsys.modules['langchain'] = None\n"
        "import qta_integrations.agents\n"
        "try:\n    qta_integrations.agents.QTAToolSelectorMiddleware\n"
        "except ImportError as err:\n    print(err)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert 'the agents extra of qta-integrations: pip install -e ".[agents]"' in out.stdout


def test_provider_tools_pass_and_the_handler_gets_the_override() -> None:
    from langchain.agents.middleware import ModelRequest, ModelResponse

    middleware = QTAToolSelectorMiddleware(retriever=keyword_retriever(), max_tools=1)
    provider_tool = {"type": "web_search_preview"}
    seen: list[list[Any]] = []

    def handler(request: ModelRequest) -> ModelResponse:
        seen.append(list(request.tools))
        return ModelResponse(result=[AIMessage("ok")])

    request = ModelRequest(
        model=scripted(),
        messages=[HumanMessage("Latest stock price of ACME?", id="m1")],
        tools=[*TOOLS, provider_tool],
    )
    middleware.wrap_model_call(request, handler)
    middleware.wrap_model_call(request, handler)
    assert seen[0] == seen[1] == [get_stock_price, provider_tool]
    assert len(request.tools) == 51  # the request itself is left as it was
    assert len(middleware._turns._items) == 1
