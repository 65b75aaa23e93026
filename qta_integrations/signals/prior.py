"""``prior``: the fraction of labelled examples that need the tool."""

from __future__ import annotations

from collections.abc import Callable

from qta_integrations.memory import ExampleMemory
from qta_integrations.signals.base import Signal, SignalContext, SignalScores

__all__ = ["PriorSignal"]


class PriorSignal(Signal):
    """The fraction of labelled examples that need the tool."""

    name = "prior"
    uses_labels = True
    grid = (0.0, 0.5, 1.0, 2.5, 5.0)

    def __init__(self, memory: Callable[[], ExampleMemory]) -> None:
        self._memory = memory

    def scores(self, context: SignalContext) -> list[SignalScores]:
        """The same prior for every query (without its own example when fitting)."""
        memory = self._memory()
        cache: dict[tuple[frozenset[str], frozenset[str]], SignalScores] = {}
        out = []
        for position in range(len(context.queries)):
            key = (context.excluded(position), context.unlabelled(position))
            if key not in cache:
                prior = memory.prior(exclude=key[0]) if len(memory) else {}
                cache[key] = SignalScores({t: p for t, p in prior.items() if t not in key[1]})
            out.append(cache[key])
        return out
