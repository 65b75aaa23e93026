"""Tool selection: how many of the ranked tools a retrieval hands back, and which always.

A retrieval ranks the catalogue; `ToolSelection` decides what of that ranking is returned:

* ``always_include``: tool ids returned on every call, after the retrieved ones (a "search more
  tools" tool, say). They never count against ``k``: a call returns up to ``k`` retrieved
  tools *plus* these.
* a score cut-off: with ``margin`` set, only the tools whose fused score is within ``margin`` of
  the top tool's score are kept, at least ``min_k`` and at most ``k`` of them. A clear top
  (one tool far ahead) returns few tools, an unclear one more. Scores are on the fused scale
  (`qta_integrations.fusion`): dense similarity standardised over the candidates plus the
  weighted signals, so without labels a margin of 1.0 is one standard deviation of the
  candidates' dense similarities.
* ``adaptive=True``: ``margin`` and ``min_k`` are fitted on the labelled examples by
  leave-one-out (`fit_cutoff`, called by `QTAPipeline.fit_fusion`), saved with the settings.

The fit is sufficiency first: among the rules ``(margin, min_k)`` that keep every held-out
example's gold tools whenever a fixed top ``k`` would, it takes the one returning the fewest
tools on average. So, on the labelled examples, the cut-off never loses a query that the fixed
top ``k`` gets right.
"""

from __future__ import annotations

import math
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from qta_integrations.validation import check_positive_int

__all__ = ["CutoffFit", "ToolSelection", "fit_cutoff", "resolve_selection"]

MAX_CANDIDATE_MARGINS = 512
"""`fit_cutoff` tries at most this many margins (quantiles of the score gaps beyond that)."""


