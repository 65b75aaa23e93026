"""Compare ways of combining the original query with its rewrite, from one set of rewrites.

For each MTRB subset and each rewriter (untrained default, or trained adapters), the 90 test
queries are rewritten once with the retriever's own prompt; then every combination below is
scored on the frozen retriever's exact ranking of the whole catalogue:

- ``query``: the original query only (zero-shot dense);
- ``rewrite``: the rewrite only;
- ``score a=X``: ``(1 - X) * s(q, t) + X * s(rewrite, t)`` (``FusionWeights.paper(X)``);
- ``concat``: the query and the rewrite embedded together as one text (not a pipeline
  option: measured here because an earlier prompt layout did best with it);
- ``score a=X +N sampled``: as ``score``, averaging ``s(r_i, t)`` over the greedy rewrite and
  ``N`` sampled ones (``--samples N --sample-temperature T``).

Command used for docs/benchmarks.md (2 CPU cores):

    python benchmarks/fusion_modes.py --subsets restbench metatool toolbench \
        --adapters untrained /tmp/adapters/restbench-n10-s1 ... --name fusion_modes
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from _setup import ROOT  # sets the offline environment; import before the package

from qta_integrations.evaluation import build_pipeline, load_mtrb
from qta_integrations.evaluation.harness import score_ranking
from qta_integrations.rewriter import HuggingFaceRewriter
from qta_integrations.stores import ExactToolIndex

METRICS = ("S@5", "S@10", "N@5", "N@10")
ALPHAS = (0.1, 0.25, 0.5)


def concat_query(query: str, rewrite: str) -> str:
    """One text holding the query and its rewrite (the ``concat`` variant)."""
    return f"{query}\n{rewrite}"


def _mean_metrics(rankings: list[list[str]], golds: list[tuple[str, ...]]) -> dict[str, float]:
    per_query = [score_ranking(r, g, (5, 10)) for r, g in zip(rankings, golds, strict=True)]
    return {m: round(100 * float(np.mean([p[m] for p in per_query])), 2) for m in METRICS}


def compare(
    subset: str,
    adapter: str,
    data_dir: str,
    embeddings: Any,
    *,
    samples: int = 0,
    temperature: float = 0.7,
    split: str = "test",
    num_context_tools: int = 3,
) -> dict[str, Any]:
    data = load_mtrb(subset, split, data_dir=data_dir)
    pipeline = build_pipeline(
        "qta-paper",
        data.catalog,
        embeddings=embeddings,
        adapter=None if adapter == "untrained" else adapter,
        num_context_tools=num_context_tools,
    )
    index, rewriter = pipeline.index, pipeline.rewriter
    assert isinstance(index, ExactToolIndex) and isinstance(rewriter, HuggingFaceRewriter)
    queries = [q.query for q in data.queries]
    golds = [q.tool_ids for q in data.queries]
    requests = pipeline.rewrite_requests(queries)
    rewrites = rewriter.rewrite_batch(requests)
    s_query = index.scores(queries)
    s_rewrite = index.scores(rewrites)
    s_concat = index.scores([concat_query(q, r) for q, r in zip(queries, rewrites, strict=True)])
    sampled: list[list[str]] = []
    if samples:
        import torch

        torch.manual_seed(0)
        sampled = rewriter.sample_batch(
            requests, num_samples=samples, temperature=temperature, top_p=0.95
        )
        flat = index.scores([t for group in sampled for t in group])
        s_samples = flat.reshape(len(queries), samples, -1)
        s_all = (s_rewrite + s_samples.sum(axis=1)) / (samples + 1)
    variants = {
        "query": s_query,
        "rewrite": s_rewrite,
        **{f"score a={a}": (1 - a) * s_query + a * s_rewrite for a in ALPHAS},
        "concat": s_concat,
    }
    if samples:
        for a in ALPHAS:
            variants[f"score a={a} +{samples} sampled"] = (1 - a) * s_query + a * s_all
    return {
        "subset": subset,
        "split": split,
        "adapter": adapter,
        "num_context_tools": num_context_tools,
        "metrics": {
            name: _mean_metrics(index.rank_scores(s), golds) for name, s in variants.items()
        },
        "rewrites": rewrites,
        "sampled": sampled,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subsets", nargs="+", default=["restbench"])
    parser.add_argument("--adapters", nargs="+", default=["untrained"])
    parser.add_argument("--data-dir", default=os.environ.get("QTA_MTRB_DIR"))
    parser.add_argument("--name", default="fusion_modes")
    parser.add_argument("--samples", type=int, default=0, help="sampled rewrites per query")
    parser.add_argument("--sample-temperature", type=float, default=0.7)
    parser.add_argument("--split", default="test", help="'test' (90 queries) or 'train' (10)")
    parser.add_argument("--num-context-tools", type=int, default=3)
    args = parser.parse_args(argv)
    from qta_integrations.embeddings import default_embeddings

    embeddings = default_embeddings()
    out = ROOT / "benchmarks" / "results" / f"{args.name}.json"
    results = []
    for subset in args.subsets:
        for adapter in args.adapters:
            result = compare(
                subset,
                adapter,
                args.data_dir,
                embeddings,
                samples=args.samples,
                temperature=args.sample_temperature,
                split=args.split,
                num_context_tools=args.num_context_tools,
            )
            results.append(result)
            for name, metrics in result["metrics"].items():
                cells = " ".join(f"{metrics[m]:6.2f}" for m in METRICS)
                print(f"{subset:10s} {Path(adapter).name:22s} {name:12s} {cells}", flush=True)
            out.write_text(
                json.dumps({"command": " ".join(sys.argv), "comparisons": results}, indent=1)
            )


if __name__ == "__main__":
    main()
