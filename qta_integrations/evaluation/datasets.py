"""Labelled retrieval datasets: a generic file format and the MTRB benchmark subsets.

A `RetrievalDataset` is a `ToolCatalog` plus `LabelledQuery` records (a query and the ids of
the tools it needs). Every label is checked against the catalogue when the dataset is built:
an unknown id is an error, never silently dropped.

Two ways to get one:

* `load_retrieval_dataset` reads your own files: tools as a JSON list or JSONL of
  ``{"id", "name", "description"}`` records, queries as a JSON list or JSONL of
  ``{"query": str, "tools": [tool id, ...]}`` records. Every tool record needs a ``name``
  (``""`` to index the description alone); using the id instead is an explicit opt-in
  (``names_from_ids=True``, CLI ``--names-from-ids``). Errors name the file and the line.
* `load_mtrb` reads an MTRB subset (RestBench, MetaTool, ToolBench; arXiv 2410.03212) from a
  local directory, or fetches the public files from GitHub at a pinned commit and checks
  their sha256.

MTRB conventions used here:

* **Tool ids are tool names**: RestBench's ``tool_usage`` (``"GET /search/movie"``), MetaTool's
  dict key (``"PDF&URLTool"``), ToolBench's ``tool_name`` (``"Watchmode"``, exact spelling,
  leading/trailing spaces kept). MTRB's ``relevant IDs`` are 0-based positions in the tool list;
  they are mapped to names, and each one is checked against the query's ``relevant Tools`` name,
  so a shifted or 1-based id is caught instead of silently mislabelling.
* **Indexed text**: by default a tool is indexed by its description alone, MTRB's rewritten
  one (RestBench ``rewrite_description``). That is what reproduces the paper's zero-shot row
  (measured with all-MiniLM-L6-v2, 90 test queries: RestBench S@5 15.56, S@10 34.44, equal to
  the paper; see docs/benchmarks.md). ``text="original"`` indexes RestBench's
  ``tool_description`` instead, and ``include_name=True`` prefixes the name
  (``"GET /search/movie: ..."``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from qta_integrations.memory import LabelledExample, parse_examples
from qta_integrations.tools import Tool, ToolCatalog

__all__ = [
    "MTRB_COMMIT",
    "MTRB_ENV_VAR",
    "MTRB_REPO",
    "MTRB_SUBSETS",
    "MTRB_UPSTREAM_SHA256",
    "LabelledQuery",
    "RetrievalDataset",
    "download_file",
    "load_mtrb",
    "load_retrieval_dataset",
    "mtrb_file",
]

MTRB_REPO = "FANXIN-Gmail/MTRB-QTA"
MTRB_COMMIT = "0d61fa4884576ed289c963daffdcd19dded227f6"
MTRB_ENV_VAR = "QTA_MTRB_DIR"
MTRB_SUBSETS = ("restbench", "metatool", "toolbench")
MTRB_SPLITS = ("test", "train")

MTRB_UPSTREAM_SHA256: dict[str, str] = {
    "restbench/tmdb_tool_rewrite.json": (
        "e560a663809355893fd422b1094ce26e478ae3d6b4bf51678f2b358636c0b886"
    ),
    "restbench/mtr_restbench_test.json": (
        "b29c46e45de2a1f2556a3f5373d8d32ea5b488da6a348f6ca5d2edef7c8ede49"
    ),
    "metatool/ts_metatool_api_list_rewrite.json": (
        "3093c27b2aba0625c15b9f845785feb1ddd340b57eb416ebc2d52487d57f390c"
    ),
    "metatool/mtr_metatool_test.json": (
        "dd18aa71839eb7ba41c1e18004e7ee352700d27a6852041414568c821208480e"
    ),
}
"""sha256 of the MTRB files fetched from GitHub at `MTRB_COMMIT` (relative path -> hex digest).

