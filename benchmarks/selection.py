"""Tools returned against S@k: a fixed top k, and the score cut-off fitted on the labels.

For each MTRB subset, the fitted retriever (exact cosine index over all-MiniLM-L6-v2, fusion
weights and cut-off learned from the subset's 10 training queries by leave-one-out) retrieves
for the 90 test queries, which never enter the fit:

- ``top k``: a fixed top ``k`` (``--ks``, default every k from 1 to 10);
- ``adaptive, at most k``: ``ToolSelection(adaptive=True)`` with ``k`` as the cap (``--caps``):
  the tools whose fused score is within the fitted margin of the top one, at least the fitted
  ``min_k``;
- ``margin m``: a fixed margin (``--margins``, ``min_k`` 1, at most the largest cap), for
  reference: the curve a margin traces when it is chosen by hand (here: on the test queries).

For each row: the mean (and largest) number of tools returned, the share of queries whose gold
tools are all returned (S, in %: for a fixed top k this is S@k) and the mean recall. The
numbers follow the fusion and its signals: re-run the command after a change to either.

Command (from the repository root; a few minutes on 2 CPU cores, mostly embedding the catalogues)::

    QTA_MTRB_DIR=path/to/mtrb python benchmarks/selection.py \
        --output benchmarks/results/selection.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import _setup  # noqa: F401  (sets the offline environment; import before the package)

SUBSETS = ("restbench", "metatool", "toolbench")


def _row(name: str, cap: int, results: list[Any], golds: list[tuple[str, ...]]) -> dict[str, Any]:
    counts = [len([t for t in r.tools if not t.always_included]) for r in results]
    found = [set(r.tool_ids) for r in results]
    sufficient = [set(g) <= f for g, f in zip(golds, found, strict=True)]
    recall = [len(set(g) & f) / len(g) for g, f in zip(golds, found, strict=True)]
    return {
        "selection": name,
        "k": cap,
        "mean_tools": statistics.fmean(counts),
        "max_tools": max(counts),
        "S_percent": 100 * statistics.fmean(sufficient),
        "recall_percent": 100 * statistics.fmean(recall),
    }


def measure(
    subset: str, ks: list[int], caps: list[int], margins: list[float], data_dir: Path | None
) -> dict[str, Any]:
    """The rows of one subset."""
    from qta_integrations import QTAPipeline, RetrievalSettings, ToolSelection
    from qta_integrations.embeddings import default_embeddings
    from qta_integrations.evaluation import load_mtrb
    from qta_integrations.stores import ExactToolIndex

    data = load_mtrb(subset, "test", data_dir)
    train = load_mtrb(subset, "train", data_dir)
    start = time.perf_counter()
    pipeline = QTAPipeline(
        data.catalog,
        ExactToolIndex(default_embeddings()),
        None,
        settings=RetrievalSettings(k=max(caps), selection=ToolSelection(adaptive=True)),
    )
    pipeline.add_examples(train)
    queries = [q.query for q in data.queries]
    golds = [q.tool_ids for q in data.queries]
    rows = []
    for k in ks:
        results = pipeline.retrieve_batch(queries, k=k, selection=ToolSelection())
        rows.append(_row("top k", k, results, golds))
    for margin in margins:
        results = pipeline.retrieve_batch(
            queries, k=max(caps), selection=ToolSelection(margin=margin)
        )
        rows.append({**_row(f"margin {margin:g}", max(caps), results, golds), "margin": margin})
    fits = {}
    for cap in caps:
        pipeline.settings = pipeline.settings.replace(k=cap)
        pipeline.fit_fusion()  # the cut-off is fitted for this cap; the fusion comes out the same
        assert pipeline.last_cutoff is not None
        fit = pipeline.last_cutoff
        fits[cap] = fit.to_dict()
        row = _row("adaptive", cap, pipeline.retrieve_batch(queries, k=cap), golds)
        rows.append({**row, "margin": fit.margin, "min_k": fit.min_k})
    return {
        "catalogue": repr(data),
        "train_queries": len(train.queries),
        "fusion": pipeline.fusion.to_dict(),
        "cutoff_fits": fits,
        "rows": rows,
        "seconds": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subsets", nargs="+", default=list(SUBSETS), choices=SUBSETS)
    parser.add_argument(
        "--ks", nargs="+", type=int, default=list(range(1, 11)), help="Fixed top k."
    )
    parser.add_argument(
        "--caps", nargs="+", type=int, default=[5, 10], help="Caps of the adaptive cut-off."
    )
    parser.add_argument(
        "--margins",
        nargs="+",
        type=float,
        default=[0.5, 1.0, 1.5, 2.0, 3.0, 4.0],
        help="Fixed margins, for reference.",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="MTRB dir ($QTA_MTRB_DIR).")
    parser.add_argument("--output", type=Path, help="Also write the numbers as JSON here.")
    args = parser.parse_args(argv)

    report = {s: measure(s, args.ks, args.caps, args.margins, args.data_dir) for s in args.subsets}
    print(
        f"{'subset':<11}{'selection':<13}{'k':>4}{'mean tools':>12}{'max':>5}{'S %':>8}{'R %':>8}"
    )
    for subset, measured in report.items():
        for row in measured["rows"]:
            extra = ""
            if row["selection"] == "adaptive":
                margin = "none" if row["margin"] is None else f"{row['margin']:.2f}"
                extra = f"   margin {margin}, min_k {row['min_k']}"
            print(
                f"{subset:<11}{row['selection']:<13}{row['k']:>4}{row['mean_tools']:>12.2f}"
                f"{row['max_tools']:>5}{row['S_percent']:>8.2f}{row['recall_percent']:>8.2f}{extra}"
            )
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        command = ["python", "benchmarks/selection.py", *(argv or sys.argv[1:])]
        args.output.write_text(json.dumps({"command": command, **report}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
