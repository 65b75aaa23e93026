from __future__ import annotations

import json
from pathlib import Path

import pytest

from qta_integrations.ranking import SufficiencyNDCG
from qta_integrations.stores import ExactToolIndex
from qta_integrations.testing import KeywordEmbeddings
from qta_integrations.tools import ToolCatalog
from qta_integrations.training import (
    GradedCandidate,
    TrainingExample,
    grade_candidates,
    load_examples,
    select_pairs,
)

# -- the ranking function on hand-made rankings -------------------------------------------


@pytest.mark.parametrize(
    ("better", "worse", "gold"),
    [
        # complete at 5 beats incomplete at 5, whatever the NDCG says
        (["x", "y", "z", "a", "b", "w"], ["a", "x", "y", "z", "w", "b"], {"a", "b"}),
        # both complete at 5 and 10: the one with gold higher wins
        (["a", "b", "x", "y", "z", "w"], ["x", "y", "z", "a", "b", "w"], {"a", "b"}),
        # neither complete: the partial hit ranked higher still separates them
        (
            ["a"] + [f"t{i}" for i in range(12)] + ["b"],
            [f"t{i}" for i in range(12)] + ["a", "b"],
            {"a", "b"},
        ),
    ],
)
def test_sufficiency_ndcg_orders_hand_made_rankings(
    better: list[str], worse: list[str], gold: set[str]
) -> None:
    grade = SufficiencyNDCG()
    assert grade(better, gold) > grade(worse, gold)


def test_sufficiency_ndcg_values() -> None:
    grade = SufficiencyNDCG(cutoffs=(1, 2))
    assert grade(["a", "b", "c"], {"a"}) == (1.0, 1.0, 1.0)
    s1, s2, ndcg = grade(["b", "a", "c"], {"a"})
    assert (s1, s2) == (0.0, 1.0)
    assert ndcg == pytest.approx(1 / 1.5849625, rel=1e-6)


def test_sufficiency_ndcg_rejects_bad_cutoffs() -> None:
    with pytest.raises(ValueError, match="cutoffs"):
        SufficiencyNDCG(cutoffs=(0,))


# -- pair selection from known grades ------------------------------------------------------


def _cands(*items: tuple[str, float]) -> list[GradedCandidate]:
    return [GradedCandidate(text, (grade,)) for text, grade in items]


def test_best_is_chosen_and_worst_is_rejected() -> None:
    pairs = select_pairs(_cands(("mid", 0.5), ("best", 0.9), ("worst", 0.1)))
    assert [(c.text, r.text) for c, r in pairs] == [("best", "worst")]


def test_more_pairs_take_the_next_worst_only_if_strictly_worse() -> None:
    cands = _cands(("a", 0.9), ("b", 0.9), ("c", 0.4), ("d", 0.1))
    pairs = select_pairs(cands, max_pairs=5)
    assert [(c.text, r.text) for c, r in pairs] == [("a", "d"), ("a", "c")]


def test_all_ties_give_no_pair() -> None:
    assert select_pairs(_cands(("a", 0.5), ("b", 0.5), ("c", 0.5))) == []


def test_partial_tie_at_the_top_keeps_the_first_best() -> None:
    pairs = select_pairs(_cands(("first", 1.0), ("second", 1.0), ("low", 0.0)))
    assert [(c.text, r.text) for c, r in pairs] == [("first", "low")]


def test_duplicate_texts_count_once() -> None:
    assert select_pairs(_cands(("same", 0.9), ("same", 0.1))) == []


def test_tuple_grades_compare_lexicographically() -> None:
    cands = [
        GradedCandidate("complete", (1.0, 0.2)),
        GradedCandidate("incomplete-high-ndcg", (0.0, 0.9)),
    ]
    chosen, rejected = select_pairs(cands)[0]
    assert (chosen.text, rejected.text) == ("complete", "incomplete-high-ndcg")


def test_max_pairs_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_pairs"):
        select_pairs(_cands(("a", 1.0), ("b", 0.0)), max_pairs=0)


