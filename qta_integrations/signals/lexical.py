"""``lexical``: BM25 over the tools' own texts (names, descriptions, parameters).

It needs no labels, so what the fit learns about it (its weight) holds for every tool of the
catalogue, labelled or not: on catalogues whose tool texts share the users' words it is the
signal that transfers best (measured on MTRB, see the benchmarks page).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from qta_integrations.signals.base import Signal, SignalContext, SignalScores
from qta_integrations.stores.base import top_indices
from qta_integrations.stores.bm25 import BM25ToolIndex

__all__ = ["LexicalSignal", "bm25_scores"]


def bm25_scores(index: BM25ToolIndex, queries: Sequence[str], depth: int) -> list[SignalScores]:
    """BM25 scores standardised over the whole catalogue; the top ``depth`` tools kept."""
    ids = index.ids
    out = []
    for row in index.scores(list(queries)):
        spread = float(row.std())
        z = (row - row.mean()) / (spread if spread > 1e-9 else 1.0)
        top = top_indices(z, depth)  # a full sort of 100,000 took tens of ms
        floor = float(z[top[-1]]) if len(top) else 0.0
        out.append(SignalScores({ids[i]: float(z[i]) for i in top}, floor))
    return out


class LexicalSignal(Signal):
    """BM25 over the tools' texts (see the module docstring).

    Args:
        index: Returns the BM25 index over the catalogue; called when first needed, so a
            pipeline that never uses this signal never builds it.
    """

    name = "lexical"
    grid = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)

    def __init__(self, index: Callable[[], BM25ToolIndex]) -> None:
        self._index = index

    def scores(self, context: SignalContext) -> list[SignalScores]:
        """Standardised BM25 scores of the top ``depth`` tools, for every query at once."""
        if not context.queries:
            return []
        return bm25_scores(self._index(), context.queries, context.depth)
