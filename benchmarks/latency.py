"""Latency of `QTARetriever.invoke` and throughput of `batch`: dense, fitted, paper's rewrite.

Uses the real default models (all-MiniLM-L6-v2 in embedded Chroma; SmolLM2-135M-Instruct for
the paper's configuration) over an MTRB catalogue (default ToolBench, 811 tools) and its test
queries. The fitted retriever learns from the subset's 10 training queries first. The modes are
timed query by query in alternation (dense, fitted, dense, ...), so a change in the machine's
load hits both alike, and the ratio of their medians is the figure to compare. The rewrite
cache is cleared before every timed call of the paper mode, so the rewrite really runs.

Each encoder in ``--encoders`` (default ``torch onnx-fp32 onnx-int8``: the sentence-transformers
model, the ONNX Runtime fp32 default and its int8 variant) gets its own dense and fitted
retrievers, all timed in the same alternation, so the ratios between encoders are measured side
by side.

Throughput: in each of ``--rounds`` rounds, for each mode, the first ``--batch`` queries are
retrieved one by one with ``invoke`` and then in one ``batch`` call; the speedup is the median
over the rounds of (one-by-one time / batch time). The embedding model alone is timed the same
way (``embed_query`` per query against one batched pass), since it bounds what batching gains.

Command (from the repository root; ``make bench`` runs it with the defaults)::

    QTA_MTRB_DIR=path/to/mtrb python benchmarks/latency.py \
        --subset toolbench --queries 90 --threads 1 --output benchmarks/results/latency.json

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
    rewriter = retriever.pipeline.rewriter if clear_cache else None
    times = []
    for query in queries:
        if rewriter is not None:
            rewriter.clear_cache()
        start = time.perf_counter()
        docs = retriever.invoke(query)
        times.append(time.perf_counter() - start)
        assert docs, "the retriever returned nothing"
    return times


def _elapsed(call: Any) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _throughput(rounds: list[tuple[float, float]], size: int) -> dict[str, float]:
    """Median per-query times of (one by one, batched) rounds, and the median speedup."""
    one = statistics.median(o for o, _ in rounds)
    batched = statistics.median(b for _, b in rounds)
    return {
        "batch_size": size,
        "rounds": len(rounds),
        "one_by_one_ms_per_query": 1000 * one / size,
        "batch_ms_per_query": 1000 * batched / size,
        "one_by_one_queries_per_s": size / one,
        "batch_queries_per_s": size / batched,
        "speedup": statistics.median(o / b for o, b in rounds),
    }


def _time_throughput(
    retrievers: dict[str, Any], models: dict[str, Any], queries: list[str], rounds: int
) -> dict[str, dict[str, float]]:
    from qta_integrations.embeddings import embed_queries

    for name, retriever in retrievers.items():  # the batch must return what invoke returns
        batched = retriever.batch(queries)
        single = [retriever.invoke(q) for q in queries]
        assert [[d.id for d in b] for b in batched] == [[d.id for d in s] for s in single], name
    timed: dict[str, list[tuple[float, float]]] = {name: [] for name in [*retrievers, *models]}
    for r in range(rounds):
        order = list(timed) if r % 2 == 0 else list(reversed(timed))
        for name in order:
            if name in models:
                embeddings = models[name]
                one = _elapsed(lambda: [embeddings.embed_query(q) for q in queries])  # noqa: B023
                batched = _elapsed(lambda: embed_queries(embeddings, queries))  # noqa: B023
            else:
                retriever = retrievers[name]
                one = _elapsed(lambda: [retriever.invoke(q) for q in queries])  # noqa: B023
                batched = _elapsed(lambda: retriever.batch(queries))  # noqa: B023
            timed[name].append((one, batched))
    return {name: _throughput(t, len(queries)) for name, t in timed.items()}


ENCODERS = {
    "torch": {"backend": "torch"},
    "onnx-fp32": {"backend": "onnx", "precision": "fp32"},
    "onnx-int8": {"backend": "onnx", "precision": "int8"},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", default="toolbench", help="MTRB subset (default toolbench).")
    parser.add_argument("--queries", type=int, default=90, help="Queries timed one by one.")
    parser.add_argument("--batch", type=int, default=32, help="Queries in the batch call.")
    parser.add_argument("--rounds", type=int, default=5, help="Rounds of the batch timing.")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch and ONNX Runtime threads (default theirs: one per core). On a loaded machine "
        "1 is steadier.",
    )
    parser.add_argument(
        "--encoders",
        nargs="+",
        choices=sorted(ENCODERS),
        default=["torch", "onnx-fp32", "onnx-int8"],
        help="Encoders timed side by side (default all three).",
    )
    parser.add_argument("--paper", type=int, default=0, help="Queries timed in paper mode.")
    parser.add_argument("--k", type=int, default=5, help="Tools returned per query.")
    parser.add_argument("--data-dir", type=Path, default=None, help="MTRB dir ($QTA_MTRB_DIR).")
    parser.add_argument("--output", type=Path, help="Also write the numbers as JSON here.")
    args = parser.parse_args(argv)

    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
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
    from qta_integrations.embeddings import default_embeddings

    retrievers: dict[str, Any] = {}
    models: dict[str, Any] = {}
    fitted: Any = None
    for encoder in args.encoders:
        embeddings = default_embeddings(**ENCODERS[encoder], num_threads=args.threads)
        models[f"model [{encoder}]"] = embeddings
        # Each its own embedded Chroma store: the fitted one also holds the 10 examples.
        retrievers[f"dense [{encoder}]"] = QTARetriever(
            tools=data.catalog,
            embeddings=embeddings,
            rewriter=None,
            k=args.k,
            settings=RetrievalSettings(fusion=FusionWeights()),
        )
        # The zero-label base: what QTARetriever(tools=...) does before any label.
        retrievers[f"base [{encoder}]"] = QTARetriever(
            tools=data.catalog, embeddings=embeddings, rewriter=None, k=args.k
        )
        fitted = QTARetriever(tools=data.catalog, embeddings=embeddings, rewriter=None, k=args.k)
        fitted.add_examples(train)
        retrievers[f"fitted [{encoder}]"] = fitted
    print(f"Fitted weights: {fitted.pipeline.fusion}", file=sys.stderr)
    for retriever in retrievers.values():
        _time_invoke(retriever, queries[-2:], clear_cache=False)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in retrievers}
    for i, query in enumerate(queries[: args.queries]):
        order = list(retrievers) if i % 2 == 0 else list(reversed(retrievers))
        for name in order:
            times[name] += _time_invoke(retrievers[name], [query], clear_cache=False)
    single = {name: _percentiles(t) for name, t in times.items()}
    ratios = {
        f"{mode} / dense [{e}]": single[f"{mode} [{e}]"]["median_ms"]
        / single[f"dense [{e}]"]["median_ms"]
        for e in args.encoders
        for mode in ("base", "fitted")
    }
    base = args.encoders[0]
    for encoder in args.encoders[1:]:
        for mode in ("dense", "base", "fitted"):
            ratios[f"{mode} {base} / {encoder}"] = (
                single[f"{mode} [{base}]"]["median_ms"] / single[f"{mode} [{encoder}]"]["median_ms"]
            )
    batch = _time_throughput(retrievers, models, queries[: args.batch], args.rounds)
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
    for name, value in ratios.items():
        print(f"{name} (medians): {value:.2f}x")
    print(
        f"\nthroughput: {args.batch} queries one by one vs in one call (medians of "
        f"{args.rounds} rounds; 'model' = the embedding model alone)"
    )
    print(f"{'mode':<22}{'one ms/q':>10}{'batch ms/q':>12}{'one q/s':>9}{'batch q/s':>11}{'x':>7}")
    for name, row in batch.items():
        print(
            f"{name:<22}{row['one_by_one_ms_per_query']:>10.1f}{row['batch_ms_per_query']:>12.1f}"
            f"{row['one_by_one_queries_per_s']:>9.1f}{row['batch_queries_per_s']:>11.1f}"
            f"{row['speedup']:>6.2f}x"
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
                    "fusion": fitted.pipeline.fusion.to_dict(),
                    "invoke": single,
                    "encoders": {e: ENCODERS[e] for e in args.encoders},
                    "median_ratios": ratios,
                    "batch": batch,
                    "load_average": {"before": load_before[0], "after": load_after[0]},
                    "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(),
                    "onnx_threads": args.threads,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
