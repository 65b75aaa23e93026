"""Bad k, fetch_k and history values: refused at construction and per call, never coerced."""

from __future__ import annotations

from typing import Any

import pytest

from qta_integrations import QTALlamaIndexRetriever, QTAPipeline, QTARetriever, QTAToolRetriever
from qta_integrations.agents.langgraph import QTAToolSelector, bigtool_retrieve_functions
from qta_integrations.prompts import RewriteRequest
from qta_integrations.settings import RetrievalSettings
from qta_integrations.stores import ExactToolIndex
from qta_integrations.testing import KeywordEmbeddings
from qta_integrations.tools import ToolCatalog
from qta_integrations.validation import check_fetch_k, validate_histories
from tests.unit_tests.bad_input.conftest import quote, weather

BAD_K = [0, -1, True, False, 1.5, "3", [2]]
BAD_K_IDS = ["0", "-1", "True", "False", "1.5", "'3'", "[2]"]


def _pattern(name: str, value: Any) -> str:
    import re

    return f"{name} must be a positive int, got {re.escape(repr(value))}"


@pytest.mark.parametrize("k", BAD_K, ids=BAD_K_IDS)
def test_bad_k_per_call(retriever: QTARetriever, k: Any) -> None:
    pattern = _pattern("k", k)
    with pytest.raises(ValueError, match=pattern):
        retriever.invoke("weather", k=k)
    with pytest.raises(ValueError, match=pattern):
        retriever.pipeline.retrieve("weather", k=k)
    with pytest.raises(ValueError, match=pattern):
        retriever.pipeline.retrieve_batch(["weather"], k=k)
    with pytest.raises(ValueError, match=pattern):
        retriever.as_llama_index_retriever(k=k)
    with pytest.raises(ValueError, match=pattern):
        retriever.as_llama_index_retriever(similarity_top_k=k)
    with pytest.raises(ValueError, match=pattern):
        retriever.as_tool_retriever(k=k)
    with pytest.raises(ValueError, match=pattern):
        QTAToolSelector(retriever, [weather, quote], k=k)
    with pytest.raises(ValueError, match=pattern):
        bigtool_retrieve_functions(retriever, k=k)


@pytest.mark.parametrize("k", BAD_K, ids=BAD_K_IDS)
async def test_bad_k_per_async_call(retriever: QTARetriever, k: Any) -> None:
    pattern = _pattern("k", k)
    with pytest.raises(ValueError, match=pattern):
        await retriever.ainvoke("weather", k=k)
    with pytest.raises(ValueError, match=pattern):
        await retriever.pipeline.aretrieve("weather", k=k)


@pytest.mark.parametrize("k", [*BAD_K, None], ids=[*BAD_K_IDS, "None"])
def test_bad_k_at_construction(retriever: QTARetriever, k: Any) -> None:
    pattern = _pattern("k", k)
    catalog = retriever.pipeline.catalog
    with pytest.raises(ValueError, match=pattern):
        QTAPipeline(catalog, ExactToolIndex(KeywordEmbeddings()), None, k=k, index_tools=False)
    with pytest.raises(ValueError, match=pattern):  # pydantic's ValidationError is a ValueError
        QTARetriever(pipeline=retriever.pipeline, k=k)


@pytest.mark.parametrize(
    "fetch_k", [0, -1, True, 1.5, "30"], ids=["0", "-1", "True", "1.5", "'30'"]
)
def test_bad_fetch_k_at_construction(retriever: QTARetriever, fetch_k: Any) -> None:
    pattern = _pattern("fetch_k", fetch_k)
    catalog = retriever.pipeline.catalog
    index = ExactToolIndex(KeywordEmbeddings())
    with pytest.raises(ValueError, match=pattern):
        QTAPipeline(catalog, index, None, fetch_k=fetch_k, index_tools=False)
    with pytest.raises(ValueError, match=pattern):
        RetrievalSettings(fetch_k=fetch_k)
    with pytest.raises(ValueError, match=pattern):
        check_fetch_k(fetch_k, 1)


