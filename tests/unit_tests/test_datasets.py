"""Datasets: the generic file loader and the MTRB loader (local directory and checked fetch)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from qta_integrations.evaluation import datasets
from qta_integrations.evaluation.datasets import (
    MTRB_COMMIT,
    MTRB_REPO,
    MTRB_UPSTREAM_SHA256,
    LabelledQuery,
    RetrievalDataset,
    load_mtrb,
    load_retrieval_dataset,
)
from qta_integrations.tools import ToolCatalog

# -- generic format -----------------------------------------------------------------------


def _write_jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


@pytest.fixture
def tools_file(tmp_path: Path, tool_dicts: list[dict[str, str]]) -> Path:
    return _write_jsonl(tmp_path / "tools.jsonl", tool_dicts)


def test_generic_loader_jsonl(tmp_path: Path, tools_file: Path) -> None:
    queries = _write_jsonl(
        tmp_path / "queries.jsonl",
        [
            {"query": "rain in Oslo?", "tools": ["weather"]},
            {"query": "mail my boss the meeting time", "tools": ["email", "calendar"]},
        ],
    )
    data = load_retrieval_dataset(tools_file, queries)
    assert data.name == "queries"
    assert len(data.catalog) == 6
    assert data.queries == (
        LabelledQuery("rain in Oslo?", ("weather",)),
        LabelledQuery("mail my boss the meeting time", ("email", "calendar")),
    )


def test_generic_loader_json_list_and_int_ids(tmp_path: Path) -> None:
    tools = tmp_path / "tools.json"
    tools.write_text(
        json.dumps(
            [
                {"id": 1, "name": "a", "description": "Tool a."},
                {"id": 2, "name": "b", "description": "Tool b."},
            ]
        )
    )
    queries = tmp_path / "q.json"
    queries.write_text(json.dumps([{"query": "use b", "tools": [2]}]))
    data = load_retrieval_dataset(tools, queries, name="mine")
    assert data.name == "mine"
    assert data.queries[0].tool_ids == ("2",)
    assert data.catalog["2"].name == "b"


def test_unknown_ids_are_listed_not_dropped(tmp_path: Path, tools_file: Path) -> None:
    queries = _write_jsonl(
        tmp_path / "queries.jsonl",
        [
            {"query": "ok", "tools": ["weather"]},
            {"query": "bad", "tools": ["weather", "no_such_tool"]},
            {"query": "worse", "tools": ["also_missing"]},
        ],
    )
    with pytest.raises(ValueError, match="not in the catalogue") as info:
        load_retrieval_dataset(tools_file, queries)
    message = str(info.value)
    assert "'also_missing'" in message
    assert "'no_such_tool'" in message
    assert "#1, #2" in message


@pytest.mark.parametrize(
    ("record", "match"),
    [
        ({"tools": ["weather"]}, "needs a non-empty string 'query'"),
        ({"query": "  ", "tools": ["weather"]}, "needs a non-empty string 'query'"),
        ({"query": "q"}, "needs 'tools'"),
        ({"query": "q", "tools": []}, "needs 'tools'"),
        ({"query": "q", "tools": [["weather"]]}, "not a string"),
        (["q", "weather"], "must be a dict"),
    ],
)
def test_malformed_query_records(
    tmp_path: Path, tools_file: Path, record: object, match: str
) -> None:
    queries = _write_jsonl(
        tmp_path / "queries.jsonl", [{"query": "ok", "tools": ["route"]}, record]
    )
    with pytest.raises(ValueError, match=match) as info:
        load_retrieval_dataset(tools_file, queries)
    assert "query record #1" in str(info.value)


def test_single_string_label_is_accepted(tmp_path: Path, tools_file: Path) -> None:
    queries = _write_jsonl(
        tmp_path / "q.jsonl", [{"query": "translate this", "tools": "translate"}]
    )
    assert load_retrieval_dataset(tools_file, queries).queries[0].tool_ids == ("translate",)


def test_missing_files(tmp_path: Path, tools_file: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl"):
        load_retrieval_dataset(tools_file, tmp_path / "nope.jsonl")
    with pytest.raises(FileNotFoundError, match=r"missing_tools\.json"):
        load_retrieval_dataset(tmp_path / "missing_tools.json", tools_file)


def test_dataset_record_validation(tool_dicts: list[dict[str, str]]) -> None:
    catalog = ToolCatalog.from_dicts(tool_dicts)
    with pytest.raises(ValueError, match="has no queries"):
        RetrievalDataset(catalog, [])
    with pytest.raises(ValueError, match="no gold tools"):
        LabelledQuery("q", ())
    with pytest.raises(TypeError, match="wrap it"):
        LabelledQuery("q", "weather")  # type: ignore[arg-type]
    data = RetrievalDataset(catalog, [LabelledQuery("q", ["weather"])], name="x")  # type: ignore[arg-type]
    assert data.queries[0].tool_ids == ("weather",)
    assert repr(data) == "RetrievalDataset('x', 6 tools, 1 queries)"


# -- MTRB, local directory ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("subset", "num_tools"), [("restbench", 54), ("metatool", 199), ("toolbench", 811)]
)
def test_mtrb_sizes(mtrb_dir: Path, subset: str, num_tools: int) -> None:
    test = load_mtrb(subset, data_dir=mtrb_dir)
    train = load_mtrb(subset, "train", data_dir=mtrb_dir)
    assert test.name == f"mtrb-{subset}"
    assert len(test.catalog) == len(train.catalog) == num_tools
    assert len(test) == 90
    assert len(train) == 10
    assert {q.query for q in test.queries}.isdisjoint(q.query for q in train.queries)


def test_mtrb_restbench_ids(mtrb_dir: Path) -> None:
    data = load_mtrb("restbench", data_dir=mtrb_dir)
    first = data.queries[0]
    assert first.query.startswith("Who has an earlier release date, The Double Life of Veronique")
    assert first.tool_ids == ("GET /search/movie", "GET /movie/{movie_id}")
    # 0-based positions 11 and 23 are the entries whose own "ID" field is 12 and 24.
    assert data.catalog[11].id == "GET /search/movie"
    assert data.catalog[11].metadata["mtrb_id"] == 12
    assert data.catalog[23].id == "GET /movie/{movie_id}"
    assert data.catalog[23].metadata["mtrb_id"] == 24


def test_mtrb_metatool_and_toolbench_ids(mtrb_dir: Path) -> None:
    metatool = load_mtrb("metatool", data_dir=mtrb_dir)
    assert metatool.catalog[171].id == "PDF&URLTool"
    assert metatool.queries[0].tool_ids == ("PDF&URLTool",)
    toolbench = load_mtrb("toolbench", data_dir=mtrb_dir)
    assert toolbench.catalog[745].id == "Watchmode"
    assert toolbench.catalog[88].id == "bitly"
    assert toolbench.catalog["Watchmode"].metadata["category"] == "Entertainment"
    assert toolbench.queries[0].tool_ids == ("OTT details", "Streaming Availability", "Watchmode")
    # Exact upstream spelling is kept, leading spaces included.
    assert " Quotes API" in toolbench.catalog


def test_mtrb_indexed_text_options(mtrb_dir: Path) -> None:
    tool = load_mtrb("restbench", data_dir=mtrb_dir).catalog["GET /search/movie"]
    assert tool.text.startswith("Search for movies and obtain their unique movie IDs.")
    assert tool.name == ""
    original = load_mtrb("restbench", data_dir=mtrb_dir, text="original").catalog[11]
    assert original.text == "Search for movies, which can obtain movie_id."
    named = load_mtrb("restbench", data_dir=mtrb_dir, include_name=True).catalog[11]
    assert named.text.startswith("GET /search/movie: Search for movies and obtain")
    meta = load_mtrb("metatool", data_dir=mtrb_dir, include_name=True).catalog["PDF&URLTool"]
    assert meta.text.startswith("PDF&URLTool: AI tool for interacting with PDFs")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"subset": "gorilla"}, r"Unknown MTRB subset 'gorilla'.*restbench.*metatool.*toolbench"),
        ({"subset": "restbench", "split": "dev"}, r"Unknown MTRB split 'dev'.*test.*train"),
        ({"subset": "metatool", "text": "original"}, "exists only for restbench"),
        ({"subset": "restbench", "text": "both"}, "text must be 'rewrite' or 'original'"),
    ],
)
def test_mtrb_bad_arguments(mtrb_dir: Path, kwargs: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_mtrb(data_dir=mtrb_dir, **kwargs)  # type: ignore[arg-type]


def test_mtrb_env_var(mtrb_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QTA_MTRB_DIR", str(mtrb_dir))
    assert len(load_mtrb("metatool").catalog) == 199


def test_mtrb_missing_local_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"restbench/tmdb_tool_rewrite\.json.*data_dir"):
        load_mtrb("restbench", data_dir=tmp_path)


def test_mtrb_inconsistent_ids_are_caught(mtrb_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "restbench").mkdir()
    shutil.copy(mtrb_dir / "restbench/tmdb_tool_rewrite.json", tmp_path / "restbench")
    records = json.loads((mtrb_dir / "restbench/mtr_restbench_test.json").read_text())
    records[3]["relevant IDs"] = [i + 1 for i in records[3]["relevant IDs"]]  # as if 1-based
    (tmp_path / "restbench/mtr_restbench_test.json").write_text(json.dumps(records))
    with pytest.raises(ValueError, match=r"query #3 .*0-based.*do not match"):
        load_mtrb("restbench", data_dir=tmp_path)


def test_pinned_checksums_match_the_local_copies(mtrb_dir: Path) -> None:
    assert len(MTRB_UPSTREAM_SHA256) == 4
    for relative, expected in MTRB_UPSTREAM_SHA256.items():
        assert hashlib.sha256((mtrb_dir / relative).read_bytes()).hexdigest() == expected


# -- MTRB, fetched (the downloader is replaced: no network here) ------------------------


@pytest.fixture
def no_local_mtrb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("QTA_MTRB_DIR", raising=False)
    monkeypatch.setenv("QTA_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "mtrb"


def test_fetch_verifies_and_caches(
    mtrb_dir: Path, no_local_mtrb: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls: list[str] = []

    def fake_download(url: str, dest: Path) -> None:
        urls.append(url)
        shutil.copy(mtrb_dir / url.split(f"/{MTRB_COMMIT}/")[1], dest)

    monkeypatch.setattr(datasets, "download_file", fake_download)
    data = load_mtrb("restbench")
    assert len(data.catalog) == 54
    assert len(data) == 90
    assert urls == [
        f"https://raw.githubusercontent.com/{MTRB_REPO}/{MTRB_COMMIT}/restbench/tmdb_tool_rewrite.json",
        f"https://raw.githubusercontent.com/{MTRB_REPO}/{MTRB_COMMIT}/restbench/mtr_restbench_test.json",
    ]
    assert (no_local_mtrb / "restbench/mtr_restbench_test.json").is_file()
    load_mtrb("restbench")  # served from the cache
    assert len(urls) == 2
    assert sorted(p.name for p in (no_local_mtrb / "restbench").iterdir()) == [
        "mtr_restbench_test.json",
        "tmdb_tool_rewrite.json",
    ]


def test_fetch_checksum_mismatch(no_local_mtrb: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "download_file", lambda url, dest: dest.write_bytes(b"tampered"))
    expected = MTRB_UPSTREAM_SHA256["metatool/ts_metatool_api_list_rewrite.json"]
    actual = hashlib.sha256(b"tampered").hexdigest()
    with pytest.raises(ValueError, match="Checksum mismatch") as info:
        load_mtrb("metatool")
    message = str(info.value)
    assert "metatool/ts_metatool_api_list_rewrite.json" in message
    assert expected in message
    assert actual in message
    assert not list((no_local_mtrb / "metatool").iterdir())  # nothing kept


def test_fetch_network_error(no_local_mtrb: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, dest: Path) -> None:
        raise OSError("Network is unreachable")

    monkeypatch.setattr(datasets, "download_file", offline)
    with pytest.raises(OSError, match=r"Could not download .*Network is unreachable.*--data-dir"):
        load_mtrb("restbench")


@pytest.mark.parametrize(("subset", "split"), [("restbench", "train"), ("toolbench", "test")])
def test_local_only_files_are_not_fetched(
    mtrb_dir: Path, no_local_mtrb: Path, monkeypatch: pytest.MonkeyPatch, subset: str, split: str
) -> None:
    fetched: list[str] = []

    def fake_download(url: str, dest: Path) -> None:
        relative = url.split(f"/{MTRB_COMMIT}/")[1]
        assert relative in MTRB_UPSTREAM_SHA256, f"asked to fetch a local-only file: {relative}"
        fetched.append(relative)
        shutil.copy(mtrb_dir / relative, dest)

    monkeypatch.setattr(datasets, "download_file", fake_download)
    with pytest.raises(FileNotFoundError, match="exist only in a local MTRB directory") as info:
        load_mtrb(subset, split)
    assert "QTA_MTRB_DIR" in str(info.value)
    # RestBench's tool corpus is upstream (fetched); its training split is not.
    assert fetched == (["restbench/tmdb_tool_rewrite.json"] if subset == "restbench" else [])
