"""``rewrite``: rewrite <-> tool similarity, when the rewriter runs (its weight is not zero)."""

from __future__ import annotations

from qta_integrations.signals.base import Signal, SignalContext, SignalScores, standardise

__all__ = ["RewriteSignal"]


class RewriteSignal(Signal):
    """Rewrite <-> tool similarity (see the module docstring)."""

    name = "rewrite"
    needs_rewrite = True
    grid = (0.0, 0.25, 0.5, 1.0)

    def scores(self, context: SignalContext) -> list[SignalScores]:
        """Standardised similarities of the tools found with the rewrite (empty: no rewrite)."""
        return [
            standardise([(h.tool_id, h.score) for h in hits], normalize=context.normalize)
            if hits
            else SignalScores({}, 0.0)
            for hits in context.rewrite_hits
        ]
