"""Training examples, candidate grading and preference-pair construction (pure logic).

The QTA recipe (arXiv 2410.03212): for each labelled query, sample several rewrites, rank them
by where the gold tools land in the frozen retriever's ranking of the whole catalogue, and take
the best as *chosen* and the worst as *rejected*. Candidates that tie give no pair.

Nothing here loads a model: the trainer samples the candidates, this module grades them and
picks the pairs, so the logic is tested on hand-made rankings.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qta_integrations.ranking import RankingFunction, fuse_hits
from qta_integrations.sources.files import read_numbered_records
from qta_integrations.stores import ExactToolIndex
from qta_integrations.tools import ToolCatalog
from qta_integrations.validation import validate_query

__all__ = [
    "GradedCandidate",
    "PreferencePair",
    "TrainingExample",
    "grade_candidates",
    "load_examples",
    "select_pairs",
]

ExamplesLike = (
    str
    | os.PathLike[str]
    | Iterable[Mapping[str, Any]]
    | Iterable["TrainingExample"]
    | Iterable[Any]
)


@dataclass(frozen=True)
class TrainingExample:
    """A labelled query: the query and the ids of every tool it needs.

    Example:
        >>> TrainingExample("Will it rain in Oslo?", ("weather",)).tools
        ('weather',)
    """

    query: str
    tools: tuple[str, ...]
    history: tuple[str, ...] = ()


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


def load_examples(
    examples: ExamplesLike, catalog: ToolCatalog | None = None
) -> list[TrainingExample]:
    """Normalise what `QTATrainer.fit` accepts into `TrainingExample` records.

    Accepts a path to a queries file (JSON list or JSONL of ``{"query", "tools": [ids]}``), an
    iterable of such dicts, of `TrainingExample`, or of objects with ``query`` and ``tool_ids``
    attributes (the evaluation package's ``LabelledQuery``), or a dataset with ``.queries``.

    Raises:
        ValueError: for zero examples, a malformed record (naming its position), or gold ids
            that are not in ``catalog`` (listing them).
    """
    if isinstance(examples, (str, os.PathLike)):
        numbered = read_numbered_records(Path(examples))
        records: Iterable[Any] = [record for _, record in numbered]
        source = f" in {str(examples)!r}"
        lines = [f" (line {line})" for line, _ in numbered]
    else:
        records = getattr(examples, "queries", examples)
        source = ""
        lines = []
    if isinstance(records, Mapping):
        msg = (
            "examples must be a list of {'query': ..., 'tools': [...]} records, got one dict; "
            "wrap it in a list."
        )
        raise ValueError(msg)
    parsed = [
        _parse_example(r, i, (lines[i] if i < len(lines) else "") + source)
        for i, r in enumerate(records)
    ]
    if not parsed:
        msg = (
            f"No training examples{source}. QTA needs at least one labelled query: pass "
            "[{'query': 'your query', 'tools': ['id of a tool it needs', ...]}, ...]."
        )
        raise ValueError(msg)
    if catalog is not None:
        unknown = sorted({t for e in parsed for t in e.tools if t not in catalog})
        if unknown:
            hint = ", ".join(repr(i) for i in catalog.ids[:5])
            msg = (
                f"The training examples{source} name {len(unknown)} tool id(s) that are not in "
                f"the catalogue: {unknown}. Use the catalogue's tool ids (they look like: "
                f"{hint}, ...)."
            )
            raise ValueError(msg)
    return parsed


def _parse_example(record: Any, position: int, source: str) -> TrainingExample:
    where = f"example #{position}{source}"
    if isinstance(record, TrainingExample):
        return record
    if isinstance(record, Mapping):
        query = record.get("query")
        tools = record.get("tools", record.get("tool_ids"))
        history = record.get("history", ())
    elif hasattr(record, "query") and hasattr(record, "tool_ids"):
        query, tools, history = record.query, record.tool_ids, ()
    else:
        msg = f"{where} must be a dict {{'query': str, 'tools': [tool ids]}}, got {record!r}."
        raise ValueError(msg)
    if not isinstance(query, str) or not query.strip():
        msg = f"{where} needs a non-empty string 'query', got {query!r}."
        raise ValueError(msg)
    try:
        validate_query(query)
    except ValueError as err:
        msg = f"{where}: {err}"
        raise ValueError(msg) from None
    if isinstance(tools, (str, int)):
        tools = [tools]
    if not isinstance(tools, (list, tuple)) or not tools:
        msg = f"{where} needs 'tools': a non-empty list of gold tool ids, got {tools!r}."
        raise ValueError(msg)
    if isinstance(history, str):
        history = [history]
    return TrainingExample(query, tuple(str(t) for t in tools), tuple(str(h) for h in history))


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
