"""Train the QTA rewriter on MTRB training splits and evaluate it on the test sets.

For each training subset, seed and number of examples: load the default SmolLM2-135M rewriter,
train it with `QTATrainer` on the first ``n`` training queries (a seeded random sample when
``n`` < 10), then evaluate the trained rewriter on each evaluation subset's 90 test queries
with the same harness as ``qta eval`` (`qta_integrations.evaluation.evaluate`). Results (one
record per run plus mean and std per configuration) are written as JSON under
``benchmarks/results/``.

Commands used for docs/benchmarks.md (2 CPU cores, no GPU):

    # main table: train on each subset's 10 examples, test on its 90 queries, 3 seeds
    python benchmarks/train_mtrb.py --subsets restbench metatool --seeds 0 1 2 --baselines \
        --name main
    # sample efficiency
    python benchmarks/train_mtrb.py --subsets restbench --n-examples 1 3 5 10 --seeds 0 1 2 \
        --name curve
    # transfer: train on RestBench, test on the others
    python benchmarks/train_mtrb.py --subsets restbench --eval-subsets metatool toolbench \
        --seeds 0 1 2 --name transfer
    # an option, e.g. two pairs per example
    python benchmarks/train_mtrb.py --subsets restbench --seeds 0 1 2 --pairs-per-example 2 \
        --name pairs2

Every `QTATrainingConfig` field is a flag (``--num-candidates 8``, ``--grade-mode alone``, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from _setup import ROOT  # sets the offline environment; import before the package

from qta_integrations.evaluation import build_pipeline, evaluate, load_mtrb
from qta_integrations.fusion import FusionWeights
from qta_integrations.metrics import sufficiency_at_k
from qta_integrations.pipeline import QTAPipeline
from qta_integrations.ranking import RankingFunction, SufficiencyNDCG
from qta_integrations.settings import RetrievalSettings
from qta_integrations.training.cli import add_config_arguments, config_from_args

METRICS = ("S@5", "S@10", "N@5", "N@10")


def _sufficiency_at_5(ranking: Sequence[str], gold: Collection[str]) -> tuple[float, ...]:
    """Binary: are all gold tools in the top 5? (compared against the graded default)"""
    return (sufficiency_at_k(ranking, gold, 5),)


# The pipeline options this script exposes, with the package's own defaults.
PIPELINE_DEFAULTS: dict[str, Any] = {
    "num_context_tools": RetrievalSettings().num_context_tools,
    "alpha": FusionWeights.paper().rewrite,
}

RANKINGS: dict[str, RankingFunction] = {
    "sufficiency-ndcg": SufficiencyNDCG(),
    "ndcg": SufficiencyNDCG(cutoffs=()),
    "s@5": _sufficiency_at_5,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subsets", nargs="+", default=["restbench"], help="training subsets")
    parser.add_argument(
        "--eval-subsets", nargs="+", default=None, help="test subsets (default: the training one)"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n-examples", nargs="+", type=int, default=[10])
    parser.add_argument("--baselines", action="store_true", help="also dense and untrained QTA")
    parser.add_argument("--data-dir", default=os.environ.get("QTA_MTRB_DIR"))
    parser.add_argument("--name", default="run", help="results file: benchmarks/results/NAME.json")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--progress", action="store_true", help="progress bars while evaluating")
    parser.add_argument("--save-adapters", default=None, help="keep adapters under this folder")
    parser.add_argument(
        "--num-context-tools",
        type=int,
        default=PIPELINE_DEFAULTS["num_context_tools"],
        help="tools shown to the rewriter (QTAPipeline.num_context_tools), in training and test",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=PIPELINE_DEFAULTS["alpha"],
        help="fusion weight of the rewrite, training and test",
    )
    parser.add_argument(
        "--ranking",
        choices=sorted(RANKINGS),
        default="sufficiency-ndcg",
        help="ranking function grading the candidates (default: the package's SufficiencyNDCG)",
    )
    add_config_arguments(parser)
    return parser.parse_args(argv)


def _metrics(report: Any) -> dict[str, float]:
    return {m: round(report.metrics[m], 2) for m in METRICS}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from qta_integrations.embeddings import default_embeddings
    from qta_integrations.rewriter import HuggingFaceRewriter
    from qta_integrations.training import QTATrainer

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    config = config_from_args(args)
    embeddings = default_embeddings()
    out_path = ROOT / "benchmarks" / "results" / f"{args.name}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "command": "python benchmarks/train_mtrb.py " + " ".join(argv or sys.argv[1:]),
        "config": config.to_dict(),
        "ranking": args.ranking,
        "pipeline": {"num_context_tools": args.num_context_tools, "alpha": args.alpha},
        "machine": f"{os.cpu_count()} CPU cores, torch threads default",
        "baselines": [],
        "runs": [],
    }

    def dump() -> None:
        result["summary"] = summarise(result["runs"])
        out_path.write_text(json.dumps(result, indent=1))

    pipeline_options = {
        "num_context_tools": args.num_context_tools,
        "fusion": FusionWeights.paper(args.alpha),
    }
    eval_sets = {}
    for subset in sorted(set(args.subsets) | set(args.eval_subsets or args.subsets)):
        eval_sets[subset] = load_mtrb(subset, "test", args.data_dir)
    if args.baselines:
        for subset in args.eval_subsets or args.subsets:
            data = eval_sets[subset]
            dense = evaluate(
                build_pipeline("dense", data.catalog, embeddings=embeddings),
                data,
                method="dense",
                show_progress=False,
            )
            untrained = evaluate(
                _paper_pipeline(data.catalog, embeddings, None, pipeline_options),
                data,
                method="qta",
                show_progress=False,
            )
            for label, report in (("dense", dense), ("qta-untrained", untrained)):
                result["baselines"].append({"subset": subset, "method": label, **_metrics(report)})
                print(subset, label, _metrics(report), flush=True)
            dump()
    for subset in args.subsets:
        train = load_mtrb(subset, "train", args.data_dir)
        for n in args.n_examples:
            for seed in args.seeds:
                examples = list(train.queries)
                if n < len(examples):
                    examples = random.Random(seed).sample(examples, n)
                config.seed = seed
                rewriter = HuggingFaceRewriter.default()
                pipeline = _paper_pipeline(train.catalog, embeddings, rewriter, pipeline_options)
                trainer = QTATrainer(
                    pipeline, config=config, ranking=RANKINGS[args.ranking], alpha=args.alpha
                )
                adapter = (
                    Path(args.save_adapters) / f"{subset}-n{n}-s{seed}"
                    if args.save_adapters
                    else None
                )
                start = time.perf_counter()
                trainer.fit(examples, output_dir=adapter)
                train_seconds = time.perf_counter() - start
                for eval_subset in args.eval_subsets or [subset]:
                    data = eval_sets[eval_subset]
                    report = evaluate(
                        _paper_pipeline(data.catalog, embeddings, rewriter, pipeline_options),
                        data,
                        method="qta",
                        show_progress=args.progress,
                    )
                    run = {
                        "train_subset": subset,
                        "eval_subset": eval_subset,
                        "n_examples": n,
                        "seed": seed,
                        "train_seconds": round(train_seconds, 1),
                        "eval_seconds": round(report.seconds, 1),
                        "pairs": [r["pairs"] for r in trainer.metrics["rounds"]],
                        "rounds": [
                            {k: v for k, v in r.items() if k not in ("sft", "dpo")}
                            | {"dpo": {k: v for k, v in r["dpo"].items() if k != "log"}}
                            for r in trainer.metrics["rounds"]
                        ],
                        **_metrics(report),
                    }
                    if eval_subset == (args.eval_subsets or [subset])[0]:
                        run["candidates"] = trainer.candidates
                    result["runs"].append(run)
                    print(json.dumps(run), flush=True)
                    dump()
    dump()
    print(json.dumps(result["summary"], indent=1))


def _paper_pipeline(
    catalog: Any, embeddings: Any, rewriter: Any, options: dict[str, Any]
) -> QTAPipeline:
    """The paper's configuration: the (trained) rewriter, raw query + rewrite fusion."""
    pipeline = build_pipeline("qta-paper", catalog, embeddings=embeddings, rewriter=rewriter)
    pipeline.settings = pipeline.settings.replace(**options)
    return pipeline


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["train_subset"], run["eval_subset"], run["n_examples"]), []).append(
            run
        )
    rows = []
    for (train, test, n), items in groups.items():
        row: dict[str, Any] = {"train": train, "test": test, "n_examples": n, "seeds": len(items)}
        for key in (*METRICS, "train_seconds"):
            values = [r[key] for r in items]
            row[key] = round(statistics.fmean(values), 2)
            row[f"{key}_std"] = round(statistics.stdev(values), 2) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
