"""The tool index: where tool texts are embedded and searched.

`ToolIndex` is the one interface the core searches through. Three backends:

* `VectorStoreToolIndex` over any LangChain ``VectorStore`` (embedded Chroma by default, built
  by `chroma_tool_index`; a Chroma server or a user's own store works the same way);
* `LlamaIndexToolIndex` over a LlamaIndex ``VectorStoreIndex``;
* `ExactToolIndex`, brute-force cosine over an in-memory matrix. It gives the frozen
  retriever's exact ranking of the *whole* catalogue, which DPO pair construction needs.

Scores are similarities: higher is better (cosine for normalised embeddings).
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from qta_integrations.tools import Tool, ToolCatalog

__all__ = [
    "ExactToolIndex",
    "LlamaIndexToolIndex",
    "ScoredToolIndex",
    "ToolHit",
    "ToolIndex",
    "VectorStoreToolIndex",
    "chroma_tool_index",
]

logger = logging.getLogger(__name__)

DEFAULT_COLLECTION_NAME = "qta_tools"


@dataclass(frozen=True)
class ToolHit:
    """One search result: a tool id and its similarity to the query (higher is better)."""

    tool_id: str
    score: float


class ToolIndex(ABC):
    """Search a tool catalogue by text. Subclasses implement `add_tools` and `search`."""

    @abstractmethod
    def add_tools(self, tools: Sequence[Tool]) -> None:
        """Insert or update (upsert, keyed by tool id) the given tools."""

    @abstractmethod
    def search(self, query: str, k: int) -> list[ToolHit]:
        """Return up to ``k`` tools most similar to ``query``, best first."""

    async def asearch(self, query: str, k: int) -> list[ToolHit]:
        """Async `search`. The default runs it in a worker thread, off the event loop."""
        return await asyncio.to_thread(self.search, query, k)

    def search_many(self, queries: Sequence[str], k: int) -> list[list[ToolHit]]:
        """`search` for several queries. Backends override this to batch the embedding."""
        return [self.search(q, k) for q in queries]


def _tool_metadata(tool: Tool) -> dict[str, Any]:
    # Vector stores only take flat scalar metadata.
    flat = {k: v for k, v in tool.metadata.items() if isinstance(v, (str, int, float, bool))}
    return {**flat, "tool_id": tool.id, "tool_name": tool.name}


class VectorStoreToolIndex(ToolIndex):
    """A `ToolIndex` over any LangChain ``VectorStore``.

    Tools are added with their id as the document id (stores such as Chroma upsert by id, so
    indexing twice changes nothing) and ``tool_id`` / ``tool_name`` in the metadata. Search
    uses the store's ``similarity_search_with_relevance_scores``; a store without a relevance
    function (``InMemoryVectorStore``) gives its raw scores, which must then be similarities
    (higher is better), as ``InMemoryVectorStore``'s cosine is.

    Args:
        vectorstore: The LangChain vector store. It must have an embedding function.
        distance_to_similarity: Search with the store's raw distances and map them through this
            function instead (`chroma_tool_index` passes ``1 - cosine distance``, the exact
            cosine, which LangChain's relevance check would flag when it is negative).

    Example:
        .. code-block:: python

            from langchain_core.embeddings import DeterministicFakeEmbedding
            from langchain_core.vectorstores import InMemoryVectorStore
            from qta_integrations.index import VectorStoreToolIndex
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
    ) -> None:
        self.vectorstore = vectorstore
        self.distance_to_similarity = distance_to_similarity

    def _hits(self, pairs: Sequence[tuple[Any, float]], *, raw: bool) -> list[ToolHit]:
        convert = self.distance_to_similarity if raw and self.distance_to_similarity else float
        return [ToolHit(_doc_tool_id(doc), float(convert(score))) for doc, score in pairs]

    def add_tools(self, tools: Sequence[Tool]) -> None:
        """Upsert tools into the store, keyed by tool id."""
        if not tools:
            return
        self.vectorstore.add_texts(
            [t.text for t in tools],
            metadatas=[_tool_metadata(t) for t in tools],
            ids=[t.id for t in tools],
        )

    def search(self, query: str, k: int) -> list[ToolHit]:
        """Search the store with its own embedding of ``query``."""
        if self.distance_to_similarity is None:
            try:
                pairs = self.vectorstore.similarity_search_with_relevance_scores(query, k=k)
                return self._hits(pairs, raw=False)
            except NotImplementedError:  # no relevance function (InMemoryVectorStore): raw scores
                pass
        return self._hits(self.vectorstore.similarity_search_with_score(query, k=k), raw=True)

    async def asearch(self, query: str, k: int) -> list[ToolHit]:
        """Search through the store's async API."""
        if self.distance_to_similarity is None:
            try:
                pairs = await self.vectorstore.asimilarity_search_with_relevance_scores(query, k=k)
                return self._hits(pairs, raw=False)
            except NotImplementedError:
                pass
        pairs = await self.vectorstore.asimilarity_search_with_score(query, k=k)
        return self._hits(pairs, raw=True)


