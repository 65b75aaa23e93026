"""The signal interface: `Signal`, what it reads (`SignalContext`) and gives (`SignalScores`)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from qta_integrations.stores.base import IndexHit, ToolHit

__all__ = ["Signal", "SignalContext", "SignalScores", "standardise", "tool_pairs"]


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
        exclude_tools: For each query, tools whose label evidence it must not see: the label
            signals treat them as unlabelled (the fit's tool-disjoint view).
        depth: Candidates per signal.
        normalize: Standardise similarity signals (False: raw, the paper's fusion).
    """

    queries: Sequence[str]
    entry_hits: Sequence[Sequence[IndexHit]]
    rewrite_hits: Sequence[Sequence[ToolHit] | None]
    rewrites: Sequence[str | None] = field(default=())
    exclude: Sequence[frozenset[str]] = field(default=())
    exclude_tools: Sequence[frozenset[str]] = field(default=())
    depth: int = 100
    normalize: bool = True

    def excluded(self, position: int) -> frozenset[str]:
        """The example entry ids query ``position`` must not see."""
        return self.exclude[position] if self.exclude else frozenset()

    def unlabelled(self, position: int) -> frozenset[str]:
        """The tools query ``position`` must see as unlabelled."""
        return self.exclude_tools[position] if self.exclude_tools else frozenset()

    def label_margin(self, position: int) -> float:
        """How much closer query ``position`` is to a labelled example than to any tool.

        The similarity of its nearest labelled example that it may see (not excluded, and
        naming a tool it does not see as unlabelled) minus that of its nearest tool, both
        from the one search of the store. ``-inf`` when it sees no example: the label gate
        (`qta_integrations.fusion.gate_opening`) is then closed.
        """
        skip, unlabelled = self.excluded(position), self.unlabelled(position)
        example = tool = -math.inf
        for hit in self.entry_hits[position]:
            if hit.kind == "tool":
                tool = max(tool, hit.score)
            elif hit.entry_id not in skip and any(t not in unlabelled for t in hit.tool_ids):
                example = max(example, hit.score)
        if example == -math.inf:
            return -math.inf
        return example - tool if tool > -math.inf else math.inf


class Signal(ABC):
    """One named score per candidate tool.

    A subclass sets `name` and implements `scores`; it declares what the fusion needs to
    know of it beside: whether it speaks only for labelled tools (`uses_labels`), whether it
    reads the rewrite (`needs_rewrite`) and which weights the fit tries (`grid`). Registered
    with `qta_integrations.signals.register_signal`, it is fitted, saved, loaded and used
    like the built-in signals, with no other edit.

    Attributes:
        name: The signal's name: its key in `FusionWeights` and in saved settings.
        uses_labels: True for a signal that scores only tools the labelled examples name
            (memory, prior): the fit weighs it by what the labels predict about future
            traffic, never at the cost of the tools no label names.
        needs_rewrite: True for a signal that reads the rewrite: the rewriter runs only
            while such a signal has a weight above zero.
        grid: The weights `qta_integrations.fusion.fit_weights` tries (``(0.0,)``: never
            fitted, set by hand).
    """

    name: ClassVar[str]
    uses_labels: ClassVar[bool] = False
    needs_rewrite: ClassVar[bool] = False
    grid: ClassVar[tuple[float, ...]] = (0.0,)

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


def tool_pairs(hits: Sequence[IndexHit], depth: int) -> list[tuple[str, float]]:
    """The ``(tool id, score)`` pairs of the first ``depth`` tool hits (examples left out)."""
    return [(h.tool_ids[0], h.score) for h in hits if h.kind == "tool"][:depth]
