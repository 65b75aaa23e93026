"""Latency of `QTARetriever.invoke` with and without the rewrite, and `batch` throughput.

Uses the real default models (all-MiniLM-L6-v2 in embedded Chroma, SmolLM2-135M-Instruct
rewriter) over the MTRB-RestBench catalogue (54 tools) and its test queries. The rewrite
cache is cleared before every timed call, so the rewrite really runs each time.

Command (from the repository root; ``make bench`` runs it with the defaults)::

    HF_HUB_OFFLINE=1 QTA_MTRB_DIR=../shared/data/mtrb python benchmarks/latency.py \
        --queries 20 --batch 32 --output benchmarks/results/latency.json

Reports, per mode: median and p90 of single-query latency over ``--queries`` queries, then the
wall time and throughput of one ``batch`` call over ``--batch`` queries. The machine's load
average is printed too: other processes on a shared machine slow everything down.
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
    rewriter = retriever.core.rewriter
    times = []
    for query in queries:
        if clear_cache and rewriter is not None:
            rewriter.clear_cache()
        start = time.perf_counter()
        docs = retriever.invoke(query)
        times.append(time.perf_counter() - start)
        assert docs, "the retriever returned nothing"
    return times


def _time_batch(retriever: Any, queries: list[str]) -> dict[str, float]:
    if retriever.core.rewriter is not None:
        retriever.core.rewriter.clear_cache()
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
    parser.add_argument("--queries", type=int, default=20, help="Queries timed one by one.")
    parser.add_argument("--batch", type=int, default=32, help="Queries in the batch call.")
    parser.add_argument("--k", type=int, default=5, help="Tools returned per query.")
    parser.add_argument("--data-dir", type=Path, default=None, help="MTRB dir ($QTA_MTRB_DIR).")
    parser.add_argument("--output", type=Path, help="Also write the numbers as JSON here.")
    args = parser.parse_args(argv)

    import torch

    from qta_integrations import QTARetriever
    from qta_integrations.evaluation import load_mtrb

    data = load_mtrb("restbench", data_dir=args.data_dir)
    queries = [q.query for q in data.queries]
    if max(args.queries, args.batch) > len(queries):
        print(f"At most {len(queries)} queries are available.", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    print(
        f"Catalogue: {data!r}; torch threads: {torch.get_num_threads()}; "
        f"load average before: {load_before[0]:.2f}",
        file=sys.stderr,
    )

    retrievers = {
        "dense (no rewrite)": QTARetriever(tools=data.catalog, rewriter=None, k=args.k),
        "qta (SmolLM2 rewrite)": QTARetriever(tools=data.catalog, k=args.k),
    }
    single: dict[str, dict[str, float]] = {}
    batch: dict[str, dict[str, float]] = {}
    for name, retriever in retrievers.items():
        _time_invoke(retriever, queries[-2:], clear_cache=True)  # warm-up: load, first call
        single[name] = _percentiles(
            _time_invoke(retriever, queries[: args.queries], clear_cache=True)
        )
        batch[name] = _time_batch(retriever, queries[: args.batch])
    load_after = os.getloadavg()

    print(
        f"\ninvoke latency over {args.queries} queries (k={args.k}, rewrite cache cleared "
        "before each call)"
    )
    print(f"{'mode':<24}{'median ms':>11}{'p90 ms':>10}{'mean ms':>10}")
    for name, row in single.items():
        print(f"{name:<24}{row['median_ms']:>11.1f}{row['p90_ms']:>10.1f}{row['mean_ms']:>10.1f}")
    print(f"\nbatch throughput ({args.batch} queries in one .batch call)")
    print(f"{'mode':<24}{'total s':>9}{'queries/s':>11}{'ms/query':>10}")
    for name, row in batch.items():
        print(
            f"{name:<24}{row['seconds']:>9.2f}{row['queries_per_s']:>11.2f}"
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
                    "invoke": single,
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
