"""Tool selection as LangChain 1.x agent middleware: the retriever picks each turn's tools.

``langchain.agents.create_agent(model, tools, middleware=[...])`` runs its middleware around
every model call. `QTAToolSelectorMiddleware` is a drop-in for LangChain's
``LLMToolSelectorMiddleware``: before a model call it asks the QTA pipeline for the tools of the
conversation's last user turn (`QTAToolSelector`: the same conversation-aware query as
`create_qta_agent`) and hands the model request on with only those tools. No second LLM call is
made, and the selection of a turn is computed once, however many times the model is called in
that turn's tool loop. All tools stay registered with the agent, so a tool call to a tool that
is not offered this turn still executes.

Needs LangChain 1.x: ``pip install -e ".[agents]"``.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_core.tools import BaseTool

from qta_integrations.agents.langgraph import (
    DEFAULT_CONTEXT_TURNS,
    DEFAULT_CONTEXT_WEIGHT,
    QTAToolSelector,
    ToolsArg,
)
from qta_integrations.pipeline import QTAPipeline
from qta_integrations.retrievers.base import pipeline_of
from qta_integrations.selection import ToolSelection
from qta_integrations.validation import check_positive_int, has_visible_text

try:
    from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
except ImportError as err:  # pragma: no cover - exercised in a subprocess by the tests
    msg = (
        "QTAToolSelectorMiddleware needs LangChain 1.x (langchain.agents.create_agent), the "
        'agents extra of qta-integrations: pip install -e ".[agents]" (or pip install '
        '"langchain>=1.0,<2").'
    )
    raise ImportError(msg) from err

__all__ = ["SELECTION_RUN_NAME", "QTAToolSelectorMiddleware"]

logger = logging.getLogger(__name__)

SELECTION_RUN_NAME = "qta_tool_selection"
"""The name of the traced run that computes a turn's selection (its output: the selected tools)."""

DEFAULT_CACHE_SIZE = 1024

_TurnKey = tuple[str | None, tuple[str, ...]]


def _user_turns(request: ModelRequest) -> tuple[str | None, tuple[str, ...]]:
    """The id of the last user message and the text of every user message, oldest first."""
    humans = [
        m for m in request.messages if isinstance(m, HumanMessage) and has_visible_text(m.text)
    ]
    if not humans:
        msg = (
            "QTAToolSelectorMiddleware found no user message to select tools for in the model "
            f"request ({len(request.messages)} message(s)). Invoke the agent with a user turn: "
            '{"messages": [("user", "...")]}.'
        )
        raise ValueError(msg)
    return humans[-1].id, tuple(m.text for m in humans)


def _as_tool(item: Any) -> BaseTool:
    if isinstance(item, BaseTool):
        return item
    if callable(item):
        from langchain_core.tools import tool as to_tool

        return to_tool(item)
    msg = f"Expected a LangChain BaseTool or a function, got {type(item).__name__}: {item!r}."
    raise TypeError(msg)


def _check_always_include(always_include: Sequence[str] | None) -> tuple[str, ...]:
    if always_include is None:
        return ()
    if isinstance(always_include, str) or not isinstance(always_include, Sequence):
        msg = (
            f"always_include must be a list of tool names, got {always_include!r}; wrap a "
            f"single name: always_include=[{always_include!r}]."
        )
        raise TypeError(msg)
    bad = [n for n in always_include if not isinstance(n, str) or not n.strip()]
    if bad:
        msg = f"always_include must hold tool names (non-empty strings), got {bad[:3]!r}."
        raise ValueError(msg)
    return tuple(dict.fromkeys(always_include))