@dataclass(frozen=True)
class ToolSelection:
    """What a retrieval returns of its ranking: a fixed top ``k`` (the default) or a cut-off.

    Attributes:
        always_include: Tool ids returned on every call after the retrieved tools, never
            counted against ``k``; they must be in the catalogue.
        margin: Keep the tools whose fused score is at least the top score minus ``margin``
            (``math.inf`` keeps all ``k``); None returns a fixed top ``k``.
        min_k: With a margin, the fewest tools returned (``k`` still caps it).
        adaptive: Fit ``margin`` and ``min_k`` on the labelled examples (leave-one-out, in
            `QTAPipeline.fit_fusion`); until there are examples, a fixed top ``k``.

    Example:
        >>> scores = [3.1, 2.6, 1.9, 1.7]  # fused scores, best first
        >>> tuple(ToolSelection(margin=m).count(scores, k=5) for m in (0.1, 1.0, 1.3))
        (1, 2, 3)
        >>> ToolSelection(margin=0.1, min_k=2).count(scores, k=5)  # at least min_k
        2
        >>> ToolSelection().count(scores, k=3)  # no margin: a fixed top k
        3
    """

    always_include: tuple[str, ...] = field(
        default=(),
        metadata={"help": "Tool ids returned on every call, not counted against k."},
    )
    margin: float | None = field(
        default=None,
        metadata={"help": "Keep tools scoring within this margin of the top (None: top k)."},
    )
    min_k: int = field(default=1, metadata={"help": "With a margin: the fewest tools returned."})
    adaptive: bool = field(
        default=False,
        metadata={"help": "Fit margin and min_k on the labelled examples (leave-one-out)."},
    )

    def __post_init__(self) -> None:
        ids = self.always_include
        if isinstance(ids, str) or not isinstance(ids, Iterable):
            msg = (
                f"always_include must be a list of tool ids, got {ids!r}; wrap a single id: "
                f"always_include=[{ids!r}]."
            )
            raise TypeError(msg)
        ids = tuple(ids)
        bad = [i for i in ids if not isinstance(i, str) or not i.strip()]
        if bad:
            msg = f"always_include must hold non-empty tool id strings, got {bad[:3]!r}."
            raise ValueError(msg)
        object.__setattr__(self, "always_include", tuple(dict.fromkeys(ids)))  # keep order
        margin = self.margin
        if margin is not None:
            if isinstance(margin, bool) or not isinstance(margin, (int, float)):
                msg = f"margin must be a number >= 0 or None, got {margin!r}."
                raise TypeError(msg)
            if math.isnan(margin) or margin < 0:
                msg = f"margin must be >= 0 (or None for a fixed top k), got {margin!r}."
                raise ValueError(msg)
            object.__setattr__(self, "margin", float(margin))
        check_positive_int("min_k", self.min_k)
        if not isinstance(self.adaptive, bool):
            msg = f"adaptive must be True or False, got {self.adaptive!r}."
            raise TypeError(msg)

    @property
    def cuts(self) -> bool:
        """Whether the number of tools depends on their scores (a margin is set)."""
        return self.margin is not None

    @property
    def is_default(self) -> bool:
        """Whether this is a plain top ``k`` with nothing always included."""
        return self.margin is None and not self.always_include

    def count(self, scores: Sequence[float], k: int) -> int:
        """How many of the tools scored ``scores`` (best first, always-included left out) to keep.

        Args:
            scores: Fused scores of the ranked tools, best first.
            k: The most tools to keep.
        """
        if self.margin is None or not scores:
            return min(k, len(scores))
        floor = scores[0] - self.margin
        within = sum(1 for s in scores if s >= floor)
        return min(len(scores), k, max(self.min_k, within))

    def check_tools(self, catalog: Container[Any], *, known: Sequence[str] = ()) -> None:
        """Raise if ``always_include`` names a tool id that is not in ``catalog``.

        Args:
            catalog: The tool ids (a `ToolCatalog` or any container of ids).
            known: A few known ids, shown as a hint.

        Raises:
            ValueError: naming the unknown ids.
        """
        unknown = [i for i in self.always_include if i not in catalog]
        if unknown:
            hint = f" Known ids look like: {list(known)[:5]}." if known else ""
            msg = (
                f"always_include names tool id(s) that are not in the catalogue: {unknown}. "
                f"Pass ids of the catalogue's tools (for LangChain tools: their names).{hint}"
            )
            raise ValueError(msg)

    def replace(self, **changes: Any) -> ToolSelection:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; `from_dict` reads it back."""
        data = asdict(self)
        data["always_include"] = list(self.always_include)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | ToolSelection) -> ToolSelection:
        """A selection from `to_dict` output (an instance is returned as it is).

        Raises:
            ValueError: for unknown keys, naming them.
        """
        if isinstance(data, ToolSelection):
            return data
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            msg = f"Unknown tool selection keys {unknown}; expected some of {sorted(known)}."
            raise ValueError(msg)
        return cls(**data)


def resolve_selection(override: ToolSelection | None, base: ToolSelection) -> ToolSelection:
    """The selection a call uses: ``override`` (an adapter's or a call's) or else ``base``.

    An adaptive override takes its margin and ``min_k`` from ``base``, where the fit wrote them.

    Raises:
        TypeError: if ``override`` is not a `ToolSelection`.
        ValueError: if ``override`` is adaptive and ``base`` is not (nothing was fitted).
    """
    if override is None:
        return base
    if not isinstance(override, ToolSelection):
        msg = f"selection must be a ToolSelection or None, got {type(override).__name__}."
        raise TypeError(msg)
    if not override.adaptive:
        return override
    if not base.adaptive:
        msg = (
            "An adaptive selection uses the margin fitted on the pipeline's labelled examples, "
            "but the pipeline's own selection is not adaptive, so nothing is fitted. Build the "
            "pipeline with RetrievalSettings(selection=ToolSelection(adaptive=True)) (or "
            "QTARetriever(tools=..., selection=...)), or pass a fixed margin=."
        )
        raise ValueError(msg)
    return override.replace(margin=base.margin, min_k=base.min_k)


# -- fitting -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CutoffFit:
    """The outcome of `fit_cutoff`.

    Attributes:
        margin: The fitted margin; None when no held-out example's gold tools fit in the top
            ``max_k`` (the labels cannot tell a margin, so a fixed top ``k`` is kept).
        min_k: The fitted fewest tools.
        sufficiency: Fraction of the held-out examples whose gold tools are all kept.
        mean_tools: Mean number of tools kept per held-out example.
        fixed_sufficiency: The same fraction for a fixed top ``max_k``.
        num_examples: Examples the fit used.
    """

    margin: float | None
    min_k: int
    sufficiency: float
    mean_tools: float
    fixed_sufficiency: float
    num_examples: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary."""
        return asdict(self)


