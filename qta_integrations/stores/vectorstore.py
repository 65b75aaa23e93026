"""`VectorStoreToolIndex`: a `ToolIndex` over any LangChain ``VectorStore``.

A user's own store (an ``InMemoryVectorStore``, a Qdrant or pgvector store, ...) is wrapped as
it is. The embedded Chroma default is a subclass with Chroma's extra powers (listing, batched
search, locking, saving): `qta_integrations.stores.chroma.ChromaToolIndex`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from qta_integrations.embeddings import embed_queries
from qta_integrations.stores.base import (
    REFERENCE_FORMAT,
    IndexEntry,
    IndexHit,
    ToolIndex,
    listed_entries,
    stored_hit,
)
from qta_integrations.stores.records import RecordManager

__all__ = ["VectorStoreToolIndex"]


class VectorStoreToolIndex(ToolIndex):
    """A `ToolIndex` over any LangChain ``VectorStore``.

    Entries are added with their id as the document id (stores such as Chroma upsert by id, so
    indexing twice changes nothing) and flat metadata (``qta_kind``, ``qta_tool_ids``,
    ``qta_hash``; ``tool_id`` / ``tool_name`` for tools). Search uses the store's
    ``similarity_search_with_relevance_scores``; a store without a relevance function
    (``InMemoryVectorStore``) gives its raw scores, which must then be similarities (higher is
    better), as ``InMemoryVectorStore``'s cosine is.

    A batch of queries (`search_entries_many`) is embedded in one call where the store's
    by-vector search is known to return similarities (``InMemoryVectorStore``).

    Args:
        vectorstore: The LangChain vector store. It must have an embedding function.
        distance_to_similarity: Search with the store's raw distances and map them through this
            function instead (the embedded Chroma passes ``1 - cosine distance``, the exact
            cosine, which LangChain's relevance check would flag when it is negative).
        record_manager: Where re-indexing records what it wrote; default in memory.

    Example:
        .. code-block:: python

            from langchain_core.embeddings import DeterministicFakeEmbedding
            from langchain_core.vectorstores import InMemoryVectorStore
            from qta_integrations.stores import VectorStoreToolIndex
            from qta_integrations.tools import Tool

            index = VectorStoreToolIndex(InMemoryVectorStore(DeterministicFakeEmbedding(size=16)))
            index.add_tools([Tool(id="w", name="weather", description="Weather for a city.")])
            print(index.search("weather", k=1)[0].tool_id)  # w
    """

    def __init__(
        self,
        vectorstore: Any,
        *,
        distance_to_similarity: Callable[[float], float] | None = None,
        record_manager: RecordManager | None = None,
    ) -> None:
        self.vectorstore = vectorstore
        self.distance_to_similarity = distance_to_similarity
        self._record_manager = record_manager

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.vectorstore).__name__})"

    # -- writing ----------------------------------------------------------------------

    def upsert(self, entries: Sequence[IndexEntry]) -> None:
        """Upsert entries into the store, keyed by entry id."""
        if not entries:
            return
        with self.write_lock():
            self.vectorstore.add_texts(
                [e.text for e in entries],
                metadatas=[e.stored_metadata() for e in entries],
                ids=[e.id for e in entries],
            )

    def delete(self, ids: Sequence[str]) -> None:
        """Delete entries by id with the store's ``delete(ids=...)``."""
        if not ids:
            return
        with self.write_lock():
            self.vectorstore.delete(ids=list(ids))

    def list_entries(self, kind: str | None = None) -> dict[str, str | None] | None:
        """List an ``InMemoryVectorStore``'s documents; None for stores that cannot list."""
        from langchain_core.vectorstores import InMemoryVectorStore

        if not isinstance(self.vectorstore, InMemoryVectorStore):
            return None
        rows: list[tuple[str, Mapping[str, Any] | None]] = [
            (i, d.get("metadata")) for i, d in self.vectorstore.store.items()
        ]
        return listed_entries(rows, kind)

    # -- searching --------------------------------------------------------------------

    def _hits(self, pairs: Sequence[tuple[Any, float]], *, raw: bool) -> list[IndexHit]:
        convert = self.distance_to_similarity if raw and self.distance_to_similarity else float
        return [stored_hit(doc.id, doc.metadata, float(convert(score))) for doc, score in pairs]

    def search_entries(self, query: str, k: int) -> list[IndexHit]:
        """Search the store with its own embedding of ``query``."""
        if self.distance_to_similarity is None:
            try:
                pairs = self.vectorstore.similarity_search_with_relevance_scores(query, k=k)
                return self._hits(pairs, raw=False)
            except NotImplementedError:  # no relevance function (InMemoryVectorStore): raw scores
                pass
        return self._hits(self.vectorstore.similarity_search_with_score(query, k=k), raw=True)

    def search_entries_many(self, queries: Sequence[str], k: int) -> list[list[IndexHit]]:
        """Search several queries; an ``InMemoryVectorStore`` embeds them in one call.

        Other stores are searched one query at a time through their own API, because what
        their by-vector searches return (similarities or distances) differs from store to store.
        """
        from langchain_core.vectorstores import InMemoryVectorStore

        if len(queries) < 2 or not isinstance(self.vectorstore, InMemoryVectorStore):
            return [self.search_entries(q, k) for q in queries]
        vectors = embed_queries(self.vectorstore.embeddings, list(queries))
        search = self.vectorstore.similarity_search_with_score_by_vector
        return [self._hits(search(vector, k=k), raw=True) for vector in vectors]

    async def asearch_entries(self, query: str, k: int) -> list[IndexHit]:
        """Search through the store's async API."""
        if self.distance_to_similarity is None:
            try:
                pairs = await self.vectorstore.asimilarity_search_with_relevance_scores(query, k=k)
                return self._hits(pairs, raw=False)
            except NotImplementedError:
                pass
        pairs = await self.vectorstore.asimilarity_search_with_score(query, k=k)
        return self._hits(pairs, raw=True)

    # -- saving -----------------------------------------------------------------------

    def persist_reference(self, directory: Path) -> dict[str, Any]:
        """A reference saying that the store must be passed again at load time."""
        return {
            "format": REFERENCE_FORMAT,
            "backend": "vectorstore",
            "type": type(self.vectorstore).__name__,
        }
