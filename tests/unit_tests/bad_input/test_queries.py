"""Bad queries fail loudly, with the same error through every entry point."""

from __future__ import annotations

from typing import Any

import pytest

from qta_integrations import QTARetriever
from qta_integrations.agents.langgraph import conversation_query
from qta_integrations.evaluation import LabelledQuery
from qta_integrations.validation import has_visible_text, validate_query
from tests.unit_tests.bad_input.conftest import async_entry_points, selector, sync_entry_points

SYNC = [
    "invoke",
    "batch",
    "pipeline.retrieve",
    "pipeline.retrieve_batch",
    "llama_index.retrieve",
    "llama_index.retrieve(QueryBundle)",
    "tool_retriever.retrieve",
    "bigtool.retrieve_tools",
    "rewriter.rewrite",
]
ASYNC = [
    "ainvoke",
    "abatch",
    "pipeline.aretrieve",
    "pipeline.aretrieve_batch",
    "llama_index.aretrieve",
    "tool_retriever.aretrieve",
    "bigtool.aretrieve_tools",
    "rewriter.arewrite",
]

# (query, error type, pattern the message must match)
BAD_QUERIES: list[tuple[Any, type[Exception], str]] = [
    ("", ValueError, r"query must not be empty or whitespace, got ''"),
    ("   ", ValueError, r"query must not be empty or whitespace, got '   '"),
    ("\n\t", ValueError, r"query must not be empty or whitespace, got '\\n\\t'"),
    ("\u3000", ValueError, r"query must not be empty or whitespace"),
    ("\u200b", ValueError, r"query has no visible text, got '\\u200b'"),
    ("\u200b\u200c\u200d\u2060", ValueError, r"no visible text, got '\\u200b\\u200c"),
    ("\ufeff", ValueError, r"no visible text, got '\\ufeff'"),
    ("\x00", ValueError, r"no visible text, got '\\x00'"),
    ("\x00\x00 \x00", ValueError, r"no visible text, got '\\x00\\x00 \\x00'"),
    ("\x01\x02\x7f", ValueError, r"no visible text, got '\\x01\\x02\\x7f'"),
    ("\u200b \x00\t\u202e", ValueError, r"only control, zero-width or other invisible"),
    ("\ud800", ValueError, r"query contains a lone surrogate '\\ud800' at index 0"),
    ("weather in \udcff Paris", ValueError, r"lone surrogate '\\udcff' at index 11"),
    ("\udfff\ud800", ValueError, r"lone surrogate '\\udfff' at index 0.*Decode the text"),
    (42, TypeError, r"query must be a str, got int: 42"),
    (None, TypeError, r"query must be a str, got NoneType: None"),
    (3.5, TypeError, r"query must be a str, got float: 3.5"),
    (["weather"], TypeError, r"query must be a str, got list: \['weather'\]"),
    (b"weather", TypeError, r"query must be a str, got bytes: b'weather'"),
    ({"query": "weather"}, TypeError, r"query must be a str, got dict"),
]
IDS = [repr(q)[:24] for q, _, _ in BAD_QUERIES]


@pytest.mark.parametrize(("query", "error", "pattern"), BAD_QUERIES, ids=IDS)
@pytest.mark.parametrize("entry", SYNC)
def test_bad_query_sync(
    retriever: QTARetriever, entry: str, query: Any, error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        sync_entry_points(retriever)[entry](query)


@pytest.mark.parametrize("entry", ASYNC)
async def test_bad_query_async(retriever: QTARetriever, entry: str) -> None:
    call = async_entry_points(retriever)[entry]
    for query, error, pattern in BAD_QUERIES:
        with pytest.raises(error, match=pattern):
            await call(query)


@pytest.mark.parametrize(("query", "error", "pattern"), BAD_QUERIES[4:14], ids=IDS[4:14])
def test_labelled_query_rejects_what_retrieval_rejects(
    query: str, error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern.replace("query", "LabelledExample.query")):
        LabelledQuery(query, ("weather",))


@pytest.mark.parametrize("query", ["\u200b", "\x00\x00", "\ufeff\u2060"])
def test_selector_skips_invisible_turns(retriever: QTARetriever, query: str) -> None:
    # An invisible last turn is skipped like an empty one; the earlier turn is the query.
    cq = conversation_query([("user", "weather in Paris?"), ("user", query)])
    assert (cq.query, cq.history) == ("weather in Paris?", ())
    with pytest.raises(ValueError, match="no user message to retrieve tools for"):
        selector(retriever).select([("user", query)])


async def test_selector_rejects_a_lone_surrogate(retriever: QTARetriever) -> None:
    with pytest.raises(ValueError, match="lone surrogate"):
        selector(retriever).select([("user", "rain \ud800?")])
    with pytest.raises(ValueError, match="lone surrogate"):
        await selector(retriever).aselect([("user", "rain \ud800?")])


@pytest.mark.parametrize(
    "query",
    [
        "\u200bweather\u200b forecast",  # invisible characters around visible text are kept
        "weather\x00 forecast",
        "\U0001faea weather",  # an emoji newer than some Unicode tables still counts as text
        "weather " * 100_000,  # 800 kB: accepted; the rewriter and the embedder truncate
    ],
    ids=["zero-width-inside", "nul-inside", "new-emoji", "huge"],
)
def test_safe_results(retriever: QTARetriever, query: str) -> None:
    assert validate_query(query) is query
    docs = retriever.invoke(query)
    assert [d.id for d in docs] == ["weather"]


def test_the_visible_text_rule() -> None:
    assert not has_visible_text("\u200b\u200c\u200d\ufeff\x00\x1f\u2028 \t")
    assert has_visible_text("\u0301")  # a combining mark alone is drawn
    assert has_visible_text("\ue000")  # private use: a font may draw it


def test_good_query_still_works_after_bad_ones(retriever: QTARetriever) -> None:
    assert retriever.invoke("weather forecast for a city")[0].id == "weather"
    assert retriever.invoke("weather please", history=None)[0].id == "weather"