Only these files exist upstream. The training splits and the rebuilt ToolBench corpus were
built for this project and exist only in a local MTRB directory (see `load_mtrb`).
"""

# (subset, split) -> (tool corpus file, query file), relative to the MTRB directory.
_MTRB_FILES: dict[tuple[str, str], tuple[str, str]] = {
    ("restbench", "test"): (
        "restbench/tmdb_tool_rewrite.json",
        "restbench/mtr_restbench_test.json",
    ),
    ("restbench", "train"): (
        "restbench/tmdb_tool_rewrite.json",
        "restbench/mtr_restbench_train.json",
    ),
    ("metatool", "test"): (
        "metatool/ts_metatool_api_list_rewrite.json",
        "metatool/mtr_metatool_test.json",
    ),
    ("metatool", "train"): (
        "metatool/ts_metatool_api_list_rewrite.json",
        "metatool/mtr_metatool_train.json",
    ),
    ("toolbench", "test"): (
        "toolbench/toolbench_tools_rebuilt.json",
        "toolbench/mtr_toolbench_test_rebuilt.json",
    ),
    ("toolbench", "train"): (
        "toolbench/toolbench_tools_rebuilt.json",
        "toolbench/mtr_toolbench_train_rebuilt.json",
    ),
}

ToolText = Literal["rewrite", "original"]


LabelledQuery = LabelledExample
"""A labelled query of a dataset: `qta_integrations.memory.LabelledExample`, the one record of
a label (``query``, ``tool_ids``, ``history``)."""


@dataclass(frozen=True)
class RetrievalDataset:
    """A tool catalogue and labelled queries whose ids all name catalogue tools.

    Attributes:
        catalog: The tools to retrieve from.
        queries: The labelled queries.
        name: A short name used in reports (e.g. ``"mtrb-restbench"``).

    Raises:
        ValueError: if a label names a tool id that is not in the catalogue (all unknown ids
            are listed), or there are no queries.

    Example:
        .. code-block:: python

            from qta_integrations import ToolCatalog
            from qta_integrations.evaluation import LabelledQuery, RetrievalDataset

            catalog = ToolCatalog.from_dicts([
                {"id": "weather", "name": "get_weather", "description": "Weather for a city."},
                {"id": "stocks", "name": "get_quote", "description": "Latest stock price."},
            ])
            data = RetrievalDataset(catalog, [LabelledQuery("rain in Oslo?", ("weather",))])
            print(len(data), data.catalog["weather"].name)  # 1 get_weather
    """

    catalog: ToolCatalog
    queries: Sequence[LabelledQuery]
    name: str = "dataset"
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        queries = tuple(self.queries)
        object.__setattr__(self, "queries", queries)
        if not queries:
            msg = f"Dataset {self.name!r} has no queries; add at least one labelled query."
            raise ValueError(msg)
        _check_labels(self.catalog, queries, context=f"The queries of dataset {self.name!r}")

    def __len__(self) -> int:
        return len(self.queries)

    def __repr__(self) -> str:
        return f"RetrievalDataset({self.name!r}, {len(self.catalog)} tools, {len(self)} queries)"


def _check_labels(catalog: ToolCatalog, queries: Sequence[LabelledQuery], *, context: str) -> None:
    bad = [i for i, q in enumerate(queries) if any(t not in catalog for t in q.tool_ids)]
    if bad:
        where = ", ".join(f"#{i}" for i in bad[:10]) + (", ..." if len(bad) > 10 else "")
        catalog.check_ids(
            [t for i in bad for t in queries[i].tool_ids], context=f"{context} (queries {where})"
        )


def load_retrieval_dataset(
    tools: str | os.PathLike[str],
    queries: str | os.PathLike[str],
    *,
    name: str | None = None,
    names_from_ids: bool = False,
) -> RetrievalDataset:
    """Load a dataset from a tools file and a queries file (JSON list or JSONL each).

    Args:
        tools: Records ``{"id", "name", "description"}`` (see `ToolCatalog.from_file`). Every
            record needs a ``name`` (``""`` indexes the description alone), unless
            ``names_from_ids``.
        queries: Records ``{"query": str, "tools": [tool id, ...]}``; every id must be a
            tool id from ``tools``.
        name: Name for reports; defaults to the queries file's stem.
        names_from_ids: Use a tool's id as its name when the record has no ``name`` (the id
            is then embedded with the description).

    Raises:
        FileNotFoundError: if a file is missing.
        IsADirectoryError: if a path is a directory.
        ValueError: for a file that is not JSON/JSONL, a malformed record or a tool without a
            name (naming the file, the record and its line), or unknown ids.

    Example:
        .. code-block:: python

            from qta_integrations.evaluation import load_retrieval_dataset

            data = load_retrieval_dataset("tools.jsonl", "queries.jsonl")
    """
    queries_path = Path(queries)
    catalog = ToolCatalog.from_file(Path(tools), require_names=not names_from_ids)
    labelled = parse_examples(queries_path, record_name="query record", allow_empty=True)
    return RetrievalDataset(
        catalog, labelled, name=name or queries_path.stem, metadata={"tools_file": str(tools)}
    )


# -- MTRB -------------------------------------------------------------------------------


def download_file(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` (a plain HTTPS GET; tests replace this function)."""
    with urllib.request.urlopen(url, timeout=60) as response, dest.open("wb") as out:
        shutil.copyfileobj(response, out)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _mtrb_cache_dir() -> Path:
    from qta_integrations.models import cache_dir

    return cache_dir() / "mtrb"


