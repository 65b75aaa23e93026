"""`qta eval` on MTRB-RestBench with the real all-MiniLM-L6-v2 (dense, deterministic)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qta_integrations.cli import main


@pytest.mark.slow
def test_qta_eval_restbench_dense_reproduces_the_paper_sufficiency(
    mtrb_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results.json"
    argv = [
        "eval",
        "--dataset",
        "mtrb-restbench",
        "--data-dir",
        str(mtrb_dir),
        "--method",
        "dense",
        "--k",
        "5",
        "10",
        "--no-progress",
        "--output",
        str(out),
    ]
    assert main(argv) == 0
    (report,) = json.loads(out.read_text())["reports"]
    metrics = report["metrics_percent"]
    # Measured (docs/benchmarks.md): 14 and 31 of the 90 queries have all gold tools in the
    # top 5 / top 10, exactly the paper's zero-shot S@5 15.56 and S@10 34.44.
    assert metrics["S@5"] == pytest.approx(100 * 14 / 90)
    assert metrics["S@10"] == pytest.approx(100 * 31 / 90)
    assert report["paper_percent"]["S@5"] == 15.56
    # NDCG (binary gain, ideal over min(|gold|, k)) as measured; the paper's convention differs.
    assert metrics["N@5"] == pytest.approx(36.71, abs=0.01)
    assert metrics["N@10"] == pytest.approx(44.14, abs=0.01)
    first = report["per_query"][0]
    assert first["gold"] == ["GET /search/movie", "GET /movie/{movie_id}"]
    assert len(first["ranking"]) == 10


@pytest.mark.slow
@pytest.mark.parametrize("label_fit", ["safe", "labelled"])
def test_qta_train_no_dpo_then_eval_with_the_adapter(
    label_fit: str, mtrb_dir: Path, tmp_path: Path
) -> None:
    adapter = tmp_path / "adapter"
    data = ["--dataset", "mtrb-restbench", "--data-dir", str(mtrb_dir)]
    # The 10 training queries: example memory and fitted fusion only (seconds, no model).
    train = ["train", *data, "--no-dpo", "--no-show-progress", "--label-fit", label_fit]
    assert main([*train, "--output", str(adapter)]) == 0
    assert [p.name for p in adapter.iterdir()] == ["qta_manifest.json"]  # retrieval-only

    out = tmp_path / "results.json"
    argv = ["eval", *data, "--method", "dense", "qta", "--adapter", str(adapter)]
    assert main([*argv, "--no-progress", "--output", str(out)]) == 0
    dense, qta = json.loads(out.read_text())["reports"]
    assert (dense["method"], qta["method"]) == ("dense", "qta")
    assert all(q["rewrite"] is None for q in qta["per_query"])  # the rewriter never ran
    fitted, plain = qta["metrics_percent"], dense["metrics_percent"]
    # The 90 test queries were not fitted on. Measured: dense S@5 15.56, S@10 34.44; labelled
    # 42.22, 72.22; safe keeps dense here (its label weights would cost unlabelled tools).
    if label_fit == "labelled":
        assert fitted["S@5"] > plain["S@5"] + 10
        assert fitted["S@10"] > plain["S@10"]
    else:
        assert fitted["S@5"] >= plain["S@5"]
        assert fitted["S@10"] >= plain["S@10"]
        assert qta["groups"]["uncovered"]["S@5"] >= 100 * 8 / 14  # dense: 8 of the 14
