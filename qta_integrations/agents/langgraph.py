"""LangGraph tool selection with QTA: retrieve the tools for each turn and bind only those.

A model with hundreds of tools bound is slow, expensive and confused. Here each user turn goes
through the QTA pipeline (query, rewrite, fused ranking), and only the top ``k`` tools are bound
to the chat model for that turn:

* `QTAToolSelector` turns a conversation into tool ids (and back into tools to bind). The rewriter
  sees the earlier user turns, and the retrieval query itself is made robust for follow-ups
  ("and in Berlin?") by fusing in a search with the recent turns (see `conversation_query`).
* `create_qta_agent` is a ready graph: ``select_tools -> agent <-> tools``.
* `bigtool_retrieve_functions` plugs the pipeline into ``langgraph_bigtool.create_agent``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage, convert_to_messages
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import BaseTool
from langgraph.graph import MessagesState

from qta_integrations.pipeline import QTAPipeline, RetrievalResult
from qta_integrations.retrievers.base import PipelineFace, pipeline_of
from qta_integrations.selection import ToolSelection
from qta_integrations.settings import RetrievalSettings
from qta_integrations.sources.langchain import tool_from_langchain
from qta_integrations.tools import ToolCatalog
from qta_integrations.validation import check_positive_int, has_visible_text

__all__ = [
    "ConversationQuery",
    "QTAAgentState",
    "QTAToolSelector",
    "bigtool_retrieve_functions",
    "conversation_query",
    "create_qta_agent",
]

DEFAULT_CONTEXT_TURNS = 2
DEFAULT_CONTEXT_WEIGHT = 0.5


class QTAAgentState(MessagesState):
    """The state of `create_qta_agent`: the messages and the tool ids bound for this turn."""

    selected_tool_ids: list[str]


@dataclass(frozen=True)
class ConversationQuery:
    """What tool retrieval uses from a conversation.

    Attributes:
        query: The last user turn: what the pipeline retrieves and rewrites.
        history: The earlier user turns, oldest first, shown to the rewriter.
        context_query: The last user turn preceded by up to ``context_turns`` earlier user turns,
            searched as well so that an elliptical follow-up keeps the topic; None on the first
            turn (or with ``context_turns=0``).
    """

    query: str
    history: tuple[str, ...] = ()
    context_query: str | None = None


def conversation_query(
    messages: Sequence[Any], *, context_turns: int = DEFAULT_CONTEXT_TURNS
) -> ConversationQuery:
    """Extract the retrieval query, the history and the follow-up context from a conversation.

    Only user turns count: assistant replies and tool results describe answers, not needs.

    Args:
        messages: LangChain messages, or anything ``convert_to_messages`` accepts
            (``("user", "...")`` tuples, ``{"role": ..., "content": ...}`` dicts, strings).
        context_turns: Earlier user turns joined to the last one in ``context_query``.

    Raises:
        ValueError: if there is no user message with visible text (turns of only whitespace,
            control or zero-width characters are skipped), or ``context_turns`` is negative.

    Example:
        >>> cq = conversation_query([("user", "weather in Paris?"), ("ai", "Sunny."),
        ...                          ("user", "and in Berlin?")])
        >>> cq.query, cq.history, cq.context_query
        ('and in Berlin?', ('weather in Paris?',), 'weather in Paris? and in Berlin?')
    """
    if context_turns < 0:
        msg = (
            f"context_turns must be >= 0, got {context_turns}. Use 0 to search the last turn only."
        )
        raise ValueError(msg)
    turns = [
        m.text.strip()
        for m in convert_to_messages(list(messages))
        if isinstance(m, HumanMessage) and has_visible_text(m.text)
    ]
    if not turns:
        msg = (
            "The conversation has no user message to retrieve tools for; got "
            f"{len(messages)} message(s). Add a HumanMessage (or a ('user', text) tuple)."
        )
        raise ValueError(msg)
    *history, query = turns
    context = None
    if history and context_turns:
        context = " ".join([*history[-context_turns:], query])
    return ConversationQuery(query=query, history=tuple(history), context_query=context)


ToolsArg = Sequence[BaseTool | Callable[..., Any]] | Mapping[str, BaseTool | Callable[..., Any]]


def _as_langchain_tool(tool: Any) -> BaseTool:
    if isinstance(tool, BaseTool):
        return tool
    if callable(tool):
        from langchain_core.tools import tool as to_tool

        return to_tool(tool)
    msg = f"Expected a LangChain BaseTool or a function, got {type(tool).__name__}: {tool!r}."
    raise TypeError(msg)


def _registry(tools: ToolsArg | None, catalog: ToolCatalog | None) -> dict[str, BaseTool]:
    """Map tool ids to LangChain tools: a mapping as given, a sequence keyed by tool name."""
    if tools is None:
        if catalog is None:  # pragma: no cover - guarded by callers
            msg = "Pass tools= or a retriever."
            raise ValueError(msg)
        missing = [t.id for t in catalog if not isinstance(t.obj, BaseTool)]
        if missing:
            msg = (
                f"The retriever's catalogue was not built from LangChain tools ({len(missing)} "
                f"ids have none, e.g. {missing[:3]}); pass tools={{tool_id: tool, ...}}."
            )
            raise ValueError(msg)
        return {t.id: t.obj for t in catalog}
    if isinstance(tools, Mapping):
        registry = {str(k): _as_langchain_tool(v) for k, v in tools.items()}
    else:
        registry = {}
        for item in tools:
            tool = _as_langchain_tool(item)
            if tool.name in registry:
                msg = f"Two tools are named {tool.name!r}; tool names must be unique."
                raise ValueError(msg)
            registry[tool.name] = tool
    if not registry:
        msg = "tools is empty: pass at least one LangChain tool or function."
        raise ValueError(msg)
    if catalog is not None:
        missing = [i for i in catalog.ids if i not in registry]
        if missing:
            msg = (
                f"{len(missing)} tool id(s) of the retriever's catalogue have no tool in tools: "
                f"{missing[:5]}. Sequence tools are keyed by name; when the catalogue ids differ "
                "from the tool names, pass tools={tool_id: tool, ...}."
            )
            raise ValueError(msg)
    return registry


def _catalog_from_registry(registry: Mapping[str, BaseTool]) -> ToolCatalog:
    return ToolCatalog(tool_from_langchain(t, tool_id=tool_id) for tool_id, t in registry.items())


class QTAToolSelector(PipelineFace):
    """Select the tools for a conversation's last user turn with the QTA pipeline.

    The selector ranks nothing itself: it reads the conversation (`conversation_query`) and asks
    the pipeline for the turn's selection (`QTAPipeline.retrieve_turn`). For the last user turn
    ``q`` with earlier user turns ``h``, the pipeline retrieves for ``q`` (its rewriter sees
    ``h``); when there is history, it also searches the recent turns joined
    (`ConversationQuery.context_query`) and fuses the two rankings (weight ``context_weight`` on
    the context search). So a follow-up such as "and tomorrow?" keeps the earlier topic's tools,
    while a new request still ranks its own tools first. The top ``k`` ids are returned;
    `tools_for` maps them back to the LangChain tools to bind. With a `ToolSelection`
    (``selection=``, or the pipeline's), the tools of ``always_include`` come after them on every
    turn, and a score cut-off decides how many retrieved tools are bound, from the scores of the
    query's own retrieval.

    Args:
        retriever: A `QTARetriever` or a `QTAPipeline`.
        tools: The LangChain tools (or functions), keyed by name, or a ``{tool_id: tool}``
            mapping. Default: the tools the retriever's catalogue was built from.
        k: Tools bound per turn (the most, with a score cut-off), not counting those always
            included: written to the pipeline's ``settings.k``, which `k` reads; default the
            settings' own.
        context_turns: Earlier user turns joined to the last one for the context search
            (0 searches the last turn only).
        context_weight: Weight of the context search in the fused score, in [0, 1].
        selection: Tools bound on every turn and a score cut-off (`ToolSelection`); default
            the pipeline's (``settings.selection``).

    Example:
        .. code-block:: python

            from langchain_core.tools import tool
            from qta_integrations import QTARetriever
            from qta_integrations.agents import QTAToolSelector
            from qta_integrations.testing import KeywordEmbeddings

            @tool
            def get_weather(city: str) -> str:
                \"\"\"Weather forecast for a city: temperature, rain and wind.\"\"\"
                return f"Sunny in {city}."

            @tool
            def send_email(to: str, body: str) -> str:
                \"\"\"Send an email message to a recipient.\"\"\"
                return "sent"

            retriever = QTARetriever(tools=[get_weather, send_email],
                                     embeddings=KeywordEmbeddings(), rewriter=None, k=1)
            selector = QTAToolSelector(retriever)
            print(selector.select([("user", "weather forecast for Paris?"),
                                   ("user", "and for Berlin?")]))  # ['get_weather']
    """

    pipeline: QTAPipeline
    """The pipeline the selector asks for each turn's tools."""

    def __init__(
        self,
        retriever: Any,
        tools: ToolsArg | None = None,
        *,
        k: int | None = None,
        context_turns: int = DEFAULT_CONTEXT_TURNS,
        context_weight: float = DEFAULT_CONTEXT_WEIGHT,
        selection: ToolSelection | None = None,
    ) -> None:
        self.pipeline = pipeline_of(retriever)
        self.pipeline.selection_for(selection)  # fail now for unknown tool ids
        self.selection = selection
        if k is not None:
            check_positive_int("k", k)
        if context_turns < 0:
            msg = f"context_turns must be >= 0, got {context_turns}."
            raise ValueError(msg)
        if not 0.0 <= context_weight <= 1.0:
            msg = f"context_weight must be in [0, 1], got {context_weight}. Use 0 to ignore it."
            raise ValueError(msg)
        if k is not None:
            self.k = k
        self.context_turns = context_turns
        self.context_weight = context_weight
        self._given = tools
        catalog = self.pipeline.catalog
        self._registry: tuple[ToolCatalog, dict[str, BaseTool]] = (
            catalog,
            _registry(tools, catalog),
        )

    @property
    def tools(self) -> dict[str, BaseTool]:
        """Tool id -> LangChain tool, for the pipeline's current catalogue.

        Built again when the catalogue is replaced (`QTAPipeline.update_catalog`), so tools
        taken from the catalogue (``tools=None``) follow a re-sync.
        """
        catalog = self.pipeline.catalog
        if self._registry[0] is not catalog:
            self._registry = (catalog, _registry(self._given, catalog))
        return self._registry[1]

    # -- selection ----------------------------------------------------------------------

    def select(self, messages: Sequence[Any]) -> list[str]:
        """Tool ids for the last user turn: the best (at most ``k``), then those always included."""
        return [tool_id for tool_id, _ in self.select_scored(messages)]

    async def aselect(self, messages: Sequence[Any]) -> list[str]:
        """Async `select` (`QTAPipeline.aretrieve_turn`: the store and rewriter are awaited)."""
        return [tool_id for tool_id, _ in await self.aselect_scored(messages)]

    def select_scored(self, messages: Sequence[Any]) -> list[tuple[str, float | None]]:
        """`select` with scores: ``(tool id, score)``, the score each tool was ranked by.

        The score is the pipeline's fused score, or with a context search the fused score of
        the two searches (`qta_integrations.ranking.fuse_hits`); None for a tool that is always
        included.
        """
        cq = conversation_query(messages, context_turns=self.context_turns)
        return _scored(self.pipeline.retrieve_turn(cq.query, **self._turn(cq)))

    async def aselect_scored(self, messages: Sequence[Any]) -> list[tuple[str, float | None]]:
        """Async `select_scored`."""
        cq = conversation_query(messages, context_turns=self.context_turns)
        return _scored(await self.pipeline.aretrieve_turn(cq.query, **self._turn(cq)))

    def _turn(self, cq: ConversationQuery) -> dict[str, Any]:
        return {
            "history": cq.history,
            "context_query": cq.context_query,
            "context_weight": self.context_weight,
            "selection": self.selection,
        }

    def tools_for(self, tool_ids: Sequence[str]) -> list[BaseTool]:
        """The LangChain tools for ``tool_ids``.

        Raises:
            ValueError: naming the ids that have no tool.
        """
        missing = [i for i in tool_ids if i not in self.tools]
        if missing:
            msg = f"No tool for id(s) {missing}; known ids look like {list(self.tools)[:5]}."
            raise ValueError(msg)
        return [self.tools[i] for i in tool_ids]

    def bind(self, model: Any, tool_ids: Sequence[str]) -> Any:
        """``model.bind_tools(...)`` with the tools for ``tool_ids`` only."""
        if not hasattr(model, "bind_tools"):
            msg = (
                f"{type(model).__name__} has no bind_tools(); use a LangChain chat model that "
                "supports tool calling (ChatOpenAI, ChatAnthropic, ChatOllama, ...)."
            )
            raise TypeError(msg)
        return model.bind_tools(self.tools_for(tool_ids))

    # -- LangGraph ----------------------------------------------------------------------

    def as_node(self) -> RunnableLambda:
        """A LangGraph node: reads ``messages``, writes ``selected_tool_ids`` (sync and async)."""

        def select_tools(state: Mapping[str, Any]) -> dict[str, Any]:
            return {"selected_tool_ids": self.select(state["messages"])}

        async def aselect_tools(state: Mapping[str, Any]) -> dict[str, Any]:
            return {"selected_tool_ids": await self.aselect(state["messages"])}

        return RunnableLambda(select_tools, afunc=aselect_tools, name="select_tools")


def create_qta_agent(
    model: Any,
    tools: ToolsArg | None = None,
    retriever: Any | None = None,
    *,
    k: int | None = None,
    prompt: str | None = None,
    context_turns: int = DEFAULT_CONTEXT_TURNS,
    context_weight: float = DEFAULT_CONTEXT_WEIGHT,
    selection: ToolSelection | None = None,
    checkpointer: Any | None = None,
    name: str | None = None,
) -> Any:
    """A tool-calling agent that binds only the tools QTA retrieves for each user turn.

    The graph is ``START -> select_tools -> agent -> (tools -> agent)* -> END``: ``select_tools``
    runs once per invocation (`QTAToolSelector`), ``agent`` calls the model with the selected
    tools bound, and ``tools`` (a ``ToolNode`` over all tools) executes its tool calls until the
    model answers without one. The selected ids are in the state as ``selected_tool_ids``.

    Args:
        model: A LangChain chat model with ``bind_tools``.
        tools: LangChain tools or functions (keyed by name), or a ``{tool_id: tool}`` mapping.
            Default: the tools the retriever's catalogue was built from (for example
            `QTARetriever.from_mcp`'s MCP tools).
        retriever: A `QTARetriever` or `QTAPipeline` over the same tools. Default: a pipeline
            with the default embeddings and rewriter, built from ``tools``.
        k: Tools bound per turn; default the pipeline's ``k``.
        prompt: An optional system prompt put before the conversation at each model call.
        context_turns: See `QTAToolSelector`.
        context_weight: See `QTAToolSelector`.
        selection: Tools bound on every turn and a score cut-off (`ToolSelection`); see
            `QTAToolSelector`. Without ``retriever`` it is the new pipeline's own selection.
        checkpointer: A LangGraph checkpointer, for multi-turn conversations by ``thread_id``.
        name: The compiled graph's name.

    Returns:
        The compiled graph; invoke it with ``{"messages": [("user", "...")]}`` (``ainvoke``
        for async tools such as MCP's). Its ``tools`` node holds the tools of the catalogue
        it was built with: after `QTAPipeline.update_catalog`, build the agent again.

    Example:
        .. code-block:: python

            from langchain_openai import ChatOpenAI
            from qta_integrations.agents import create_qta_agent

            agent = create_qta_agent(ChatOpenAI(model="gpt-4o-mini"), tools, k=3)
            state = agent.invoke({"messages": [("user", "Do I need an umbrella in Paris?")]})
            print(state["selected_tool_ids"], state["messages"][-1].content)
    """
    from langgraph.graph import END, START, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    if retriever is None:
        if tools is None:
            msg = "create_qta_agent needs tools=, retriever=, or both."
            raise ValueError(msg)
        registry = _registry(tools, None)
        settings = RetrievalSettings(selection=selection or ToolSelection())
        retriever = QTAPipeline.from_tools(_catalog_from_registry(registry), settings=settings)
        selection = None  # the pipeline's own now: fitted when adaptive
    selector = QTAToolSelector(
        retriever,
        tools,
        k=k,
        context_turns=context_turns,
        context_weight=context_weight,
        selection=selection,
    )
    system = [SystemMessage(prompt)] if prompt else []

    def _messages(state: QTAAgentState) -> list[BaseMessage]:
        return [*system, *state["messages"]]

    def call_model(state: QTAAgentState) -> dict[str, Any]:
        bound = selector.bind(model, state["selected_tool_ids"])
        return {"messages": [bound.invoke(_messages(state))]}

    async def acall_model(state: QTAAgentState) -> dict[str, Any]:
        bound = selector.bind(model, state["selected_tool_ids"])
        return {"messages": [await bound.ainvoke(_messages(state))]}

    builder = StateGraph(QTAAgentState)
    builder.add_node("select_tools", selector.as_node())
    builder.add_node("agent", RunnableLambda(call_model, afunc=acall_model, name="agent"))
    builder.add_node("tools", ToolNode(list(selector.tools.values())))
    builder.add_edge(START, "select_tools")
    builder.add_edge("select_tools", "agent")
    builder.add_conditional_edges("agent", tools_condition, {"tools": "tools", END: END})
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=checkpointer, name=name)


