"""Latency of `QTARetriever.invoke`: dense only, the fitted retriever, the paper's rewrite.

Uses the real default models (all-MiniLM-L6-v2 in embedded Chroma; SmolLM2-135M-Instruct for
the paper's configuration) over an MTRB catalogue (default ToolBench, 811 tools) and its test
queries. The fitted retriever learns from the subset's 10 training queries first. The modes are
timed query by query in alternation (dense, fitted, dense, ...), so a change in the machine's
load hits both alike, and the ratio of their medians is the figure to compare. The rewrite
cache is cleared before every timed call of the paper mode, so the rewrite really runs.

Command (from the repository root; ``make bench`` runs it with the defaults)::

    QTA_MTRB_DIR=path/to/mtrb python benchmarks/latency.py \
        --subset toolbench --queries 90 --output benchmarks/results/latency.json

Add ``--paper 10`` to also time 10 queries with the paper's configuration (a rewrite each).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import _setup  # noqa: F401  (sets the offline environment; import before the package)
import numpy as np


def _percentiles(seconds: list[float]) -> dict[str, float]:
    return {
        "median_ms": 1000 * statistics.median(seconds),
        "p90_ms": 1000 * float(np.percentile(seconds, 90)),
        "mean_ms": 1000 * statistics.fmean(seconds),
    }


def _time_invoke(retriever: Any, queries: list[str], *, clear_cache: bool) -> list[float]:
    rewriter = retriever.core.rewriter if clear_cache else None
    times = []
    for query in queries:
        if rewriter is not None:
            rewriter.clear_cache()
        start = time.perf_counter()
        docs = retriever.invoke(query)
        times.append(time.perf_counter() - start)
        assert docs, "the retriever returned nothing"
    return times


def _time_batch(retriever: Any, queries: list[str]) -> dict[str, float]:
    start = time.perf_counter()
    results = retriever.batch(queries)
    seconds = time.perf_counter() - start
    assert len(results) == len(queries)
    return {
        "batch_size": len(queries),
        "seconds": seconds,
        "queries_per_s": len(queries) / seconds,
        "ms_per_query": 1000 * seconds / len(queries),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", default="toolbench", help="MTRB subset (default toolbench).")
    parser.add_argument("--queries", type=int, default=90, help="Queries timed one by one.")
    parser.add_argument("--batch", type=int, default=32, help="Queries in the batch call.")
    parser.add_argument("--paper", type=int, default=0, help="Queries timed in paper mode.")
    parser.add_argument("--k", type=int, default=5, help="Tools returned per query.")
    parser.add_argument("--data-dir", type=Path, default=None, help="MTRB dir ($QTA_MTRB_DIR).")
    parser.add_argument("--output", type=Path, help="Also write the numbers as JSON here.")
    args = parser.parse_args(argv)

    import torch

    from qta_integrations import QTARetriever
    from qta_integrations.evaluation import load_mtrb
    from qta_integrations.fusion import FusionWeights
    from qta_integrations.settings import RetrievalSettings

    data = load_mtrb(args.subset, data_dir=args.data_dir)
    train = load_mtrb(args.subset, "train", data_dir=args.data_dir)
    queries = [q.query for q in data.queries]
    if max(args.queries, args.batch, args.paper) > len(queries):
        print(f"At most {len(queries)} queries are available.", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    print(
        f"Catalogue: {data!r}; torch threads: {torch.get_num_threads()}; "
        f"load average before: {load_before[0]:.2f}",
        file=sys.stderr,
    )
    dense = QTARetriever(tools=data.catalog, rewriter=None, k=args.k)
    # Each its own embedded Chroma store: the fitted one also holds the 10 examples.
    fitted = QTARetriever(tools=data.catalog, rewriter=None, k=args.k)
    fitted.add_examples(train)
    print(f"Fitted weights: {fitted.core.fusion}", file=sys.stderr)
    retrievers = {"dense": dense, "fitted": fitted}
    for retriever in retrievers.values():
        _time_invoke(retriever, queries[-2:], clear_cache=False)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in retrievers}
    for i, query in enumerate(queries[: args.queries]):
        order = list(retrievers) if i % 2 == 0 else list(reversed(retrievers))
        for name in order:
            times[name] += _time_invoke(retrievers[name], [query], clear_cache=False)
    single = {name: _percentiles(t) for name, t in times.items()}
    ratio = single["fitted"]["median_ms"] / single["dense"]["median_ms"]
    batch = {name: _time_batch(r, queries[: args.batch]) for name, r in retrievers.items()}
    if args.paper:
        paper = QTARetriever(
            tools=data.catalog,
            k=args.k,
            settings=RetrievalSettings(fusion=FusionWeights.paper()),
        )
        _time_invoke(paper, queries[-1:], clear_cache=True)  # loads the rewriter
        single["paper (SmolLM2 rewrite)"] = _percentiles(
            _time_invoke(paper, queries[: args.paper], clear_cache=True)
        )
    load_after = os.getloadavg()

    print(f"\ninvoke latency over {args.queries} queries (k={args.k})")
    print(f"{'mode':<26}{'median ms':>11}{'p90 ms':>10}{'mean ms':>10}")
    for name, row in single.items():
        print(f"{name:<26}{row['median_ms']:>11.1f}{row['p90_ms']:>10.1f}{row['mean_ms']:>10.1f}")
    print(f"\nfitted / dense median: {ratio:.2f}x")
    print(f"\nbatch throughput ({args.batch} queries in one .batch call)")
    print(f"{'mode':<26}{'total s':>9}{'queries/s':>11}{'ms/query':>10}")
    for name, row in batch.items():
        print(
            f"{name:<26}{row['seconds']:>9.2f}{row['queries_per_s']:>11.2f}"
            f"{row['ms_per_query']:>10.1f}"
        )
    print(
        f"\nload average: {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
        f"{os.cpu_count()} CPUs; {platform.processor() or platform.machine()}"
    )

    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(
            json.dumps(
                {
                    "command": ["python", "benchmarks/latency.py", *(argv or sys.argv[1:])],
                    "catalogue": repr(data),
                    "k": args.k,
                    "fusion": fitted.core.fusion.to_dict(),
                    "invoke": single,
                    "fitted_over_dense_median": ratio,
                    "batch": batch,
                    "load_average": {"before": load_before[0], "after": load_after[0]},
                    "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(),
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
