"""The default encoder on ONNX Runtime against sentence-transformers: quality and speed.

For each encoder in ``--encoders`` (default ``torch onnx-fp32 onnx-int8``: the
sentence-transformers all-MiniLM-L6-v2, and the same weights exported to ONNX, in fp32 and
dynamically quantised to int8):

* quality on the five development catalogues (the MTRB RestBench, MetaTool and ToolBench
  subsets, and the devsuite's RestBench-Spotify and ToolAlpaca), ``S@5`` and ``S@10`` in %, for
  the dense retriever and for the fitted default (the same pipeline after ``add_examples`` of
  the catalogue's 10 training queries), with exact cosine search (`ExactToolIndex`);
* speed, side by side in one process: indexing throughput (``embed_documents`` of the MTRB
  ToolBench tool texts, texts/s) and query encoding (``embed_query`` of its 90 test queries,
  ms per query), encoder by encoder in alternation over ``--rounds`` rounds, medians reported.

Command (from the repository root)::

    QTA_MTRB_DIR=path/to/mtrb python benchmarks/encoder.py --devsuite path/to/devsuite \\
        --threads 1 --output benchmarks/results/encoder.json

``--devsuite`` (default ``$QTA_DEVSUITE_DIR``) holds ``restbench_spotify/`` and
``toolalpaca/``, each with ``tools.json``, ``train.json`` and ``test.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import _setup  # noqa: F401  (sets the offline environment; import before the package)

ENCODERS = {
    "torch": {"backend": "torch"},
    "onnx-fp32": {"backend": "onnx", "precision": "fp32"},
    "onnx-int8": {"backend": "onnx", "precision": "int8"},
}
MTRB_SUBSETS = ("restbench", "metatool", "toolbench")
DEVSUITE = ("restbench_spotify", "toolalpaca")


def catalogues(devsuite: Path | None, data_dir: Path | None) -> dict[str, tuple[Any, Any]]:
    """``name -> (test dataset, training dataset)`` for the five development catalogues."""
    from qta_integrations.evaluation import load_mtrb
    from qta_integrations.evaluation.datasets import load_retrieval_dataset

    found = {}
    for subset in MTRB_SUBSETS:
        found[f"mtrb-{subset}"] = (
            load_mtrb(subset, data_dir=data_dir),
            load_mtrb(subset, "train", data_dir=data_dir),
        )
    if devsuite is not None:
        for name in DEVSUITE:
            directory = devsuite / name
            found[name] = tuple(
                load_retrieval_dataset(directory / "tools.json", directory / f"{split}.json")
                for split in ("test", "train")
            )
    return found


def quality(embeddings: Any, test: Any, train: Any) -> dict[str, dict[str, float]]:
    from qta_integrations import QTAPipeline
    from qta_integrations.evaluation import evaluate
    from qta_integrations.stores import ExactToolIndex

    rows = {}
    for mode in ("dense", "fitted"):
        pipeline = QTAPipeline(test.catalog, ExactToolIndex(embeddings), None)
        if mode == "fitted":
            pipeline.add_examples(
                [{"query": q.query, "tools": list(q.tool_ids)} for q in train.queries]
            )
        report = evaluate(pipeline, test, ks=(5, 10), method=mode, show_progress=False)
        rows[mode] = {k: round(report.metrics[k], 2) for k in ("S@5", "S@10")}
    return rows


def speed(
    models: dict[str, Any], texts: list[str], queries: list[str], rounds: int
) -> dict[str, dict[str, float]]:
    timed: dict[str, dict[str, list[float]]] = {n: {"index": [], "query": []} for n in models}
    for model in models.values():  # warm-up
        model.embed_documents(texts[:32])
        model.embed_query(queries[0])
    for r in range(rounds):
        order = list(models) if r % 2 == 0 else list(reversed(models))
        for name in order:
            model = models[name]
            start = time.perf_counter()
            model.embed_documents(texts)
            timed[name]["index"].append(time.perf_counter() - start)
            start = time.perf_counter()
            for query in queries:
                model.embed_query(query)
            timed[name]["query"].append(time.perf_counter() - start)
    return {
        name: {
            "texts_per_s": round(len(texts) / statistics.median(t["index"]), 1),
            "ms_per_query": round(1000 * statistics.median(t["query"]) / len(queries), 2),
        }
        for name, t in timed.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="+", choices=sorted(ENCODERS), default=list(ENCODERS))
    parser.add_argument("--threads", type=int, default=None, help="torch and ONNX threads.")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds of the speed timing.")
    parser.add_argument("--data-dir", type=Path, default=None, help="MTRB dir ($QTA_MTRB_DIR).")
    parser.add_argument(
        "--devsuite",
        type=Path,
        default=Path(os.environ["QTA_DEVSUITE_DIR"])
        if os.environ.get("QTA_DEVSUITE_DIR")
        else None,
        help="The devsuite directory ($QTA_DEVSUITE_DIR); without it only MTRB is scored.",
    )
    parser.add_argument("--skip-speed", action="store_true", help="Quality only.")
    parser.add_argument("--output", type=Path, help="Also write the numbers as JSON here.")
    args = parser.parse_args(argv)

    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from qta_integrations.embeddings import default_embeddings

    models = {
        name: default_embeddings(**ENCODERS[name], num_threads=args.threads)
        for name in args.encoders
    }
    data = catalogues(args.devsuite, args.data_dir)
    results: dict[str, Any] = {"quality": {}, "speed": None}
    for catalogue, (test, train) in data.items():
        results["quality"][catalogue] = {
            name: quality(model, test, train) for name, model in models.items()
        }
        print(catalogue, json.dumps(results["quality"][catalogue]), file=sys.stderr, flush=True)
    if not args.skip_speed:
        toolbench = data["mtrb-toolbench"][0]
        texts = [t.text for t in toolbench.catalog]
        queries = [q.query for q in toolbench.queries]
        results["speed"] = speed(models, texts, queries, args.rounds)
        results["speed_corpus"] = f"{len(texts)} MTRB-ToolBench tool texts, {len(queries)} queries"

    print(f"\n{'catalogue':<20}{'mode':<8}" + "".join(f"{n + ' S@5/S@10':>22}" for n in models))
    for catalogue, rows in results["quality"].items():
        for mode in ("dense", "fitted"):
            cells = "".join(
                f"{rows[n][mode]['S@5']:>13.2f}/{rows[n][mode]['S@10']:<8.2f}" for n in models
            )
            print(f"{catalogue:<20}{mode:<8}{cells}")
    if results["speed"]:
        print(f"\n{'encoder':<12}{'texts/s':>10}{'ms/query':>10}")
        for name, row in results["speed"].items():
            print(f"{name:<12}{row['texts_per_s']:>10.1f}{row['ms_per_query']:>10.2f}")
    if args.output is not None:
        results.update(
            command=["python", "benchmarks/encoder.py", *(argv or sys.argv[1:])],
            encoders={n: ENCODERS[n] for n in models},
            threads=args.threads,
            cpus=os.cpu_count(),
            load_average=os.getloadavg()[0],
        )
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
