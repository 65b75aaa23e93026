"""``lexical``: BM25 over the tools' own texts, as far as the query's words are found there.

The texts are the tools' names, descriptions and parameters.
It needs no labels: with the dense signal it is the zero-label base (`FusionWeights.base`).
BM25 helps where users write the words the tool texts use, and hurts where they do not
(measured on five catalogues, docs/benchmarks.md: on one of them any fixed BM25 weight cost
S@5). So each query's BM25 scores are scaled by how much of the query a single tool matches
lexically (`BM25ToolIndex.match_coverage`: the largest share of the query's idf mass one
tool's words hold), at full strength from `FULL_TRUST_COVERAGE` on: a query whose rare words
no tool contains is left to the dense ranking.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from qta_integrations.signals.base import Signal, SignalContext, SignalScores
from qta_integrations.stores.base import top_indices
from qta_integrations.stores.bm25 import BM25ToolIndex

__all__ = ["FULL_TRUST_COVERAGE", "LexicalSignal", "bm25_scores", "match_trust"]


FULL_TRUST_COVERAGE = 0.25
"""The match coverage from which BM25 counts in full; below it, in proportion (chosen on five
catalogues as a whole, docs/benchmarks.md)."""


def bm25_scores(
    index: BM25ToolIndex,
    queries: Sequence[str],
    depth: int,
    *,
    trusted: bool = False,
) -> list[SignalScores]:
    """BM25 scores standardised over the whole catalogue; the top ``depth`` tools kept.

    With ``trusted``, each query's standardised scores are scaled by its `match_trust`.
    """
    ids = index.ids
    out = []
    if trusted:
        matrix, coverage = index.scores_and_coverage(list(queries))
        scale = _trust(coverage)
    else:
        matrix, scale = index.scores(list(queries)), None
    for position, row in enumerate(matrix):
        spread = float(row.std())
        z = (row - row.mean()) / (spread if spread > 1e-9 else 1.0)
        if scale is not None:
            z = z * float(scale[position])
        top = top_indices(z, depth)  # a full sort of 100,000 took tens of ms
        floor = float(z[top[-1]]) if len(top) else 0.0
        out.append(SignalScores({ids[i]: float(z[i]) for i in top}, floor))
    return out


def match_trust(index: BM25ToolIndex, queries: Sequence[str]) -> np.ndarray:
    """Per query, how far its BM25 scores count: ``min(1, coverage / FULL_TRUST_COVERAGE)``.

    Non-decreasing in the query's match coverage (`BM25ToolIndex.match_coverage`), in [0, 1].
    """
    return _trust(index.match_coverage(list(queries)))


def _trust(coverage: np.ndarray) -> np.ndarray:
    return np.minimum(1.0, coverage / FULL_TRUST_COVERAGE)


class LexicalSignal(Signal):
    """BM25 over the tools' texts, scaled per query by `match_trust` (see the module).

    Args:
        index: Returns the BM25 index over the catalogue; called when first needed, so a
            pipeline that never uses this signal never builds it.
    """

    name = "lexical"
    grid = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)

    def __init__(self, index: Callable[[], BM25ToolIndex]) -> None:
        self._index = index

    def scores(self, context: SignalContext) -> list[SignalScores]:
        """Standardised, trust-scaled BM25 scores of the top ``depth`` tools, for every query."""
        if not context.queries:
            return []
        return bm25_scores(self._index(), context.queries, context.depth, trusted=True)