def mtrb_file(relative_path: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Locate one MTRB file: in a local directory, else in the cache, else fetched from GitHub.

    The local directory is ``data_dir``, else ``$QTA_MTRB_DIR``; it must have the layout
    ``<subset>/<file>`` (``restbench/tmdb_tool_rewrite.json``, ...). Without one, the file is
    taken from ``<cache_dir>/mtrb`` or downloaded from ``raw.githubusercontent.com`` at
    `MTRB_COMMIT`; cached and downloaded files must match `MTRB_UPSTREAM_SHA256`.

    Raises:
        FileNotFoundError: if the local directory lacks the file, or the file exists only
            locally (training splits, the ToolBench rebuild) and no local directory is set.
        ValueError: if a downloaded file's sha256 differs from the pinned one.
        OSError: if the download fails.
    """
    root = data_dir if data_dir is not None else os.environ.get(MTRB_ENV_VAR) or None
    if root is not None:
        path = Path(root) / relative_path
        if not path.is_file():
            source = "data_dir" if data_dir is not None else f"${MTRB_ENV_VAR}"
            msg = (
                f"MTRB file not found: {str(path)!r}. The MTRB directory ({source} = "
                f"{str(root)!r}) must hold <subset>/<file>, e.g. "
                f"restbench/tmdb_tool_rewrite.json."
            )
            raise FileNotFoundError(msg)
        return path
    expected = MTRB_UPSTREAM_SHA256.get(relative_path)
    if expected is None:
        msg = (
            f"{relative_path!r} is not in the upstream MTRB repository ({MTRB_REPO}): the "
            "training splits and the rebuilt ToolBench corpus exist only in a local MTRB "
            f"directory. Pass data_dir= (CLI: --data-dir) or set ${MTRB_ENV_VAR} to it. "
            f"Fetchable files: {sorted(MTRB_UPSTREAM_SHA256)}."
        )
        raise FileNotFoundError(msg)
    cached = _mtrb_cache_dir() / relative_path
    if cached.is_file() and _sha256(cached) == expected:
        return cached
    url = f"https://raw.githubusercontent.com/{MTRB_REPO}/{MTRB_COMMIT}/{relative_path}"
    cached.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{cached.name}-", dir=cached.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            download_file(url, tmp)
        except OSError as err:
            msg = (
                f"Could not download {url}: {err}. Without network access, pass data_dir= "
                f"(CLI: --data-dir) or set ${MTRB_ENV_VAR} to a local MTRB directory."
            )
            raise OSError(msg) from err
        actual = _sha256(tmp)
        if actual != expected:
            msg = (
                f"Checksum mismatch for MTRB file {relative_path!r} from {url}: expected sha256 "
                f"{expected}, got {actual}. The file was not kept."
            )
            raise ValueError(msg)
        tmp.replace(cached)
    finally:
        tmp.unlink(missing_ok=True)
    return cached


def load_mtrb(
    subset: str,
    split: str = "test",
    data_dir: str | os.PathLike[str] | None = None,
    *,
    text: ToolText = "rewrite",
    include_name: bool = False,
) -> RetrievalDataset:
    """Load an MTRB subset (arXiv 2410.03212) as a `RetrievalDataset`.

    Args:
        subset: ``"restbench"`` (54 TMDB endpoints), ``"metatool"`` (199 tools) or
            ``"toolbench"`` (the rebuilt 811-tool corpus, not the paper's 2,391 tools).
        split: ``"test"`` (90 queries each) or ``"train"`` (10 queries each, local only).
        data_dir: A local MTRB directory (default ``$QTA_MTRB_DIR``; without either, the
            upstream test sets of restbench/metatool are fetched, see `mtrb_file`).
        text: Which description is indexed: ``"rewrite"`` (MTRB's rewritten descriptions, the
            default, which reproduces the paper's zero-shot row) or ``"original"``
            (RestBench's ``tool_description``; the other subsets have only one description).
        include_name: Index ``"name: description"`` instead of the description alone.

    Returns:
        The dataset; tool ids are tool names (see the module docstring), ``Tool.name`` is the
        name when ``include_name`` and empty otherwise (so ``Tool.text`` is the description).

    Raises:
        ValueError: for an unknown subset/split/text (listing the valid ones) or inconsistent
            labels (an id whose tool name differs from the query's ``relevant Tools``).
        FileNotFoundError: see `mtrb_file`.

    Example:
        .. code-block:: python

            from qta_integrations.evaluation import load_mtrb

            data = load_mtrb("restbench", data_dir="path/to/mtrb")
            print(data)  # RetrievalDataset('mtrb-restbench', 54 tools, 90 queries)
            print(data.queries[0].tool_ids)  # ('GET /search/movie', 'GET /movie/{movie_id}')
    """
    if subset not in MTRB_SUBSETS:
        msg = f"Unknown MTRB subset {subset!r}; choose one of {list(MTRB_SUBSETS)}."
        raise ValueError(msg)
    if split not in MTRB_SPLITS:
        msg = f"Unknown MTRB split {split!r}; choose one of {list(MTRB_SPLITS)}."
        raise ValueError(msg)
    if text not in ("rewrite", "original"):
        msg = f"text must be 'rewrite' or 'original', got {text!r}."
        raise ValueError(msg)
    if text == "original" and subset != "restbench":
        msg = (
            f"text='original' exists only for restbench; {subset!r} ships one description "
            "per tool. Use text='rewrite'."
        )
        raise ValueError(msg)
    tools_rel, queries_rel = _MTRB_FILES[(subset, split)]
    tools_path = mtrb_file(tools_rel, data_dir)
    queries_path = mtrb_file(queries_rel, data_dir)
    try:
        entries = list(_mtrb_tools(subset, _read_mtrb_json(tools_path), text))
        catalog = ToolCatalog(
            Tool(id=name, name=name if include_name else "", description=desc, metadata=meta)
            for name, desc, meta in entries
        )
    except (KeyError, TypeError, AttributeError) as err:
        raise _mtrb_layout_error(tools_path, subset, err) from None
    records = _read_mtrb_json(queries_path)
    try:
        queries = [_mtrb_query(r, i, catalog.ids, queries_path) for i, r in enumerate(records)]
    except (KeyError, TypeError, AttributeError) as err:
        raise _mtrb_layout_error(queries_path, subset, err) from None
    return RetrievalDataset(
        catalog,
        queries,
        name=f"mtrb-{subset}",
        metadata={
            "subset": subset,
            "split": split,
            "text": text,
            "include_name": include_name,
            "tools_file": str(tools_path),
            "queries_file": str(queries_path),
        },
    )


def _read_mtrb_json(path: Path) -> Any:
    """Parse an MTRB file; a corrupted one is a `ValueError` naming the file and the line."""
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as err:
        msg = (
            f"MTRB file {str(path)!r} is not UTF-8 text (byte {err.start}). It is corrupted: "
            f"delete it and fetch it again, or restore it from {MTRB_REPO}."
        )
        raise ValueError(msg) from None
    except json.JSONDecodeError as err:
        msg = (
            f"MTRB file {str(path)!r} is not valid JSON: {err.msg} at line {err.lineno}, column "
            f"{err.colno}. It is corrupted: delete it and fetch it again, or restore it from "
            f"{MTRB_REPO}."
        )
        raise ValueError(msg) from None


def _mtrb_layout_error(path: Path, subset: str, err: Exception) -> ValueError:
    detail = f"missing key {err}" if isinstance(err, KeyError) else str(err)
    msg = (
        f"MTRB file {str(path)!r} does not have the {subset} layout ({detail}). It is corrupted "
        f"or from another dataset: restore it from {MTRB_REPO} at commit {MTRB_COMMIT[:12]}."
    )
    return ValueError(msg)


def _mtrb_tools(
    subset: str, data: Any, text: ToolText
) -> Iterable[tuple[str, str, dict[str, Any]]]:
    if subset == "metatool":
        if not isinstance(data, Mapping):
            msg = f"expected a JSON object of tool name -> description, got {type(data).__name__}"
            raise TypeError(msg)
        return [(name, str(desc), {}) for name, desc in data.items()]
    if subset == "toolbench":
        return [(t["tool_name"], t["tool_description"], {"category": t["category"]}) for t in data]
    # restbench: 0-based position i has "ID": i + 1.
    field_name = "rewrite_description" if text == "rewrite" else "tool_description"
    return [
        (t["tool_usage"], t.get(field_name) or t["tool_description"], {"mtrb_id": t["ID"]})
        for t in data
    ]


def _mtrb_query(
    record: Mapping[str, Any], position: int, ids: list[str], path: Path
) -> LabelledQuery:
    names = list(record["relevant Tools"])
    positions = list(record["relevant IDs"])
    where = f"query #{position} in {str(path)!r}"
    if len(names) != len(positions):
        msg = f"{where}: 'relevant Tools' {names} and 'relevant IDs' {positions} differ in length."
        raise ValueError(msg)
    tool_ids = []
    for name, pos in zip(names, positions, strict=True):
        if not 0 <= pos < len(ids) or ids[pos] != name:
            found = ids[pos] if 0 <= pos < len(ids) else "out of range"
            msg = (
                f"{where}: relevant ID {pos} (0-based) is {found!r} in the tool list, but the "
                f"label names {name!r}. The tool file and the query file do not match."
            )
            raise ValueError(msg)
        tool_ids.append(name)
    return LabelledQuery(record["query"], tuple(tool_ids))
