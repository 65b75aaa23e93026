"""What a new user sees on a first run: offline MTRB, report names, the one-time conversion."""

from __future__ import annotations

import json
import logging
import urllib.error
from pathlib import Path

import pytest

from qta_integrations import models
from qta_integrations.cli import Overrides, main
from qta_integrations.evaluation import datasets
from qta_integrations.testing import KeywordEmbeddings


def test_eval_offline_without_data_dir_says_what_to_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def offline(url: str, dest: Path) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.delenv(datasets.MTRB_ENV_VAR, raising=False)
    monkeypatch.setenv("QTA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(datasets, "download_file", offline)
    assert main(["eval", "--dataset", "mtrb-restbench", "--method", "bm25"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    assert err.startswith("qta: error: could not download mtrb-restbench")
    assert "--data-dir DIR" in err
    assert "QTA_MTRB_DIR" in err


def test_eval_name_sets_the_dataset_name(
    tmp_path: Path,
    tool_dicts: list[dict[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    tools = tmp_path / "tools.jsonl"
    tools.write_text("\n".join(json.dumps(t) for t in tool_dicts))
    queries = tmp_path / "test.jsonl"
    queries.write_text(json.dumps({"query": "translate text", "tools": ["translate"]}))
    out = tmp_path / "results.json"
    argv = ["eval", "--tools", str(tools), "--queries", str(queries), "--name", "my-tools"]
    argv += ["--method", "bm25", "--no-progress", "--output", str(out)]
    assert main(argv, overrides=Overrides(embeddings=KeywordEmbeddings())) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[-3:] == ["R@5", "R@10", "s/query"]  # Recall is in the table too
    assert table[2].split()[:2] == ["my-tools", "bm25"]
    assert json.loads(out.read_text())["reports"][0]["dataset"] == "my-tools"


def test_conversion_logs_the_path_and_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"")

    def fake_convert(source: Path, target: Path) -> None:
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")
        (target / "model.safetensors").write_bytes(b"\0" * 2 * 2**20)

    monkeypatch.setattr(models, "smollm2_gguf_path", lambda: gguf)
    monkeypatch.setattr(models, "_convert", fake_convert)
    with caplog.at_level(logging.INFO, logger="qta_integrations.models"):
        path = models.default_rewriter_path(cache=tmp_path / "cache")
        again = models.default_rewriter_path(cache=tmp_path / "cache")
    assert path == again == tmp_path / "cache" / "smollm2-135m-instruct"
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages  # announced once, reported once; the second call is silent
    assert str(path) in messages[0]
    assert "under a minute" in messages[0]
    assert f"{path} (2 MiB" in messages[1]


def test_the_cli_shows_the_conversion_lines(capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("qta_integrations.models")
    level = logger.level
    try:
        assert main(["eval"]) == 2  # any command; the models' INFO lines are shown from here on
        assert logger.getEffectiveLevel() == logging.INFO
    finally:
        logger.setLevel(level)
    capsys.readouterr()