@pytest.mark.parametrize(("fetch_k", "k"), [(3, 5), (1, 2), (19, 20)])
def test_fetch_k_below_k_is_refused(tool_dicts: list[dict[str, str]], fetch_k: int, k: int) -> None:
    # Both set explicitly: refused at construction, wherever k comes in.
    pattern = rf"fetch_k \({fetch_k}\) must be >= k \({k}\)"
    with pytest.raises(ValueError, match=pattern):
        check_fetch_k(fetch_k, k)
    catalog = ToolCatalog.from_dicts(tool_dicts)
    with pytest.raises(ValueError, match=pattern):
        QTAPipeline(catalog, ExactToolIndex(KeywordEmbeddings()), None, k=k, fetch_k=fetch_k)
    with pytest.raises(ValueError, match=pattern):
        RetrievalSettings(k=k, fetch_k=fetch_k)
    settings = RetrievalSettings(k=fetch_k, fetch_k=fetch_k)  # valid alone; k raised below
    with pytest.raises(ValueError, match=pattern):
        QTARetriever(
            tools=tool_dicts, embeddings=KeywordEmbeddings(), rewriter=None, settings=settings, k=k
        )
    with pytest.raises(ValueError, match=pattern):
        QTALlamaIndexRetriever.from_defaults(
            tool_dicts, embed_model=KeywordEmbeddings(), rewriter=None, settings=settings, k=k
        )


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"fetch_k": 30}, r"unknown argument\(s\) \['fetch_k'\]\. \['fetch_k'\] are RetrievalSet"),
        ({"num_context_tools": 0}, r"\['num_context_tools'\] are RetrievalSettings fields"),
        ({"alpha": 0.5}, r"QTARetriever got unknown argument\(s\) \['alpha'\]\. \[type="),
        ({"callbacks": []}, r"unknown argument\(s\) \['callbacks'\]"),
    ],
    ids=["fetch_k", "num_context_tools", "alpha", "callbacks"],
)
def test_unknown_retriever_arguments_are_refused(
    retriever: QTARetriever, kwargs: dict[str, Any], pattern: str
) -> None:
    # pydantic would otherwise drop them without a word.
    with pytest.raises(ValueError, match=pattern):
        QTARetriever(pipeline=retriever.pipeline, **kwargs)


def test_fetch_k_equal_to_k_is_fine(retriever: QTARetriever) -> None:
    assert check_fetch_k(None, 5) is None
    assert check_fetch_k(5, 5) == 5


def test_a_per_call_k_above_fetch_k_raises_the_fetch(tool_dicts: list[dict[str, str]]) -> None:
    # Documented: fetch_k is a floor per call, so invoke(k=4) still returns 4 tools.
    catalog = ToolCatalog.from_dicts(tool_dicts)
    pipeline = QTAPipeline(catalog, ExactToolIndex(KeywordEmbeddings()), None, k=1, fetch_k=2)
    assert len(pipeline.retrieve("weather forecast", k=4).tools) == 4


# (history, error type, pattern)
BAD_HISTORY: list[tuple[Any, type[Exception], str]] = [
    ("weather in Paris?", TypeError, r"history .*must be a list of earlier user turns, got a str"),
    (b"weather", TypeError, r"history .*must be a list of earlier user turns, got a bytes"),
    ({"turn": "weather"}, TypeError, r"history .*must be a list of earlier user turns.*got dict"),
    ({"weather"}, TypeError, r"history .*must be a list.*got set"),
    (42, TypeError, r"history .*must be a list of earlier user turns.*got int: 42"),
    ([1, 2], TypeError, r"turn 0 of .*history.* must be a str \(an earlier user turn\), got int"),
    (["ok", None], TypeError, r"turn 1 of .*history.* must be a str.*got NoneType: None"),
    ([["nested"]], TypeError, r"turn 0 of .*history.* must be a str.*got list"),
    (["fine", "bad \ud800"], ValueError, r"turn 1 of .*history.* contains a lone surrogate"),
]
HISTORY_IDS = [repr(h)[:20] for h, _, _ in BAD_HISTORY]