def fit_cutoff(
    rankings: Sequence[Sequence[tuple[str, float]]],
    golds: Sequence[Sequence[str]],
    *,
    max_k: int,
    always_include: Sequence[str] = (),
) -> CutoffFit:
    """Fit a score margin and ``min_k`` on held-out rankings (see the module docstring).

    Every rule ``(margin, min_k)`` keeps, for each example, ``clip(n, min_k, max_k)`` tools,
    ``n`` being how many score within ``margin`` of the top. The rules kept are those under
    which the most examples keep all their gold tools (never fewer than a fixed top ``max_k``,
    the rule ``min_k = max_k``); of them, the one keeping the fewest tools on average wins,
    then the smaller ``min_k``, then the smaller margin. The margin returned is the middle of
    the interval of margins that keep exactly the same tools, so it is not on the edge of the
    hardest example.

    Args:
        rankings: For each labelled example, its ``(tool id, fused score)`` ranking, best
            first, scored without the example itself (leave-one-out).
        golds: The gold tool ids of each example.
        max_k: The most tools a call returns (the retrieval's ``k``).
        always_include: Tools returned anyway: left out of the rankings and the golds.

    Raises:
        ValueError: if ``rankings`` and ``golds`` differ in length or are empty, or ``max_k``
            is not a positive int.

    Example:
        >>> rankings = [[("a", 3.0), ("b", 1.0), ("c", 0.9)], [("b", 2.0), ("c", 1.8), ("a", 0.1)]]
        >>> fit = fit_cutoff(rankings, [["a"], ["b", "c"]], max_k=3)  # a clear top, then a pair
        >>> round(fit.margin, 3), fit.min_k, fit.mean_tools, fit.sufficiency
        (1.05, 1, 1.5, 1.0)
    """
    if len(rankings) != len(golds):
        msg = f"Got {len(rankings)} rankings but {len(golds)} gold lists; give one per example."
        raise ValueError(msg)
    if not golds:
        msg = "fit_cutoff needs at least one labelled example."
        raise ValueError(msg)
    check_positive_int("max_k", max_k)
    always = set(always_include)
    scores = np.full((len(golds), max_k), -np.inf)
    needed = np.zeros(len(golds), dtype=np.int64)  # rank of the last gold tool; 0: none needed
    for i, (ranking, gold) in enumerate(zip(rankings, golds, strict=True)):
        ranked = [(t, s) for t, s in ranking if t not in always][:max_k]
        scores[i, : len(ranked)] = [s for _, s in ranked]
        positions = {t: p for p, (t, _) in enumerate(ranked, start=1)}
        wanted = [t for t in gold if t not in always]
        needed[i] = max((positions.get(t, max_k + 1) for t in wanted), default=0)
    reachable = needed <= max_k
    fixed = float(reachable.mean())
    lengths = np.isfinite(scores).sum(axis=1)
    if not reachable.any() or not lengths.any():
        return CutoffFit(None, max_k, fixed, float(lengths.mean()), fixed, len(golds))

    gaps = scores[:, :1] - scores  # (examples, ranks): 0 at the top, inf past the ranking
    events = np.unique(gaps[np.isfinite(gaps)])
    if len(events) > MAX_CANDIDATE_MARGINS:
        events = np.unique(np.quantile(events, np.linspace(0, 1, MAX_CANDIDATE_MARGINS)))
    # within[m, i]: tools of example i scoring within margin events[m] of its top.
    within = (gaps[None, :, :] <= events[:, None, None] + 1e-12).sum(axis=2)
    best: tuple[float, ...] | None = None
    chosen = (0, max_k)
    for min_k in range(1, max_k + 1):
        kept = np.minimum(np.maximum(within, min_k), lengths[None, :])
        kept = np.minimum(kept, max_k)
        sufficient = (reachable[None, :] & (needed[None, :] <= kept)).sum(axis=1)
        mean = kept.mean(axis=1)
        for m in range(len(events)):
            key = (float(sufficient[m]), -float(mean[m]), -float(min_k), -float(events[m]))
            if best is None or key > best:
                best, chosen = key, (m, min_k)
    assert best is not None
    m, min_k = chosen
    margin = float(events[m])
    if m + 1 < len(events):  # the middle of the plateau [events[m], events[m + 1])
        margin = 0.5 * (margin + float(events[m + 1]))
    return CutoffFit(
        margin=margin,
        min_k=min_k,
        sufficiency=best[0] / len(golds),
        mean_tools=-best[1],
        fixed_sufficiency=fixed,
        num_examples=len(golds),
    )
