"""Does the DPO-aligned rewriter transfer to tools no label names? Its fitted weight, measured.

QTA's claim is that aligning the rewriter with DPO on a few labelled queries helps unseen
queries. Here the rewriter (SmolLM2-135M-Instruct, the default) is aligned with `QTATrainer`
(``dpo=True``: the fusion is fitted first, then DPO, then the rewrite signal's weight is fitted
on the labels like the other weights and kept only if it pays) on:

* the standard split: MTRB's 10 training queries; the test queries split into covered and
  uncovered ones;
* the first ``--draws`` draws of the tool-disjoint protocol
  (`qta_integrations.evaluation.protocols`): 10 labels from one half of the tools, evaluation
  on the test queries none of whose tools a label names.

For each run: the weights the fit chose (is the rewrite weight above 0?), the fitted retriever
on the evaluation queries, and, as a diagnostic measured on the evaluation queries themselves
(never used to choose anything), the same retriever with the rewrite signal forced in at each
of ``--forced`` weights.

Command (from the repository root; DPO on a CPU: about 5 minutes per run, plus generation)::

    QTA_MTRB_DIR=path/to/mtrb python benchmarks/rewriter_transfer.py --subset restbench \
        --draws 3 --output benchmarks/results/rewriter_transfer.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import _setup  # noqa: F401  (sets the offline environment; import before the package)


def run(
    name: str,
    catalog: Any,
    labels: list[Any],
    evaluation: Any,
    *,
    labelled: set[str] | None,
    forced: list[float],
    seed: int,
) -> dict[str, Any]:
    """Align on ``labels``, report the fit and the retriever on ``evaluation``."""
    from qta_integrations import QTAPipeline
    from qta_integrations.embeddings import default_embeddings
    from qta_integrations.evaluation import evaluate
    from qta_integrations.fusion import FusionWeights
    from qta_integrations.stores import ExactToolIndex
    from qta_integrations.training import QTATrainer, QTATrainingConfig

    pipeline = QTAPipeline(catalog, ExactToolIndex(default_embeddings()), "default")
    trainer = QTATrainer(pipeline, config=QTATrainingConfig(dpo=True, seed=seed))
    started = time.perf_counter()
    trainer.fit(labels)
    seconds = time.perf_counter() - started
    fitted = pipeline.fusion
    report = evaluate(
        pipeline, evaluation, method="fitted", show_progress=False, labelled_tools=labelled
    )
    rows: dict[str, Any] = {"fitted": report.to_dict(per_query=False)}
    for weight in forced:
        pipeline.settings = pipeline.settings.replace(
            fusion=FusionWeights(**{**fitted.to_dict(), "rewrite": weight})
        )
        forced_report = evaluate(
            pipeline, evaluation, method=f"rewrite {weight}", show_progress=False
        )
        rows[f"rewrite={weight}"] = forced_report.to_dict(per_query=False)
    pipeline.settings = pipeline.settings.replace(fusion=fitted)
    summary = {
        name: {key: round(value["metrics_percent"]["S@5"], 2) for key, value in rows.items()}
    }
    print(json.dumps({**summary, "weights": fitted.to_dict()}), flush=True)
    return {
        "run": name,
        "train_seconds": round(seconds, 1),
        "fusion": fitted.to_dict(),
        "fusion_with_rewrite": trainer.metrics.get("fusion_with_rewrite"),
        "pairs": [r["pairs"] for r in trainer.metrics.get("rounds", [])],
        "reports": rows,
    }


def main() -> None:
    from qta_integrations.evaluation import load_mtrb, tool_disjoint_draws

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("QTA_MTRB_DIR"))
    parser.add_argument("--subset", default="restbench")
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--forced", type=float, nargs="*", default=[0.25, 0.5])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    test = load_mtrb(args.subset, "test", args.data_dir)
    train = load_mtrb(args.subset, "train", args.data_dir)
    runs = [
        run(
            "standard split",
            test.catalog,
            list(train.queries),
            test,
            labelled={t for q in train.queries for t in q.tool_ids},
            forced=args.forced,
            seed=args.seed,
        )
    ]
    for draw in tool_disjoint_draws(test, train, draws=args.draws):
        runs.append(
            run(
                f"tool-disjoint draw {draw.seed}",
                test.catalog,
                list(draw.labels),
                draw.evaluation,
                labelled=None,
                forced=args.forced,
                seed=args.seed,
            )
        )
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        payload = {"command": "python benchmarks/rewriter_transfer.py", "runs": runs}
        args.output.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
