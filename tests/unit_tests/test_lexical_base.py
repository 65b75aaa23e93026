"""The zero-label base: identifier-aware tokens, the lexical trust and the label gate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qta_integrations import Tool
from qta_integrations.fusion import FusionWeights, gate_opening
from qta_integrations.memory import ExampleMemory
from qta_integrations.signals.lexical import FULL_TRUST_COVERAGE, match_trust
from qta_integrations.stores import BM25ToolIndex
from qta_integrations.stores.tokenize import LexicalTokenizer, split_identifier, split_identifiers


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("get_weather_forecast", ["get", "weather", "forecast"]),  # snake_case
        ("getWeatherForecast", ["get", "weather", "forecast"]),  # camelCase
        ("HTTPServerError", ["http", "server", "error"]),  # an acronym, then words
        ("weather.forecast.daily", ["weather", "forecast", "daily"]),  # dotted names
        ("GET /movie/{movie_id}/credits", ["get", "movie", "movie", "id", "credits"]),  # URL
        ("search-movies", ["search", "movies"]),  # kebab-case
        ("v2beta top10", ["v", "2", "beta", "top", "10"]),  # letters and digits
        ("PDF&URLTool", ["pdf", "url", "tool"]),
    ],
)
def test_identifiers_split_into_their_words(text: str, words: list[str]) -> None:
    assert split_identifiers(text) == words


def test_a_split_word_keeps_its_whole_form_and_tokens_are_stemmed() -> None:
    tokenize = LexicalTokenizer()
    (tokens,) = tokenize(["GET /movie/{movie_id}/credits"])
    assert tokens == ["get", "movi", "movi", "id", "movie_id", "credit"]
    assert tokenize(["the and of"]) == [[]]  # stopwords only
    plain = LexicalTokenizer(split_identifiers=False, stem=False)
    assert plain(["getWeather movies"]) == [["getweather", "movies"]]
    assert split_identifier("movie_id") == ["movie", "id"]


def test_bm25_finds_a_tool_by_the_words_of_its_identifier() -> None:
    index = BM25ToolIndex()
    index.add_tools(
        [
            Tool(id="a", name="getMovieCredits", description="Cast and crew."),
            Tool(id="b", name="search_tv_shows", description="Find series."),
        ]
    )
    assert index.search("credits of a movie", k=1)[0].tool_id == "a"
    assert index.search("searching shows", k=1)[0].tool_id == "b"
    default = BM25ToolIndex(tokenizer=None)  # bm25s's own reading: no split, no stem
    default.add_tools([Tool(id="a", name="getMovieCredits", description="Cast and crew.")])
    assert default.scores(["movie credits"])[0, 0] == 0.0


def test_match_coverage_is_the_share_of_the_querys_idf_one_tool_holds() -> None:
    index = BM25ToolIndex()
    index.add_tools(
        [
            Tool(id="w", name="weather", description="forecast for a city"),
            Tool(id="s", name="stocks", description="price of a ticker"),
            Tool(id="r", name="route", description="directions to a city"),
        ]
    )
    full, half, none, empty = index.match_coverage(
        ["weather forecast", "weather zebra", "zebra giraffe", "the of"]
    )
    assert full == pytest.approx(1.0)
    assert 0.0 < half < 1.0
    assert none == 0.0 and empty == 0.0
    # The trust: in proportion up to FULL_TRUST_COVERAGE, then full; never decreasing.
    trust = match_trust(index, ["weather forecast", "zebra giraffe"])
    assert list(trust) == [1.0, 0.0]
    coverage = np.linspace(0.0, 1.0, 11)
    scaled = np.minimum(1.0, coverage / FULL_TRUST_COVERAGE)
    assert (np.diff(scaled) >= 0).all()


@pytest.mark.parametrize("threshold", [-0.1, 0.0, 0.15])
def test_the_label_gate_is_monotone_in_its_margin(threshold: float) -> None:
    margins = [-math.inf, -1.0, -0.2, -0.05, 0.0, 0.03, 0.1, 0.3, 1.0, math.inf]
    openings = [gate_opening(m, threshold) for m in margins]
    assert openings == sorted(openings)
    assert openings[0] == 0.0 and openings[-1] == 1.0
    assert all(0.0 <= g <= 1.0 for g in openings)
    assert gate_opening(threshold, threshold) == 0.5
    assert gate_opening(-math.inf, None) == 1.0  # no gate: always open


def test_a_gated_label_signal_moves_only_queries_near_an_example() -> None:
    from qta_integrations.fusion import fuse
    from qta_integrations.signals import SignalScores

    scores = {
        "dense": SignalScores({"a": 1.0, "b": 0.0}, 0.0),
        "memory": SignalScores({"b": 1.0}, 0.0),
    }
    gated = FusionWeights(memory=2.5, label_gate=0.0)
    assert fuse(scores, gated, label_margin=0.2)[0][0] == "b"  # near an example: labels count
    assert fuse(scores, gated, label_margin=-0.2)[0][0] == "a"  # far: the base ranking
    assert fuse(scores, FusionWeights(memory=2.5), label_margin=-0.2)[0][0] == "b"
    assert FusionWeights.from_dict(gated.to_dict()) == gated


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ([], 0.0),
        ([("a?", ["t1"])], 0.0),  # one label: nothing to leave out against
        ([("a?", ["t1"]), ("b?", ["t2"]), ("c?", ["t3"])], 0.0),  # no tool shared
        ([("a?", ["t1"]), ("b?", ["t1"]), ("c?", ["t1"])], 1.0),  # every tool shared
        ([("a?", ["t1"]), ("b?", ["t1"]), ("c?", ["t2"]), ("d?", ["t3"])], 0.5),
        ([("a?", ["t1", "t2"]), ("b?", ["t2"]), ("c?", ["t3"])], 2 / 3),  # one shared tool
    ],
)
def test_the_coverage_estimate_counts_labels_whose_tools_another_label_names(
    labels: list[tuple[str, list[str]]], expected: float
) -> None:
    memory = ExampleMemory()
    memory.add(labels)
    assert memory.coverage() == pytest.approx(expected)


def _gold_second() -> dict[str, object]:
    from qta_integrations.signals import SignalScores

    # Dense ranks the gold "g" second; the memory knows it.
    return {
        "dense": SignalScores({"o": 1.0, "g": 0.0}, 0.0),
        "memory": SignalScores({"g": 1.0}, 0.0),
    }


def test_the_fit_holds_to_the_base_and_fewer_labels_hold_it_harder() -> None:
    from qta_integrations.fusion import fit_weights

    base = FusionWeights.base()
    grid = {"memory": (0.0, 2.5)}
    one = fit_weights([_gold_second()], [["g"]], default=base, grid=grid)
    assert one.weights is base  # one example: its gain does not pay for the distance
    free = fit_weights([_gold_second()], [["g"]], default=base, grid=grid, shrinkage=(0.0, 0.0))
    assert free.weights.weight("memory") == 2.5  # the same evidence, without the shrinkage
    many = fit_weights([_gold_second()] * 20, [["g"]] * 20, default=base, grid=grid)
    assert many.weights.weight("memory") == 2.5  # twenty examples saying the same: it moves
    assert many.weights.weight("lexical") == base.weight("lexical")  # the base's own, kept


def test_labels_without_support_leave_the_zero_label_base() -> None:
    from qta_integrations import QTAPipeline, ToolCatalog
    from qta_integrations.stores import ExactToolIndex
    from qta_integrations.testing import KeywordEmbeddings

    from ..conftest import TOOLS

    pipeline = QTAPipeline(
        ToolCatalog.from_dicts([dict(t) for t in TOOLS]), ExactToolIndex(KeywordEmbeddings()), None
    )
    # Each example names a tool no other example names: nothing held out supports a label.
    pipeline.add_examples(
        [
            {"query": "email me about oslo", "tools": ["weather"]},
            {"query": "translate apple", "tools": ["stock_quote"]},
            {"query": "calendar for bob", "tools": ["email"]},
        ]
    )
    assert pipeline.fusion == FusionWeights.base()
    assert pipeline.settings.base == FusionWeights.base()
    assert pipeline.last_fit is not None and pipeline.last_fit.coverage == 0.0
    pipeline.remove_examples([e.query for e in pipeline.memory])
    assert pipeline.fusion == FusionWeights.base()  # no labels: back to the base
