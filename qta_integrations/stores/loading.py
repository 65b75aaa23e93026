"""`load_index`: turn a saved index reference back into an index (nothing is embedded)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from qta_integrations.stores.base import REFERENCE_FORMAT, ToolIndex
from qta_integrations.stores.chroma import chroma_tool_index
from qta_integrations.stores.exact import ExactToolIndex
from qta_integrations.stores.llama_index import LlamaIndexToolIndex
from qta_integrations.stores.vectorstore import VectorStoreToolIndex

__all__ = ["load_index"]


def load_index(
    reference: Mapping[str, Any],
    directory: Path,
    *,
    embeddings: Embeddings | None,
    vectorstore: Any | None = None,
    llama_index: Any | None = None,
) -> ToolIndex:
    """Rebuild the index that `ToolIndex.persist_reference` saved in ``directory``.

    Nothing is embedded: the saved vectors are reopened (or the passed store reused).

    Args:
        reference: The dict `ToolIndex.persist_reference` returned.
        directory: The directory it was given.
        embeddings: The embedding model used when saving (queries must be embedded alike);
            None for the default model.
        vectorstore: The user's own LangChain store, for a ``"vectorstore"`` reference.
        llama_index: The user's own LlamaIndex index, for a ``"llama_index_external"``
            reference (or to use instead of the saved LlamaIndex storage).

    Raises:
        ValueError: if the reference is of an unknown format or backend, or names a store
            that must be passed again and was not.
    """
    from qta_integrations.embeddings import resolve_embeddings

    directory = Path(directory)
    if reference.get("format") != REFERENCE_FORMAT:
        msg = (
            f"Unknown index reference format {reference.get('format')!r} in {str(directory)!r} "
            f"(this version reads {REFERENCE_FORMAT}); save it again with this version."
        )
        raise ValueError(msg)
    backend = reference.get("backend")
    if backend == "vectorstore":
        if vectorstore is None:
            msg = (
                f"The index in {str(directory)!r} is a {reference.get('type')} vector store that "
                "was not saved with it; pass the same store again as vectorstore=."
            )
            raise ValueError(msg)
        return VectorStoreToolIndex(vectorstore)
    if backend in ("llama_index", "llama_index_external") and llama_index is not None:
        return LlamaIndexToolIndex(llama_index)
    if backend == "llama_index_external":
        msg = (
            f"The index in {str(directory)!r} is a LlamaIndex index over a "
            f"{reference.get('type')}, which was not saved with it; pass it again as llama_index=."
        )
        raise ValueError(msg)
    if backend == "llama_index":
        from llama_index.core import StorageContext, load_index_from_storage

        from qta_integrations.embeddings import to_llama_index_embeddings

        storage = StorageContext.from_defaults(persist_dir=str(directory / reference["path"]))
        loaded = load_index_from_storage(storage, embed_model=to_llama_index_embeddings(embeddings))
        return LlamaIndexToolIndex(loaded)
    if backend == "chroma":
        return chroma_tool_index(
            resolve_embeddings(embeddings),
            persist_directory=directory / reference["path"],
            collection_name=reference["collection_name"],
        )
    if backend == "chroma_server":
        import chromadb
        from chromadb.config import Settings

        client = chromadb.HttpClient(
            host=reference["host"],
            port=reference["port"],
            ssl=reference.get("ssl", False),
            settings=Settings(anonymized_telemetry=False),
        )
        return chroma_tool_index(
            resolve_embeddings(embeddings),
            client=client,
            collection_name=reference["collection_name"],
        )
    if backend == "exact":
        return ExactToolIndex.load(directory / reference["path"], resolve_embeddings(embeddings))
    msg = (
        f"Unknown index backend {backend!r} in {str(directory)!r}; expected one of 'chroma', "
        "'chroma_server', 'vectorstore', 'llama_index', 'llama_index_external', 'exact'."
    )
    raise ValueError(msg)
