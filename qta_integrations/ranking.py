"""Ranking: how retrieved lists are fused at inference, and how rewrites are graded in training.

Inference (`fuse_hits`): the retriever searches with the original query and each rewrite, then
reranks the union by alignment,

    score(t) = (1 - alpha) * s(q, t) + alpha * mean_i s(r_i, t)

where ``s`` is the index's similarity (cosine for the default embeddings), ``q`` the original
query and ``r_i`` the rewrites. A tool missing from one list gets that list's lowest returned
score, an upper bound on its true similarity (it ranked below every returned tool); exact
scores would need every tool's vector, which a remote vector store does not hand back. Keeping
``q`` in the sum means a bad rewrite cannot sink a good query (measured: an untuned rewrite
alone loses to the original query on RestBench).

Training (`RankingFunction`): a candidate query is graded by where its gold tools land in the
frozen retriever's full ranking of the catalogue. The default, `SufficiencyNDCG`, compares
``(S@k for each cutoff, NDCG over the full ranking)`` lexicographically: complete retrieval
first, then how high the gold tools sit overall (graded, so near-ties still separate).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from qta_integrations.metrics import ndcg_at_k, sufficiency_at_k
from qta_integrations.stores import ToolHit

__all__ = ["RankingFunction", "SufficiencyNDCG", "fuse_hits"]


def fuse_hits(
    original: Sequence[ToolHit],
    rewrites: Sequence[Sequence[ToolHit]],
    *,
    alpha: float,
) -> list[ToolHit]:
    """Fuse the original query's hits with each rewrite's hits (see the module docstring).

    Args:
        original: Hits for the original query.
        rewrites: Hits for each rewrite (may be empty: then the original ranking is returned).
        alpha: Weight of the rewrites, in [0, 1]. 0 ignores them; 1 ignores the original.

    Returns:
        The union of tools, best first; ties keep the original query's order.
    """
    if not 0.0 <= alpha <= 1.0:
        msg = f"alpha must be in [0, 1], got {alpha}."
        raise ValueError(msg)
    if not rewrites:
        return list(original)
    lists = [original, *rewrites]
    tables = [{h.tool_id: h.score for h in hits} for hits in lists]
    floors = [min(table.values()) if table else 0.0 for table in tables]
    order: dict[str, int] = {}
    for hits in lists:
        for hit in hits:
            order.setdefault(hit.tool_id, len(order))

    def score(tool_id: str) -> float:
        s_orig = tables[0].get(tool_id, floors[0])
        s_rw = [t.get(tool_id, f) for t, f in zip(tables[1:], floors[1:], strict=True)]
        return (1.0 - alpha) * s_orig + alpha * sum(s_rw) / len(s_rw)

    fused = [ToolHit(tool_id, score(tool_id)) for tool_id in order]
    fused.sort(key=lambda h: (-h.score, order[h.tool_id]))
    return fused


@runtime_checkable
class RankingFunction(Protocol):
    """Grades a candidate query from the frozen retriever's full ranking. Higher is better.

    Return values must be comparable with each other (floats or tuples of floats).
    """

    def __call__(self, ranking: Sequence[str], gold: Collection[str]) -> tuple[float, ...]:
        """Score ``ranking`` (every tool id, best first) against the ``gold`` ids."""
        ...


@dataclass(frozen=True)
class SufficiencyNDCG:
    """The default ranking function: ``(S@k for k in cutoffs, NDCG@full)``, compared in order.

    With ``G`` the gold tools and ``rank(t)`` a tool's 1-based rank in the full ranking::

        S@k  = 1 if every tool of G is in the top k, else 0
        NDCG = sum_{t in G} 1 / log2(1 + rank(t))  /  sum_{i=1..|G|} 1 / log2(1 + i)

    Why graded: on the candidates of the recorded MTRB training runs, S@5 alone ties every
    candidate of 43% of the examples (no preference pair), this grade 5% of them
    (``python benchmarks/ranking_functions.py``); trained with S@5 alone, RestBench S@5 fell
    from 16.67 to 11.11 (one seed, docs/benchmarks.md).

    Example:
        >>> grade = SufficiencyNDCG(cutoffs=(5,))
        >>> higher = grade(["a", "b", "c", "d", "e", "f"], {"b"})
        >>> lower = grade(["a", "c", "b", "d", "e", "f"], {"b"})
        >>> higher > lower
        True
    """

    cutoffs: tuple[int, ...] = (5, 10)

    def __post_init__(self) -> None:
        if any(k < 1 for k in self.cutoffs):
            msg = f"cutoffs must all be >= 1, got {self.cutoffs}."
            raise ValueError(msg)

    def __call__(self, ranking: Sequence[str], gold: Collection[str]) -> tuple[float, ...]:
        """Lexicographic grade: complete retrieval at each cutoff, then full-ranking NDCG."""
        return (
            *(sufficiency_at_k(ranking, gold, k) for k in self.cutoffs),
            ndcg_at_k(ranking, gold),
        )
