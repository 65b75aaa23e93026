"""Entries (tools and labelled examples) in one store, and re-indexing as a sync."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import InMemoryVectorStore
from llama_index.core import VectorStoreIndex

from qta_integrations.embeddings import to_llama_index_embeddings
from qta_integrations.evaluation import BM25ToolIndex
from qta_integrations.pipeline import QTAPipeline
from qta_integrations.stores import (
    ExactToolIndex,
    IndexEntry,
    IndexHit,
    LlamaIndexToolIndex,
    RecordManager,
    SyncResult,
    ToolHit,
    ToolIndex,
    VectorStoreToolIndex,
    chroma_tool_index,
    sync_index,
)
from qta_integrations.testing import KeywordEmbeddings
from qta_integrations.tools import Tool, ToolCatalog
from tests.conftest import TOOLS, CountingEmbeddings
from tests.unit_tests.test_stores import AppendOnlyTextStore

BACKENDS = ["chroma_memory", "chroma_disk", "in_memory_vector_store", "llama_index", "exact"]

EXAMPLES = [
    IndexEntry.for_example("rain forecast for Oslo tomorrow", ["weather"]),
    IndexEntry.for_example("how much is one share of Apple", ["stock_quote"]),
]


def _tools() -> list[Tool]:
    return list(ToolCatalog.from_dicts([dict(t) for t in TOOLS]))


def _tool_entries(tools: Sequence[Tool]) -> list[IndexEntry]:
    return [IndexEntry.for_tool(t) for t in tools]


def _shape(hits: Sequence[ToolHit | IndexHit]) -> tuple[str, list[float]]:
    # Ties (equal scores) may come back in any order: compare the winner and the scores.
    first = hits[0]
    winner = first.tool_id if isinstance(first, ToolHit) else first.entry_id
    return winner, [round(h.score, 5) for h in hits]


def _make(backend: str, embeddings: Embeddings, tmp_path: Path) -> ToolIndex:
    if backend == "chroma_memory":
        return chroma_tool_index(embeddings)
    if backend == "chroma_disk":
        return chroma_tool_index(embeddings, persist_directory=tmp_path / "db")
    if backend == "in_memory_vector_store":
        return VectorStoreToolIndex(InMemoryVectorStore(embeddings))
    if backend == "llama_index":
        embed_model = to_llama_index_embeddings(embeddings)
        return LlamaIndexToolIndex(VectorStoreIndex(nodes=[], embed_model=embed_model))
    return ExactToolIndex(embeddings)


@pytest.fixture
def make_index(tmp_path: Path) -> Iterator[Callable[[str, Embeddings], ToolIndex]]:
    made: list[ToolIndex] = []

    def make(backend: str, embeddings: Embeddings) -> ToolIndex:
        made.append(_make(backend, embeddings, tmp_path))
        return made[-1]

    try:
        yield make
    finally:
        for index in made:
            index.close()


# -- IndexEntry ------------------------------------------------------------------------------


def test_tool_entry_carries_the_tool() -> None:
    tool = Tool(
        id="weather",
        name="get_weather",
        description="Forecast.",
        metadata={"owner": "ops", "cost": 2, "nested": {"no": 1}},
    )
    entry = IndexEntry.for_tool(tool)
    assert (entry.id, entry.text, entry.kind, entry.tool_ids) == (
        "weather",
        tool.text,
        "tool",
        ("weather",),
    )
    assert dict(entry.metadata) == {"owner": "ops", "cost": 2, "tool_name": "get_weather"}
    stored = entry.stored_metadata()
    assert stored["qta_kind"] == "tool"
    assert stored["qta_tool_ids"] == '["weather"]'
    assert stored["tool_id"] == "weather"
    assert stored["tool_name"] == "get_weather"
    assert stored["qta_hash"] == entry.content_hash


def test_example_entry_id_is_a_stable_hash() -> None:
    first = IndexEntry.for_example("will it rain?", ["weather", "calendar"])
    again = IndexEntry.for_example("will it rain?", ["weather", "calendar"])
    other = IndexEntry.for_example("will it rain?", ["weather"])
    assert first == again
    assert first.id == again.id != other.id
    assert first.id.startswith("example:")
    assert len(first.id) == len("example:") + 16
    assert (first.kind, first.text, first.tool_ids) == (
        "example",
        "will it rain?",
        ("weather", "calendar"),
    )


@pytest.mark.parametrize(
    ("change", "same"),
    [
        ({}, True),
        ({"text": "other text"}, False),
        ({"metadata": {"a": 1}}, False),
        ({"id": "example:t", "kind": "example", "tool_ids": ("t",)}, False),
    ],
)
def test_content_hash_covers_kind_text_tool_ids_and_metadata(
    change: dict[str, Any], same: bool
) -> None:
    base: dict[str, Any] = {"id": "t", "text": "a tool"}
    assert (
        IndexEntry(**base).content_hash == IndexEntry(**{**base, **change}).content_hash
    ) is same


def test_content_hash_is_stable_across_metadata_order() -> None:
    one = IndexEntry(id="t", text="x", metadata={"a": 1, "b": "2"})
    two = IndexEntry(id="t", text="x", metadata={"b": "2", "a": 1})
    assert one.content_hash == two.content_hash
    assert len(one.content_hash) == 64


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"id": "", "text": "x"}, ValueError, "non-empty str"),
        ({"id": "t", "text": "x", "kind": "doc"}, ValueError, "must be one of"),
        ({"id": "t", "text": "x", "tool_ids": ("u",)}, ValueError, r"must be \('t',\)"),
        ({"id": "e", "text": "x", "kind": "example"}, ValueError, "has no tool ids"),
        ({"id": "e", "text": "x", "kind": "example", "tool_ids": ("t",)}, ValueError, "'example:'"),
        ({"id": "e", "text": "x", "kind": "example", "tool_ids": "abc"}, TypeError, "sequence"),
        ({"id": "t", "text": "x", "metadata": {"l": [1]}}, ValueError, "flat metadata"),
        ({"id": "t", "text": "x", "metadata": {"qta_kind": "x"}}, ValueError, "reserved"),
        ({"id": "t", "text": 3}, TypeError, "must be a str"),
    ],
)
def test_bad_entries_are_refused(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        IndexEntry(**kwargs)


@pytest.mark.parametrize(
    ("query", "tool_ids", "match"),
    [("  ", ["weather"], "non-blank"), ("rain?", [], "no tool ids"), ("rain?", [""], "non-empty")],
)
def test_bad_examples_are_refused(query: str, tool_ids: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        IndexEntry.for_example(query, tool_ids)


# -- every backend stores tools and examples ---------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_tools_and_examples_share_one_store(
    backend: str, make_index: Callable[[str, Embeddings], ToolIndex]
) -> None:
    index = make_index(backend, KeywordEmbeddings())
    tools = _tools()
    index.upsert([*_tool_entries(tools), *EXAMPLES])
    listed = index.list_entries()
    assert listed is not None
    assert sorted(listed) == sorted([t.id for t in tools] + [e.id for e in EXAMPLES])
    assert index.list_entries("example") == {e.id: e.content_hash for e in EXAMPLES}

    query = "rain forecast for Oslo tomorrow"  # the first example, word for word
    entries = index.search_entries(query, k=3)
    assert entries[0] == IndexHit(
        EXAMPLES[0].id, pytest.approx(1.0, abs=1e-5), "example", ("weather",)
    )
    assert entries[1].kind == "tool"
    # Tool searches never return examples, and still return k tools.
    hits = index.search(query, k=len(tools))
    assert len(hits) == len(tools)
    assert {h.tool_id for h in hits} == {t.id for t in tools}
    assert hits[0].tool_id == "weather"
    other = "how much is one share of Apple"
    many = index.search_many([query, other], k=2)
    assert [_shape(row) for row in many] == [
        _shape(index.search(query, k=2)),
        _shape(index.search(other, k=2)),
    ]
    assert _shape(await index.asearch(query, k=2)) == _shape(hits[:2])
    batched = index.search_entries_many([query, other], k=3)
    assert [_shape(row) for row in batched] == [
        _shape(index.search_entries(q, k=3)) for q in (query, other)
    ]
    assert _shape(await index.asearch_entries(query, k=3)) == _shape(entries)

    index.delete([EXAMPLES[0].id, "email", "not-there"])
    assert index.list_entries("example") == {EXAMPLES[1].id: EXAMPLES[1].content_hash}
    assert "email" not in (index.list_entries("tool") or {})
    assert all(h.entry_id != EXAMPLES[0].id for h in index.search_entries(query, k=10))


@pytest.mark.parametrize("backend", BACKENDS)
def test_upserting_an_example_again_replaces_it(
    backend: str, make_index: Callable[[str, Embeddings], ToolIndex]
) -> None:
    index = make_index(backend, KeywordEmbeddings())
    entry = IndexEntry(id="example:x", text="first text", kind="example", tool_ids=("a",))
    index.upsert([entry])
    index.upsert([IndexEntry(id="example:x", text="second text", kind="example", tool_ids=("b",))])
    hits = index.search_entries("second text", k=5)
    assert [(h.entry_id, h.tool_ids) for h in hits] == [("example:x", ("b",))]


def test_an_index_that_only_adds_tools_cannot_store_examples() -> None:
    index = BM25ToolIndex()
    index.upsert(_tool_entries(_tools()))
    assert index.search("stock ticker price", k=1)[0].tool_id == "stock_quote"
    assert index.search_entries("stock ticker price", k=1) == [
        IndexHit(
            "stock_quote",
            pytest.approx(index.search("stock ticker price", k=1)[0].score),
            "tool",
            ("stock_quote",),
        )
    ]
    with pytest.raises(NotImplementedError, match="BM25ToolIndex stores tools only"):
        index.upsert(EXAMPLES)
    index.delete(["weather"])
    assert "weather" not in {h.tool_id for h in index.search("weather forecast", k=len(TOOLS))}


def test_an_index_with_neither_method_says_so() -> None:
    class Empty(ToolIndex):
        pass

    with pytest.raises(NotImplementedError, match="Empty implements neither upsert"):
        Empty().add_tools(_tools())
    with pytest.raises(NotImplementedError, match="Empty implements neither search_entries"):
        Empty().search("weather", k=1)


def test_legacy_index_with_add_tools_and_search_still_syncs() -> None:
    class Legacy(ToolIndex):
        def __init__(self) -> None:
            self.inner = ExactToolIndex(KeywordEmbeddings())

        def add_tools(self, tools: Sequence[Tool]) -> None:
            self.inner.add_tools(tools)

        def search(self, query: str, k: int) -> list[ToolHit]:
            return self.inner.search(query, k)

    pipeline = QTAPipeline(ToolCatalog(_tools()), Legacy(), None, k=2)
    assert pipeline.retrieve("stock ticker price").tool_ids[0] == "stock_quote"
    assert pipeline.index_catalog().num_skipped == len(TOOLS)


# -- sync_index --------------------------------------------------------------------------------


def _changed_catalogue() -> list[Tool]:
    tools = {t.id: t for t in _tools()}
    del tools["route"], tools["translate"]  # removed
    tools["email"] = Tool(id="email", name="send_email", description="Send mail with attachments.")
    tools["music"] = Tool(id="music", name="play_music", description="Play a song by an artist.")
    return list(tools.values())


SYNC_BACKENDS = ["chroma_memory", "chroma_disk", "in_memory_vector_store", "llama_index", "exact"]


@pytest.mark.parametrize("backend", SYNC_BACKENDS)
def test_reindexing_a_changed_catalogue_is_a_sync(
    backend: str, make_index: Callable[[str, Embeddings], ToolIndex]
) -> None:
    embeddings = CountingEmbeddings()
    index = make_index(backend, embeddings)
    first = sync_index(index, _tool_entries(_tools()), namespace="tools")
    assert first == SyncResult(num_added=len(TOOLS))
    sync_index(index, EXAMPLES, namespace="examples")
    embeddings.documents_embedded = 0

    assert sync_index(index, _tool_entries(_tools()), namespace="tools") == SyncResult(
        num_skipped=len(TOOLS)
    )
    assert embeddings.documents_embedded == 0  # nothing re-embedded

    changed = _changed_catalogue()
    result = sync_index(index, _tool_entries(changed), namespace="tools")
    assert result == SyncResult(num_added=1, num_updated=1, num_skipped=3, num_deleted=2)
    assert embeddings.documents_embedded == 2  # the new and the changed tool only
    listed = index.list_entries("tool")
    assert listed == {e.id: e.content_hash for e in _tool_entries(changed)}
    # The examples namespace is untouched by a tools sync.
    assert index.list_entries("example") == {e.id: e.content_hash for e in EXAMPLES}
    hits = index.search("play a song by an artist", k=len(changed))
    assert len(hits) == len(changed)
    assert {h.tool_id for h in hits} == {t.id for t in changed}
    assert hits[0].tool_id == "music"
    assert index.search("send mail with attachments", k=1)[0].tool_id == "email"

    # And a tools-free examples sync removes examples only.
    assert sync_index(index, EXAMPLES[:1], namespace="examples").num_deleted == 1
    assert index.list_entries("tool") == listed
    assert list(index.list_entries("example") or {}) == [EXAMPLES[0].id]


def test_pipelines_on_one_persist_directory_follow_the_catalogue(tmp_path: Path) -> None:
    first = QTAPipeline.from_tools(
        [dict(t) for t in TOOLS],
        embeddings=KeywordEmbeddings(),
        persist_directory=tmp_path,
        rewriter=None,
    )
    assert len(first.retrieve("weather forecast city", k=3).tools) == 3
    changed = _changed_catalogue()
    embeddings = CountingEmbeddings()
    second = QTAPipeline.from_tools(
        [t.to_dict() for t in changed],
        embeddings=embeddings,
        persist_directory=tmp_path,
        rewriter=None,
    )
    assert embeddings.documents_embedded == 2
    result = second.retrieve("driving directions between two places", k=len(changed))
    assert sorted(result.tool_ids) == sorted(t.id for t in changed)  # k live tools, no stale ones
    assert second.index.list_entries("tool") == {
        e.id: e.content_hash for e in _tool_entries(changed)
    }
    assert (tmp_path / "qta_records.sqlite3").exists()


def test_a_store_written_by_an_older_version_is_brought_in_line() -> None:
    store = InMemoryVectorStore(KeywordEmbeddings())
    # As older versions wrote it: tool_id / tool_name only, no kind or hash.
    store.add_texts(
        ["get_weather: old text", "stale: gone tool"],
        metadatas=[{"tool_id": "weather", "tool_name": "get_weather"}, {"tool_id": "stale"}],
        ids=["weather", "stale"],
    )
    store.add_texts(["a document of the user's own"], ids=["user-doc"])
    index = VectorStoreToolIndex(store)
    result = sync_index(index, _tool_entries(_tools()), namespace="tools")
    assert result == SyncResult(num_added=len(TOOLS) - 1, num_updated=1, num_deleted=1)
    assert sorted(store.store) == sorted([*(t["id"] for t in TOOLS), "user-doc"])  # kept


def test_a_store_that_cannot_list_warns_once_then_uses_the_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = AppendOnlyTextStore()
    embed_model = to_llama_index_embeddings(KeywordEmbeddings())
    index = LlamaIndexToolIndex(VectorStoreIndex.from_vector_store(store, embed_model=embed_model))
    assert index.list_entries() is None
    with caplog.at_level(logging.WARNING, logger="qta_integrations.stores.sync"):
        sync_index(index, _tool_entries(_tools()), namespace="tools")
    assert "cannot list its entries" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="qta_integrations.stores.sync"):
        result = sync_index(index, _tool_entries(_changed_catalogue()), namespace="tools")
    assert caplog.text == ""
    assert result == SyncResult(num_added=1, num_updated=1, num_skipped=3, num_deleted=2)
    assert sorted(store.ids) == sorted(t.id for t in _changed_catalogue())


def test_sync_checks_its_arguments() -> None:
    index = ExactToolIndex(KeywordEmbeddings())
    with pytest.raises(ValueError, match="namespace must be one of"):
        sync_index(index, [], namespace="docs")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="namespace 'tools' holds 'tool' entries"):
        sync_index(index, EXAMPLES, namespace="tools")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        sync_index(index, [], namespace="tools", batch_size=0)
    twins = [IndexEntry(id="t", text="one"), IndexEntry(id="t", text="two")]
    with pytest.raises(ValueError, match="share the id 't'"):
        sync_index(index, twins, namespace="tools")
    same = [IndexEntry(id="t", text="one"), IndexEntry(id="t", text="one")]
    assert sync_index(index, same, namespace="tools") == SyncResult(num_added=1)


def test_sync_writes_in_batches_and_records_each(tmp_path: Path) -> None:
    records = RecordManager(tmp_path / "records.sqlite3")
    index = ExactToolIndex(KeywordEmbeddings())
    sync_index(
        index, _tool_entries(_tools()), namespace="tools", record_manager=records, batch_size=4
    )
    reopened = RecordManager(tmp_path / "records.sqlite3")
    assert reopened.get("tools") == {e.id: e.content_hash for e in _tool_entries(_tools())}
    assert reopened.get("examples") == {}


@pytest.mark.parametrize("path", [None, "records.sqlite3"])
def test_record_manager_namespaces_are_separate(tmp_path: Path, path: str | None) -> None:
    records = RecordManager(tmp_path / path if path else None)
    records.update("tools", {"a": "1", "b": "2"})
    records.update("examples", {"a": "9"})
    records.delete("tools", ["a", "missing"])
    assert records.get("tools") == {"b": "2"}
    assert records.get("examples") == {"a": "9"}
    records.replace("tools", {"c": "3"})
    assert records.get("tools") == {"c": "3"}
    assert records.get("examples") == {"a": "9"}
    assert "records.sqlite3" in repr(records) or path is None
