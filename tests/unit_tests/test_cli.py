"""The ``qta`` CLI, with fake embeddings and a scripted rewriter injected through `Overrides`."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from qta_integrations import cli
from qta_integrations.cli import Overrides, build_parser, main
from qta_integrations.fusion import FusionWeights
from qta_integrations.testing import FakeRewriter, KeywordEmbeddings

UMBRELLA = "do I need an umbrella on my route?"


@pytest.fixture
def files(tmp_path: Path, tool_dicts: list[dict[str, str]]) -> tuple[Path, Path]:
    tools = tmp_path / "tools.jsonl"
    tools.write_text("\n".join(json.dumps(t) for t in tool_dicts))
    queries = tmp_path / "queries.json"
    queries.write_text(
        json.dumps(
            [
                {"query": "translate text into another language", "tools": ["translate"]},
                {
                    "query": "send an email message and create a calendar event",
                    "tools": ["email", "calendar"],
                },
                {"query": UMBRELLA, "tools": ["weather"]},
            ]
        )
    )
    return tools, queries


@pytest.fixture
def fakes() -> Overrides:
    return Overrides(
        embeddings=KeywordEmbeddings(),
        rewriter=FakeRewriter({UMBRELLA: "current weather forecast for a city"}),
    )


def test_eval_own_files(
    files: tuple[Path, Path], fakes: Overrides, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tools, queries = files
    out = tmp_path / "out" / "results.json"
    argv = [
        "eval",
        "--tools",
        str(tools),
        "--queries",
        str(queries),
        "--method",
        "dense",
        "bm25",
        "qta",
        "qta-paper",
        "--k",
        "1",
        "2",
        "--output",
        str(out),
        "--no-progress",
    ]
    assert main(argv, overrides=fakes) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "dataset",
        "method",
        "source",
        "S@1",
        "S@2",
        "N@1",
        "N@2",
        "R@1",
        "R@2",
        "s/query",
    ]
    rows = {line.split()[1]: line.split() for line in table[2:]}
    assert set(rows) == {"dense", "bm25", "qta", "qta-paper"}
    # S@1: the two-tool query can never be sufficient at k=1. Dense also misses the umbrella
    # query (it matches plan_route); the rewrite (qta-paper) fixes it. qta without labels is
    # the zero-label base (dense and BM25) and never calls the rewriter.
    assert rows["dense"][3] == "33.33"
    assert rows["qta-paper"][3] == "66.67"
    saved = json.loads(out.read_text())
    assert saved["command"] == ["qta", *argv]
    reports = {r["method"]: r for r in saved["reports"]}
    paper = reports["qta-paper"]
    assert paper["per_query"][2]["rewrite"] == "current weather forecast for a city"
    assert paper["per_query"][2]["ranking"][0] == "weather"
    assert paper["info"]["settings"]["fusion"] == FusionWeights.paper().to_dict()
    assert reports["qta"]["info"]["settings"]["fusion"] == FusionWeights.base().to_dict()
    assert reports["qta"]["info"]["examples"] == 0
    assert all(o["rewrite"] is None for o in reports["qta"]["per_query"])
    assert isinstance(fakes.rewriter, FakeRewriter)
    assert sorted(fakes.rewriter.calls) == sorted(o["query"] for o in paper["per_query"])
    assert reports["dense"]["per_query"][2]["ranking"][0] == "route"
    assert reports["bm25"]["per_query"][0]["ranking"][0] == "translate"
    assert reports["bm25"]["per_query"][0]["metrics"]["S@1"] == 1.0


def test_eval_mtrb_prints_the_paper_rows(
    mtrb_dir: Path, fakes: Overrides, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "eval",
        "--dataset",
        "mtrb-restbench",
        "--data-dir",
        str(mtrb_dir),
        "--method",
        "bm25",
        "--no-progress",
    ]
    assert main(argv, overrides=fakes) == 0
    out = capsys.readouterr().out
    assert "paper: BM25" in out
    assert "6.67" in out  # the paper's BM25 S@5 on RestBench


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["eval", "--dataset", "mtrb-gorilla"],
            "Unknown dataset 'mtrb-gorilla'; choose one of: "
            "mtrb-restbench, mtrb-metatool, mtrb-toolbench",
        ),
        (["eval"], "Say what to evaluate on"),
        (["eval", "--tools", "t.json"], "both --tools FILE and --queries FILE"),
        (["eval", "--dataset", "mtrb-restbench", "--tools", "t.json"], "not both"),
        (
            ["eval", "--dataset", "mtrb-restbench", "--method", "dense", "sparse"],
            "Unknown method(s) ['sparse']; choose from: dense, bm25, hybrid, base, qta, qta-paper.",
        ),
        (
            ["eval", "--dataset", "mtrb-restbench", "--method", "dense", "--adapter", "x"],
            "--adapter only applies to --method qta or qta-paper",
        ),
        (
            ["eval", "--dataset", "mtrb-restbench", "--method", "hybrid", "--adapter", "x"],
            "--adapter only applies to --method qta or qta-paper",
        ),
        (
            [
                "eval",
                "--dataset",
                "mtrb-restbench",
                "--method",
                "qta-paper",
                "--adapter",
                "/no/such/dir",
            ],
            "No adapter directory at '/no/such/dir'",
        ),
        (
            ["eval", "--dataset", "mtrb-restbench", "--method", "qta", "--adapter", "/no/such/dir"],
            "No adapter directory at '/no/such/dir'",
        ),
        (
            ["eval", "--dataset", "mtrb-restbench", "--method", "dense", "--k", "0"],
            "--k takes positive cutoffs, got [0]",
        ),
    ],
)
def test_eval_bad_input(
    argv: list[str],
    message: str,
    mtrb_dir: Path,
    fakes: Overrides,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QTA_MTRB_DIR", str(mtrb_dir))
    assert main(argv, overrides=fakes) == 2
    err = capsys.readouterr().err
    assert err.startswith("qta: error: ")
    assert message in err


def test_eval_has_no_alpha_flag(capsys: pytest.CaptureFixture[str]) -> None:
    # The paper's weighting is the qta-paper method now; --alpha is not accepted.
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--dataset", "mtrb-restbench", "--method", "qta", "--alpha", "0.7"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --alpha 0.7" in capsys.readouterr().err


def test_eval_missing_files(
    tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    tools, _ = files
    argv = [
        "eval",
        "--tools",
        str(tools),
        "--queries",
        str(tmp_path / "nope.json"),
        "--method",
        "bm25",
    ]
    assert main(argv) == 2
    assert "File not found" in capsys.readouterr().err


def test_eval_missing_mtrb_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["eval", "--dataset", "mtrb-metatool", "--data-dir", str(tmp_path), "--method", "bm25"]
    assert main(argv) == 2
    assert "metatool/ts_metatool_api_list_rewrite.json" in capsys.readouterr().err


def test_demo(fakes: Overrides, capsys: pytest.CaptureFixture[str]) -> None:
    assert len(cli.DEMO_TOOLS) == 15
    assert len(cli.DEMO_EXAMPLES) == 8
    rewriter = FakeRewriter({"umbrella for Lisbon?": "current weather and forecast for a city"})
    fakes.rewriter = rewriter
    argv = ["demo", "--query", "umbrella for Lisbon?", "--query", "translate into French"]
    assert main([*argv, "--k", "2"], overrides=fakes) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "Learning from 8 labelled queries" in captured.err
    assert out.startswith("Fused weights: dense=1")
    assert "(8 labelled queries in memory)\n" in out.splitlines(keepends=True)[0]
    assert "rewrite=" not in out.splitlines()[0]  # the rewriter has no weight: it never runs
    assert out.count("Query:   ") == 2
    assert "Query:   umbrella for Lisbon?\n  1. " in out
    assert "Query:   translate into French\n  1. translate" in out
    assert "Rewrite:" not in out
    assert rewriter.calls == []
    assert "  2. " in out
    assert "  3. " not in out


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "eval" in capsys.readouterr().out


def test_registration_point(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ("qta_integrations.training.cli", "add_train_parser") in cli.SUBCOMMANDS
    module = types.ModuleType("qta_hello_cli")

    def add_hello_parser(subparsers: object) -> None:
        parser = subparsers.add_parser("hello")  # type: ignore[attr-defined]
        parser.add_argument("--name", default="world")
        parser.set_defaults(handler=lambda args: print(f"hello {args.name}") or 0)

    module.add_hello_parser = add_hello_parser  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "qta_hello_cli", module)
    monkeypatch.setattr(
        cli,
        "SUBCOMMANDS",
        [
            *cli.SUBCOMMANDS,
            ("qta_hello_cli", "add_hello_parser"),
            ("qta_integrations.not_written_yet.cli", "add_later_parser"),  # missing: skipped
        ],
    )
    assert main(["hello", "--name", "QTA"]) == 0
    assert capsys.readouterr().out == "hello QTA\n"
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"eval", "demo", "hello"} <= set(commands)


def test_broken_subcommand_module_is_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("qta_broken_cli")
    monkeypatch.setitem(sys.modules, "qta_broken_cli", module)

    def broken_import(name: str) -> types.ModuleType:
        if name == "qta_broken_cli":
            raise ModuleNotFoundError(
                "No module named 'some_missing_dependency'", name="some_missing_dependency"
            )
        return sys.modules[name] if name in sys.modules else __import__(name)

    monkeypatch.setattr(cli.importlib, "import_module", broken_import)
    monkeypatch.setattr(cli, "SUBCOMMANDS", [("qta_broken_cli", "add_x_parser")])
    with pytest.raises(ModuleNotFoundError, match="some_missing_dependency"):
        build_parser()
