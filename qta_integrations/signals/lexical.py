"""``lexical``: BM25 over the tools' texts, each extended with its labelled queries."""

from __future__ import annotations

import threading
from collections.abc import Callable

from qta_integrations.memory import ExampleMemory
from qta_integrations.signals.base import Signal, SignalContext, SignalScores
from qta_integrations.stores.base import top_indices
from qta_integrations.stores.bm25 import BM25ToolIndex

__all__ = ["LexicalSignal"]


class LexicalSignal(Signal):
    """BM25 over tool texts extended with their labelled queries (see the module docstring).

    Args:
        index: Returns the BM25 index over the catalogue (without expansions); called when
            first needed, so a pipeline that never uses this signal never builds it.
        memory: Returns the current example memory (its queries extend the tools' texts).
    """

    name = "lexical"

    def __init__(
        self, index: Callable[[], BM25ToolIndex], memory: Callable[[], ExampleMemory]
    ) -> None:
        self._index = index
        self._memory = memory
        self._lock = threading.Lock()
        self._expanded: dict[frozenset[str], BM25ToolIndex] = {}
        self._base: BM25ToolIndex | None = None

    def _index_for(self, skip: frozenset[str]) -> BM25ToolIndex:
        memory = self._memory()
        # An entry id hashes its query and tool ids, so the ids kept determine the expansions.
        key = frozenset(memory.entry_ids() - skip)
        with self._lock:
            base = self._index()
            if base is not self._base:  # a new catalogue: expansions of the old one are stale
                self._expanded.clear()
                self._base = base
            found = self._expanded.get(key)
            if found is None:
                if len(self._expanded) > 64:  # leave-one-out fits make one per example
                    self._expanded.clear()
                found = base.with_expansions(memory.expansions(exclude=skip))
                self._expanded[key] = found
        return found

    def scores(self, context: SignalContext) -> list[SignalScores]:
        """Standardised BM25 scores of the top ``depth`` tools (over the whole catalogue)."""
        out: list[SignalScores] = [SignalScores({}, 0.0)] * len(context.queries)
        groups: dict[frozenset[str], list[int]] = {}
        for position in range(len(context.queries)):
            groups.setdefault(context.excluded(position), []).append(position)
        for skip, positions in groups.items():
            index = self._index_for(skip)
            ids = index.ids
            matrix = index.scores([context.queries[p] for p in positions])
            for position, row in zip(positions, matrix, strict=True):
                spread = float(row.std())
                z = (row - row.mean()) / (spread if spread > 1e-9 else 1.0)
                top = top_indices(z, context.depth)  # a full sort of 100,000 took tens of ms
                floor = float(z[top[-1]]) if len(top) else 0.0
                out[position] = SignalScores({ids[i]: float(z[i]) for i in top}, floor)
        return out
