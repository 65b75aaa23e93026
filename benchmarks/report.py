"""Markdown tables of the training runs stored in ``benchmarks/results/*.json``.

Runs written by ``benchmarks/train_mtrb.py`` are grouped by (options that differ from the
`QTATrainingConfig` defaults, training subset, test subset, number of examples); each row gives
the mean ± standard deviation over the seeds in the group and the mean training time. The
tables in ``docs/benchmarks.md`` are pasted from this output::

    python benchmarks/report.py
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import fields
from pathlib import Path
from typing import Any

from _setup import ROOT  # sets the offline environment; import before the package

from qta_integrations.fusion import FusionWeights
from qta_integrations.settings import RetrievalSettings
from qta_integrations.training.config import QTATrainingConfig

METRICS = ("S@5", "S@10", "N@5", "N@10")
IGNORED = {"seed", "show_progress", "logging_steps"}
# Pipeline options recorded by train_mtrb.py; a row names them only when not the default.
PIPELINE_DEFAULTS = {
    "num_context_tools": RetrievalSettings().num_context_tools,
    "alpha": FusionWeights.paper().rewrite,
}


def options(config: dict[str, Any]) -> str:
    """The config fields that differ from the defaults, as ``name=value`` (``defaults`` if none)."""
    defaults = {f.name: f.default for f in fields(QTATrainingConfig)}
    changed = [
        f"{name}={value}"
        for name, value in config.items()
        if name not in IGNORED and defaults.get(name) != value
    ]
    return ", ".join(changed) or "defaults"


def _cell(values: list[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {statistics.stdev(values):.2f}"


def table(results_dir: Path) -> str:
    groups: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    for path in sorted(results_dir.glob("*.json")):
        data = json.loads(path.read_text())
        if "runs" not in data or "config" not in data:  # other benchmarks write here too
            continue
        label = options(data["config"])
        pipeline = data.get("pipeline", {})
        for name, default in PIPELINE_DEFAULTS.items():
            if pipeline.get(name, default) != default:
                label += f", {name}={pipeline[name]}"
        if data.get("ranking", "sufficiency-ndcg") != "sufficiency-ndcg":
            label += f", ranking={data['ranking']}"
        for run in data["runs"]:
            key = (label, run["train_subset"], run["eval_subset"], run["n_examples"])
            groups.setdefault(key, []).append(run)
    lines = [
        "| Options | Train | Test | n | Seeds | S@5 | S@10 | N@5 | N@10 | Train time (s) |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for (label, train, test, n), runs in sorted(groups.items(), key=lambda item: item[0]):
        seeds = ",".join(str(r["seed"]) for r in sorted(runs, key=lambda r: r["seed"]))
        cells = [_cell([r[m] for r in runs]) for m in METRICS]
        seconds = statistics.fmean(r["train_seconds"] for r in runs)
        lines.append(
            f"| {label} | {train} | {test} | {n} | {seeds} | {' | '.join(cells)} | {seconds:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    print(table(parser.parse_args(argv).results))


if __name__ == "__main__":
    main()
