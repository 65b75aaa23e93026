from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore
from llama_index.core import VectorStoreIndex
from llama_index.core.schema import BaseNode, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    VectorStoreQuery,
    VectorStoreQueryResult,
)
from pydantic import PrivateAttr

from qta_integrations.embeddings import to_llama_index_embeddings
from qta_integrations.stores import (
    ExactToolIndex,
    IndexEntry,
    IndexHit,
    LlamaIndexToolIndex,
    ToolHit,
    VectorStoreToolIndex,
    chroma_tool_index,
    load_index,
)
from qta_integrations.testing import KeywordEmbeddings
from qta_integrations.tools import Tool, ToolCatalog
from tests.conftest import CountingEmbeddings

QUERIES = {
    "weather forecast city": "weather",
    "stock ticker price": "stock_quote",
    "send an email message": "email",
}


@pytest.fixture
def catalog(tool_dicts: list[dict[str, str]]) -> ToolCatalog:
    return ToolCatalog.from_dicts(tool_dicts)


@pytest.fixture
def chroma_index() -> Iterator[VectorStoreToolIndex]:
    index = chroma_tool_index(KeywordEmbeddings())
    try:
        yield index
    finally:
        index.vectorstore.delete_collection()


def _scores(hits: list[ToolHit]) -> dict[str, float]:
    # Ties (equal scores) may come back in any order, so compare id -> score.
    return {h.tool_id: pytest.approx(h.score, abs=1e-6) for h in hits}


def _assert_finds_the_right_tools(index: Any) -> None:
    for query, expected in QUERIES.items():
        hits = index.search(query, k=3)
        assert hits[0].tool_id == expected
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)


def test_chroma_uses_tool_ids_and_cosine_space(
    chroma_index: VectorStoreToolIndex, catalog: ToolCatalog
) -> None:
    chroma_index.add_tools(list(catalog))
    store = chroma_index.vectorstore
    stored = store.get(include=["metadatas", "documents"])
    assert sorted(stored["ids"]) == sorted(catalog.ids)
    by_id = dict(zip(stored["ids"], stored["metadatas"], strict=True))
    assert by_id["weather"]["tool_id"] == "weather"
    assert by_id["weather"]["tool_name"] == "get_weather"
    assert catalog["weather"].text in stored["documents"]
    assert chroma_index.chroma_collection().metadata["hnsw:space"] == "cosine"
    _assert_finds_the_right_tools(chroma_index)
    hits = chroma_index.search("weather forecast city", k=len(catalog))
    assert all(0.0 <= h.score <= 1.0 for h in hits)


def test_chroma_indexing_twice_changes_nothing(
    chroma_index: VectorStoreToolIndex, catalog: ToolCatalog
) -> None:
    chroma_index.add_tools(list(catalog))
    before = _scores(chroma_index.search("weather forecast city", k=len(catalog)))
    chroma_index.add_tools(list(catalog))
    chroma_index.add_tools([])
    assert chroma_index.chroma_collection().count() == len(catalog)
    assert _scores(chroma_index.search("weather forecast city", k=len(catalog))) == before


def test_chroma_upsert_replaces_a_changed_tool(
    chroma_index: VectorStoreToolIndex, catalog: ToolCatalog
) -> None:
    chroma_index.add_tools(list(catalog))
    changed = Tool(id="email", name="send_email", description="Weather forecast for a city.")
    chroma_index.add_tools([changed])
    assert chroma_index.chroma_collection().count() == len(catalog)
    doc = chroma_index.vectorstore.get_by_ids(["email"])[0]
    assert doc.page_content == changed.text


def test_in_memory_chroma_indexes_are_isolated(catalog: ToolCatalog) -> None:
    first, second = chroma_tool_index(KeywordEmbeddings()), chroma_tool_index(KeywordEmbeddings())
    try:
        first.add_tools(list(catalog))
        assert second.chroma_collection().count() == 0
    finally:
        first.vectorstore.delete_collection()
        second.vectorstore.delete_collection()


async def test_chroma_async_search_equals_sync(
    chroma_index: VectorStoreToolIndex, catalog: ToolCatalog
) -> None:
    chroma_index.add_tools(list(catalog))
    for query in QUERIES:
        assert _scores(await chroma_index.asearch(query, k=len(catalog))) == _scores(
            chroma_index.search(query, k=len(catalog))
        )
    many = chroma_index.search_many(list(QUERIES), k=len(catalog))
    assert [_scores(h) for h in many] == [
        _scores(chroma_index.search(q, k=len(catalog))) for q in QUERIES
    ]