def _doc_tool_id(doc: Any) -> str:
    tool_id = doc.metadata.get("tool_id", doc.id)
    if tool_id is None:
        msg = (
            "A document in the vector store has neither a 'tool_id' in its metadata nor an id; "
            "index tools through QTARetriever (or ToolIndex.add_tools) so each carries its id."
        )
        raise ValueError(msg)
    return str(tool_id)


def chroma_tool_index(
    embeddings: Embeddings,
    *,
    persist_directory: str | os.PathLike[str] | None = None,
    collection_name: str | None = None,
    client: Any | None = None,
) -> VectorStoreToolIndex:
    """An embedded Chroma collection (cosine space, telemetry off) wrapped as a `ToolIndex`.

    Args:
        embeddings: The embedding model (Chroma's default would download one: we never use it).
        persist_directory: Keep the index on disk here; in memory when None.
        collection_name: Defaults to ``"qta_tools"`` on disk, and to a fresh unique name in
            memory (in-memory Chroma clients share one process-wide store).
        client: An existing ``chromadb`` client, e.g. ``chromadb.HttpClient`` for a server.
    """
    import chromadb
    from chromadb.config import Settings
    from langchain_chroma import Chroma

    if collection_name is None:
        collection_name = (
            DEFAULT_COLLECTION_NAME
            if persist_directory is not None or client is not None
            else f"{DEFAULT_COLLECTION_NAME}_{uuid.uuid4().hex[:12]}"
        )
    settings = Settings(anonymized_telemetry=False)
    if client is None:
        client = (
            chromadb.PersistentClient(path=str(persist_directory), settings=settings)
            if persist_directory is not None
            else chromadb.EphemeralClient(settings=settings)
        )
    store = Chroma(
        collection_name=collection_name,
        embedding_function=embeddings,
        client=client,
        collection_metadata={"hnsw:space": "cosine"},
    )
    return VectorStoreToolIndex(store, distance_to_similarity=_cosine_from_distance)


def _cosine_from_distance(distance: float) -> float:
    return 1.0 - distance


class LlamaIndexToolIndex(ToolIndex):
    """A `ToolIndex` over a LlamaIndex ``VectorStoreIndex`` (or any index with ``as_retriever``).

    Tools are inserted as ``TextNode``s whose ``id_`` is the tool id. `add_tools` upserts: the
    nodes of tools already in the index are deleted before the new ones are inserted, so
    indexing the same tools twice leaves one node per tool.
    """

    def __init__(self, index: Any) -> None:
        self.index = index

    def add_tools(self, tools: Sequence[Tool]) -> None:
        """Upsert tools as nodes keyed by tool id."""
        from llama_index.core.schema import TextNode

        if not tools:
            return
        nodes = []
        for tool in tools:
            metadata = _tool_metadata(tool)
            # Embed (and show an LLM) the tool text alone, as the other backends do.
            hidden = list(metadata)
            nodes.append(
                TextNode(
                    id_=tool.id,
                    text=tool.text,
                    metadata=metadata,
                    excluded_embed_metadata_keys=hidden,
                    excluded_llm_metadata_keys=hidden,
                )
            )
        self._delete_existing([n.id_ for n in nodes])
        self.index.insert_nodes(nodes)

    def _delete_existing(self, ids: list[str]) -> None:
        vector_store = getattr(self.index, "vector_store", None)
        if getattr(vector_store, "stores_text", False):
            # The store keeps the nodes (Chroma, Qdrant, ...): delete by id (unknown ids: no-op).
            try:
                self.index.delete_nodes(ids)
            except NotImplementedError:
                logger.warning(
                    "%s cannot delete nodes by id; re-indexed tools rely on it upserting by id.",
                    type(vector_store).__name__,
                )
            return
        # Otherwise the index tracks nodes in its own table (and docstore): delete the known ones
        # from the vector store, that table and the docstore.
        index_struct = getattr(self.index, "index_struct", None)
        known = set(getattr(index_struct, "nodes_dict", None) or ())
        present = [i for i in ids if i in known]
        if present:
            self.index.delete_nodes(present, delete_from_docstore=True)

    def _retriever(self, k: int) -> Any:
        return self.index.as_retriever(similarity_top_k=k)

    def search(self, query: str, k: int) -> list[ToolHit]:
        """Search with the index's own retriever."""
        return [_node_hit(n) for n in self._retriever(k).retrieve(query)]

    async def asearch(self, query: str, k: int) -> list[ToolHit]:
        """Search with the index's own async retriever."""
        return [_node_hit(n) for n in await self._retriever(k).aretrieve(query)]


