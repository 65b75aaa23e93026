"""``memory``: the similarity of the query to the closest labelled example needing the tool."""

from __future__ import annotations

from qta_integrations.signals.base import Signal, SignalContext, SignalScores

__all__ = ["MemorySignal"]


class MemorySignal(Signal):
    """Similarity of the query to the closest labelled example needing the tool.

    Its grid stops at 2.5: a similarity to one labelled example then moves a tool by at
    most 2.5 standard deviations of the dense scores. Larger weights win the held-out score
    when a few examples come in pairs (each validates the other) but then override dense for
    any query loosely similar to an example (measured on `qta demo`'s catalogue: at 10, an
    umbrella question went to the flights tool because a flights example named the same city).
    """

    name = "memory"
    uses_labels = True
    grid = (0.0, 0.5, 1.0, 2.5)

    def scores(self, context: SignalContext) -> list[SignalScores]:
        """Max example similarity per tool; 0 for tools no returned example needs."""
        out = []
        for position, hits in enumerate(context.entry_hits):
            skip, unlabelled = context.excluded(position), context.unlabelled(position)
            best: dict[str, float] = {}
            for hit in hits:
                if hit.kind != "example" or hit.entry_id in skip:
                    continue
                for tool_id in hit.tool_ids:
                    if tool_id not in unlabelled:
                        best[tool_id] = max(best.get(tool_id, 0.0), max(hit.score, 0.0))
            out.append(SignalScores(best, 0.0))
        return out
