"""Example memory: the user's labelled queries, attached to the tools they need.

Labels teach the most on the *tool* side. Each labelled query is stored in the wrapped index as
an extra entry (`IndexEntry.for_example`) carrying its gold tool ids, so one search returns
tools and examples together: a tool's memory score is the similarity of the query to the
closest example that needs it (`qta_integrations.signals.MemorySignal`). The same examples
extend their tools' text for BM25 (`BM25ToolIndex.with_expansions`), and give each tool a
prior: how often the labels need it (`qta_integrations.signals.PriorSignal`).

`ExampleMemory` is the list of examples; `QTAPipeline.add_examples` / `remove_examples` keep
the index in sync with it (namespace ``"examples"`` of `qta_integrations.stores.sync_index`),
and it is persisted with the retriever (`QTAPipeline.state_dict`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from qta_integrations.stores.base import IndexEntry

__all__ = ["ExampleMemory", "MemoryExample"]


@dataclass(frozen=True)
class MemoryExample:
    """A labelled query in memory: its text, its gold tools and its index entry id."""

    query: str
    tool_ids: tuple[str, ...]
    entry: IndexEntry = field(init=False, repr=False, compare=False)
    """The index entry that stores this example."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "entry", IndexEntry.for_example(self.query, self.tool_ids))

    @property
    def entry_id(self) -> str:
        """The id of `entry` (stable: a hash of the query and its tool ids)."""
        return self.entry.id

    def to_dict(self) -> dict[str, Any]:
        """``{"query": ..., "tools": [...]}``, the format `QTATrainer.fit` reads."""
        return {"query": self.query, "tools": list(self.tool_ids)}


class ExampleMemory(Sequence[MemoryExample]):
    """An ordered, de-duplicated list of labelled examples.

    Example:
        .. code-block:: python

            from qta_integrations.memory import ExampleMemory

            memory = ExampleMemory()
            memory.add([("is it raining in Oslo?", ("weather",))])
            print(len(memory), memory.prior())  # 1 {'weather': 1.0}
    """

    def __init__(self, examples: Iterable[MemoryExample] = ()) -> None:
        self._examples: dict[str, MemoryExample] = {}
        self.add((e.query, e.tool_ids) for e in examples)

    def add(self, examples: Iterable[tuple[str, Sequence[str]]]) -> list[MemoryExample]:
        """Add ``(query, tool ids)`` pairs; returns the ones that were not there yet."""
        added = []
        for query, tool_ids in examples:
            example = MemoryExample(query, tuple(tool_ids))
            if example.entry_id not in self._examples:
                self._examples[example.entry_id] = example
                added.append(example)
        return added

    def remove(self, queries: Iterable[str]) -> list[MemoryExample]:
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
        """JSON-serialisable records (`MemoryExample.to_dict`)."""
        return [e.to_dict() for e in self._examples.values()]

    @classmethod
    def from_list(cls, records: Iterable[dict[str, Any]]) -> ExampleMemory:
        """Read `to_list` output back."""
        memory = cls()
        memory.add((r["query"], tuple(r["tools"])) for r in records)
        return memory

    def __getitem__(self, index: int) -> MemoryExample:  # type: ignore[override]
        return list(self._examples.values())[index]

    def __iter__(self) -> Iterator[MemoryExample]:
        return iter(list(self._examples.values()))

    def __len__(self) -> int:
        return len(self._examples)

    def __contains__(self, item: object) -> bool:
        return isinstance(item, MemoryExample) and item.entry_id in self._examples

    def __repr__(self) -> str:
        return f"ExampleMemory({len(self)} examples)"
