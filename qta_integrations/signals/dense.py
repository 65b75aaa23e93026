"""``dense``: query <-> tool similarity from the wrapped store, standardised."""

from __future__ import annotations

from qta_integrations.signals.base import (
    Signal,
    SignalContext,
    SignalScores,
    standardise,
    tool_pairs,
)

__all__ = ["DenseSignal"]


class DenseSignal(Signal):
    """Query <-> tool similarity from the wrapped store (see the module docstring).

    It is the fusion's anchor: its weight stays 1 in a fit, so every other weight says how
    far that signal may move a tool against the dense ranking.
    """

    name = "dense"
    grid = (1.0,)

    def scores(self, context: SignalContext) -> list[SignalScores]:
        """Standardised similarities of the fetched tools."""
        return [
            standardise(tool_pairs(hits, context.depth), normalize=context.normalize)
            for hits in context.entry_hits
        ]