def test_persistent_chroma_round_trip_needs_no_embedding(
    tmp_path: Path, catalog: ToolCatalog
) -> None:
    writer = chroma_tool_index(KeywordEmbeddings(), persist_directory=tmp_path / "db")
    writer.add_tools(list(catalog))
    expected = writer.search("stock ticker price", k=3)
    embeddings = CountingEmbeddings()
    reader = chroma_tool_index(embeddings, persist_directory=tmp_path / "db")
    assert reader.chroma_collection().count() == len(catalog)
    assert reader.search("stock ticker price", k=3) == expected
    assert embeddings.documents_embedded == 0


def test_langchain_in_memory_vector_store(catalog: ToolCatalog) -> None:
    store = InMemoryVectorStore(KeywordEmbeddings())
    index = VectorStoreToolIndex(store)
    index.add_tools(list(catalog))
    index.add_tools(list(catalog))
    assert sorted(store.store) == sorted(catalog.ids)
    _assert_finds_the_right_tools(index)


def test_documents_without_a_tool_id_use_their_id_or_are_rejected() -> None:
    store = InMemoryVectorStore(KeywordEmbeddings())
    store.add_documents([Document(id="raw", page_content="weather")])
    assert VectorStoreToolIndex(store).search("weather", k=1)[0].tool_id == "raw"

    class NoIdStore:
        def similarity_search_with_relevance_scores(
            self, query: str, k: int
        ) -> list[tuple[Document, float]]:
            return [(Document(page_content="weather"), 0.5)]

    with pytest.raises(ValueError, match="neither a 'tool_id'"):
        VectorStoreToolIndex(NoIdStore()).search("weather", k=1)


def test_exact_index_ranks_the_whole_catalogue(catalog: ToolCatalog) -> None:
    index = ExactToolIndex.from_catalog(catalog, KeywordEmbeddings())
    assert index.ids == catalog.ids
    rankings = index.rank_all(list(QUERIES))
    for ranking, expected in zip(rankings, QUERIES.values(), strict=True):
        assert sorted(ranking) == sorted(catalog.ids)
        assert ranking[0] == expected
    _assert_finds_the_right_tools(index)
    batched = index.search_many(list(QUERIES), k=2)
    assert [_scores(h) for h in batched] == [_scores(index.search(q, k=2)) for q in QUERIES]
    scores = index.scores(["weather forecast city"])
    assert scores.shape == (1, len(catalog))
    assert float(scores.max()) <= 1.0 + 1e-6


def test_exact_index_with_no_queries(catalog: ToolCatalog) -> None:
    index = ExactToolIndex.from_catalog(catalog, KeywordEmbeddings())
    assert index.scores([]).shape == (0, len(catalog))
    assert index.search_many([], k=3) == []
    assert index.rank_all([]) == []


def test_exact_index_ties_keep_catalogue_order(catalog: ToolCatalog) -> None:
    index = ExactToolIndex.from_catalog(catalog, KeywordEmbeddings())
    # No word in common with any tool: every score is 0, so the order is the catalogue's.
    assert index.rank_all(["zzzz qqqq"])[0] == catalog.ids


def test_exact_index_upserts_by_id(catalog: ToolCatalog) -> None:
    embeddings = CountingEmbeddings()
    index = ExactToolIndex(embeddings, list(catalog))
    index.add_tools([Tool(id="email", name="", description="stock ticker price")])
    index.add_tools([Tool(id="new", name="new_tool", description="brand new thing")])
    assert embeddings.documents_embedded == len(catalog) + 2  # one embedding per new text
    assert index.ids == [*catalog.ids, "new"]
    assert index.search("stock ticker price", k=1)[0] == ToolHit("email", pytest.approx(1.0))
    assert index.scores(["stock ticker price"]).shape == (1, len(catalog) + 1)


# -- LlamaIndex -------------------------------------------------------------------------------


class AppendOnlyTextStore(BasePydanticVectorStore):
    """A vector store that keeps the nodes itself and never upserts (like many remote stores)."""

    stores_text: bool = True
    supports_delete: bool = True
    _rows: list[tuple[BaseNode, list[float]]] = PrivateAttr(default_factory=list)

    @property
    def client(self) -> Any:
        return None

    def add(self, nodes: Any, **kwargs: Any) -> list[str]:
        self._rows.extend((node, node.get_embedding()) for node in nodes)
        return [node.node_id for node in nodes]

    def delete(self, ref_doc_id: str, **kwargs: Any) -> None:
        self._rows = [r for r in self._rows if r[0].ref_doc_id != ref_doc_id]

    def delete_nodes(self, node_ids: Any = None, filters: Any = None, **kwargs: Any) -> None:
        if not self.supports_delete:
            raise NotImplementedError("delete_nodes not implemented")
        self._rows = [r for r in self._rows if r[0].node_id not in set(node_ids or ())]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        q = np.asarray(query.query_embedding)
        scored = sorted(
            ((float(np.dot(q, emb)), node) for node, emb in self._rows),
            key=lambda pair: -pair[0],
        )[: query.similarity_top_k]
        return VectorStoreQueryResult(
            nodes=[n for _, n in scored],
            similarities=[s for s, _ in scored],
            ids=[n.node_id for _, n in scored],
        )

    @property
    def ids(self) -> list[str]:
        return [node.node_id for node, _ in self._rows]


