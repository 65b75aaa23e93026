"""Bad training examples and bad storage directories: clear errors, nothing written."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qta_integrations import QTALlamaIndexRetriever, QTAPipeline, QTARetriever
from qta_integrations.stores import chroma_tool_index
from qta_integrations.testing import KeywordEmbeddings
from qta_integrations.tools import ToolCatalog
from qta_integrations.training.pairs import load_examples

TOOLS = [
    {"id": "weather", "name": "get_weather", "description": "Current weather for a city."},
    {"id": "quote", "name": "get_quote", "description": "Latest price of a stock ticker."},
]


@pytest.fixture(scope="module")
def catalog() -> ToolCatalog:
    return ToolCatalog.from_dicts(TOOLS)


# (examples, pattern)
BAD_EXAMPLES: list[tuple[Any, str]] = [
    ([], r"No training examples\. QTA needs at least one labelled query"),
    ([{"query": "rain?"}], r"example #0 needs 'tools': a non-empty list of gold tool ids"),
    ([{"query": "rain?", "tools": []}], r"example #0 needs 'tools'"),
    ([{"tools": ["weather"]}], r"example #0 needs a non-empty string 'query', got None"),
    ([{"query": "  ", "tools": ["weather"]}], r"example #0 needs a non-empty string 'query'"),
    ([{"query": 42, "tools": ["weather"]}], r"example #0 needs a non-empty string 'query', got 42"),
    ([{"query": "\u200b", "tools": ["weather"]}], r"example #0: query has no visible text"),
    ([{"query": "rain \ud800", "tools": ["weather"]}], r"example #0: query contains a lone surrog"),
    ([{"query": "rain?", "tools": ["wether"]}], r"not in the catalogue: \['wether'\]"),
    (
        [{"query": "a", "tools": ["weather", "x"]}, {"query": "b", "tools": ["y"]}],
        r"2 tool id\(s\) that are not in the catalogue: \['x', 'y'\]",
    ),
    (["just a string"], r"example #0 must be a dict"),
    ([None], r"example #0 must be a dict"),
    ({"query": "rain?", "tools": ["weather"]}, r"got one dict; wrap it in a list"),
]


@pytest.mark.parametrize(("examples", "pattern"), BAD_EXAMPLES, ids=[str(i) for i in range(13)])
def test_bad_examples(catalog: ToolCatalog, examples: Any, pattern: str) -> None:
    # `QTATrainer.fit` reads its examples with `load_examples` before it touches the model.
    with pytest.raises(ValueError, match=pattern):
        load_examples(examples, catalog)


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (
            '{"query": "rain?", "tools": ["weather"]}\n\n{"query": "price?", "tools": ["quote"]}\n'
            '{"query": "x", "tools": [}\n',
            r"Line 4 of '{path}' is not valid JSON",
        ),
        (
            '{"query": "rain?", "tools": ["weather"]}\n{"query": "price?"}\n',
            r"example #1 \(line 2\) in '{path}' needs 'tools'",
        ),
        ("", r"'{path}' is empty"),
        ("[]", r"No training examples in '{path}'"),
    ],
    ids=["bad-line", "record-line-2", "empty", "empty-list"],
)
def test_bad_example_files(
    catalog: ToolCatalog, tmp_path: Path, content: str, pattern: str
) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=pattern.replace("{path}", re.escape(str(path)))):
        load_examples(path, catalog)


def test_missing_example_file_and_directory(catalog: ToolCatalog, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="File not found"):
        load_examples(tmp_path / "missing.jsonl", catalog)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        load_examples(tmp_path, catalog)


# -- storage directories -------------------------------------------------------------------


@pytest.fixture
def in_empty_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run in an empty directory and check that nothing was written there."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    yield work
    assert list(work.iterdir()) == []


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("not a directory")
    return path


BAD_DIRS: list[tuple[Any, type[Exception], str]] = [
    ("", ValueError, r"must be a directory path, got ''\. Pass a directory such as"),
    ("   ", ValueError, r"must be a directory path, got '   '"),
    ("\n", ValueError, r"must be a directory path, got '\\n'"),
    (Path(""), ValueError, r"must be a directory path, got PosixPath\('\.'\)|is a file"),
    (42, TypeError, r"must be a directory path \(str or os.PathLike\), got int: 42"),
    (["dir"], TypeError, r"must be a directory path \(str or os.PathLike\), got list"),
]


@pytest.mark.parametrize(("value", "error", "pattern"), BAD_DIRS[:3] + BAD_DIRS[4:])
def test_bad_persist_directory(
    in_empty_dir: Path, value: Any, error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match="persist_directory " + pattern):
        chroma_tool_index(KeywordEmbeddings(), persist_directory=value)
    with pytest.raises(error, match="persist_directory " + pattern):
        QTAPipeline.from_tools(
            TOOLS, embeddings=KeywordEmbeddings(), rewriter=None, persist_directory=value
        )
    with pytest.raises(error, match=pattern):
        QTARetriever(
            tools=TOOLS, embeddings=KeywordEmbeddings(), rewriter=None, persist_directory=value
        )
    with pytest.raises(error, match="persist_dir " + pattern):
        QTALlamaIndexRetriever.from_defaults(
            TOOLS, embed_model=KeywordEmbeddings(), rewriter=None, persist_dir=value
        )
    with pytest.raises(error, match="persist_dir " + pattern):
        QTALlamaIndexRetriever.from_persist_dir(value)


def test_a_file_is_not_a_persist_directory(in_empty_dir: Path, a_file: Path) -> None:
    pattern = re.escape(f"{str(a_file)!r} is a file, not a directory")
    with pytest.raises(ValueError, match=pattern):
        chroma_tool_index(KeywordEmbeddings(), persist_directory=a_file)
    with pytest.raises(ValueError, match=pattern):
        QTAPipeline.from_tools(
            TOOLS, embeddings=KeywordEmbeddings(), rewriter=None, persist_directory=str(a_file)
        )
    with pytest.raises(ValueError, match=pattern):
        QTALlamaIndexRetriever.from_defaults(
            TOOLS, embed_model=KeywordEmbeddings(), rewriter=None, persist_dir=a_file
        )
    assert a_file.read_text() == "not a directory"


@pytest.mark.parametrize("value", ["", "  ", "FILE"])
def test_persist_refuses_bad_directories(in_empty_dir: Path, a_file: Path, value: str) -> None:
    retriever = QTALlamaIndexRetriever.from_defaults(
        TOOLS, embed_model=KeywordEmbeddings(), rewriter=None
    )
    target = str(a_file) if value == "FILE" else value
    try:
        with pytest.raises(ValueError, match=r"must be a directory path|is a file, not a dir"):
            retriever.persist(target)
    finally:
        retriever.pipeline.index.vectorstore.delete_collection()  # type: ignore[attr-defined]
    assert json.loads(json.dumps(TOOLS)) == TOOLS  # nothing mutated


# -- a fitted state never silently disappears ----------------------------------------------


def test_a_missing_adapter_directory_is_refused_when_passed(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-adapter"
    with pytest.raises(FileNotFoundError, match=r"No adapter or model directory at .*no-such-"):
        QTARetriever(tools=TOOLS, embeddings=KeywordEmbeddings(), rewriter=str(missing))
    with pytest.raises(FileNotFoundError, match=r"HuggingFaceRewriter\.from_pretrained\(name\)"):
        QTAPipeline.from_tools(TOOLS, embeddings=KeywordEmbeddings(), rewriter=missing)


@pytest.mark.parametrize(
    ("files", "pattern"),
    [
        ({}, r"neither a QTA adapter directory \(no qta_manifest\.json\) nor a model directory"),
        ({"adapter_manifest.json": "{not json"}, r"no qta_manifest\.json"),
        ({"qta_manifest.json": "{not json"}, r"qta_manifest\.json"),
    ],
    ids=["empty", "another-manifest-name", "manifest-not-json"],
)
def test_a_directory_without_a_valid_manifest_is_refused(
    tmp_path: Path, files: dict[str, str], pattern: str
) -> None:
    directory = tmp_path / "adapter"
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text)
    with pytest.raises(ValueError, match=pattern):
        QTARetriever(tools=TOOLS, embeddings=KeywordEmbeddings(), rewriter=str(directory))


def test_a_file_is_not_a_rewriter_directory(tmp_path: Path) -> None:
    file = tmp_path / "weights.bin"
    file.write_bytes(b"\0")
    with pytest.raises(ValueError, match=r"is a file, not an adapter or model directory"):
        QTAPipeline.from_tools(TOOLS, embeddings=KeywordEmbeddings(), rewriter=file)


def test_a_model_directory_is_accepted_without_loading_it(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    pipeline = QTAPipeline.from_tools(TOOLS, embeddings=KeywordEmbeddings(), rewriter=tmp_path)
    assert pipeline.has_rewriter and not pipeline.rewriter_loaded


def test_a_corrupt_chroma_directory_names_the_directory_and_the_fix(tmp_path: Path) -> None:
    directory = tmp_path / "db"
    chroma_tool_index(KeywordEmbeddings(), persist_directory=directory).close()
    (directory / "chroma.sqlite3").write_bytes(b"this is not a database")
    with pytest.raises(RuntimeError, match=r"Chroma directory .*db' cannot be opened") as err:
        QTARetriever(tools=TOOLS, embeddings=KeywordEmbeddings(), persist_directory=directory)
    assert "delete the directory and build the retriever again" in str(err.value)
    # The fix works: a new directory in its place is indexed from the catalogue.
    import shutil

    shutil.rmtree(directory)
    retriever = QTARetriever(
        tools=TOOLS, embeddings=KeywordEmbeddings(), rewriter=None, persist_directory=directory
    )
    assert retriever.invoke("weather in a city", k=1)[0].id == "weather"


def test_a_corrupt_index_record_names_the_file_and_the_fix(tmp_path: Path) -> None:
    directory = tmp_path / "db"
    chroma_tool_index(KeywordEmbeddings(), persist_directory=directory).close()
    (directory / "qta_records.sqlite3").write_bytes(b"this is not a database either")
    with pytest.raises(RuntimeError, match=r"index record .*qta_records\.sqlite3' cannot be read"):
        chroma_tool_index(KeywordEmbeddings(), persist_directory=directory)
