"""Example memory: the user's labelled queries, attached to the tools they need.

Labels teach the most on the *tool* side. Each labelled query is stored in the wrapped index as
an extra entry (`IndexEntry.for_example`) carrying its gold tool ids, so one search returns
tools and examples together: a tool's memory score is the similarity of the query to the
closest example that needs it (`qta_integrations.signals.MemorySignal`). The same examples
extend their tools' text for BM25 (`BM25ToolIndex.with_expansions`), and give each tool a
prior: how often the labels need it (`qta_integrations.signals.PriorSignal`).

`LabelledExample` is the one record of a labelled query (the trainer, the evaluation datasets
and the pipeline all use it) and `parse_examples` its one parser; `ExampleMemory` is the list of
examples; `QTAPipeline.add_examples` / `remove_examples` keep
the index in sync with it (namespace ``"examples"`` of `qta_integrations.stores.sync_index`),
and it is persisted with the retriever (`QTAPipeline.state_dict`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qta_integrations.sources.files import read_numbered_records
from qta_integrations.stores.base import IndexEntry
from qta_integrations.validation import describe, validate_history, validate_query

if TYPE_CHECKING:
    from qta_integrations.tools import ToolCatalog

__all__ = [
    "ExampleMemory",
    "ExamplesLike",
    "LabelledExample",
    "MemoryExample",
    "parse_examples",
]


@dataclass(frozen=True)
class LabelledExample:
    """A labelled query: its text, the ids of every tool it needs, and earlier user turns.

    The one record of a label: `QTATrainer.fit` learns from these, the evaluation datasets
    hold them (``LabelledQuery``), and the example memory stores them (``MemoryExample``);
    `parse_examples` reads them from files, dicts or objects.

    Attributes:
        query: The query.
        tool_ids: The gold tool ids (all of them: Sufficiency@k needs every one).
        history: Earlier user turns, oldest first (for a follow-up query).

    Raises:
        ValueError: for an empty or invisible query, or no tool ids.
        TypeError: for tool ids given as one string.

    Example:
        .. code-block:: python

            from qta_integrations.memory import LabelledExample

            example = LabelledExample("Will it rain in Oslo?", ("weather",))
            print(example.tool_ids, example.tools)  # ('weather',) ('weather',)
    """

    query: str
    tool_ids: tuple[str, ...]
    history: tuple[str, ...] = ()
    entry: IndexEntry = field(init=False, repr=False, compare=False)
    """The index entry that stores this example in the memory."""

    def __post_init__(self) -> None:
        if not isinstance(self.query, str) or not self.query.strip():
            msg = f"LabelledExample.query must be a non-empty string, got {describe(self.query)}."
            raise ValueError(msg)
        validate_query(self.query, name="LabelledExample.query")
        if isinstance(self.tool_ids, str):
            msg = (
                f"LabelledExample.tool_ids must be a sequence of ids, got the string "
                f"{self.tool_ids!r}; wrap it: ({self.tool_ids!r},)."
            )
            raise TypeError(msg)
        object.__setattr__(self, "tool_ids", tuple(self.tool_ids))
        if not self.tool_ids:
            msg = f"The query {self.query!r} has no gold tools; label at least one tool id."
            raise ValueError(msg)
        object.__setattr__(self, "history", validate_history(self.history))
        object.__setattr__(self, "entry", IndexEntry.for_example(self.query, self.tool_ids))

    @property
    def tools(self) -> tuple[str, ...]:
        """The gold tool ids (`tool_ids`)."""
        return self.tool_ids

    @property
    def entry_id(self) -> str:
        """The id of `entry` (stable: a hash of the query and its tool ids)."""
        return self.entry.id

    def to_dict(self) -> dict[str, Any]:
        """``{"query": ..., "tools": [...]}`` (and ``"history"`` when there is one)."""
        record: dict[str, Any] = {"query": self.query, "tools": list(self.tool_ids)}
        if self.history:
            record["history"] = list(self.history)
        return record


MemoryExample = LabelledExample
"""A labelled example in the memory: `LabelledExample` (the name kept for earlier code)."""

ExamplesLike = (
    str | os.PathLike[str] | Iterable[Mapping[str, Any]] | Iterable[LabelledExample] | Iterable[Any]
)
"""What `parse_examples` reads."""


def parse_examples(
    examples: ExamplesLike,
    catalog: ToolCatalog | None = None,
    *,
    record_name: str = "example",
    allow_empty: bool = False,
) -> list[LabelledExample]:
    """Read labelled queries from a file, records or objects: the one parser of labels.

    Accepts a path to a JSON list or JSONL file of ``{"query": str, "tools": [ids],
    "history": [turns]}`` records (``history`` optional; ``tool_ids`` may stand for
    ``tools``), an iterable of such dicts, of `LabelledExample`, or of objects with ``query``
    and ``tool_ids`` attributes, or a dataset with ``.queries``.

    Args:
        examples: What to read.
        catalog: When given, every tool id must name one of its tools.
        record_name: What a record is called in error messages (``"query record"``).
        allow_empty: Return ``[]`` for no records instead of raising.

    Raises:
        ValueError: for zero records, a malformed record (naming its position, and its file
            and line when read from a file), or tool ids that are not in ``catalog``.

    Example:
        .. code-block:: python

            from qta_integrations.memory import parse_examples

            (example,) = parse_examples([{"query": "rain in Oslo?", "tools": ["weather"]}])
            print(example.tool_ids)  # ('weather',)
    """
    if isinstance(examples, (str, os.PathLike)):
        numbered = read_numbered_records(Path(examples))
        records: Any = [record for _, record in numbered]
        source = f" in {str(examples)!r}"
        lines = [f" (line {line})" for line, _ in numbered]
    else:
        records = getattr(examples, "queries", examples)
        source = ""
        lines = []
    if isinstance(records, Mapping):
        msg = (
            "examples must be a list of {'query': ..., 'tools': [...]} records, got one "
            "dict; wrap it in a list."
        )
        raise ValueError(msg)
    parsed = [
        _parse_record(r, f"{record_name} #{i}" + (lines[i] if i < len(lines) else "") + source)
        for i, r in enumerate(records)
    ]
    if not parsed and not allow_empty:
        msg = (
            f"No training examples{source}. QTA needs at least one labelled query: pass "
            "[{'query': 'your query', 'tools': ['id of a tool it needs', ...]}, ...]."
        )
        raise ValueError(msg)
    if catalog is not None:
        unknown = sorted({t for e in parsed for t in e.tool_ids if t not in catalog})
        if unknown:
            hint = ", ".join(repr(i) for i in catalog.ids[:5])
            msg = (
                f"The training examples{source} name {len(unknown)} tool id(s) that are not in "
                f"the catalogue: {unknown}. Use the catalogue's tool ids (they look like: "
                f"{hint}, ...)."
            )
            raise ValueError(msg)
    return parsed


def _parse_record(record: Any, where: str) -> LabelledExample:
    if isinstance(record, LabelledExample):
        return record
    if isinstance(record, Mapping):
        query = record.get("query")
        tools = record.get("tools", record.get("tool_ids"))
        history = record.get("history", ())
    elif hasattr(record, "query") and hasattr(record, "tool_ids"):
        query, tools, history = record.query, record.tool_ids, getattr(record, "history", ())
    else:
        msg = (
            f"{where} must be a dict (a JSON object) {{'query': str, 'tools': [tool ids]}}, "
            f"got {describe(record)}."
        )
        raise ValueError(msg)
    if not isinstance(query, str) or not query.strip():
        msg = f"{where} needs a non-empty string 'query', got {describe(query)}."
        raise ValueError(msg)
    try:
        validate_query(query)
    except ValueError as err:
        msg = f"{where}: {err}"
        raise ValueError(msg) from None
    if isinstance(tools, (str, int)) and not isinstance(tools, bool):
        tools = [tools]
    if not isinstance(tools, (list, tuple)) or not tools:
        msg = f"{where} needs 'tools': a non-empty list of gold tool ids, got {describe(tools)}."
        raise ValueError(msg)
    for tool_id in tools:
        if isinstance(tool_id, bool) or not isinstance(tool_id, (str, int)):
            msg = (
                f"{where} has a tool id that is not a string: {describe(tool_id)}. List the "
                'ids as strings: "tools": ["get_weather", ...].'
            )
            raise ValueError(msg)
    if isinstance(history, str):
        history = [history]
    try:
        turns = validate_history(history)
    except (TypeError, ValueError) as err:
        msg = f"{where}: {err}"
        raise ValueError(msg) from None
    return LabelledExample(query, tuple(str(t) for t in tools), turns)


class ExampleMemory(Sequence[LabelledExample]):
    """An ordered, de-duplicated list of labelled examples.

    Example:
        .. code-block:: python

            from qta_integrations.memory import ExampleMemory

            memory = ExampleMemory()
            memory.add([("is it raining in Oslo?", ("weather",))])
            print(len(memory), memory.prior())  # 1 {'weather': 1.0}
    """

    def __init__(self, examples: Iterable[LabelledExample] = ()) -> None:
        self._examples: dict[str, LabelledExample] = {}
        self.add(examples)

    def add(
        self, examples: Iterable[LabelledExample | tuple[str, Sequence[str]]]
    ) -> list[LabelledExample]:
        """Add examples (or ``(query, tool ids)`` pairs); returns the ones not there yet."""
        added = []
        for item in examples:
            if isinstance(item, LabelledExample):
                example = item
            else:
                query, tool_ids = item
                example = LabelledExample(query, tuple(tool_ids))
            if example.entry_id not in self._examples:
                self._examples[example.entry_id] = example
                added.append(example)
        return added

    def remove(self, queries: Iterable[str]) -> list[LabelledExample]:
        """Remove every example whose query is in ``queries``; returns the removed ones."""
        wanted = set(queries)
        removed = [e for e in self._examples.values() if e.query in wanted]
        for example in removed:
            del self._examples[example.entry_id]
        return removed

    def clear(self) -> None:
        """Forget every example."""
        self._examples.clear()

    def entry_ids(self) -> set[str]:
        """The index entry ids of all examples."""
        return set(self._examples)

    def entries(self) -> list[IndexEntry]:
        """The index entries of all examples."""
        return [e.entry for e in self._examples.values()]

    def prior(self, *, exclude: Iterable[str] = ()) -> dict[str, float]:
        """For each labelled tool, the fraction of examples that need it.

        Args:
            exclude: Entry ids left out (leave-one-out fitting).
        """
        skip = set(exclude)
        kept = [e for e in self._examples.values() if e.entry_id not in skip]
        counts: dict[str, float] = {}
        for example in kept:
            for tool_id in example.tool_ids:
                counts[tool_id] = counts.get(tool_id, 0.0) + 1.0
        return {tool_id: c / len(kept) for tool_id, c in counts.items()}

    def coverage(self) -> float:
        """The share of future queries these labels may be expected to cover.

        Leave-one-out: the fraction of examples one of whose tools another example also
        needs (a Good-Turing estimate: the queries asking for tools no label names are
        about as frequent as the labels whose tools no other label names). 0 with fewer
        than two examples.

        Example:
            .. code-block:: python

                memory = ExampleMemory()
                memory.add([("rain?", ["weather"]), ("sun?", ["weather"]), ("AAPL?", ["stocks"])])
                print(round(memory.coverage(), 2))  # 0.67
        """
        examples = list(self._examples.values())
        if len(examples) < 2:
            return 0.0
        needing: dict[str, int] = {}
        for example in examples:
            for tool_id in set(example.tool_ids):
                needing[tool_id] = needing.get(tool_id, 0) + 1
        covered = sum(any(needing[t] > 1 for t in set(e.tool_ids)) for e in examples)
        return covered / len(examples)

    def expansions(self, *, exclude: Iterable[str] = ()) -> dict[str, list[str]]:
        """For each labelled tool, the queries that need it (to extend its lexical text)."""
        skip = set(exclude)
        texts: dict[str, list[str]] = {}
        for example in self._examples.values():
            if example.entry_id in skip:
                continue
            for tool_id in example.tool_ids:
                texts.setdefault(tool_id, []).append(example.query)
        return texts

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-serialisable records (`LabelledExample.to_dict`)."""
        return [e.to_dict() for e in self._examples.values()]

    @classmethod
    def from_list(cls, records: Iterable[Mapping[str, Any]]) -> ExampleMemory:
        """Read `to_list` output back (`parse_examples`)."""
        return cls(parse_examples(list(records), allow_empty=True))

    def __getitem__(self, index: int) -> LabelledExample:  # type: ignore[override]
        return list(self._examples.values())[index]

    def __iter__(self) -> Iterator[LabelledExample]:
        return iter(list(self._examples.values()))

    def __len__(self) -> int:
        return len(self._examples)

    def __contains__(self, item: object) -> bool:
        return isinstance(item, LabelledExample) and item.entry_id in self._examples

    def __repr__(self) -> str:
        return f"ExampleMemory({len(self)} examples)"
