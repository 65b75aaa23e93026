"""Signals: the named scores every candidate tool gets for a query.

A signal reads one `SignalContext` (the queries, the one search of the wrapped store that
returned tools *and* labelled examples, the rewrites' searches when the rewriter ran) and gives
each query a `SignalScores`: a score per tool it has an opinion on, already on the scale the
fusion adds up, and the score of every other tool (``floor``). New signals plug in by
subclassing `Signal` and adding an instance to `QTAPipeline.signals` and a weight to
`qta_integrations.fusion.FusionWeights`.

The built-in signals (names as in `FusionWeights`):

* ``dense``: query <-> tool similarity from the wrapped vector store, standardised over the
  fetched candidates (z-score), so its scale does not depend on the embedding model;
* ``lexical``: BM25 over the tools' own texts, standardised over the whole catalogue;
* ``labelled_lexical``: the same over the tools' texts each extended with the labelled queries
  that need the tool;
* ``memory``: the similarity of the query to the closest labelled example that needs the tool
  (0 for a tool no example needs): labels on the tool side;
* ``prior``: the fraction of labelled examples that need the tool;
* ``rewrite``: rewrite <-> tool similarity, standardised like ``dense`` (only when the
  rewriter runs, which it does only when its fused weight is not zero).

With ``normalize=False`` (the paper's configuration) ``dense`` and ``rewrite`` give raw
similarities, as `qta_integrations.ranking.fuse_hits` fuses them.
"""

from __future__ import annotations

from collections.abc import Callable

from qta_integrations.memory import ExampleMemory
from qta_integrations.signals.base import Signal, SignalContext, SignalScores, standardise
from qta_integrations.signals.dense import DenseSignal
from qta_integrations.signals.labelled_lexical import LabelledLexicalSignal
from qta_integrations.signals.lexical import LexicalSignal
from qta_integrations.signals.memory import MemorySignal
from qta_integrations.signals.prior import PriorSignal
from qta_integrations.signals.rewrite import RewriteSignal
from qta_integrations.stores.bm25 import BM25ToolIndex

__all__ = [
    "DenseSignal",
    "LabelledLexicalSignal",
    "LexicalSignal",
    "MemorySignal",
    "PriorSignal",
    "RewriteSignal",
    "Signal",
    "SignalContext",
    "SignalScores",
    "default_signals",
    "standardise",
]


def default_signals(
    lexical_index: Callable[[], BM25ToolIndex], memory: Callable[[], ExampleMemory]
) -> dict[str, Signal]:
    """The built-in signals, by name."""
    signals: list[Signal] = [
        DenseSignal(),
        LexicalSignal(lexical_index),
        LabelledLexicalSignal(lexical_index, memory),
        MemorySignal(),
        PriorSignal(memory),
        RewriteSignal(),
    ]
    return {s.name: s for s in signals}