def _llama_index(vector_store: Any | None = None) -> VectorStoreIndex:
    embed_model = to_llama_index_embeddings(KeywordEmbeddings())
    if vector_store is None:
        return VectorStoreIndex(nodes=[], embed_model=embed_model)
    return VectorStoreIndex.from_vector_store(vector_store, embed_model=embed_model)


def test_llama_index_simple_store_reindexing_keeps_one_node_per_tool(catalog: ToolCatalog) -> None:
    li_index = _llama_index()
    index = LlamaIndexToolIndex(li_index)
    index.add_tools(list(catalog))
    index.add_tools(list(catalog))
    changed = Tool(id="email", name="send_email", description="Stock ticker price alerts.")
    index.add_tools([changed])
    assert sorted(li_index.index_struct.nodes_dict) == sorted(catalog.ids)
    assert len(li_index.vector_store.data.embedding_dict) == len(catalog)
    assert len(li_index.docstore.docs) == len(catalog)
    assert li_index.docstore.get_node("email").get_content() == changed.text
    hits = index.search("stock ticker price alerts", k=2)
    assert hits[0].tool_id == "email"
    assert len({h.tool_id for h in index.search("stock ticker price", k=len(catalog))}) == len(
        catalog
    )


def test_llama_index_text_store_reindexing_keeps_one_node_per_tool(catalog: ToolCatalog) -> None:
    store = AppendOnlyTextStore()
    index = LlamaIndexToolIndex(_llama_index(store))
    index.add_tools(list(catalog))
    index.add_tools(list(catalog))
    assert sorted(store.ids) == sorted(catalog.ids)
    _assert_finds_the_right_tools(index)


def test_llama_index_store_without_delete_warns(
    catalog: ToolCatalog, caplog: pytest.LogCaptureFixture
) -> None:
    store = AppendOnlyTextStore(supports_delete=False)
    index = LlamaIndexToolIndex(_llama_index(store))
    with caplog.at_level(logging.WARNING, logger="qta_integrations.stores.llama_index"):
        index.add_tools(list(catalog))
    assert "AppendOnlyTextStore cannot delete nodes by id" in caplog.text


async def test_llama_index_search_and_async_search(catalog: ToolCatalog) -> None:
    index = LlamaIndexToolIndex(_llama_index())
    index.add_tools(list(catalog))
    _assert_finds_the_right_tools(index)
    for query in QUERIES:
        assert await index.asearch(query, k=3) == index.search(query, k=3)


def test_llama_index_uses_the_node_id_when_metadata_has_no_tool_id() -> None:
    li_index = _llama_index()
    li_index.insert_nodes([TextNode(id_="raw", text="weather forecast")])
    assert LlamaIndexToolIndex(li_index).search("weather", k=1)[0].tool_id == "raw"


# -- saving and loading ------------------------------------------------------------------------

SAVE_EXAMPLE = IndexEntry.for_example("forecast for Oslo tomorrow", ["weather"])


def _fill(index: Any, catalog: ToolCatalog) -> None:
    index.add_tools(list(catalog))
    index.upsert([SAVE_EXAMPLE])


def _same_after_load(index: Any, loaded: Any, embeddings: CountingEmbeddings) -> None:
    assert embeddings.documents_embedded == 0  # nothing embedded again
    assert loaded.list_entries() == index.list_entries()
    for query in [*QUERIES, "forecast for Oslo tomorrow"]:
        # All entries: tools that tie at the cut may come back in any order.
        assert _entry_scores(loaded.search_entries(query, k=10)) == _entry_scores(
            index.search_entries(query, k=10)
        )


def _entry_scores(hits: list[IndexHit]) -> dict[str, Any]:
    return {h.entry_id: (h.kind, h.tool_ids, pytest.approx(h.score, abs=1e-5)) for h in hits}