# -- grading against the frozen retriever --------------------------------------------------


@pytest.fixture
def index(tool_dicts: list[dict[str, str]]) -> ExactToolIndex:
    return ExactToolIndex.from_catalog(ToolCatalog.from_dicts(tool_dicts), KeywordEmbeddings())


def test_a_rewrite_with_the_tool_vocabulary_grades_higher(index: ExactToolIndex) -> None:
    query = "should I pack an umbrella"
    grades = grade_candidates(
        index,
        query,
        ["current weather forecast for a city", "send an email", query],
        ["weather"],
        SufficiencyNDCG(cutoffs=(1,)),
        alpha=0.5,
    )
    assert grades[0] > grades[2] >= grades[1] or grades[0] > grades[1]
    assert grades[0][0] == 1.0


def test_fused_grade_of_the_query_itself_is_the_original_ranking(index: ExactToolIndex) -> None:
    query = "weather in Paris"
    ranking = SufficiencyNDCG()
    fused = grade_candidates(index, query, [query], ["weather"], ranking, alpha=0.5)
    alone = grade_candidates(index, query, [query], ["weather"], ranking, alpha=0.5, fused=False)
    assert fused == alone == [ranking(index.rank_all([query])[0], ["weather"])]


def test_fused_and_alone_grades_differ_when_the_original_matters(index: ExactToolIndex) -> None:
    # The candidate alone points at email; fused with a weather query, weather still wins.
    query = "weather forecast city"
    ranking = SufficiencyNDCG(cutoffs=(1,))
    cand = ["send an email message"]
    alone = grade_candidates(index, query, cand, ["weather"], ranking, alpha=0.3, fused=False)
    fused = grade_candidates(index, query, cand, ["weather"], ranking, alpha=0.3)
    assert alone[0][0] == 0.0
    assert fused[0][0] == 1.0


def test_no_candidates_no_grades(index: ExactToolIndex) -> None:
    assert grade_candidates(index, "q", [], ["weather"], SufficiencyNDCG(), alpha=0.5) == []


# -- examples --------------------------------------------------------------------------------


def test_load_examples_from_dicts_objects_and_files(
    tmp_path: Path, tool_dicts: list[dict[str, str]]
) -> None:
    catalog = ToolCatalog.from_dicts(tool_dicts)
    records = [{"query": "rain?", "tools": ["weather"]}, {"query": "AAPL?", "tools": "stock_quote"}]
    expected = [TrainingExample("rain?", ("weather",)), TrainingExample("AAPL?", ("stock_quote",))]
    assert load_examples(records, catalog) == expected
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records))
    assert load_examples(jsonl, catalog) == expected
    as_json = tmp_path / "train.json"
    as_json.write_text(json.dumps(records))
    assert load_examples(str(as_json), catalog) == expected

    class Labelled:
        query = "rain?"
        tool_ids = ("weather",)

    assert load_examples([Labelled()], catalog) == expected[:1]


def test_zero_examples_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least one labelled query"):
        load_examples([])


def test_unknown_gold_ids_are_listed(tool_dicts: list[dict[str, str]]) -> None:
    catalog = ToolCatalog.from_dicts(tool_dicts)
    with pytest.raises(ValueError, match=r"\['nope', 'zzz'\]"):
        load_examples(
            [{"query": "a", "tools": ["weather", "zzz"]}, {"query": "b", "tools": ["nope"]}],
            catalog,
        )


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"tools": ["weather"]}, "query"),
        ({"query": "  ", "tools": ["weather"]}, "query"),
        ({"query": "rain", "tools": []}, "tools"),
        ("just a string", "example #0"),
    ],
)
def test_malformed_examples_name_the_record(record: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_examples([record])


def test_a_single_dict_is_not_a_list_of_examples() -> None:
    with pytest.raises(ValueError, match="wrap it in a list"):
        load_examples({"query": "rain", "tools": ["weather"]})  # type: ignore[arg-type]
