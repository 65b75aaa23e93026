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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from qta_integrations.tools import Tool, ToolCatalog

__all__ = [
    "ExactToolIndex",
    "LlamaIndexToolIndex",
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
    flat = {
        k: v for k, v in tool.metadata.items() if isinstance(v, (str, int, float, bool))
    }
    return {**flat, "tool_id": tool.id, "tool_name": tool.name}


class VectorStoreToolIndex(ToolIndex):
    """A `ToolIndex` over any LangChain ``VectorStore``.

    Tools are added with their id as the document id (stores such as Chroma upsert by id, so
    indexing twice changes nothing) and ``tool_id`` / ``tool_name`` in the metadata. Search
    uses the store's ``similarity_search_with_relevance_scores``, so scores are in [0, 1].

    Args:
        vectorstore: The LangChain vector store. It must have an embedding function.

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

    def __init__(self, vectorstore: Any) -> None:
        self.vectorstore = vectorstore

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
        pairs = self.vectorstore.similarity_search_with_relevance_scores(query, k=k)
        return [ToolHit(_doc_tool_id(doc), float(score)) for doc, score in pairs]

    async def asearch(self, query: str, k: int) -> list[ToolHit]:
        """Search through the store's async API."""
        pairs = await self.vectorstore.asimilarity_search_with_relevance_scores(query, k=k)
        return [ToolHit(_doc_tool_id(doc), float(score)) for doc, score in pairs]


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
    return VectorStoreToolIndex(store)


class LlamaIndexToolIndex(ToolIndex):
    """A `ToolIndex` over a LlamaIndex ``VectorStoreIndex`` (or any index with ``as_retriever``).

    Tools are inserted as ``TextNode``s whose ``id_`` is the tool id, so re-inserting replaces.
    """

    def __init__(self, index: Any) -> None:
        self.index = index

    def add_tools(self, tools: Sequence[Tool]) -> None:
        """Insert tools as nodes keyed by tool id."""
        from llama_index.core.schema import TextNode

        nodes = [TextNode(id_=t.id, text=t.text, metadata=_tool_metadata(t)) for t in tools]
        existing = set(getattr(self.index, "index_struct", None) and self.index.index_struct.nodes_dict or ())
        stale = [n.id_ for n in nodes if n.id_ in existing]
        if stale:
            self.index.delete_nodes(stale)
        self.index.insert_nodes(nodes)

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
    return ToolHit(str(node.metadata.get("tool_id", node.node_id)), float(node_with_score.score or 0.0))


class ExactToolIndex(ToolIndex):
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
        query_vectors = _normalise(np.asarray(self.embeddings.embed_documents(list(queries))))
        return np.asarray(query_vectors @ self._matrix.T)

    def rank_all(self, queries: Sequence[str]) -> list[list[str]]:
        """The full ranking of tool ids for each query, best first (ties by catalogue order)."""
        return [[self._ids[i] for i in np.argsort(-row, kind="stable")] for row in self.scores(queries)]

    def search_many(self, queries: Sequence[str], k: int) -> list[list[ToolHit]]:
        """Top ``k`` for each query, embedding all queries in one batch."""
        results = []
        for row in self.scores(queries):
            order = np.argsort(-row, kind="stable")[:k]
            results.append([ToolHit(self._ids[i], float(row[i])) for i in order])
        return results

    def search(self, query: str, k: int) -> list[ToolHit]:
        """Top ``k`` tools for one query."""
        return self.search_many([query], k)[0]


def _normalise(matrix: np.ndarray) -> np.ndarray:
    matrix = matrix.astype(np.float32, copy=False)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)
