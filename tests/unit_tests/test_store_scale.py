"""What the stores read and write per call, which is what keeps 100,000 tools fast.

Counted, not timed: which Chroma calls a search or a sync makes and what they include, which
texts BM25 tokenises, and that the shortcuts give exactly what the full reads give.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qta_integrations.stores import (
    BM25ToolIndex,
    IndexEntry,
    RecordManager,
    SyncResult,
    chroma_tool_index,
    sync_index,
)
from qta_integrations.stores.chroma import ChromaToolIndex
from qta_integrations.testing import KeywordEmbeddings
from qta_integrations.tools import Tool
from tests.conftest import CountingEmbeddings

EXAMPLE = IndexEntry.for_example("rain forecast for Oslo tomorrow", ["t1"])


def _tools(n: int, word: str = "tool") -> list[Tool]:
    return [
        Tool(id=f"t{i}", name=f"{word}_{i}", description=f"{word} number {i}") for i in range(n)
    ]


def _entries(tools: list[Tool]) -> list[IndexEntry]:
    return [IndexEntry.for_tool(t) for t in tools]


class CollectionSpy:
    """Wraps a chromadb collection and records the calls made to it."""

    def __init__(self, collection: Any) -> None:
        self.collection = collection
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.collection, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            return method(*args, **kwargs)

        return call

    def includes(self, name: str) -> list[list[str]]:
        return [list(kwargs.get("include", [])) for n, kwargs in self.calls if n == name]


def _spy(index: ChromaToolIndex) -> CollectionSpy:
    spy = CollectionSpy(index.chroma_collection())
    index._collection = spy
    return spy


@pytest.fixture
def disk_index(tmp_path: Path) -> Iterator[ChromaToolIndex]:
    index = chroma_tool_index(KeywordEmbeddings(), persist_directory=tmp_path / "db")
    yield index
    index.close()


# -- searching ---------------------------------------------------------------------------------


def test_a_search_reads_the_metadata_of_example_hits_only(disk_index: ChromaToolIndex) -> None:
    disk_index.upsert([*_entries(_tools(20)), EXAMPLE])
    spy = _spy(disk_index)
    hits = disk_index.search_entries("rain forecast for Oslo tomorrow", k=10)
    assert spy.includes("query") == [["distances"]]
    gets = [kwargs for name, kwargs in spy.calls if name == "get"]
    assert gets == [{"ids": [EXAMPLE.id], "include": ["metadatas"]}]
    assert hits[0].entry_id == EXAMPLE.id
    assert (hits[0].kind, hits[0].tool_ids) == ("example", ("t1",))
    assert all(h.kind == "tool" and h.tool_ids == (h.entry_id,) for h in hits[1:])

    spy.calls.clear()
    assert disk_index.search("tool number 3", k=3)[0].tool_id == "t3"
    assert [name for name, _ in spy.calls] == ["query"]  # no example among the hits: no get


def test_a_search_gives_what_reading_every_hit_gives(disk_index: ChromaToolIndex) -> None:
    disk_index.upsert([*_entries(_tools(30)), EXAMPLE])
    queries = ["tool number 7", "rain forecast for Oslo tomorrow"]
    found = disk_index.chroma_collection().query(
        query_embeddings=KeywordEmbeddings().embed_documents(queries),
        n_results=12,
        include=["metadatas", "distances"],
    )
    full = [
        [(i, round(1 - d, 6), m["qta_kind"]) for i, d, m in zip(ids, ds, ms, strict=True)]
        for ids, ds, ms in zip(found["ids"], found["distances"], found["metadatas"], strict=True)
    ]
    batched = disk_index.search_entries_many(queries, k=12)
    assert [[(h.entry_id, round(h.score, 6), h.kind) for h in row] for row in batched] == full


async def test_an_async_search_gives_the_same_hits(disk_index: ChromaToolIndex) -> None:
    disk_index.upsert([*_entries(_tools(10)), EXAMPLE])
    query = "rain forecast for Oslo tomorrow"
    assert await disk_index.asearch_entries(query, k=5) == disk_index.search_entries(query, k=5)


# -- writing -----------------------------------------------------------------------------------


def test_upserts_stay_within_the_clients_batch_limit(
    disk_index: ChromaToolIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(disk_index.chroma_client, "get_max_batch_size", lambda: 4)
    spy = CollectionSpy(disk_index.vectorstore._collection)
    monkeypatch.setattr(disk_index.vectorstore, "_chroma_collection", spy)
    disk_index.upsert(_entries(_tools(10)))
    assert [len(kwargs["ids"]) for name, kwargs in spy.calls if name == "upsert"] == [4, 4, 2]
    assert len(disk_index.list_entries("tool")) == 10


# -- syncing -----------------------------------------------------------------------------------


def test_a_sync_on_disk_reads_ids_and_the_metadata_of_unrecorded_ids(
    disk_index: ChromaToolIndex,
) -> None:
    tools = _tools(50)
    sync_index(disk_index, _entries(tools), namespace="tools")
    sync_index(disk_index, [EXAMPLE], namespace="examples")
    spy = _spy(disk_index)
    assert sync_index(disk_index, _entries(tools), namespace="tools") == SyncResult(num_skipped=50)
    assert spy.includes("get") == [[], ["metadatas"]]  # every id; then the example's metadata
    assert [kw.get("ids") for n, kw in spy.calls if n == "get"] == [None, [EXAMPLE.id]]

    spy.calls.clear()
    assert sync_index(disk_index, [EXAMPLE], namespace="examples").num_skipped == 1
    assert [kw.get("where") for n, kw in spy.calls if n == "get"] == [{"qta_kind": "example"}]


def test_a_sync_without_a_record_reads_the_store(tmp_path: Path) -> None:
    tools = _tools(20)
    sync_index(
        chroma_tool_index(KeywordEmbeddings(), persist_directory=tmp_path),
        _entries(tools),
        namespace="tools",
    )
    (tmp_path / "qta_records.sqlite3").unlink()  # as a directory written by an older version
    embeddings = CountingEmbeddings()
    index = chroma_tool_index(embeddings, persist_directory=tmp_path)
    # No record, so no recorded encoder: opening re-embeds the stored texts once, in place.
    assert embeddings.documents_embedded == 20
    changed = [*tools[:19], Tool(id="t19", name="tool_19", description="changed")]
    result = sync_index(index, _entries(changed), namespace="tools")
    assert result == SyncResult(num_updated=1, num_skipped=19)
    assert embeddings.documents_embedded == 21  # the sync embedded the changed tool alone


def test_a_crash_during_a_rewrite_never_leaves_a_trusted_stale_hash(
    disk_index: ChromaToolIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _tools(10)
    sync_index(disk_index, _entries(old), namespace="tools")
    new = [*old[:8], *_tools(10, word="renamed")[8:]]

    def write_then_crash(entries: list[IndexEntry]) -> None:
        ChromaToolIndex.upsert(disk_index, entries)
        raise KeyboardInterrupt  # killed after the store was written, before the record

    monkeypatch.setattr(disk_index, "upsert", write_then_crash)
    with pytest.raises(KeyboardInterrupt):
        sync_index(disk_index, _entries(new), namespace="tools")
    monkeypatch.undo()
    # The store holds the new texts of t8 and t9; syncing the old catalogue must put them back.
    result = sync_index(disk_index, _entries(old), namespace="tools")
    assert result == SyncResult(num_updated=2, num_skipped=8)
    assert disk_index.list_entries("tool") == {e.id: e.content_hash for e in _entries(old)}


def test_collections_in_one_directory_keep_separate_records(tmp_path: Path) -> None:
    first = chroma_tool_index(KeywordEmbeddings(), persist_directory=tmp_path)
    other = chroma_tool_index(
        KeywordEmbeddings(), persist_directory=tmp_path, collection_name="other"
    )
    sync_index(first, _entries(_tools(5)), namespace="tools")
    renamed = _tools(5, word="renamed")
    assert sync_index(other, _entries(renamed), namespace="tools") == SyncResult(num_added=5)
    assert other.list_entries("tool") == {e.id: e.content_hash for e in _entries(renamed)}
    assert first.list_entries("tool") == {e.id: e.content_hash for e in _entries(_tools(5))}
    assert first.record_manager.scope is None
    assert other.record_manager.scope == "other"


def test_a_shared_collection_is_listed_whole() -> None:
    # Two indexes over one named in-memory collection: each record is its own, so neither
    # may be trusted for the other's writes.
    name = "qta_test_shared_scale"
    one = chroma_tool_index(KeywordEmbeddings(), collection_name=name)
    two = chroma_tool_index(KeywordEmbeddings(), collection_name=name)
    try:
        old, new = _tools(6), _tools(6, word="renamed")
        sync_index(one, _entries(old), namespace="tools")
        sync_index(two, _entries(new), namespace="tools")
        assert sync_index(one, _entries(old), namespace="tools") == SyncResult(num_updated=6)
        assert one.list_entries("tool") == {e.id: e.content_hash for e in _entries(old)}
    finally:
        one.chroma_client.delete_collection(name)


@pytest.mark.parametrize("path", [None, "records.sqlite3"])
def test_record_scopes_are_separate(tmp_path: Path, path: str | None) -> None:
    where = tmp_path / path if path else None
    plain, scoped = RecordManager(where), RecordManager(where, scope="b")
    plain.update("tools", {"a": "1"})
    scoped.update("tools", {"a": "2", "c": "3"})
    scoped.delete("tools", ["c"])
    assert plain.get("tools") == {"a": "1"}
    assert scoped.get("tools") == {"a": "2"}
    assert "scope='b'" in repr(scoped)


# -- BM25 --------------------------------------------------------------------------------------


def test_bm25_tokenises_each_text_once(monkeypatch: pytest.MonkeyPatch) -> None:
    tokenized: list[str] = []
    tokenize = BM25ToolIndex._tokenize

    def counting(self: BM25ToolIndex, texts: list[str]) -> list[list[str]]:
        tokenized.extend(texts)
        return tokenize(self, texts)

    monkeypatch.setattr(BM25ToolIndex, "_tokenize", counting)
    tools = _tools(30)
    index = BM25ToolIndex()
    index.add_tools(tools)
    index.add_tools([*tools[:2], Tool(id="t2", name="tool_2", description="other words")])
    assert len(tokenized) == 31  # the 30 texts, then only the changed one
    tokenized.clear()
    expanded = index.with_expansions({"t1": ["rain in Oslo", "umbrella"], "nope": ["x"]})
    assert tokenized == ["rain in Oslo umbrella"]
    assert index.ids == expanded.ids


def test_bm25_expansions_score_as_the_joined_texts() -> None:
    tools = _tools(30)
    expansions = {"t1": ["rain in Oslo", "the umbrella"], "t7": ["tool number seven"]}
    expanded = BM25ToolIndex()
    expanded.add_tools(tools)
    expanded = expanded.with_expansions(expansions)
    joined = BM25ToolIndex()
    joined.add_tools(
        [
            Tool(id=t.id, name="", description=" ".join((t.text, *expansions.get(t.id, ()))))
            for t in tools
        ]
    )
    queries = ["rain in Oslo", "tool number 7 seven", "the"]
    np.testing.assert_allclose(expanded.scores(queries), joined.scores(queries), rtol=1e-6)


def test_bm25_expanded_copies_survive_changes_to_the_original() -> None:
    index = BM25ToolIndex()
    index.add_tools(_tools(10))
    expanded = index.with_expansions({"t1": ["rain"]})
    before = expanded.scores(["tool number 3", "rain"])
    index.add_tools([Tool(id="t3", name="", description="entirely different")])
    index.delete(["t4"])
    np.testing.assert_array_equal(expanded.scores(["tool number 3", "rain"]), before)
