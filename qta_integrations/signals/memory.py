"""``memory``: the similarity of the query to the closest labelled example needing the tool."""

from __future__ import annotations

from qta_integrations.signals.base import Signal, SignalContext, SignalScores

__all__ = ["MemorySignal"]


class MemorySignal(Signal):
    """Similarity of the query to the closest labelled example needing the tool."""

    name = "memory"

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