def _node_hit(node_with_score: Any) -> ToolHit:
    node = node_with_score.node
    return ToolHit(
        str(node.metadata.get("tool_id", node.node_id)), float(node_with_score.score or 0.0)
    )


class ScoredToolIndex(ToolIndex):
    """An index that scores every tool for a query at once (a ``queries x tools`` matrix).

    Subclasses implement `scores` and keep tool ids in ``_ids`` (matrix column order);
    searching and full rankings are derived from the matrix here.
    """

    _ids: list[str]

    @abstractmethod
    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """A ``len(queries) x len(ids)`` matrix of scores, higher is better."""

    def rank_all(self, queries: Sequence[str]) -> list[list[str]]:
        """The full ranking of tool ids for each query, best first (ties by catalogue order)."""
        return self.rank_scores(self.scores(queries))

    def rank_scores(self, scores: np.ndarray) -> list[list[str]]:
        """Full rankings from a ``queries x tools`` matrix in `scores`' column order."""
        return [[self._ids[i] for i in np.argsort(-row, kind="stable")] for row in scores]

    def search_many(self, queries: Sequence[str], k: int) -> list[list[ToolHit]]:
        """Top ``k`` for each query, scoring all queries in one batch."""
        results = []
        for row in self.scores(queries):
            order = np.argsort(-row, kind="stable")[:k]
            results.append([ToolHit(self._ids[i], float(row[i])) for i in order])
        return results

    def search(self, query: str, k: int) -> list[ToolHit]:
        """Top ``k`` tools for one query."""
        return self.search_many([query], k)[0]


class ExactToolIndex(ScoredToolIndex):
    """Exact cosine search over an in-memory matrix of tool embeddings.

    This is the frozen retriever's full ranking: `rank_all` orders the *whole* catalogue,
    which is what the trainer's ranking function and the evaluation harness need.
    """

    def __init__(self, embeddings: Embeddings, tools: Sequence[Tool] = ()) -> None:
        self.embeddings = embeddings
        self._ids: list[str] = []
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        if tools:
            self.add_tools(tools)

    @classmethod
    def from_catalog(cls, catalog: ToolCatalog, embeddings: Embeddings) -> ExactToolIndex:
        """Embed every tool in ``catalog``."""
        return cls(embeddings, list(catalog))

    def add_tools(self, tools: Sequence[Tool]) -> None:
        """Embed and upsert tools."""
        if not tools:
            return
        vectors = _normalise(np.asarray(self.embeddings.embed_documents([t.text for t in tools])))
        position = {tool_id: i for i, tool_id in enumerate(self._ids)}
        new_rows = []
        for tool, vector in zip(tools, vectors, strict=True):
            if tool.id in position:
                self._matrix[position[tool.id]] = vector
            else:
                position[tool.id] = len(self._ids)
                self._ids.append(tool.id)
                new_rows.append(vector)
        if new_rows:
            stacked = np.stack(new_rows).astype(np.float32)
            self._matrix = stacked if self._matrix.size == 0 else np.vstack([self._matrix, stacked])

    @property
    def ids(self) -> list[str]:
        """Indexed tool ids, in insertion order."""
        return list(self._ids)

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """Cosine similarity of each query to each tool, shape ``(len(queries), n_tools)``."""
        if not queries:
            return np.zeros((0, len(self._ids)), dtype=np.float32)
        query_vectors = _normalise(np.asarray(self.embeddings.embed_documents(list(queries))))
        return np.asarray(query_vectors @ self._matrix.T)


def _normalise(matrix: np.ndarray) -> np.ndarray:
    matrix = matrix.astype(np.float32, copy=False)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)
