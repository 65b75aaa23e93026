"""One record for a labelled query, with one parser, beside the memory it feeds."""

from __future__ import annotations

import subprocess
import sys

import pytest

from qta_integrations.evaluation import LabelledQuery
from qta_integrations.memory import ExampleMemory, LabelledExample, MemoryExample, parse_examples
from qta_integrations.training import TrainingExample, load_examples


def test_training_evaluation_and_memory_share_one_record_and_one_parser() -> None:
    assert TrainingExample is LabelledExample
    assert LabelledQuery is LabelledExample
    assert MemoryExample is LabelledExample
    assert load_examples is parse_examples


def test_the_record_carries_query_tools_and_history() -> None:
    (example,) = parse_examples(
        [{"query": "and in Paris?", "tools": ["weather"], "history": ["rain in Oslo?"]}]
    )
    assert example == LabelledExample("and in Paris?", ("weather",), ("rain in Oslo?",))
    assert example.tools == example.tool_ids == ("weather",)
    assert example.to_dict() == {
        "query": "and in Paris?",
        "tools": ["weather"],
        "history": ["rain in Oslo?"],
    }
    memory = ExampleMemory([example])
    assert memory[0] is example and memory.to_list() == [example.to_dict()]
    assert ExampleMemory.from_list(memory.to_list())[0] == example


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"query": "q", "tools": [None]}, r"example #0 has a tool id that is not a string: None"),
        (
            {"query": "q", "tools": ["a"], "history": [3]},
            r"example #0: turn 0 of history must be a str",
        ),
        ({"query": "q", "tools": True}, r"example #0 needs 'tools'"),
    ],
)
def test_one_parser_refuses_what_neither_old_parser_should_have_accepted(
    record: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_examples([record])


def test_the_core_imports_neither_training_nor_evaluation_nor_a_face() -> None:
    code = (
        "import sys\n"
        "import qta_integrations.pipeline, qta_integrations.memory, qta_integrations.fusion\n"
        "import qta_integrations.signals, qta_integrations.stores\n"
        "bad = sorted(m for m in sys.modules if m.startswith(("
        "'qta_integrations.training', 'qta_integrations.evaluation', "
        "'qta_integrations.retrievers', 'qta_integrations.agents')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""
