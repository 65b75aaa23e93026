"""Signals: the named scores every candidate tool gets for a query.

A signal reads one `SignalContext` (the queries, the one search of the wrapped store that
returned tools *and* labelled examples, the rewrites' searches when the rewriter ran) and gives
each query a `SignalScores`: a score per tool it has an opinion on, already on the scale the
fusion adds up, and the score of every other tool (``floor``). The list is open: a new signal
is one `Signal` subclass and one `register_signal` call (`qta_integrations.signals.registry`);
the fusion weights, the fit, saved settings and every pipeline then know it.

The built-in signals, registered in this order:

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

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from qta_integrations.signals.base import Signal, SignalContext, SignalScores, standardise
from qta_integrations.signals.dense import DenseSignal
from qta_integrations.signals.labelled_lexical import LabelledLexicalSignal
from qta_integrations.signals.lexical import LexicalSignal
from qta_integrations.signals.memory import MemorySignal
from qta_integrations.signals.prior import PriorSignal
from qta_integrations.signals.registry import (
    SignalResources,
    SignalSpec,
    build_signal,
    register_signal,
    registered_signals,
    signal_spec,
    unregister_signal,
)
from qta_integrations.signals.rewrite import RewriteSignal

if TYPE_CHECKING:
    from qta_integrations.memory import ExampleMemory
    from qta_integrations.stores.bm25 import BM25ToolIndex
    from qta_integrations.tools import ToolCatalog

__all__ = [
    "DenseSignal",
    "LabelledLexicalSignal",
    "LexicalSignal",
    "MemorySignal",
    "PriorSignal",
    "RewriteSignal",
    "Signal",
    "SignalContext",
    "SignalResources",
    "SignalScores",
    "SignalSpec",
    "build_signal",
    "build_signals",
    "default_signals",
    "register_signal",
    "registered_signals",
    "signal_spec",
    "standardise",
    "unregister_signal",
]

register_signal(DenseSignal)
register_signal(LexicalSignal, build=lambda r: LexicalSignal(r.lexical_index))
register_signal(
    LabelledLexicalSignal, build=lambda r: LabelledLexicalSignal(r.lexical_index, r.memory)
)
register_signal(MemorySignal)
register_signal(PriorSignal, build=lambda r: PriorSignal(r.memory))
register_signal(RewriteSignal)


def build_signals(resources: SignalResources) -> dict[str, Signal]:
    """One instance of every registered signal, by name, in registration order."""
    return {name: spec.build(resources) for name, spec in registered_signals().items()}


def default_signals(
    lexical_index: Callable[[], BM25ToolIndex], memory: Callable[[], ExampleMemory]
) -> dict[str, Signal]:
    """Deprecated: use `build_signals` with a `SignalResources`."""
    warnings.warn(
        "default_signals(lexical_index, memory) is deprecated; use "
        "build_signals(SignalResources(catalog=..., lexical_index=..., memory=...)).",
        DeprecationWarning,
        stacklevel=2,
    )

    def no_catalog() -> ToolCatalog:
        msg = "default_signals gives its signals no catalogue; use build_signals."
        raise RuntimeError(msg)

    return build_signals(SignalResources(no_catalog, lexical_index, memory))
