"""The lexical channel at scale: building BM25 over 1,000 to 100,000 tools, and one query.

The tools are the scale benchmark's catalogue (`benchmarks/scale.py`: MTRB's tools, then
varied copies). For each size the package's `BM25ToolIndex` (identifier-aware, stemmed tokens)
is built from nothing, the match-coverage matrix the lexical trust reads is built, and 20
queries are scored; the bm25s tokeniser (no split, no stem) is timed beside it.

Command (from the repository root; about 2 minutes on 2 CPU cores)::

    QTA_MTRB_DIR=path/to/mtrb python benchmarks/lexical_scale.py \
        --output benchmarks/results/lexical_scale.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import _setup  # noqa: F401  (sets the offline environment; import before the package)


def main() -> None:
    from scale import catalogue

    from qta_integrations.evaluation import load_mtrb
    from qta_integrations.stores import BM25ToolIndex
    from qta_integrations.tools import ToolCatalog

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1_000, 10_000, 100_000])
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    queries = [q.query for q in load_mtrb("toolbench").queries][:20]
    rows: list[dict[str, Any]] = []
    for size in args.sizes:
        tools = list(ToolCatalog.from_dicts(catalogue(size)))
        for name, tokenizer in (("package", "default"), ("bm25s", None)):
            index = BM25ToolIndex() if tokenizer == "default" else BM25ToolIndex(tokenizer=None)
            started = time.perf_counter()
            index.add_tools(tools)
            build = time.perf_counter() - started
            started = time.perf_counter()
            index.match_coverage(queries[:1])  # builds the coverage matrix once
            coverage_build = time.perf_counter() - started
            per_query = []
            for query in queries:
                started = time.perf_counter()
                index.scores([query])
                index.match_coverage([query])
                per_query.append(time.perf_counter() - started)
            row = {
                "tools": size,
                "tokenizer": name,
                "build_s": round(build, 2),
                "coverage_matrix_s": round(coverage_build, 2),
                "query_ms_median": round(1000 * statistics.median(per_query), 2),
            }
            rows.append(row)
            print(row, flush=True)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        payload = {"command": "python benchmarks/lexical_scale.py", "rows": rows}
        args.output.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
