"""`LlamaIndexToolIndex`: a `ToolIndex` over a LlamaIndex ``VectorStoreIndex``."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qta_integrations.stores.base import (
    REFERENCE_FORMAT,
    IndexEntry,
    IndexHit,
    ToolIndex,
    listed_entries,
    stored_hit,
)

__all__ = ["LLAMA_INDEX_DIR", "LlamaIndexToolIndex"]

logger = logging.getLogger(__name__)

LLAMA_INDEX_DIR = "llama_index"
"""Where a saved retriever keeps LlamaIndex's storage files, inside its directory."""


class LlamaIndexToolIndex(ToolIndex):
    """A `ToolIndex` over a LlamaIndex ``VectorStoreIndex`` (or any index with ``as_retriever``).

    Entries are inserted as ``TextNode``s whose ``id_`` is the entry id. `upsert` replaces:
    the nodes of entries already in the index are deleted before the new ones are inserted, so
    indexing the same tools twice leaves one node per tool.
    """

    def __init__(self, index: Any) -> None:
        self.index = index

    def upsert(self, entries: Sequence[IndexEntry]) -> None:
        """Upsert entries as nodes keyed by entry id."""
        from llama_index.core.schema import TextNode

        if not entries:
            return
        nodes = []
        for entry in entries:
            metadata = entry.stored_metadata()
            # Embed (and show an LLM) the entry text alone, as the other backends do.
            hidden = list(metadata)
            nodes.append(
                TextNode(
                    id_=entry.id,
                    text=entry.text,
                    metadata=metadata,
                    excluded_embed_metadata_keys=hidden,
                    excluded_llm_metadata_keys=hidden,
                )
            )
        self._delete_existing([n.id_ for n in nodes])
        self.index.insert_nodes(nodes)

    def delete(self, ids: Sequence[str]) -> None:
        """Delete nodes by id (unknown ids are ignored)."""
        if ids:
            self._delete_existing(list(ids))

    def _stores_text(self) -> bool:
        return bool(getattr(getattr(self.index, "vector_store", None), "stores_text", False))

    def _delete_existing(self, ids: list[str]) -> None:
        if self._stores_text():
            # The store keeps the nodes (Chroma, Qdrant, ...): delete by id (unknown ids: no-op).
            try:
                self.index.delete_nodes(ids)
            except NotImplementedError:
                logger.warning(
                    "%s cannot delete nodes by id; re-indexed entries rely on it upserting by id.",
                    type(self.index.vector_store).__name__,
                )
            return
        # Otherwise the index tracks nodes in its own table (and docstore): delete the known ones
        # from the vector store, that table and the docstore.
        present = [i for i in ids if i in self._known_ids()]
        if present:
            self.index.delete_nodes(present, delete_from_docstore=True)

    def _known_ids(self) -> set[str]:
        index_struct = getattr(self.index, "index_struct", None)
        return set(getattr(index_struct, "nodes_dict", None) or ())

    def list_entries(self, kind: str | None = None) -> dict[str, str | None] | None:
        """List the index's own node table, or the vector store's ``get_nodes()``."""
        if not self._stores_text():
            docstore = self.index.docstore
            rows = []
            for node_id in self._known_ids():
                node = docstore.get_node(node_id, raise_error=False)
                rows.append((node_id, node.metadata if node is not None else None))
            return listed_entries(rows, kind)
        try:
            nodes = self.index.vector_store.get_nodes()
        except NotImplementedError:
            return None
        return listed_entries([(n.node_id, n.metadata) for n in nodes], kind)

    def _retriever(self, k: int) -> Any:
        return self.index.as_retriever(similarity_top_k=k)

    def search_entries(self, query: str, k: int) -> list[IndexHit]:
        """Search with the index's own retriever."""
        return [_node_hit(n) for n in self._retriever(k).retrieve(query)]

    async def asearch_entries(self, query: str, k: int) -> list[IndexHit]:
        """Search with the index's own async retriever."""
        return [_node_hit(n) for n in await self._retriever(k).aretrieve(query)]

    def persist_reference(self, directory: Path) -> dict[str, Any]:
        """Save LlamaIndex's storage files to ``directory / "llama_index"``.

        An index whose vector store keeps the nodes elsewhere (Chroma, Qdrant, ...) is
        referenced only: pass it again to `load_index` as ``llama_index=``.
        """
        if self._stores_text():
            return {
                "format": REFERENCE_FORMAT,
                "backend": "llama_index_external",
                "type": type(self.index.vector_store).__name__,
            }
        target = Path(directory) / LLAMA_INDEX_DIR
        shutil.rmtree(target, ignore_errors=True)
        self.index.storage_context.persist(persist_dir=str(target))
        return {"format": REFERENCE_FORMAT, "backend": "llama_index", "path": LLAMA_INDEX_DIR}


def _node_hit(node_with_score: Any) -> IndexHit:
    node = node_with_score.node
    return stored_hit(node.node_id, node.metadata, float(node_with_score.score or 0.0))
