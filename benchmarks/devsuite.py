"""The development suite: five tool catalogues, from no labels to 10, in one command.

The suite is the three MTRB subsets (RestBench, MetaTool, ToolBench rebuilt) and two more
public catalogues in the plain format of `qta eval --tools/--queries` (RestBench-Spotify,
ToolAlpaca). Each has 10 labelled training queries and its own test queries. Per catalogue:

* ``dense``: all-MiniLM-L6-v2 alone;
* ``bm25``: BM25 alone (the package's tokeniser: identifiers split, stemmed);
* ``base``: the zero-label base, what ``QTARetriever(tools=...)`` does (`FusionWeights.base`);
* ``fitted``: the default fit on the 10 labels (``label_fit="safe"``);
* ``labelled``: the fit for labelled tools alone (``label_fit="labelled"``);

each with S@5 / S@10 on all test queries, on those a label covers (a gold tool is named by a
label) and on the others; for MTRB also the tool-disjoint protocol (``--draws`` draws of 10
labels from half of the tools, scored on test queries no label covers), fitted against the
base and dense. Then the mean over the five catalogues. The test queries never enter a fit;
the defaults (the tokeniser, the base weights, the fit's shrinkage and gate) were chosen on
this suite as a whole, looking at its test queries, so these numbers are the development
numbers, not a held-out estimate.

Command (from the repository root; about 10 minutes on 2 CPU cores)::

    python benchmarks/devsuite.py --mtrb-dir path/to/mtrb --devsuite-dir path/to/devsuite \
        --output benchmarks/results/devsuite.json

``--mtrb-dir`` defaults to ``$QTA_MTRB_DIR``, ``--devsuite-dir`` to ``$QTA_DEVSUITE_DIR``, else
the ``devsuite`` folder beside the MTRB one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import _setup  # noqa: F401  (sets the offline environment; import before the package)

MTRB = ("restbench", "metatool", "toolbench")
DEVSUITE = ("restbench_spotify", "toolalpaca")
METHODS = ("dense", "bm25", "base", "fitted", "labelled")


def _catalogues(mtrb_dir: str | None, devsuite_dir: str | None) -> dict[str, tuple[Any, Any]]:
    from qta_integrations.evaluation import load_mtrb, load_retrieval_dataset

    if mtrb_dir is None:
        msg = "Pass --mtrb-dir DIR or set QTA_MTRB_DIR (the 10 labels exist only locally)."
        raise SystemExit(msg)
    devsuite = Path(devsuite_dir) if devsuite_dir else Path(mtrb_dir).parent / "devsuite"
    out: dict[str, tuple[Any, Any]] = {}
    for subset in MTRB:
        out[subset] = (load_mtrb(subset, "test", mtrb_dir), load_mtrb(subset, "train", mtrb_dir))
    for name in DEVSUITE:
        folder = devsuite / name
        out[name] = tuple(  # type: ignore[assignment]
            load_retrieval_dataset(folder / "tools.json", folder / f"{split}.json", name=name)
            for split in ("test", "train")
        )
    return out


def _scores(report: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"all": {m: report.metrics[m] for m in ("S@5", "S@10")}}
    for group, values in report.groups.items():
        row[group] = {m: values[m] for m in ("S@5", "S@10")} | {"n": values["num_queries"]}
    return row


def main() -> None:
    from qta_integrations import QTAPipeline
    from qta_integrations.embeddings import default_embeddings
    from qta_integrations.evaluation import (
        build_pipeline,
        evaluate,
        evaluate_tool_disjoint,
        tool_disjoint_draws,
    )
    from qta_integrations.fusion import FusionWeights
    from qta_integrations.stores import ExactToolIndex

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mtrb-dir", default=os.environ.get("QTA_MTRB_DIR"))
    parser.add_argument("--devsuite-dir", default=os.environ.get("QTA_DEVSUITE_DIR"))
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    embeddings = default_embeddings()
    results: dict[str, Any] = {}
    for name, (test, train) in _catalogues(args.mtrb_dir, args.devsuite_dir).items():
        labelled = {t for q in train.queries for t in q.tool_ids}
        index = ExactToolIndex.from_catalog(test.catalog, embeddings)
        row: dict[str, Any] = {"tools": len(test.catalog), "test_queries": len(test)}
        for method in METHODS:
            started = time.perf_counter()
            if method == "bm25":
                pipeline = build_pipeline("bm25", test.catalog)
            elif method == "dense":
                pipeline = QTAPipeline(test.catalog, index, None, fusion=FusionWeights())
            else:
                pipeline = QTAPipeline(test.catalog, index, None)
            if method in ("fitted", "labelled"):
                mode = "safe" if method == "fitted" else "labelled"
                pipeline.settings = pipeline.settings.replace(label_fit=mode)
                pipeline.add_examples(train)
            fit_seconds = time.perf_counter() - started
            report = evaluate(pipeline, test, show_progress=False, labelled_tools=labelled)
            row[method] = _scores(report)
            if method in ("fitted", "labelled"):
                fit = pipeline.last_fit
                row[method]["fusion"] = pipeline.fusion.to_dict()
                row[method]["coverage"] = None if fit is None else fit.coverage
                row[method]["fit_seconds"] = round(fit_seconds, 2)
        if name in MTRB and args.draws:
            draws = tool_disjoint_draws(test, train, draws=args.draws)
            disjoint = evaluate_tool_disjoint(draws, embeddings=embeddings)
            row["tool_disjoint"] = {m: disjoint.summary(m) for m in ("S@5", "S@10")} | {
                "queries_per_draw": [len(d.evaluation) for d in draws]
            }
        results[name] = row
        print(_line(name, row), flush=True)
    mean = {
        method: {
            m: math.fsum(results[c][method]["all"][m] for c in results) / len(results)
            for m in ("S@5", "S@10")
        }
        for method in METHODS
    }
    worst = {
        method: min(
            results[c][method]["all"]["S@5"] - results[c]["dense"]["all"]["S@5"] for c in results
        )
        for method in METHODS
    }
    print(
        "mean S@5 / S@10: "
        + ", ".join(
            f"{m} {mean[m]['S@5']:.2f} / {mean[m]['S@10']:.2f} (worst vs dense {worst[m]:+.2f})"
            for m in METHODS
        )
    )
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "command": "python benchmarks/devsuite.py",
            "draws": args.draws,
            "catalogues": results,
            "mean": mean,
            "worst_s5_vs_dense": worst,
        }
        args.output.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"Wrote {args.output}")


def _line(name: str, row: dict[str, Any]) -> str:
    cells = [f"{m} {row[m]['all']['S@5']:.2f}/{row[m]['all']['S@10']:.2f}" for m in METHODS]
    text = f"{name}: " + "  ".join(cells)
    if "uncovered" in row["fitted"]:
        text += (
            f"  | uncovered S@5 fitted {row['fitted']['uncovered']['S@5']:.2f} "
            f"base {row['base']['uncovered']['S@5']:.2f}"
        )
    if "tool_disjoint" in row:
        five = row["tool_disjoint"]["S@5"]
        text += (
            f"  | tool-disjoint S@5 fitted {five['fitted_mean']:.2f} base {five['base_mean']:.2f}"
            f" (worst draw {five['diff_min']:+.2f})"
        )
    return text


if __name__ == "__main__":
    main()
