"""Bad tool records and broken files: errors name the record, the file, the line and the fix."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from qta_integrations import QTAPipeline, QTARetriever
from qta_integrations.evaluation import load_retrieval_dataset
from qta_integrations.sources.files import read_numbered_records
from qta_integrations.testing import KeywordEmbeddings
from qta_integrations.tools import Tool, ToolCatalog

GOOD = {"id": "weather", "name": "get_weather", "description": "Weather for a city."}

# (record placed second in the list, error type, pattern)
BAD_RECORDS: list[tuple[Any, type[Exception], str]] = [
    ({"description": "No id."}, ValueError, r"tool #1 has no 'id' \(and no 'name'.*Add an 'id'"),
    ({"id": None, "description": "d"}, ValueError, r"tool #1 has no 'id'"),
    ({"id": "", "description": "d"}, ValueError, r"tool #1 has no 'id'"),
    ({"id": "  ", "description": "d"}, ValueError, r"tool #1 has no 'id'"),
    ({"id": [1, 2], "description": "d"}, TypeError, r"tool #1 has id \[1, 2\] of type list"),
    ({"id": {"a": 1}, "description": "d"}, TypeError, r"has id \{'a': 1\} of type dict"),
    ({"id": 1.5, "description": "d"}, TypeError, r"has id 1.5 of type float.*must be strings"),
    ({"id": True, "description": "d"}, TypeError, r"has id True of type bool"),
    ({"name": ["x"], "description": "d"}, TypeError, r"has name \['x'\] of type list"),
    ({"id": "x", "name": None, "description": "d"}, TypeError, r"\(id 'x'\) has name None"),
    ({"id": "x", "name": 42, "description": "d"}, TypeError, r"has name 42 of type int"),
    ({"id": "x", "name": "   ", "description": "d"}, ValueError, r"has a blank name '   '"),
    ({"id": "x", "description": None}, TypeError, r"\(id 'x'\) has a non-string description"),
    ({"id": "x", "description": 3}, TypeError, r"non-string description 3"),
    ({"id": "x", "description": ["a"]}, TypeError, r"non-string description \['a'\]"),
    ({"id": "x"}, ValueError, r"Tool 'x' has an empty description.*one sentence"),
    ({"id": "x", "description": ""}, ValueError, r"Tool 'x' has an empty description"),
    ({"id": "x", "description": " \n"}, ValueError, r"Tool 'x' has an empty description"),
    (dict(GOOD), ValueError, r"Duplicate tool id 'weather'.*must be unique"),
    ("get_weather", TypeError, r"tool #1 must be a mapping.*got str: 'get_weather'"),
    (42, TypeError, r"tool #1 must be a mapping.*got int: 42"),
    (None, TypeError, r"tool #1 must be a mapping.*got NoneType"),
    (["weather", "d"], TypeError, r"tool #1 must be a mapping.*got list"),
    (
        {"id": "x", "description": "d", "parameters": "city"},
        TypeError,
        r"\(id 'x'\) has 'parameters' 'city' of type str.*JSON Schema object",
    ),
    (
        {"id": "x", "description": "d", "parameters": {"type": "string"}},
        ValueError,
        r"\(id 'x'\) has an input schema of type 'string', not 'object'.*one property per",
    ),
    (
        {"id": "x", "description": "d", "parameters": {"type": "object", "properties": [1]}},
        ValueError,
        r"\(id 'x'\) has input schema 'properties' of type list",
    ),
    (
        {"id": "x", "description": "d", "parameters": [42]},
        TypeError,
        r"\(id 'x'\) has a bad parameter 42 \(A tool parameter's name must be a non-empty str",
    ),
    (
        {"id": "x", "description": "d", "parameters": [{"name": "a", "description": 3}]},
        TypeError,
        r"has a bad parameter .*non-string description 3",
    ),
]
RECORD_IDS = [repr(r)[:30] for r, _, _ in BAD_RECORDS]


def _entry_points() -> dict[str, Callable[[list[Any]], Any]]:
    return {
        "ToolCatalog.from_any": ToolCatalog.from_any,
        "QTAPipeline.from_tools": lambda tools: QTAPipeline.from_tools(
            tools, embeddings=KeywordEmbeddings(), rewriter=None
        ),
    }


@pytest.mark.parametrize(("record", "error", "pattern"), BAD_RECORDS, ids=RECORD_IDS)
@pytest.mark.parametrize("entry", ["ToolCatalog.from_any", "QTAPipeline.from_tools"])
def test_bad_tool_record(entry: str, record: Any, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        _entry_points()[entry]([dict(GOOD), record])


@pytest.mark.parametrize(("record", "error", "pattern"), BAD_RECORDS[:8], ids=RECORD_IDS[:8])
def test_bad_tool_record_through_the_langchain_retriever(
    record: Any, error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        QTARetriever(tools=[dict(GOOD), record], embeddings=KeywordEmbeddings(), rewriter=None)


@pytest.mark.parametrize(
    ("tools", "error", "pattern"),
    [
        ([], ValueError, r"catalogue is empty"),
        (None, TypeError, r"Unsupported tools argument NoneType"),
        (42, TypeError, r"Unsupported tools argument int: 42"),
        (object(), TypeError, r"Unsupported tools argument object"),
        (b"tools", TypeError, r"Unsupported tools argument bytes"),
        (dict(GOOD), TypeError, r"single mapping for `tools`"),
        ([1, 2], TypeError, r"Unsupported tool type int"),
        ([object()], TypeError, r"Unsupported tool type object"),
        (
            [Tool(id="a", name="a", description="d"), dict(GOOD)],
            TypeError,
            r"Expected Tool records, got dict",
        ),
    ],
    ids=["empty", "None", "int", "object", "bytes", "one-dict", "ints", "objects", "mixed"],
)
def test_unsupported_tools_arguments(tools: Any, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        ToolCatalog.from_any(tools)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"id": 7, "name": "seven", "description": "d"}, ("7", "seven", "seven: d")),
        ({"id": "x", "name": "", "description": "d"}, ("x", "", "d")),
        ({"name": "lookup", "description": "d"}, ("lookup", "lookup", "lookup: d")),
        ({"id": "x", "description": "d"}, ("x", "x", "x: d")),
        ({"id": "x", "description": "d", "parameters": None}, ("x", "x", "x: d")),
        ({"id": "x", "description": "d", "parameters": {}}, ("x", "x", "x: d")),
        (
            {"id": "x", "description": "Do it", "parameters": ["a", {"name": "b"}]},
            ("x", "x", "x: Do it. Parameters: a, b."),
        ),
    ],
    ids=[
        "int-id",
        "empty-name",
        "id-from-name",
        "name-from-id",
        "null-params",
        "no-params",
        "names",
    ],
)
def test_documented_conversions(record: dict[str, Any], expected: tuple[str, str, str]) -> None:
    tool = ToolCatalog.from_dicts([record])[0]
    assert (tool.id, tool.name, tool.text) == expected


# -- files ---------------------------------------------------------------------------------

LINES = [
    json.dumps({"id": f"t{i}", "name": f"n{i}", "description": f"Tool {i}."}) for i in range(3)
]

# (file name, content, error type, pattern with {path} for the file's path)
BAD_FILES: list[tuple[str, str | bytes, type[Exception], str]] = [
    (
        "tools.jsonl",
        "\n".join([LINES[0], LINES[1], '{"id": "t2", "description": oops}']),
        ValueError,
        r"Line 3 of '{path}' is not valid JSON \(Expecting value at column 29\).*fix or delete",
    ),
    (
        "tools.json",  # JSONL content under a .json name: decided by content
        "\n".join([LINES[0], "", LINES[1], "{broken"]),
        ValueError,
        r"Line 4 of '{path}' is not valid JSON",
    ),
    (
        "tools.json",
        "[\n" + LINES[0] + ",\n" + LINES[1] + ",\n]\n",
        ValueError,
        r"'{path}' is not valid JSON: .* at line 4, column 1\. Fix that line",
    ),
    (
        "tools.json",
        '{\n  "id": "t0",\n  "description": \n}',
        ValueError,
        r"'{path}' is not valid JSON: Expecting value at line 4, column 1",
    ),
    ("tools.jsonl", "", ValueError, r"'{path}' is empty\. Write a JSON list"),
    ("tools.json", "  \n\n\t ", ValueError, r"'{path}' is empty"),
    ("tools.json", "[]", ValueError, r"'{path}' holds no tools"),
    ("tools.jsonl", b"\xff\xfe{bad bytes}", ValueError, r"'{path}' is not UTF-8 text"),
    (
        "tools.jsonl",
        "\n".join([LINES[0], LINES[1], "42"]),
        ValueError,
        r"tool #2 \(line 3 of '{path}'\) must be a mapping.*got int: 42",
    ),
    (
        "tools.jsonl",
        "\n".join([LINES[0], "", LINES[0]]),
        ValueError,
        r"Duplicate tool id 't0' on lines 1 and 3 of '{path}'",
    ),
    (
        "tools.jsonl",
        "\n".join([LINES[0], json.dumps({"id": [1, 2], "description": "d"})]),
        ValueError,
        r"tool #1 \(line 2 of '{path}'\) has id \[1, 2\] of type list",
    ),
    (
        "tools.jsonl",
        "\n".join([LINES[0], json.dumps({"id": "x", "name": None, "description": "d"})]),
        ValueError,
        r"tool #1 \(line 2 of '{path}'\) \(id 'x'\) has name None",
    ),
    (
        "tools.json",
        json.dumps([json.loads(LINES[0]), {"id": "blank", "description": " "}], indent=1),
        ValueError,
        r"Tool 'blank' \(line 7 of '{path}'\) has an empty description",
    ),
    ("tools.txt", '"just a string"', ValueError, r"tool #0 \(line 1 of '{path}'\) must be a"),
]
FILE_IDS = [
    "jsonl-line-3",
    "jsonl-named-json",
    "json-trailing-comma",
    "json-object-broken",
    "empty",
    "blank",
    "empty-list",
    "not-utf8",
    "non-object-line-3",
    "duplicate-ids",
    "list-id",
    "none-name",
    "blank-description",
    "scalar",
]


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _file_pattern(pattern: str, path: Path) -> str:
    import re

    return pattern.replace("{path}", re.escape(str(path)))


@pytest.mark.parametrize(("name", "content", "error", "pattern"), BAD_FILES, ids=FILE_IDS)
def test_bad_tool_file(
    tmp_path: Path, name: str, content: str | bytes, error: type[Exception], pattern: str
) -> None:
    path = _write(tmp_path / name, content)
    with pytest.raises(error, match=_file_pattern(pattern, path)):
        ToolCatalog.from_file(path)
    with pytest.raises(error, match=_file_pattern(pattern, path)):
        QTAPipeline.from_tools(str(path), embeddings=KeywordEmbeddings(), rewriter=None)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(
        FileNotFoundError, match=_file_pattern(r"File not found: '{path}'", missing)
    ):
        ToolCatalog.from_file(missing)
    with pytest.raises(IsADirectoryError, match=r"is a directory, not a file"):
        ToolCatalog.from_file(tmp_path)
    with pytest.raises(IsADirectoryError, match=r"is a directory, not a file"):
        QTAPipeline.from_tools(tmp_path, embeddings=KeywordEmbeddings(), rewriter=None)


@pytest.mark.parametrize(
    ("content", "lines"),
    [
        ("\ufeff" + "\n".join(LINES), [1, 2, 3]),  # a byte-order mark is ignored
        ("\n\n" + "\n\n".join(LINES) + "\n", [3, 5, 7]),  # blank lines are skipped
        (json.dumps([json.loads(x) for x in LINES], indent=2), [2, 7, 12]),
        ("[" + ",".join(LINES) + "]", [1, 1, 1]),
        ("\r\n".join(LINES), [1, 2, 3]),  # Windows line ends
        (LINES[0], [1]),  # a one-line file: one record, JSON or JSONL alike
    ],
    ids=["bom", "blank-lines", "indented-json", "one-line-json", "crlf", "single-object"],
)
def test_good_files_and_their_line_numbers(tmp_path: Path, content: str, lines: list[int]) -> None:
    path = _write(tmp_path / "tools.data", content)
    assert [line for line, _ in read_numbered_records(path)] == lines
    assert len(ToolCatalog.from_file(path)) == len(lines)


# -- labelled query files ------------------------------------------------------------------


@pytest.fixture
def tools_file(tmp_path: Path, tool_dicts: list[dict[str, str]]) -> Path:
    return _write(tmp_path / "tools.jsonl", "\n".join(json.dumps(t) for t in tool_dicts))


QUERY_OK = json.dumps({"query": "weather in Paris?", "tools": ["weather"]})
BAD_QUERY_FILES: list[tuple[str, str]] = [
    ("\n".join([QUERY_OK, QUERY_OK, '{"query": "x", tools: []}']), r"Line 3 of '{path}'"),
    (
        "\n".join([QUERY_OK, json.dumps({"tools": ["weather"]})]),
        r"query record #1 \(line 2\) in '{path}' needs a non-empty string 'query'",
    ),
    (
        "\n".join([QUERY_OK, json.dumps({"query": "\u200b", "tools": ["weather"]})]),
        r"query record #1 \(line 2\) in '{path}': query has no visible text",
    ),
    (
        "\n".join([QUERY_OK, json.dumps({"query": "rain?", "tools": []})]),
        r"query record #1 \(line 2\) in '{path}' needs 'tools'",
    ),
    (
        "\n".join([QUERY_OK, json.dumps({"query": "rain?", "tools": [None]})]),
        r"query record #1 \(line 2\).*tool id that is not a string: None",
    ),
    (
        "\n".join([QUERY_OK, json.dumps(["rain?", "weather"])]),
        r"query record #1 \(line 2\) in '{path}' must be a dict \(a JSON object\)",
    ),
    (
        "\n".join([QUERY_OK, json.dumps({"query": "rain?", "tools": ["wether"]})]),
        r"not in the catalogue: \['wether'\]",
    ),
    ("", r"'{path}' is empty"),
]


@pytest.mark.parametrize(
    ("content", "pattern"),
    BAD_QUERY_FILES,
    ids=[
        "bad-line-3",
        "no-query",
        "invisible-query",
        "no-tools",
        "none-id",
        "list",
        "unknown-id",
        "empty",
    ],
)
def test_bad_query_file(tmp_path: Path, tools_file: Path, content: str, pattern: str) -> None:
    path = _write(tmp_path / "queries.jsonl", content)
    with pytest.raises(ValueError, match=_file_pattern(pattern, path)):
        load_retrieval_dataset(tools_file, path)


def test_tools_without_names_need_an_explicit_choice(tmp_path: Path) -> None:
    tools = _write(
        tmp_path / "tools.jsonl",
        "\n".join(
            [
                json.dumps({"id": "weather", "name": "", "description": "Weather for a city."}),
                json.dumps({"id": "quote", "description": "Price of a stock."}),
            ]
        ),
    )
    queries = _write(tmp_path / "q.jsonl", QUERY_OK)
    pattern = _file_pattern(r"tool #1 \(line 2 of '{path}'\) has no 'name'.*names_from_ids", tools)
    with pytest.raises(ValueError, match=pattern):
        load_retrieval_dataset(tools, queries)
    data = load_retrieval_dataset(tools, queries, names_from_ids=True)
    assert [t.text for t in data.catalog] == ["Weather for a city.", "quote: Price of a stock."]


# -- corrupted MTRB files -------------------------------------------------------------------

RESTBENCH_TOOLS = [
    {"ID": 1, "tool_usage": "GET /search/movie", "tool_description": "Search movies."},
    {"ID": 2, "tool_usage": "GET /movie/{movie_id}", "tool_description": "Movie details."},
]
RESTBENCH_QUERY = {"query": "Who directed Alien?", "relevant Tools": ["GET /search/movie"]}


@pytest.mark.parametrize(
    ("tools", "queries", "broken", "pattern"),
    [
        ('[{"ID": 1,', [RESTBENCH_QUERY], "tools", r"is not valid JSON: .* line 1, column 11"),
        (["GET /search/movie"], [RESTBENCH_QUERY], "tools", r"does not have the restbench layout"),
        (
            [{"ID": 1}],
            [RESTBENCH_QUERY],
            "tools",
            r"does not have the restbench layout \(missing key 'tool_usage'\)",
        ),
        (
            RESTBENCH_TOOLS,
            [{"query": "q"}],
            "queries",
            r"does not have the restbench layout \(missing key 'relevant Tools'\)",
        ),
        (RESTBENCH_TOOLS, {"query": "q"}, "queries", r"does not have the restbench layout"),
        (RESTBENCH_TOOLS, "", "queries", r"is not valid JSON: Expecting value at line 1"),
    ],
    ids=["tools-truncated", "tools-strings", "tools-no-key", "query-no-key", "dict", "empty"],
)
def test_corrupted_mtrb_files(
    tmp_path: Path, tools: Any, queries: Any, broken: str, pattern: str
) -> None:
    from qta_integrations.evaluation import load_mtrb

    subset = tmp_path / "restbench"
    subset.mkdir()
    files = {
        "tools": subset / "tmdb_tool_rewrite.json",
        "queries": subset / "mtr_restbench_test.json",
    }
    for key, content in (("tools", tools), ("queries", queries)):
        text = content if isinstance(content, str) else json.dumps(content)
        files[key].write_text(text, encoding="utf-8")
    full = _file_pattern(r"MTRB file '{path}' ", files[broken]) + pattern
    with pytest.raises(ValueError, match=full):
        load_mtrb("restbench", data_dir=tmp_path)