class _Turns:
    """A small thread-safe LRU cache: a turn's key -> its selection."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[_TurnKey, list[dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _TurnKey) -> list[dict[str, Any]] | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: _TurnKey, value: list[dict[str, Any]]) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class QTAToolSelectorMiddleware(AgentMiddleware):
    """Select each turn's tools by retrieval, as ``create_agent`` middleware (no LLM call).

    Before each model call, the conversation's last user turn (with the earlier user turns as
    context, see `QTAToolSelector`) is sent to the retriever, and the model request goes on
    with only the selected tools: the best ``max_tools``, then those of ``always_include``
    (which do not count against ``max_tools``). The selection of a turn (keyed by its last user
    message) is computed once and reused for every model call of that turn's tool loop. The
    agent's other tools stay registered: a tool call to one of them still executes. Tools that
    the retriever does not know (added by other middleware, or provider tools given as dicts)
    are passed on as they are. An empty selection is never sent: if no selected tool is in the
    request, the request goes on unchanged.

    Each selection runs as a traced run named ``"qta_tool_selection"`` (`SELECTION_RUN_NAME`):
    its input is the user turns, its output the selected tools with their scores, so LangSmith
    (or any callback handler) shows what was offered and why.

    Args:
        retriever: A `QTARetriever` or `QTAPipeline` over the agent's tools. Default: a
            pipeline with the default embeddings, built from ``tools`` or, without them, from
            the tools of the first model request (embedded on that first call).
        tools: The LangChain tools (or functions) the retriever's catalogue ids refer to, keyed
            by name, or a ``{tool_id: tool}`` mapping. Default: the tools the retriever was
            built from.
        max_tools: The most retrieved tools offered per model call (with a cut-off, fewer
            when one tool is far ahead); default the retriever's ``k``.
        always_include: Tool names offered on every call, after the retrieved ones; they do
            not count against ``max_tools`` and must be tools of the retriever.
        margin: A score cut-off: keep the tools whose score is within ``margin`` of the top
            one (`ToolSelection`); default the retriever's own selection.
        min_k: With ``margin``, the fewest retrieved tools offered.
        context_turns: Earlier user turns searched with the last one (see `QTAToolSelector`).
        context_weight: Weight of that context search, in [0, 1].
        cache_size: Turns whose selection is kept (least recently used dropped first).

    Raises:
        ValueError: for a ``max_tools`` or ``min_k`` below 1, a ``min_k`` without
            ``margin``, a ``context_turns`` below 0, a ``context_weight`` outside [0, 1], or
            an ``always_include`` name that is not a tool of the retriever (checked on the
            first model call when the retriever is built from the request).

    Setup:
        .. code-block:: bash

            pip install -e ".[agents]"

    Instantiate:
        .. code-block:: python

            from langchain.agents import create_agent
            from langchain_core.tools import tool
            from qta_integrations import QTARetriever
            from qta_integrations.agents import QTAToolSelectorMiddleware
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
                                     embeddings=KeywordEmbeddings(), rewriter=None)
            # was: LLMToolSelectorMiddleware(max_tools=1)
            middleware = QTAToolSelectorMiddleware(retriever=retriever, max_tools=1)

    Usage:
        .. code-block:: python

            agent = create_agent("openai:gpt-4o-mini", [get_weather, send_email],
                                 middleware=[middleware])
            agent.invoke({"messages": [("user", "Weather forecast for Paris?")]})
            # the model is offered get_weather only
            for chosen in middleware.select([("user", "Weather forecast for Paris?")]):
                print(chosen["name"], chosen["score"])  # get_weather 0.485071
    """

    def __init__(
        self,
        *,
        retriever: Any | None = None,
        tools: ToolsArg | None = None,
        max_tools: int | None = None,
        always_include: Sequence[str] | None = None,
        margin: float | None = None,
        min_k: int | None = None,
        context_turns: int = DEFAULT_CONTEXT_TURNS,
        context_weight: float = DEFAULT_CONTEXT_WEIGHT,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        super().__init__()
        if max_tools is not None and (
            isinstance(max_tools, bool) or not isinstance(max_tools, int) or max_tools < 1
        ):
            msg = (
                f"max_tools must be an int >= 1 (the most retrieved tools offered per model "
                f"call), got {max_tools!r}. Pass None for the retriever's k."
            )
            raise ValueError(msg)
        if min_k is not None:
            check_positive_int("min_k", min_k)
            if margin is None:
                msg = (
                    f"min_k={min_k} applies to a score cut-off: pass margin= too (for example "
                    "margin=1.0), or leave min_k out for a fixed max_tools."
                )
                raise ValueError(msg)
        if margin is not None:
            ToolSelection(margin=margin)  # validates it, naming the bad value
        check_positive_int("cache_size", cache_size)
        if (
            isinstance(context_turns, bool)
            or not isinstance(context_turns, int)
            or context_turns < 0
        ):
            msg = (
                f"context_turns must be an int >= 0, got {context_turns!r}; 0 searches the "
                "last turn only."
            )
            raise ValueError(msg)
        if not 0.0 <= context_weight <= 1.0:
            msg = (
                f"context_weight must be in [0, 1], got {context_weight!r}; 0 ignores the context."
            )
            raise ValueError(msg)
        self.max_tools = max_tools
        self.always_include = _check_always_include(always_include)
        self.margin = margin
        self.min_k = min_k
        self.context_turns = context_turns
        self.context_weight = context_weight
        self._turns = _Turns(cache_size)
        self._build_lock = threading.Lock()
        self._selector: QTAToolSelector | None = None
        if retriever is not None or tools is not None:
            self._selector = self._build(retriever, tools)

    # -- the selector -------------------------------------------------------------------

    def _build(self, retriever: Any | None, tools: ToolsArg | None) -> QTAToolSelector:
        """The `QTAToolSelector` for ``retriever`` (default: a pipeline built from ``tools``)."""
        if retriever is None:
            if tools is None:  # pragma: no cover - guarded by callers
                msg = "Pass retriever= or tools=."
                raise ValueError(msg)
            listed = list(tools.values()) if isinstance(tools, Mapping) else list(tools)
            tools = [_as_tool(t) for t in listed]
            if not tools:
                msg = "tools is empty: pass the agent's LangChain tools (or functions)."
                raise ValueError(msg)
            retriever = QTAPipeline.from_tools(tools)
        pipeline = pipeline_of(retriever)
        kwargs: dict[str, Any] = {
            "k": self.max_tools,
            "context_turns": self.context_turns,
            "context_weight": self.context_weight,
        }
        registry = QTAToolSelector(pipeline, tools, **kwargs).tools
        ids_by_name: dict[str, str] = {}
        for tool_id, tool in registry.items():
            if tool.name in ids_by_name:
                msg = (
                    f"Two tools of the retriever are named {tool.name!r} (ids "
                    f"{ids_by_name[tool.name]!r} and {tool_id!r}); an agent needs unique names."
                )
                raise ValueError(msg)
            ids_by_name[tool.name] = tool_id
        unknown = [n for n in self.always_include if n not in ids_by_name]
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(ids_by_name), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "check the tools' names."
            msg = (
                f"always_include names {unknown}, which are not tools of the retriever "
                f"({len(ids_by_name)} tools, e.g. {sorted(ids_by_name)[:3]}); {hint}"
            )
            raise ValueError(msg)
        always = tuple(ids_by_name[n] for n in self.always_include)
        return QTAToolSelector(
            pipeline, tools, selection=self._selection(pipeline, always), **kwargs
        )

    def _selection(self, pipeline: QTAPipeline, always: tuple[str, ...]) -> ToolSelection:
        base = pipeline.selection_for(None)  # the pipeline's own (fitted, when adaptive)
        merged = tuple(dict.fromkeys([*base.always_include, *always]))
        if self.margin is not None:
            return ToolSelection(always_include=merged, margin=self.margin, min_k=self.min_k or 1)
        return base.replace(always_include=merged)

    def _selector_for(self, request: ModelRequest) -> QTAToolSelector | None:
        if self._selector is None:
            tools = [t for t in request.tools if isinstance(t, BaseTool)]
            if not tools:
                return None
            with self._build_lock:
                if self._selector is None:
                    self._selector = self._build(None, tools)
        return self._selector

    @property
    def selector(self) -> QTAToolSelector | None:
        """The `QTAToolSelector` in use (None until the first model call when built lazily)."""
        return self._selector

    # -- selection ----------------------------------------------------------------------

    def _records(
        self, selector: QTAToolSelector, scored: list[tuple[str, float | None]]
    ) -> list[dict[str, Any]]:
        tools = selector.tools
        return [
            {
                "name": tools[tool_id].name,
                "id": tool_id,
                "score": None if score is None else round(float(score), 6),
                "always_included": score is None,
            }
            for tool_id, score in scored
        ]

    def _runnable(self, selector: QTAToolSelector) -> RunnableLambda:
        def select_tools(inputs: dict[str, Any]) -> list[dict[str, Any]]:
            turns = [HumanMessage(t) for t in inputs["user_turns"]]
            return self._records(selector, selector.select_scored(turns))

        async def aselect_tools(inputs: dict[str, Any]) -> list[dict[str, Any]]:
            turns = [HumanMessage(t) for t in inputs["user_turns"]]
            return self._records(selector, await selector.aselect_scored(turns))

        return RunnableLambda(select_tools, afunc=aselect_tools, name=SELECTION_RUN_NAME)

    _CONFIG: RunnableConfig = {
        "run_name": SELECTION_RUN_NAME,
        "metadata": {"lc_source": "tool_selection"},
    }

    def select(self, messages: Sequence[Any]) -> list[dict[str, Any]]:
        """The tools this middleware offers for a conversation (without the turn cache).

        Returns:
            One dict per tool, in the order offered: ``name``, ``id`` (the catalogue id),
            ``score`` (the score it was ranked by; None when always included) and
            ``always_included``.

        Raises:
            RuntimeError: before the first model call, when the retriever is built from it.
        """
        selector = self._require_selector()
        return self._records(selector, selector.select_scored(messages))

    async def aselect(self, messages: Sequence[Any]) -> list[dict[str, Any]]:
        """Async `select`."""
        selector = self._require_selector()
        return self._records(selector, await selector.aselect_scored(messages))

    def _require_selector(self) -> QTAToolSelector:
        if self._selector is None:
            msg = (
                "This middleware builds its retriever from the first model request's tools, "
                "and none was made yet; pass retriever= or tools= to select before that."
            )
            raise RuntimeError(msg)
        return self._selector

    def _override(self, request: ModelRequest, records: list[dict[str, Any]]) -> ModelRequest:
        selector = self._selector
        assert selector is not None
        known = {t.name for t in selector.tools.values()}
        offered = {t.name: t for t in request.tools if isinstance(t, BaseTool)}
        chosen = [offered[r["name"]] for r in records if r["name"] in offered]
        if not any(r["name"] in offered and not r["always_included"] for r in records):
            logger.warning(
                "None of the selected tools %s is in the model request; it goes on with its "
                "%d tools unchanged.",
                [r["name"] for r in records],
                len(request.tools),
            )
            return request
        others = [
            t for t in request.tools if isinstance(t, dict) or (t.name not in known)
        ]  # provider tools and tools the retriever cannot rank
        return request.override(tools=[*chosen, *others])

    def wrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], ModelResponse],
    ) -> Any:
        """Offer the model only the tools selected for this turn (computed once per turn)."""
        selector = self._selector_for(request)
        if selector is None:
            return handler(request)
        last_id, turns = _user_turns(request)
        key = (last_id, turns)
        records = self._turns.get(key)
        if records is None:
            records = self._runnable(selector).invoke({"user_turns": list(turns)}, self._CONFIG)
            self._turns.put(key, records)
        return handler(self._override(request, records))

    async def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> Any:
        """Async `wrap_model_call`: the retrieval is awaited (and a lazy build runs in a thread)."""
        if self._selector is None:
            selector = await asyncio.to_thread(self._selector_for, request)
        else:
            selector = self._selector
        if selector is None:
            return await handler(request)
        last_id, turns = _user_turns(request)
        key = (last_id, turns)
        records = self._turns.get(key)
        if records is None:
            records = await self._runnable(selector).ainvoke(
                {"user_turns": list(turns)}, self._CONFIG
            )
            self._turns.put(key, records)
        return await handler(self._override(request, records))
