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
* ``lexical``: BM25 over the tools' texts, each extended with the labelled queries that need
  the tool, standardised over the whole catalogue;
* ``memory``: the similarity of the query to the closest labelled example that needs the tool
  (0 for a tool no example needs): labels on the tool side;
* ``prior``: the fraction of labelled examples that need the tool;
* ``rewrite``: rewrite <-> tool similarity, standardised like ``dense`` (only when the
  rewriter runs, which it does only when its fused weight is not zero).

With ``normalize=False`` (the paper's configuration) ``dense`` and ``rewrite`` give raw
similarities, as `qta_integrations.ranking.fuse_hits` fuses them.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from qta_integrations.index import IndexHit, ToolHit
from qta_integrations.lexical import BM25ToolIndex
from qta_integrations.memory import ExampleMemory

__all__ = [
    "DenseSignal",
    "LexicalSignal",
    "MemorySignal",
    "PriorSignal",
    "RewriteSignal",
    "Signal",
    "SignalContext",
    "SignalScores",
    "default_signals",
]


@dataclass(frozen=True)
class SignalScores:
    """One signal's scores for one query.

    Attributes:
        scores: Tool id -> score, for the tools the signal returned (its candidates).
        floor: The score of any other tool.
    """

    scores: Mapping[str, float]
    floor: float = 0.0

    def get(self, tool_id: str) -> float:
        """The score of ``tool_id`` (`floor` when the signal did not return it)."""
        return self.scores.get(tool_id, self.floor)


@dataclass(frozen=True)
class SignalContext:
    """What the signals read for a batch of queries; the pipeline fills it once.

    Attributes:
        queries: The queries.
        entry_hits: For each query, one search of the store: tools and labelled examples.
        rewrite_hits: For each query, the tools found with its rewrite (None: no rewrite).
        rewrites: For each query, its rewrite (None: the rewriter did not run or fell back).
        exclude: For each query, example entry ids it must not see (leave-one-out fitting).
        depth: Candidates per signal.
        normalize: Standardise similarity signals (False: raw, the paper's fusion).
    """

    queries: Sequence[str]
    entry_hits: Sequence[Sequence[IndexHit]]
    rewrite_hits: Sequence[Sequence[ToolHit] | None]
    rewrites: Sequence[str | None] = field(default=())
    exclude: Sequence[frozenset[str]] = field(default=())
    depth: int = 100
    normalize: bool = True

    def excluded(self, position: int) -> frozenset[str]:
        """The example entry ids query ``position`` must not see."""
        return self.exclude[position] if self.exclude else frozenset()


class Signal(ABC):
    """One named score per candidate tool. Subclasses set `name` and implement `scores`."""

    name: ClassVar[str]
    needs_rewrite: ClassVar[bool] = False

    @abstractmethod
    def scores(self, context: SignalContext) -> list[SignalScores]:
        """One `SignalScores` per query of ``context``."""


def standardise(pairs: Sequence[tuple[str, float]], *, normalize: bool) -> SignalScores:
    """Scores of a ranked list, z-scored over the list; the floor is the lowest score.

    The tools a search did not return are at most as similar as the last one it did, so they
    all get the last score: ranking then never promotes a tool for being absent.
    """
    if not pairs:
        return SignalScores({}, 0.0)
    values = np.asarray([s for _, s in pairs], dtype=np.float64)
    if normalize:
        spread = float(values.std())
        values = (values - values.mean()) / (spread if spread > 1e-9 else 1.0)
    scores = {tool_id: float(v) for (tool_id, _), v in zip(pairs, values, strict=True)}
    return SignalScores(scores, float(values.min()))


def _tool_pairs(hits: Sequence[IndexHit], depth: int) -> list[tuple[str, float]]:
    return [(h.tool_ids[0], h.score) for h in hits if h.kind == "tool"][:depth]


class DenseSignal(Signal):
    """Query <-> tool similarity from the wrapped store (see the module docstring)."""

    name = "dense"

    def scores(self, context: SignalContext) -> list[SignalScores]:
        """Standardised similarities of the fetched tools."""
        return [
            standardise(_tool_pairs(hits, context.depth), normalize=context.normalize)
            for hits in context.entry_hits
        ]


class RewriteSignal(Signal):
    """Rewrite <-> tool similarity (see the module docstring)."""

    name = "rewrite"
    needs_rewrite = True

    def scores(self, context: SignalContext) -> list[SignalScores]:
        """Standardised similarities of the tools found with the rewrite (empty: no rewrite)."""
        return [
            standardise([(h.tool_id, h.score) for h in hits], normalize=context.normalize)
            if hits
            else SignalScores({}, 0.0)
            for hits in context.rewrite_hits
        ]


class MemorySignal(Signal):
    """Similarity of the query to the closest labelled example needing the tool."""

    name = "memory"

    def scores(self, context: SignalContext) -> list[SignalScores]:
        """Max example similarity per tool; 0 for tools no returned example needs."""
        out = []
        for position, hits in enumerate(context.entry_hits):
            skip = context.excluded(position)
            best: dict[str, float] = {}
            for hit in hits:
                if hit.kind != "example" or hit.entry_id in skip:
                    continue
                for tool_id in hit.tool_ids:
                    best[tool_id] = max(best.get(tool_id, 0.0), max(hit.score, 0.0))
            out.append(SignalScores(best, 0.0))
        return out


class PriorSignal(Signal):
    """The fraction of labelled examples that need the tool."""

    name = "prior"

    def __init__(self, memory: Callable[[], ExampleMemory]) -> None:
        self._memory = memory

    def scores(self, context: SignalContext) -> list[SignalScores]:
        """The same prior for every query (without its own example when fitting)."""
        memory = self._memory()
        cache: dict[frozenset[str], SignalScores] = {}
        out = []
        for position in range(len(context.queries)):
            skip = context.excluded(position)
            if skip not in cache:
                cache[skip] = SignalScores(memory.prior(exclude=skip) if len(memory) else {}, 0.0)
            out.append(cache[skip])
        return out


class LexicalSignal(Signal):
    """BM25 over tool texts extended with their labelled queries (see the module docstring).

    Args:
        index: Returns the BM25 index over the catalogue (without expansions); called when
            first needed, so a pipeline that never uses this signal never builds it.
        memory: Returns the current example memory (its queries extend the tools' texts).
    """

    name = "lexical"

    def __init__(
        self, index: Callable[[], BM25ToolIndex], memory: Callable[[], ExampleMemory]
    ) -> None:
        self._index = index
        self._memory = memory
        self._lock = threading.Lock()
        self._expanded: dict[frozenset[str], BM25ToolIndex] = {}

    def _index_for(self, skip: frozenset[str]) -> BM25ToolIndex:
        memory = self._memory()
        # An entry id hashes its query and tool ids, so the ids kept determine the expansions.
        key = frozenset(memory.entry_ids() - skip)
        with self._lock:
            found = self._expanded.get(key)
            if found is None:
                if len(self._expanded) > 64:  # leave-one-out fits make one per example
                    self._expanded.clear()
                found = self._index().with_expansions(memory.expansions(exclude=skip))
                self._expanded[key] = found
        return found

    def scores(self, context: SignalContext) -> list[SignalScores]:
        """Standardised BM25 scores of the top ``depth`` tools (over the whole catalogue)."""
        out: list[SignalScores] = [SignalScores({}, 0.0)] * len(context.queries)
        groups: dict[frozenset[str], list[int]] = {}
        for position in range(len(context.queries)):
            groups.setdefault(context.excluded(position), []).append(position)
        for skip, positions in groups.items():
            index = self._index_for(skip)
            ids = index.ids
            matrix = index.scores([context.queries[p] for p in positions])
            for position, row in zip(positions, matrix, strict=True):
                spread = float(row.std())
                z = (row - row.mean()) / (spread if spread > 1e-9 else 1.0)
                top = np.argsort(-z, kind="stable")[: context.depth]
                floor = float(z[top[-1]]) if len(top) else 0.0
                out[position] = SignalScores({ids[i]: float(z[i]) for i in top}, floor)
        return out


def default_signals(
    lexical_index: Callable[[], BM25ToolIndex], memory: Callable[[], ExampleMemory]
) -> dict[str, Signal]:
    """The built-in signals, by name."""
    signals: list[Signal] = [
        DenseSignal(),
        LexicalSignal(lexical_index, memory),
        MemorySignal(),
        PriorSignal(memory),
        RewriteSignal(),
    ]
    return {s.name: s for s in signals}
