"""The fitted retriever against dense, BM25 and a fixed hybrid on every MTRB subset.

For each subset: the labelled examples are the subset's 10 training queries; the fusion is
fitted on them by leave-one-out (`QTAPipeline.add_examples`, the same as ``qta train
--no-dpo``); the 90 test queries are never seen before they are scored. Then every
method is evaluated on the test queries, with the fitted retriever's queries split into those
whose gold tools appear in the labels (covered) and the others. Cross-dataset rows load the
state fitted on one subset into a retriever over another subset's catalogue (its examples do
not apply there, so the retriever falls back to what the labels can say about that catalogue).

Command (from the repository root)::

    QTA_MTRB_DIR=path/to/mtrb python benchmarks/aligned_retrieval.py \
        --output benchmarks/results/aligned_retrieval.json

Nothing is sampled, so one run is the result (no seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import _setup  # noqa: F401  (sets the offline environment; import before the package)

from qta_integrations.embeddings import default_embeddings
from qta_integrations.evaluation import build_pipeline, evaluate, format_reports, load_mtrb

SUBSETS = ("restbench", "metatool", "toolbench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("QTA_MTRB_DIR"))
    parser.add_argument("--subsets", nargs="+", default=list(SUBSETS), choices=SUBSETS)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    embeddings = default_embeddings()
    data = {
        s: (load_mtrb(s, "test", args.data_dir), load_mtrb(s, "train", args.data_dir))
        for s in args.subsets
    }
    reports = []
    fits: dict[str, Any] = {}
    states: dict[str, dict[str, Any]] = {}
    for subset, (test, train) in data.items():
        labelled = {t for q in train.queries for t in q.tool_ids}
        for method in ("dense", "bm25", "hybrid"):
            pipeline = build_pipeline(method, test.catalog, embeddings=embeddings)
            reports.append(
                evaluate(
                    pipeline, test, method=method, show_progress=False, labelled_tools=labelled
                )
            )
        pipeline = build_pipeline("qta", test.catalog, embeddings=embeddings)
        started = time.perf_counter()
        pipeline.add_examples(train)
        fit_seconds = time.perf_counter() - started
        assert pipeline.last_fit is not None
        fits[subset] = {**pipeline.last_fit.to_dict(), "fit_seconds": round(fit_seconds, 2)}
        states[subset] = pipeline.state_dict()
        print(f"{subset}: fitted {pipeline.fusion} in {fit_seconds:.1f} s")
        reports.append(
            evaluate(pipeline, test, method="qta", show_progress=False, info=fits[subset])
        )
    cross = []
    for source, state in states.items():
        for target, (test, _) in data.items():
            if target == source:
                continue
            pipeline = build_pipeline("qta", test.catalog, embeddings=embeddings)
            pipeline.load_state_dict(state)
            report = evaluate(
                pipeline,
                test,
                method=f"qta (fitted on {source})",
                show_progress=False,
                info={"fusion": pipeline.fusion.to_dict()},
            )
            cross.append(report)
    print(format_reports(reports, paper=False))
    print()
    print(format_reports(cross, paper=False))
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "command": "python benchmarks/aligned_retrieval.py",
            "fits": fits,
            "reports": [r.to_dict(per_query=False) for r in reports],
            "cross_dataset": [r.to_dict(per_query=False) for r in cross],
        }
        args.output.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
