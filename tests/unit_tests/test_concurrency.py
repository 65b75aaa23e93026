"""Concurrency and lifetime: two writers on one directory, concurrent readers, freed indexes."""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import tempfile
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from filelock import FileLock
from langchain_core.embeddings import DeterministicFakeEmbedding

from qta_integrations import QTARetriever
from qta_integrations.pipeline import QTAPipeline
from qta_integrations.stores import IndexEntry, chroma_tool_index, sync_index
from qta_integrations.stores.chroma import LOCK_FILE
from qta_integrations.testing import KeywordEmbeddings
from qta_integrations.tools import Tool, ToolCatalog
from tests.conftest import TOOLS

WRITER_TOOLS = 300  # two batches of INDEX_BATCH_SIZE each


def _catalogue(prefix: str, n: int = WRITER_TOOLS) -> list[Tool]:
    # Every text has words of its own, so each tool is its own best match.
    return [
        Tool(id=f"{prefix}{i}", name=f"{prefix}_tool_{i}", description=f"{prefix}word{i} does {i}")
        for i in range(n)
    ]


def _embeddings() -> DeterministicFakeEmbedding:
    # Random vectors, one per text: Chroma's approximate (HNSW) search finds each exactly.
    return DeterministicFakeEmbedding(size=64)


def _write(directory: str, prefix: str, start: object, errors: object) -> None:
    """One writer process: index its own catalogue into the shared directory."""
    try:
        index = chroma_tool_index(_embeddings(), persist_directory=directory)
        start.wait()  # type: ignore[attr-defined]
        QTAPipeline(ToolCatalog(_catalogue(prefix)), index, None)
    except BaseException as err:  # reported to the parent, which fails the test
        errors.put(f"{prefix}: {type(err).__name__}: {err}")  # type: ignore[attr-defined]
        raise


def test_two_processes_writing_one_directory_leave_a_consistent_store(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start, errors = context.Barrier(2), context.Queue()
    writers = [
        context.Process(target=_write, args=(str(tmp_path), prefix, start, errors))
        for prefix in ("a", "b")
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    assert [w.exitcode for w in writers] == [0, 0]
    assert errors.empty()

    index = chroma_tool_index(_embeddings(), persist_directory=tmp_path)
    listed = index.list_entries("tool")
    assert listed is not None
    # Whichever wrote last won: the store is exactly one catalogue, not a mix of both.
    winner = next(iter(listed))[0]
    expected = _catalogue(winner)
    assert listed == {
        IndexEntry.for_tool(t).id: IndexEntry.for_tool(t).content_hash for t in expected
    }
    found = index.search_many([t.text for t in expected], k=1)
    assert [hits[0].tool_id for hits in found] == [t.id for t in expected]


def test_a_second_writer_times_out_with_a_clear_error(tmp_path: Path) -> None:
    index = chroma_tool_index(_embeddings(), persist_directory=tmp_path, lock_timeout=0.2)
    other_writer = FileLock(tmp_path / LOCK_FILE)
    with other_writer, pytest.raises(TimeoutError) as caught:
        index.add_tools(_catalogue("a", 3))
    message = str(caught.value)
    assert str(tmp_path) in message
    assert "Chroma server" in message
    assert "lock_timeout" in message
    # Once the other writer is done, writing works and nothing was half-written.
    assert index.list_entries("tool") == {}
    index.add_tools(_catalogue("a", 3))
    assert sorted(index.list_entries("tool") or {}) == ["a0", "a1", "a2"]


def test_the_lock_is_reentrant_within_a_sync(tmp_path: Path) -> None:
    index = chroma_tool_index(_embeddings(), persist_directory=tmp_path, lock_timeout=0.2)
    entries = [IndexEntry.for_tool(t) for t in _catalogue("a", 5)]
    assert sync_index(index, entries, namespace="tools", batch_size=2).num_added == 5
    assert sync_index(index, entries[:2], namespace="tools").num_deleted == 3


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Scratch indexes go to this test's own temporary directory."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _scratch_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("qta_chroma_*"))


def test_dropped_in_memory_indexes_free_their_chroma(private_tmp: Path) -> None:
    before = _scratch_dirs()
    refs = []
    for _ in range(5):
        index = chroma_tool_index(KeywordEmbeddings())
        index.add_tools(_catalogue("a", 20))
        assert len(_scratch_dirs() - before) == 1
        refs.append(weakref.ref(index))
        del index
        gc.collect()
    assert all(ref() is None for ref in refs)
    assert _scratch_dirs() == before


def test_dropped_retrievers_free_their_chroma(private_tmp: Path) -> None:
    before = _scratch_dirs()
    for _ in range(3):
        retriever = QTARetriever(
            tools=[dict(t) for t in TOOLS], embeddings=KeywordEmbeddings(), rewriter=None
        )
        assert retriever.invoke("stock ticker price")[0].id == "stock_quote"
        del retriever
    gc.collect()
    assert _scratch_dirs() == before


def test_close_deletes_the_collection_and_is_idempotent(private_tmp: Path) -> None:
    index = chroma_tool_index(KeywordEmbeddings())
    index.add_tools(_catalogue("a", 3))
    (scratch,) = _scratch_dirs()
    assert Path(index.chroma_client.get_settings().persist_directory) == scratch
    index.close()
    index.close()
    assert not scratch.exists()


def test_a_named_in_memory_collection_is_shared_and_kept() -> None:
    name = "qta_shared_test"
    first = chroma_tool_index(KeywordEmbeddings(), collection_name=name)
    try:
        first.add_tools(_catalogue("a", 3))
        second = chroma_tool_index(KeywordEmbeddings(), collection_name=name)
        del second
        gc.collect()
        assert first.chroma_collection().count() == 3
    finally:
        first.vectorstore.delete_collection()


def test_concurrent_readers_get_the_sequential_results() -> None:
    tools = [*(dict(t) for t in TOOLS), *(t.to_dict() for t in _catalogue("a", 50))]
    retriever = QTARetriever(tools=tools, embeddings=KeywordEmbeddings(), rewriter=None, k=3)
    queries = [f"a_tool_{i % 50} stock weather email" for i in range(200)]
    expected = [[d.id for d in retriever.invoke(q)] for q in queries]

    async def many() -> list[list[str]]:
        results = await asyncio.gather(*(retriever.ainvoke(q) for q in queries))
        return [[d.id for d in docs] for docs in results]

    assert asyncio.run(many()) == expected
    with ThreadPoolExecutor(max_workers=16) as pool:
        threaded = list(pool.map(lambda q: [d.id for d in retriever.invoke(q)], queries))
    assert threaded == expected
