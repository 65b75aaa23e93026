"""Bad CLI input: exit code 2 and one ``qta: error: ...`` line naming the problem, no traceback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from qta_integrations.cli import Overrides, main
from qta_integrations.testing import FakeRewriter, KeywordEmbeddings

TOOLS = [
    {"id": "weather", "name": "get_weather", "description": "Current weather for a city."},
    {"id": "quote", "name": "get_quote", "description": "Latest price of a stock ticker."},
    {"id": "route", "name": "plan_route", "description": "Driving directions between places."},
]
QUERIES = [{"query": "weather in Paris?", "tools": ["weather"]}]


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, str]:
    """Good and broken input files; the placeholders the argv templates below use."""

    def write(name: str, text: str) -> str:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return str(path)

    lines = [json.dumps(t) for t in TOOLS]
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "mtrb" / "restbench").mkdir(parents=True)
    write("mtrb/restbench/tmdb_tool_rewrite.json", '[{"ID": 1, "tool_usage": ')
    write("mtrb/restbench/mtr_restbench_test.json", "[]")
    return {
        "tools": write("tools.jsonl", "\n".join(lines)),
        "queries": write("queries.json", json.dumps(QUERIES)),
        "bad_line3": write("bad.jsonl", "\n".join([lines[0], lines[1], '{"id": "route",']) + "\n"),
        "bad_json": write("bad.json", "[" + ",\n".join(lines) + ",\n]"),
        "empty": write("empty.jsonl", ""),
        "no_names": write("nameless.jsonl", json.dumps({"id": "w", "description": "Weather."})),
        "bad_queries": write("q.jsonl", json.dumps(QUERIES[0]) + "\n{}\n"),
        "invisible_query": write("q2.jsonl", json.dumps({"query": "\u200b", "tools": ["weather"]})),
        "unknown_id": write("q3.jsonl", json.dumps({"query": "rain?", "tools": ["rain"]})),
        "a_file": write("notes.txt", "a file"),
        "dir": str(tmp_path / "a_dir"),
        "missing": str(tmp_path / "missing.jsonl"),
        "out": str(tmp_path / "out"),
        "mtrb": str(tmp_path / "mtrb"),
        "mtrb_tools": str(tmp_path / "mtrb" / "restbench" / "tmdb_tool_rewrite.json"),
    }


EVAL = ["eval", "--method", "dense", "--no-progress"]
OWN = [*EVAL, "--tools", "{tools}", "--queries", "{queries}"]
TRAIN = ["train", "--tools", "{tools}", "--train", "{queries}", "--output", "{out}"]

# (argv template, pattern the error line must match)
CASES: list[tuple[list[str], str]] = [
    ([*EVAL, "--tools", "{dir}", "--queries", "{queries}"], r"'{dir}' is a directory, not a file"),
    ([*EVAL, "--tools", "{tools}", "--queries", "{dir}"], r"'{dir}' is a directory"),
    ([*EVAL, "--tools", "{missing}", "--queries", "{queries}"], r"File not found: '{missing}'"),
    ([*EVAL, "--tools", "{bad_line3}", "--queries", "{queries}"], r"Line 3 of '{bad_line3}'"),
    ([*EVAL, "--tools", "{bad_json}", "--queries", "{queries}"], r"'{bad_json}' is not valid JSON"),
    ([*EVAL, "--tools", "{empty}", "--queries", "{queries}"], r"'{empty}' is empty"),
    ([*EVAL, "--tools", "{no_names}", "--queries", "{queries}"], r"has no 'name'.*--names-from"),
    (
        [*EVAL, "--tools", "{tools}", "--queries", "{bad_queries}"],
        r"query record #1 \(line 2\) in '{bad_queries}' needs a non-empty string 'query'",
    ),
    (
        [*EVAL, "--tools", "{tools}", "--queries", "{invisible_query}"],
        r"query record #0 \(line 1\) in '{invisible_query}': query has no visible text",
    ),
    (
        [*EVAL, "--tools", "{tools}", "--queries", "{unknown_id}"],
        r"not in the catalogue: \['rain'\]",
    ),
    ([*OWN, "--output", "{dir}"], r"--output must be a file path, got the directory '{dir}'"),
    ([*OWN, "--output", "{a_file}/results.json"], r"cannot be created: '{a_file}' is a file"),
    ([*OWN, "--split", "train"], r"--split apply only to --dataset mtrb-\*"),
    ([*OWN, "--text", "original"], r"--text apply only to --dataset mtrb-\*"),
    ([*OWN, "--include-name"], r"--include-name apply only to --dataset mtrb-\*"),
    ([*OWN, "--data-dir", "{dir}"], r"--data-dir apply only to --dataset mtrb-\*"),
    ([*OWN, "--split", "test", "--include-name"], r"--split, --include-name apply only"),
    ([*EVAL, "--dataset", "mtrb-restbench", "--names-from-ids"], r"--names-from-ids applies only"),
    ([*EVAL, "--dataset", "mtrb-nope"], r"Unknown dataset 'mtrb-nope'"),
    (
        [*EVAL, "--dataset", "mtrb-restbench", "--data-dir", "{mtrb}"],
        r"MTRB file '{mtrb_tools}' is not valid JSON: .* line 1, column 26",
    ),
    (
        [*EVAL, "--dataset", "mtrb-metatool", "--data-dir", "{mtrb}"],
        r"MTRB file not found: .*metatool.*must hold <subset>/<file>",
    ),
    ([*OWN, "--dataset", "mtrb-restbench"], r"either --dataset or --tools/--queries, not both"),
    ([*EVAL, "--tools", "{tools}"], r"Say what to evaluate on"),
    (EVAL, r"Say what to evaluate on"),
    ([*OWN, "--method", "sparse"], r"Unknown method\(s\) \['sparse'\]"),
    ([*OWN, "--k", "0"], r"--k takes positive cutoffs, got \[0\]"),
    ([*OWN, "--k", "5", "-1"], r"--k takes positive cutoffs, got \[5, -1\]"),
    ([*OWN, "--batch-size", "0"], r"--batch-size must be >= 1, got 0"),
    ([*OWN, "--adapter", "{missing}", "--method", "qta"], r"No adapter directory at '{missing}'"),
    ([*OWN, "--adapter", "{dir}"], r"--adapter only applies to --method qta"),
    (["demo", "--query", ""], r"--query must not be empty or whitespace"),
    (["demo", "--query", "\u200b\u200b"], r"--query has no visible text, got '\\u200b\\u200b'"),
    (["demo", "--query", "ok", "--query", "\x00"], r"--query has no visible text, got '\\x00'"),
    (["demo", "--k", "0"], r"--k must be >= 1, got 0"),
    (["demo", "--adapter", "{missing}"], r"No adapter directory at '{missing}'"),
    (["train", "--output", "{out}"], r"qta train needs --dataset, or both --tools FILE"),
    (["train", "--tools", "{tools}", "--output", "{out}"], r"needs --dataset, or both"),
    (
        ["train", "--tools", "{dir}", "--train", "{queries}", "--output", "{out}"],
        r"'{dir}' is a directory",
    ),
    (
        ["train", "--tools", "{tools}", "--train", "{bad_line3}", "--output", "{out}"],
        r"Line 3 of '{bad_line3}' is not valid JSON",
    ),
    (
        ["train", "--tools", "{tools}", "--train", "{missing}", "--output", "{out}"],
        r"File not found: '{missing}'",
    ),
    (
        ["train", "--tools", "{tools}", "--train", "{q}", "--output", "{out}", "--data-dir", "x"],
        r"--data-dir applies only to --dataset mtrb-\*",
    ),
    (
        ["train", "--dataset", "mtrb-restbench", "--tools", "{tools}", "--output", "{out}"],
        r"either --dataset or --tools with --train, not both",
    ),
    (
        ["train", "--dataset", "mtrb-restbench", "--names-from-ids", "--output", "{out}"],
        r"--names-from-ids applies only to --tools files",
    ),
    (
        [*TRAIN, "--num-candidates", "1"],
        r"num_candidates must be >= 2 \(a pair needs two candidates\), got 1",
    ),
    (
        [*TRAIN, "--top-p", "0"],
        r"top_p must be a number in \(0.0, 1.0\], got 0.0",
    ),
]


def _fill(template: str, paths: dict[str, str], *, escape: bool) -> str:
    paths = {**paths, "q": paths["queries"]}
    return re.sub(
        r"\{(\w+)\}",
        lambda m: re.escape(paths[m.group(1)]) if escape else paths[m.group(1)],
        template,
    )


@pytest.mark.parametrize(("argv", "pattern"), CASES, ids=[f"{i:02d}" for i in range(len(CASES))])
def test_bad_cli_input(
    paths: dict[str, str], capsys: pytest.CaptureFixture[str], argv: list[str], pattern: str
) -> None:
    args = [_fill(a, paths, escape=False) for a in argv]
    fakes = Overrides(embeddings=KeywordEmbeddings(), rewriter=FakeRewriter())
    assert main(args, overrides=fakes) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("qta: error: ")]
    assert len(errors) == 1, err
    assert re.search(_fill(pattern, paths, escape=True), errors[0]), errors[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "--k", "five"],
        ["eval", "--text", "summary"],
        ["eval", "--no-such-flag"],
        ["train", "--num-candidates", "many", "--output", "x"],
        ["train", "--dataset", "restbench", "--output", "x"],
        ["nope"],
    ],
)
def test_argparse_errors_exit_2_without_traceback(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(r"^qta( \w+)?: error: ", err.splitlines()[-1])


def test_names_from_ids_is_an_explicit_opt_in(
    paths: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    queries = Path(paths["out"]).with_name("w.jsonl")
    queries.write_text(json.dumps({"query": "weather?", "tools": ["w"]}))
    argv = [*EVAL, "--tools", paths["no_names"], "--queries", str(queries), "--k", "1"]
    fakes = Overrides(embeddings=KeywordEmbeddings())
    assert main([*argv, "--names-from-ids"], overrides=fakes) == 0
    assert "dense" in capsys.readouterr().out
