"""Training examples, candidate grading and preference-pair construction (pure logic).

The QTA recipe (arXiv 2410.03212): for each labelled query, sample several rewrites, rank them
by where the gold tools land in the frozen retriever's ranking of the whole catalogue, and take
the best as *chosen* and the worst as *rejected*. Candidates that tie give no pair.

Nothing here loads a model: the trainer samples the candidates, this module grades them and
picks the pairs, so the logic is tested on hand-made rankings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qta_integrations.memory import LabelledExample, parse_examples
from qta_integrations.ranking import RankingFunction, fuse_hits
from qta_integrations.stores import ExactToolIndex

TrainingExample = LabelledExample
"""A labelled query to train on: `qta_integrations.memory.LabelledExample` (``.tools`` reads
its tool ids)."""

__all__ = [
    "GradedCandidate",
    "PreferencePair",
    "TrainingExample",
    "grade_candidates",
    "load_examples",
    "select_pairs",
]


@dataclass(frozen=True)
class GradedCandidate:
    """A candidate query (a sampled rewrite or the original) and its grade (higher is better)."""

    text: str
    grade: tuple[float, ...]
    is_original: bool = False


@dataclass(frozen=True)
class PreferencePair:
    """One DPO pair: the exact inference prompt, the chosen and the rejected rewrite."""

    query: str
    prompt: str
    chosen: str
    rejected: str
    chosen_grade: tuple[float, ...]
    rejected_grade: tuple[float, ...]

    def as_record(self) -> dict[str, str]:
        """The ``{"prompt", "chosen", "rejected"}`` record trl's DPOTrainer reads."""
        return {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}


load_examples = parse_examples
"""Read labelled queries (`qta_integrations.memory.parse_examples`, the one parser)."""


def grade_candidates(
    index: ExactToolIndex,
    query: str,
    candidates: Sequence[str],
    gold: Sequence[str],
    ranking: RankingFunction,
    *,
    alpha: float,
    fused: bool = True,
) -> list[tuple[float, ...]]:
    """Grade each candidate by the frozen retriever's full ranking of the catalogue.

    Args:
        index: The frozen retriever (exact cosine over the same embeddings as at inference).
        query: The original query.
        candidates: Candidate queries (rewrites; the original may be among them).
        gold: The gold tool ids.
        ranking: The ranking function that turns a full ranking into a grade.
        alpha: The retriever's fusion weight (used when ``fused``).
        fused: Grade each candidate fused with ``query`` exactly as the retriever will use it
            (`qta_integrations.ranking.fuse_hits` over the whole catalogue); otherwise the
            candidate alone. A candidate equal to ``query`` is graded by the original ranking,
            as the retriever then searches with the query only.

    Returns:
        One grade per candidate, in order.
    """
    if not candidates:
        return []
    n = len(index.ids)
    if not fused:
        return [tuple(ranking(r, gold)) for r in index.rank_all(list(candidates))]
    hits = index.search_many([query, *candidates], n)
    original, rest = hits[0], hits[1:]
    grades = []
    for text, cand_hits in zip(candidates, rest, strict=True):
        merged = original if text == query else fuse_hits(original, [cand_hits], alpha=alpha)
        grades.append(tuple(ranking([h.tool_id for h in merged], gold)))
    return grades


def select_pairs(
    candidates: Sequence[GradedCandidate], *, max_pairs: int = 1
) -> list[tuple[GradedCandidate, GradedCandidate]]:
    """Pick (chosen, rejected) pairs: the best candidate against the worst ones.

    Duplicate texts count once. The chosen candidate is the best (the first of equals); the
    rejected ones are taken from the worst upwards, only if strictly worse than the chosen one,
    at most ``max_pairs`` of them. When every distinct candidate ties there is no pair.

    Example:
        >>> a, b, c = (GradedCandidate(t, (g,)) for t, g in (("a", 1.0), ("b", 0.5), ("c", 0.0)))
        >>> print(*((x.text, y.text) for x, y in select_pairs([b, a, c], max_pairs=2)))
        ('a', 'c') ('a', 'b')
        >>> len(select_pairs([GradedCandidate("a", (1.0,)), GradedCandidate("b", (1.0,))]))
        0
    """
    if max_pairs < 1:
        msg = f"max_pairs must be >= 1, got {max_pairs}."
        raise ValueError(msg)
    distinct: dict[str, GradedCandidate] = {}
    for cand in candidates:
        distinct.setdefault(cand.text, cand)
    ordered = sorted(distinct.values(), key=lambda c: c.grade, reverse=True)  # stable
    if len(ordered) < 2:
        return []
    best = ordered[0]
    worse = [c for c in reversed(ordered) if c.grade < best.grade]
    return [(best, rejected) for rejected in worse[:max_pairs]]