@pytest.mark.parametrize(("history", "error", "pattern"), BAD_HISTORY, ids=HISTORY_IDS)
def test_bad_history(
    retriever: QTARetriever, history: Any, error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        retriever.invoke("weather", history=history)
    with pytest.raises(error, match=pattern):
        retriever.pipeline.retrieve("weather", history=history)
    with pytest.raises(error, match=pattern.replace("history", "the history of query #0", 1)):
        retriever.pipeline.retrieve_batch(["weather"], histories=[history])
    with pytest.raises(error, match=pattern):
        retriever.pipeline.rewriter.rewrite(RewriteRequest("weather", history=history))  # type: ignore[union-attr]


@pytest.mark.parametrize(("history", "error", "pattern"), BAD_HISTORY, ids=HISTORY_IDS)
async def test_bad_history_async(
    retriever: QTARetriever, history: Any, error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        await retriever.ainvoke("weather", history=history)
    with pytest.raises(error, match=pattern):
        await retriever.pipeline.aretrieve("weather", history=history)


@pytest.mark.parametrize("history", [None, [], (), ["weather in Paris?"], iter(["earlier"])])
async def test_no_or_good_history_is_fine(retriever: QTARetriever, history: Any) -> None:
    # None means "no history" (it used to crash on the async path).
    assert [d.id for d in retriever.invoke("weather please", history=history)] == ["weather"]
    if history is None or isinstance(history, (list, tuple)):
        docs = await retriever.ainvoke("weather please", history=history)
        assert [d.id for d in docs] == ["weather"]


@pytest.mark.parametrize(
    ("histories", "error", "pattern"),
    [
        ("text", TypeError, r"histories must be a list with one history .* got str"),
        ({"q": ["a"]}, TypeError, r"histories must be a list.*got dict"),
        ([["a"], ["b"]], ValueError, r"Got 2 histories for 1 queries; pass one per query"),
        ([], ValueError, r"Got 0 histories for 1 queries"),
        (["turn"], TypeError, r"the history of query #0 must be a list of .* got a str"),
    ],
)
def test_bad_histories_for_a_batch(
    retriever: QTARetriever, histories: Any, error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        retriever.pipeline.retrieve_batch(["weather"], histories=histories)
    with pytest.raises(error, match=pattern):
        validate_histories(["weather"], histories)


def test_bad_other_settings(tool_dicts: list[dict[str, str]]) -> None:
    catalog = ToolCatalog.from_dicts(tool_dicts)
    index = ExactToolIndex(KeywordEmbeddings())
    with pytest.raises(ValueError, match="num_context_tools must be"):
        QTAPipeline(catalog, index, None, num_context_tools=-1, index_tools=False)
    with pytest.raises(TypeError, match="pipeline must be a QTAPipeline, got str"):
        QTALlamaIndexRetriever("pipeline")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs pipeline= or retriever="):
        QTAToolRetriever()


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"k": 0}, "k must be a positive int, got 0"),
        ({"k": -2}, "k must be a positive int, got -2"),
        ({"fetch_k": 0}, "fetch_k must be a positive int, got 0"),
        ({"num_context_tools": -1}, "num_context_tools must be"),
        ({"num_context_tools": True}, "num_context_tools must be"),
    ],
)
def test_bad_settings_through_every_constructor(
    tool_dicts: list[dict[str, str]], kwargs: dict[str, Any], pattern: str
) -> None:
    catalog = ToolCatalog.from_dicts(tool_dicts)
    with pytest.raises(ValueError, match=pattern):
        QTAPipeline(catalog, ExactToolIndex(KeywordEmbeddings()), None, **kwargs)
    with pytest.raises(ValueError, match=pattern):
        RetrievalSettings(**kwargs)
    if set(kwargs) == {"k"}:
        with pytest.raises(ValueError, match=pattern):
            QTARetriever(tools=tool_dicts, embeddings=KeywordEmbeddings(), rewriter=None, **kwargs)
        with pytest.raises(ValueError, match=pattern):
            QTALlamaIndexRetriever.from_defaults(
                tool_dicts, embed_model=KeywordEmbeddings(), rewriter=None, **kwargs
            )


@pytest.mark.parametrize("alpha", [-0.5, 1.01])
def test_fuse_hits_rejects_bad_alpha(alpha: float) -> None:
    from qta_integrations.ranking import fuse_hits

    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        fuse_hits([], [[]], alpha=alpha)


def test_unknown_label_ids(tool_dicts: list[dict[str, str]]) -> None:
    catalog = ToolCatalog.from_dicts(tool_dicts)
    with pytest.raises(ValueError, match=r"\['get_wether', 'stocks'\]"):
        catalog.check_ids(["weather", "get_wether", "stocks"])


def test_label_fit_must_be_known() -> None:
    with pytest.raises(
        ValueError, match=r"label_fit must be one of \['safe', 'labelled'\], got 'x'"
    ):
        RetrievalSettings(label_fit="x")
    assert RetrievalSettings().label_fit == "safe"


def test_settings_saved_before_the_lexical_split_keep_their_meaning() -> None:
    # Before version 3, "lexical" read tool texts extended with the labelled queries.
    old = {"version": 2, "k": 5, "fusion": {"lexical": 0.5, "memory": 1.0}}
    settings = RetrievalSettings.from_dict(old)
    assert settings.fusion.labelled_lexical == 0.5 and settings.fusion.lexical == 0.0
    assert settings.fusion.memory == 1.0
    again = RetrievalSettings.from_dict(settings.to_dict())
    assert again == settings
