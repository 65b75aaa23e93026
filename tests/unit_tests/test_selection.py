"""Tool selection: tools always included, a score cut-off, and its leave-one-out fit."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.tools import FunctionTool

from qta_integrations import QTAPipeline, QTARetriever, RetrievalSettings, ToolSelection
from qta_integrations.agents import QTAToolSelector, create_qta_agent
from qta_integrations.fusion import FusionWeights
from qta_integrations.retrievers.llama_index import QTALlamaIndexRetriever, QTAToolRetriever
from qta_integrations.selection import fit_cutoff, resolve_selection
from qta_integrations.stores import ExactToolIndex
from qta_integrations.testing import KeywordEmbeddings
from qta_integrations.tools import ToolCatalog
from tests.unit_tests.test_langgraph_agent import TOOLS as LANGCHAIN_TOOLS
from tests.unit_tests.test_langgraph_agent import call, scripted

CLEAR = "weather forecast for Paris"  # one tool far ahead of the others
TWO = "send an email and create a calendar event"  # two tools close together
EXAMPLES = [
    {"query": "is it raining in Oslo today", "tools": ["weather"]},
    {"query": "forecast for Rome tomorrow", "tools": ["weather"]},
    {"query": "email Bob and put a meeting in my calendar", "tools": ["email", "calendar"]},
    {"query": "mail the report to Alice then schedule an event", "tools": ["email", "calendar"]},
    {"query": "price of the ACME ticker", "tools": ["stock_quote"]},
]
MODES = ["sync", "async"]


def _pipeline(tool_dicts: list[dict[str, str]], **settings: Any) -> QTAPipeline:
    # Dense only unless told: the cut-offs below are about standardised dense scores.
    settings.setdefault("fusion", FusionWeights())
    catalog = ToolCatalog.from_dicts(tool_dicts)
    return QTAPipeline(
        catalog, ExactToolIndex(KeywordEmbeddings()), None, settings=RetrievalSettings(**settings)
    )


def _retrieve(pipeline: QTAPipeline, mode: str, query: str, **kwargs: Any) -> Any:
    if mode == "sync":
        return pipeline.retrieve(query, **kwargs)
    return asyncio.run(pipeline.aretrieve(query, **kwargs))


# -- ToolSelection ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"always_include": "search"}, TypeError, r"list of tool ids.*\['search'\]"),
        ({"always_include": 3}, TypeError, "list of tool ids, got 3"),
        ({"always_include": ["ok", ""]}, ValueError, r"non-empty tool id strings, got \[''\]"),
        ({"always_include": [None]}, ValueError, "non-empty tool id strings"),
        ({"margin": -0.5}, ValueError, "margin must be >= 0.*got -0.5"),
        ({"margin": math.nan}, ValueError, "margin must be >= 0"),
        ({"margin": True}, TypeError, "margin must be a number >= 0 or None, got True"),
        ({"margin": "1"}, TypeError, "margin must be a number"),
        ({"min_k": 0}, ValueError, "min_k must be a positive int, got 0"),
        ({"adaptive": "yes"}, TypeError, "adaptive must be True or False, got 'yes'"),
    ],
)
def test_bad_selections_name_the_value(
    kwargs: dict[str, Any], error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        ToolSelection(**kwargs)


def test_a_selection_normalises_and_round_trips() -> None:
    selection = ToolSelection(always_include=["b", "a", "b"], margin=1, min_k=2, adaptive=True)
    assert selection.always_include == ("b", "a")
    assert selection.margin == 1.0 and isinstance(selection.margin, float)
    assert ToolSelection.from_dict(selection.to_dict()) == selection
    assert ToolSelection.from_dict(selection) is selection
    assert ToolSelection(margin=math.inf).cuts
    assert ToolSelection().is_default and not ToolSelection(always_include=["a"]).is_default
    with pytest.raises(ValueError, match=r"Unknown tool selection keys \['max_tools'\]"):
        ToolSelection.from_dict({"max_tools": 3})


@pytest.mark.parametrize(
    ("selection", "scores", "k", "expected"),
    [
        (ToolSelection(), [3.0, 2.0, 1.0], 2, 2),
        (ToolSelection(), [3.0], 5, 1),
        (ToolSelection(margin=0.5), [3.0, 2.9, 2.4, 1.0], 5, 2),
        (ToolSelection(margin=0.5), [3.0, 2.9, 2.8, 2.7], 3, 3),  # k caps the cut
        (ToolSelection(margin=0.0), [3.0, 3.0, 1.0], 5, 2),  # ties are kept
        (ToolSelection(margin=0.1, min_k=3), [3.0, 1.0, 0.5, 0.1], 5, 3),
        (ToolSelection(margin=0.1, min_k=9), [3.0, 1.0], 5, 2),  # no more than there are
        (ToolSelection(margin=math.inf), [3.0, -9.0, -99.0], 2, 2),
        (ToolSelection(margin=1.0), [], 3, 0),
    ],
)
def test_count(selection: ToolSelection, scores: list[float], k: int, expected: int) -> None:
    assert selection.count(scores, k) == expected


def test_resolve_selection() -> None:
    plain, fixed = ToolSelection(), ToolSelection(margin=0.5)
    fitted = ToolSelection(margin=0.7, min_k=2, adaptive=True)
    assert resolve_selection(None, fixed) is fixed
    assert resolve_selection(plain, fitted) is plain
    mine = resolve_selection(ToolSelection(always_include=["a"], adaptive=True), fitted)
    assert (mine.always_include, mine.margin, mine.min_k) == (("a",), 0.7, 2)
    with pytest.raises(ValueError, match="the pipeline's own selection is not adaptive"):
        resolve_selection(ToolSelection(adaptive=True), fixed)
    with pytest.raises(TypeError, match="selection must be a ToolSelection or None, got dict"):
        resolve_selection({"margin": 1.0}, plain)  # type: ignore[arg-type]


# -- fit_cutoff ---------------------------------------------------------------------------------


def test_fit_cutoff_returns_fewer_tools_when_the_top_is_clear() -> None:
    clear = [("a", 3.0), ("b", 0.5), ("c", 0.4), ("d", 0.3)]
    close = [("b", 2.0), ("c", 1.9), ("a", 0.1), ("d", 0.0)]
    fit = fit_cutoff([clear, close, clear], [["a"], ["b", "c"], ["a"]], max_k=4)
    assert fit.sufficiency == fit.fixed_sufficiency == 1.0
    assert fit.min_k == 1 and fit.mean_tools == pytest.approx(4 / 3)
    assert fit.margin is not None and 0.1 <= fit.margin < 1.9  # keeps b and c, not the rest
    selection = ToolSelection(margin=fit.margin, min_k=fit.min_k)
    assert [selection.count([s for _, s in r], 4) for r in (clear, close)] == [1, 2]


def test_fit_cutoff_is_never_less_sufficient_than_a_fixed_top_k() -> None:
    rng = random.Random(0)
    tools = [f"t{i}" for i in range(12)]
    for _ in range(30):
        rankings, golds = [], []
        for _ in range(rng.randint(1, 8)):
            order = rng.sample(tools, len(tools))
            scores = sorted((rng.gauss(0, 1) for _ in tools), reverse=True)
            rankings.append(list(zip(order, scores, strict=True)))
            golds.append(rng.sample(order[:7], rng.randint(1, 3)))
        max_k = rng.randint(2, 6)
        fit = fit_cutoff(rankings, golds, max_k=max_k)
        assert fit.sufficiency >= fit.fixed_sufficiency - 1e-12
        assert 1 <= fit.min_k <= max_k and fit.mean_tools <= max_k


def test_fit_cutoff_keeps_a_fixed_top_k_when_no_example_can_be_kept() -> None:
    fit = fit_cutoff([[("a", 1.0), ("b", 0.5)]], [["c"]], max_k=2)
    assert fit.margin is None and fit.sufficiency == fit.fixed_sufficiency == 0.0


def test_fit_cutoff_leaves_always_included_tools_out() -> None:
    ranking = [("search", 9.0), ("a", 3.0), ("b", 2.9)]
    fit = fit_cutoff([ranking], [["search", "a", "b"]], max_k=2, always_include=["search"])
    assert fit.sufficiency == 1.0 and fit.mean_tools == 2.0  # a and b; search comes anyway


@pytest.mark.parametrize(
    ("rankings", "golds", "max_k", "pattern"),
    [
        ([[("a", 1.0)]], [], 3, r"Got 1 rankings but 0 gold lists"),
        ([], [], 3, "at least one labelled example"),
        ([[("a", 1.0)]], [["a"]], 0, "max_k must be a positive int, got 0"),
    ],
)
def test_fit_cutoff_errors(rankings: Any, golds: Any, max_k: int, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        fit_cutoff(rankings, golds, max_k=max_k)


# -- in the pipeline ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fused", [False, True], ids=["dense", "fused"])
def test_always_included_tools_come_after_k_retrieved_ones(
    tool_dicts: list[dict[str, str]], mode: str, fused: bool
) -> None:
    pipeline = _pipeline(tool_dicts, k=2, selection=ToolSelection(always_include=["route"]))
    if fused:
        pipeline.add_examples(EXAMPLES)
    result = _retrieve(pipeline, mode, "driving directions and the weather forecast")
    ids = result.tool_ids
    assert len(ids) == 3 and ids[-1] == "route" and ids.count("route") == 1
    assert [t.rank for t in result.tools] == [1, 2, 3]
    assert [t.always_included for t in result.tools] == [False, False, True]
    plain = _retrieve(pipeline, mode, CLEAR, selection=ToolSelection())
    assert "route" not in plain.tool_ids[:1] and len(plain.tool_ids) == 2


@pytest.mark.parametrize("mode", MODES)
def test_a_margin_returns_fewer_tools_when_the_top_is_clear(
    tool_dicts: list[dict[str, str]], mode: str
) -> None:
    pipeline = _pipeline(tool_dicts, k=4, selection=ToolSelection(margin=1.0))
    assert _retrieve(pipeline, mode, CLEAR).tool_ids == ["weather"]
    assert sorted(_retrieve(pipeline, mode, TWO).tool_ids) == ["calendar", "email"]
    # The scores compared are standardised dense similarities, not raw cosines.
    top = _retrieve(pipeline, mode, CLEAR).tools[0]
    assert top.score > 1.0 and set(top.signals) == {"dense"}
    assert len(_retrieve(pipeline, mode, CLEAR, selection=ToolSelection()).tools) == 4


def test_retrieve_batch_applies_the_selection(tool_dicts: list[dict[str, str]]) -> None:
    pipeline = _pipeline(tool_dicts, k=4, selection=ToolSelection(margin=1.0))
    results = pipeline.retrieve_batch([CLEAR, TWO])
    assert [len(r.tools) for r in results] == [1, 2]
    assert [r.tool_ids for r in results] == [pipeline.retrieve(q).tool_ids for q in (CLEAR, TWO)]


def test_unknown_always_included_ids_are_named(tool_dicts: list[dict[str, str]]) -> None:
    with pytest.raises(ValueError, match=r"not in the catalogue: \['search_tools'\]"):
        _pipeline(tool_dicts, selection=ToolSelection(always_include=["weather", "search_tools"]))
    pipeline = _pipeline(tool_dicts)
    with pytest.raises(ValueError, match=r"not in the catalogue: \['nope'\].*Known ids"):
        pipeline.retrieve(CLEAR, selection=ToolSelection(always_include=["nope"]))


def test_an_adaptive_selection_is_fitted_saved_and_restored(
    tool_dicts: list[dict[str, str]],
) -> None:
    adaptive = ToolSelection(always_include=["translate"], adaptive=True)
    pipeline = _pipeline(tool_dicts, k=4, selection=adaptive)
    assert pipeline.settings.selection.margin is None  # no labels: a fixed top k
    assert len(pipeline.retrieve(CLEAR).tools) == 5
    pipeline.add_examples(EXAMPLES)
    fitted = pipeline.settings.selection
    assert fitted.adaptive and fitted.always_include == ("translate",)
    assert fitted.margin is not None and pipeline.last_cutoff is not None
    assert (fitted.margin, fitted.min_k) == (
        pipeline.last_cutoff.margin,
        pipeline.last_cutoff.min_k,
    )
    assert pipeline.last_cutoff.sufficiency >= pipeline.last_cutoff.fixed_sufficiency
    retrieved = [t for t in pipeline.retrieve(CLEAR).tools if not t.always_included]
    assert 1 <= len(retrieved) < 4

    restored = _pipeline(tool_dicts, k=4)
    restored.load_state_dict(pipeline.state_dict())
    assert restored.settings.selection == fitted
    assert restored.retrieve(TWO).tool_ids == pipeline.retrieve(TWO).tool_ids

    pipeline.remove_examples([e["query"] for e in EXAMPLES])
    assert pipeline.settings.selection.margin is None  # no labels left: a fixed top k again
    assert pipeline.last_cutoff is None and len(pipeline.retrieve(CLEAR).tools) == 5


def test_settings_of_version_1_still_load() -> None:
    old = {"version": 1, "k": 3, "fetch_k": None, "num_context_tools": 3, "fusion": {}}
    settings = RetrievalSettings.from_dict(old)
    assert settings.k == 3 and settings.selection == ToolSelection()
    selection = ToolSelection(always_include=["a"], margin=0.5, min_k=2, adaptive=True)
    saved = RetrievalSettings(selection=selection).to_dict()
    assert saved["version"] == 4 and saved["selection"]["always_include"] == ["a"]
    assert RetrievalSettings.from_dict(saved).selection == selection
    with pytest.raises(ValueError, match=r"version 5 is not supported \(expected one of \[1, 2, 3"):
        RetrievalSettings.from_dict({**saved, "version": 5})
    with pytest.raises(TypeError, match="selection must be a ToolSelection, got dict"):
        RetrievalSettings(selection={"margin": 1.0})  # type: ignore[arg-type]


# -- through the adapters -----------------------------------------------------------------------


@pytest.fixture
def retriever(tool_dicts: list[dict[str, str]]) -> Iterator[QTARetriever]:
    built = QTARetriever(
        tools=tool_dicts,
        embeddings=KeywordEmbeddings(),
        rewriter=None,
        settings=RetrievalSettings(fusion=FusionWeights()),
        k=3,
        selection=ToolSelection(always_include=["route"], margin=1.0),
    )
    try:
        yield built
    finally:
        built.pipeline.index.vectorstore.delete_collection()  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", MODES)
def test_langchain_retriever(retriever: QTARetriever, mode: str) -> None:
    assert retriever.pipeline.settings.selection == retriever.selection  # the pipeline's own
    if mode == "sync":
        single, batch = retriever.invoke(CLEAR), retriever.batch([CLEAR, TWO])
    else:
        single = asyncio.run(retriever.ainvoke(CLEAR))
        batch = asyncio.run(retriever.abatch([CLEAR, TWO]))
    assert [d.id for d in single] == ["weather", "route"]
    assert [d.metadata["always_included"] for d in single] == [False, True]
    assert [d.id for d in batch[0]] == ["weather", "route"]
    assert sorted(d.id for d in batch[1]) == ["calendar", "email", "route"]


def test_langchain_retriever_over_a_pipeline_checks_its_selection(
    tool_dicts: list[dict[str, str]],
) -> None:
    pipeline = _pipeline(tool_dicts, k=2)
    with pytest.raises(ValueError, match=r"not in the catalogue: \['nope'\]"):
        QTARetriever(pipeline=pipeline, selection=ToolSelection(always_include=["nope"]))
    with pytest.raises(ValueError, match="not adaptive"):
        QTARetriever(pipeline=pipeline, selection=ToolSelection(adaptive=True))
    own = QTARetriever(pipeline=pipeline, selection=ToolSelection(always_include=["email"]))
    assert [d.id for d in own.invoke(CLEAR)][-1] == "email"
    assert pipeline.settings.selection == ToolSelection()  # the shared pipeline is unchanged


def weather(city: str) -> str:
    """Current weather and forecast for a city."""
    return city


def quote(ticker: str) -> str:
    """Latest price of a stock ticker symbol."""
    return ticker


def search_tools(query: str) -> str:
    """Search the catalogue for more tools."""
    return query


@pytest.mark.parametrize("mode", MODES)
def test_llama_index_retrievers(mode: str) -> None:
    tools = [FunctionTool.from_defaults(fn) for fn in (weather, quote, search_tools)]
    selection = ToolSelection(always_include=["search_tools"])
    nodes_retriever = QTALlamaIndexRetriever.from_defaults(
        tools, embed_model=KeywordEmbeddings(), rewriter=None, k=1, selection=selection
    )
    assert nodes_retriever.pipeline.settings.selection == selection
    tool_retriever = QTAToolRetriever(pipeline=nodes_retriever.pipeline, k=1)
    query = "weather forecast for Paris"
    if mode == "sync":
        nodes, found = nodes_retriever.retrieve(query), tool_retriever.retrieve(query)
    else:
        nodes = asyncio.run(nodes_retriever.aretrieve(query))
        found = asyncio.run(tool_retriever.aretrieve(query))
    assert [n.node.id_ for n in nodes] == ["weather", "search_tools"]
    assert [n.node.metadata["always_included"] for n in nodes] == [False, True]
    assert [t.metadata.name for t in found] == ["weather", "search_tools"]
    with pytest.raises(ValueError, match="pass no pipeline/k/similarity_top_k/selection"):
        QTAToolRetriever(retriever=nodes_retriever, selection=selection)


@pytest.mark.parametrize("mode", MODES)
def test_langgraph_selector(mode: str) -> None:
    retriever = QTARetriever(
        tools=LANGCHAIN_TOOLS, embeddings=KeywordEmbeddings(), rewriter=None, k=3
    )
    selector = QTAToolSelector(
        retriever, selection=ToolSelection(always_include=["send_email"], margin=1.0)
    )
    conversation = [("user", "What is the weather forecast in Paris?")]
    ids = (
        selector.select(conversation)
        if mode == "sync"
        else asyncio.run(selector.aselect(conversation))
    )
    assert ids == ["get_weather", "send_email"]
    follow_up = [*conversation, ("ai", "Rain."), ("user", "And tomorrow?")]
    ids = selector.select(follow_up) if mode == "sync" else asyncio.run(selector.aselect(follow_up))
    assert ids[-1] == "send_email" and 1 <= len(ids) - 1 <= 3
    plain = QTAToolSelector(retriever)
    assert len(plain.select(conversation)) == 3 and "send_email" not in plain.select(conversation)
    with pytest.raises(ValueError, match=r"not in the catalogue: \['search_tools'\]"):
        QTAToolSelector(retriever, selection=ToolSelection(always_include=["search_tools"]))


def test_create_qta_agent_binds_the_always_included_tools() -> None:
    model = scripted(call("get_weather", "c1", city="Paris"), "Rain in Paris.")
    retriever = QTARetriever(
        tools=LANGCHAIN_TOOLS, embeddings=KeywordEmbeddings(), rewriter=None, k=1
    )
    agent = create_qta_agent(
        model,
        LANGCHAIN_TOOLS,
        retriever,
        selection=ToolSelection(always_include=["plan_route"]),
    )
    state = agent.invoke({"messages": [("user", "What is the weather forecast in Paris?")]})
    assert state["selected_tool_ids"][-1] == "plan_route"
    assert model.bind_log[0][-1] == "plan_route" and len(model.bind_log[0]) == 2
    assert state["messages"][-1].content == "Rain in Paris."


def test_a_fitted_selection_survives_persist(
    tool_dicts: list[dict[str, str]], tmp_path: Path
) -> None:
    embeddings = KeywordEmbeddings()
    retriever = QTARetriever(
        tools=tool_dicts,
        embeddings=embeddings,
        rewriter=None,
        k=4,
        selection=ToolSelection(adaptive=True),
    )
    retriever.add_examples(EXAMPLES)
    fitted = retriever.pipeline.settings.selection
    assert fitted.margin is not None
    retriever.persist(tmp_path / "saved")
    reloaded = QTARetriever.from_persist_dir(tmp_path / "saved", embeddings=embeddings)
    try:
        assert reloaded.pipeline.settings.selection == fitted
        assert [d.id for d in reloaded.invoke(TWO)] == [d.id for d in retriever.invoke(TWO)]
    finally:
        retriever.pipeline.index.vectorstore.delete_collection()  # type: ignore[attr-defined]