def test_in_memory_chroma_is_copied_into_the_directory(
    tmp_path: Path, catalog: ToolCatalog
) -> None:
    with chroma_tool_index(KeywordEmbeddings()) as index:
        _fill(index, catalog)
        reference = index.persist_reference(tmp_path)
        assert reference == {
            "format": 1,
            "backend": "chroma",
            "path": "chroma",
            "collection_name": "qta_tools",
        }
        embeddings = CountingEmbeddings()
        loaded = load_index(reference, tmp_path, embeddings=embeddings)
        _same_after_load(index, loaded, embeddings)


def test_on_disk_chroma_inside_the_directory_is_referenced(
    tmp_path: Path, catalog: ToolCatalog
) -> None:
    index = chroma_tool_index(KeywordEmbeddings(), persist_directory=tmp_path / "chroma")
    _fill(index, catalog)
    reference = index.persist_reference(tmp_path)
    assert reference["path"] == "chroma"
    embeddings = CountingEmbeddings()
    loaded = load_index(reference, tmp_path, embeddings=embeddings)
    assert isinstance(loaded, VectorStoreToolIndex)
    assert loaded.persist_directory == tmp_path / "chroma"
    _same_after_load(index, loaded, embeddings)


def test_on_disk_chroma_elsewhere_is_copied(tmp_path: Path, catalog: ToolCatalog) -> None:
    index = chroma_tool_index(KeywordEmbeddings(), persist_directory=tmp_path / "elsewhere")
    _fill(index, catalog)
    reference = index.persist_reference(tmp_path / "saved")
    assert reference["path"] == "chroma"
    assert (tmp_path / "saved" / "chroma").is_dir()
    embeddings = CountingEmbeddings()
    _same_after_load(
        index, load_index(reference, tmp_path / "saved", embeddings=embeddings), embeddings
    )


def test_llama_index_storage_is_saved(tmp_path: Path, catalog: ToolCatalog) -> None:
    index = LlamaIndexToolIndex(_llama_index())
    _fill(index, catalog)
    reference = index.persist_reference(tmp_path)
    assert reference == {"format": 1, "backend": "llama_index", "path": "llama_index"}
    embeddings = CountingEmbeddings()
    _same_after_load(index, load_index(reference, tmp_path, embeddings=embeddings), embeddings)


def test_exact_index_is_saved(tmp_path: Path, catalog: ToolCatalog) -> None:
    index = ExactToolIndex(KeywordEmbeddings())
    _fill(index, catalog)
    reference = index.persist_reference(tmp_path)
    embeddings = CountingEmbeddings()
    loaded = load_index(reference, tmp_path, embeddings=embeddings)
    assert isinstance(loaded, ExactToolIndex)
    _same_after_load(index, loaded, embeddings)
    assert loaded.rank_all(list(QUERIES)) == index.rank_all(list(QUERIES))


def test_a_users_own_store_must_be_passed_again(tmp_path: Path, catalog: ToolCatalog) -> None:
    store = InMemoryVectorStore(KeywordEmbeddings())
    index = VectorStoreToolIndex(store)
    _fill(index, catalog)
    reference = index.persist_reference(tmp_path)
    assert reference == {"format": 1, "backend": "vectorstore", "type": "InMemoryVectorStore"}
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="pass the same store again as vectorstore="):
        load_index(reference, tmp_path, embeddings=None)
    loaded = load_index(reference, tmp_path, embeddings=None, vectorstore=store)
    assert loaded.list_entries() == index.list_entries()

    external = LlamaIndexToolIndex(_llama_index(AppendOnlyTextStore()))
    reference = external.persist_reference(tmp_path)
    assert reference["backend"] == "llama_index_external"
    with pytest.raises(ValueError, match="pass it again as llama_index="):
        load_index(reference, tmp_path, embeddings=None)
    assert isinstance(
        load_index(reference, tmp_path, embeddings=None, llama_index=external.index),
        LlamaIndexToolIndex,
    )


@pytest.mark.parametrize(
    ("reference", "match"),
    [
        ({"format": 99, "backend": "chroma"}, "Unknown index reference format 99"),
        ({"format": 1, "backend": "faiss"}, "Unknown index backend 'faiss'"),
    ],
)
def test_bad_references_are_refused(tmp_path: Path, reference: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_index(reference, tmp_path, embeddings=None)


def test_an_index_that_cannot_be_saved_says_so(tmp_path: Path) -> None:
    from qta_integrations.evaluation import BM25ToolIndex

    with pytest.raises(TypeError, match="BM25ToolIndex cannot be saved"):
        BM25ToolIndex().persist_reference(tmp_path)
