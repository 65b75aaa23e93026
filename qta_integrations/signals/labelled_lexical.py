"""``labelled_lexical``: BM25 over the tools' texts, each extended with its labelled queries.

The user's own wording of a request, attached to the tools it needs, matches later requests
worded alike. It speaks only for labelled tools, so the fit weighs it like the other label
signals (`qta_integrations.fusion`): never at the cost of queries whose tools no label names.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from qta_integrations.memory import ExampleMemory
from qta_integrations.signals.base import Signal, SignalContext, SignalScores
from qta_integrations.signals.lexical import bm25_scores
from qta_integrations.stores.bm25 import BM25ToolIndex

__all__ = ["LabelledLexicalSignal"]


class LabelledLexicalSignal(Signal):
    """BM25 over tool texts extended with their labelled queries (see the module docstring).

    Args:
        index: Returns the BM25 index over the catalogue (without expansions); called when
            first needed, so a pipeline that never uses this signal never builds it.
        memory: Returns the current example memory (its queries extend the tools' texts).
    """

    name = "labelled_lexical"
    uses_labels = True
    grid = (0.0, 0.3, 0.5, 1.0)

    def __init__(
        self, index: Callable[[], BM25ToolIndex], memory: Callable[[], ExampleMemory]
    ) -> None:
        self._index = index
        self._memory = memory
        self._lock = threading.Lock()
        self._expanded: dict[tuple[frozenset[str], frozenset[str]], BM25ToolIndex] = {}
        self._base: BM25ToolIndex | None = None

    def _index_for(self, skip: frozenset[str], unlabelled: frozenset[str]) -> BM25ToolIndex:
        memory = self._memory()
        # An entry id hashes its query and tool ids, so the ids kept determine the expansions.
        key = (frozenset(memory.entry_ids() - skip), unlabelled)
        with self._lock:
            base = self._index()
            if base is not self._base:  # a new catalogue: expansions of the old one are stale
                self._expanded.clear()
                self._base = base
            found = self._expanded.get(key)
            if found is None:
                if len(self._expanded) > 128:  # a fit makes two per example
                    self._expanded.clear()
                expansions = memory.expansions(exclude=skip)
                found = base.with_expansions(
                    {t: texts for t, texts in expansions.items() if t not in unlabelled}
                )
                self._expanded[key] = found
        return found

    def scores(self, context: SignalContext) -> list[SignalScores]:
        """Standardised BM25 scores of the top ``depth`` tools (over the whole catalogue)."""
        out: list[SignalScores] = [SignalScores({}, 0.0)] * len(context.queries)
        groups: dict[tuple[frozenset[str], frozenset[str]], list[int]] = {}
        for position in range(len(context.queries)):
            key = (context.excluded(position), context.unlabelled(position))
            groups.setdefault(key, []).append(position)
        for (skip, unlabelled), positions in groups.items():
            index = self._index_for(skip, unlabelled)
            found = bm25_scores(index, [context.queries[p] for p in positions], context.depth)
            for position, scores in zip(positions, found, strict=True):
                out[position] = scores
        return out