def bigtool_retrieve_functions(
    retriever: Any, *, k: int = 2
) -> tuple[Callable[[str], list[str]], Callable[[str], Awaitable[list[str]]]]:
    """The ``retrieve_tools_function`` / ``retrieve_tools_coroutine`` pair for langgraph-bigtool.

    ``langgraph_bigtool.create_agent`` gives the model a ``retrieve_tools(query)`` tool; these
    functions answer it with QTA retrieval and return tool ids, which must be the keys of the
    agent's ``tool_registry`` (for a catalogue built from LangChain tools: the tool names). The
    coroutine awaits `QTAPipeline.aretrieve`, so the event loop is never blocked.

    Args:
        retriever: A `QTARetriever` or `QTAPipeline`.
        k: Tool ids returned per call (bigtool's own default ``limit`` is 2).

    Example:
        .. code-block:: python

            from langgraph_bigtool import create_agent
            from qta_integrations.agents import bigtool_retrieve_functions

            retrieve, aretrieve = bigtool_retrieve_functions(retriever, k=2)
            builder = create_agent(llm, {t.name: t for t in tools},
                                   retrieve_tools_function=retrieve,
                                   retrieve_tools_coroutine=aretrieve)
            agent = builder.compile()
    """
    pipeline = pipeline_of(retriever)
    check_positive_int("k", k)

    def retrieve_tools(query: str) -> list[str]:
        """Retrieve tools to use, given a search query that describes what you need to do."""
        return pipeline.retrieve(query, k=k).tool_ids

    async def aretrieve_tools(query: str) -> list[str]:
        """Retrieve tools to use, given a search query that describes what you need to do."""
        return (await pipeline.aretrieve(query, k=k)).tool_ids

    return retrieve_tools, aretrieve_tools


def _scored(result: RetrievalResult) -> list[tuple[str, float | None]]:
    # The turn's ranking score of each tool; None for a tool that is always included.
    return [(t.tool.id, None if t.always_included else t.score) for t in result.tools]
