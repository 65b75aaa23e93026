"""Compare ranking functions on the candidates the training runs actually sampled.

Every training run in ``benchmarks/results/*.json`` that used the default `SufficiencyNDCG`
records, for each example of its first round, every candidate (the sampled rewrites, the
reference text when enabled, the original query) with its grade ``(S@5, S@10, NDCG over the
full ranking)``, both fused with the original query and alone. Other ranking
functions are functions of those three numbers, so they can be compared on the same
candidates without sampling again:

- how many examples give a preference pair at all (a function that ties every candidate of an
  example wastes that example, and there are only 1 to 10 of them);
- how often the pair (best, worst) is the same as the default's.

    python benchmarks/ranking_functions.py
"""

from __future__ import annotations

import argparse
import glob
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _setup import ROOT  # sets the offline environment; import before the package

Grade = Sequence[float]
FUNCTIONS: dict[str, Callable[[Grade], tuple[float, ...]]] = {
    "(S@5, S@10, NDCG) default": lambda g: (g[0], g[1], g[2]),
    "NDCG only": lambda g: (g[2],),
    "(S@5, S@10)": lambda g: (g[0], g[1]),
    "S@5 only": lambda g: (g[0],),
    "S@10 only": lambda g: (g[1],),
}


def _pair(grades: list[tuple[float, ...]]) -> tuple[int, int] | None:
    """(best, worst) candidate positions, first occurrence on ties; None when all tie."""
    best = max(range(len(grades)), key=lambda i: grades[i])
    worst = min(range(len(grades)), key=lambda i: grades[i])
    return None if grades[best] == grades[worst] else (best, worst)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    examples: list[list[dict[str, Any]]] = []
    for path in sorted(glob.glob(f"{args.results}/*.json")):
        data = json.loads(Path(path).read_text())
        if data.get("ranking", "sufficiency-ndcg") != "sufficiency-ndcg":
            continue  # graded with another function: the three numbers are not stored
        for run in data.get("runs", []):
            examples.extend(e["candidates"] for e in run.get("candidates", []) if e["round"] == 1)
    print(f"{len(examples)} training examples (first round of every recorded run)\n")
    print("| grading | ranking function | examples with a pair | same pair as default |")
    print("|---|---|---|---|")
    for mode in ("fused", "alone"):
        default = [
            _pair([FUNCTIONS["(S@5, S@10, NDCG) default"](c[mode]) for c in cands])
            for cands in examples
        ]
        for name, fn in FUNCTIONS.items():
            pairs = [_pair([fn(c[mode]) for c in cands]) for cands in examples]
            with_pair = sum(p is not None for p in pairs)
            same = sum(p is not None and p == d for p, d in zip(pairs, default, strict=True))
            print(
                f"| {mode} | {name} | {with_pair}/{len(examples)} "
                f"({100 * with_pair / len(examples):.0f}%) | {same}/{len(examples)} |"
            )


if __name__ == "__main__":
    main()
