"""LlamaIndex adapters over the QTA pipeline.

* `QTALlamaIndexRetriever`: a LlamaIndex ``BaseRetriever`` returning ``NodeWithScore`` nodes, one
  per tool (node id = tool id).
* `QTAToolRetriever`: an ``ObjectRetriever`` returning the LlamaIndex tools themselves, for an
  agent's ``tool_retriever=`` (``FunctionAgent``, ``ReActAgent``, ``AgentWorkflow``).

Both are thin: retrieval is `QTAPipeline`'s. A retriever can be saved with ``persist(dir)`` and
reloaded with ``from_persist_dir(dir)`` without embedding the catalogue again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.objects.base import ObjectRetriever
from llama_index.core.objects.base_node_mapping import BaseObjectNodeMapping
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle, QueryType, TextNode

from qta_integrations.embeddings import resolve_embeddings
from qta_integrations.index import (
    LlamaIndexToolIndex,
    VectorStoreToolIndex,
    chroma_tool_index,
)
from qta_integrations.pipeline import (
    QTAPipeline,
    RetrievalResult,
    _check_positive,
    validate_query,
)
from qta_integrations.rewriter import resolve_rewriter
from qta_integrations.tools import ToolCatalog, ToolsLike

__all__ = ["QTALlamaIndexRetriever", "QTAToolRetriever", "result_to_nodes"]

logger = logging.getLogger(__name__)

CONFIG_FILE = "qta_retriever.json"
TOOLS_FILE = "tools.json"
CHROMA_DIR = "chroma"
LLAMA_INDEX_DIR = "llama_index"
FORMAT_VERSION = 1
SAVED = "saved"
"""``rewriter=SAVED`` in `QTALlamaIndexRetriever.from_persist_dir`: reload the saved rewriter."""

# Per-request fields: shown to no LLM and embedded nowhere.
_RESULT_KEYS = ["query", "rewritten_query", "rank", "tool_id"]


def result_to_nodes(result: RetrievalResult) -> list[NodeWithScore]:
    """LlamaIndex nodes for a result: node id = tool id, text = ``"name: description"``.

    The metadata holds the tool's own metadata plus ``tool_id``, ``tool_name``, ``rank``,
    ``query`` and ``rewritten_query`` (None when the query was not rewritten).
    """
    rewrite = result.rewrites[0] if result.rewrites else None
    nodes = []
    for item in result.tools:
        metadata = {
            **item.tool.metadata,
            "tool_id": item.tool.id,
            "tool_name": item.tool.name,
            "rank": item.rank,
            "query": result.query,
            "rewritten_query": rewrite,
        }
        node = TextNode(
            id_=item.tool.id,
            text=item.tool.text,
            metadata=metadata,
            excluded_llm_metadata_keys=list(_RESULT_KEYS),
            excluded_embed_metadata_keys=list(metadata),
        )
        nodes.append(NodeWithScore(node=node, score=item.score))
    return nodes


def _check_query(query: Any) -> QueryType:
    """Validate a LlamaIndex query (a string or a ``QueryBundle``) before LlamaIndex reads it."""
    validate_query(query.query_str if isinstance(query, QueryBundle) else query)
    return query


def _resolve_k(pipeline: QTAPipeline, k: int | None, similarity_top_k: int | None) -> int:
    if k is not None and similarity_top_k is not None and k != similarity_top_k:
        msg = (
            f"Got k={k} and similarity_top_k={similarity_top_k}; they are the same setting: "
            "pass only one."
        )
        raise ValueError(msg)
    value = k if k is not None else similarity_top_k
    if value is None:
        return pipeline.k
    _check_positive("k", value)
    return value


class QTALlamaIndexRetriever(BaseRetriever):
    """LlamaIndex retriever over the QTA pipeline: one ``NodeWithScore`` per tool.

    Each node's id is the tool id, its text ``"name: description"``, its score the fused QTA
    score; ``node.metadata["rewritten_query"]`` is the rewrite used (None when the rewrite fell
    back to the query). ``aretrieve`` awaits the pipeline's async path, never blocking the loop.

    Args:
        pipeline: The QTA pipeline (build one with `from_defaults`, or share a
            `QTARetriever`'s through ``QTARetriever.as_llama_index_retriever()``).
        k: Number of tools returned; defaults to the pipeline's ``k``.
        similarity_top_k: LlamaIndex's name for ``k`` (pass one of the two).
        callback_manager: LlamaIndex callbacks.
        verbose: LlamaIndex verbosity.

    Setup:
        .. code-block:: bash

            pip install qta-integrations

    Instantiate:
        .. code-block:: python

            from llama_index.core.tools import FunctionTool
            from qta_integrations import QTALlamaIndexRetriever

            def get_weather(city: str) -> str:
                \"\"\"Current weather and forecast for a city.\"\"\"
                return f"Sunny in {city}"

            def get_stock_quote(ticker: str) -> str:
                \"\"\"Latest price of a stock ticker symbol.\"\"\"
                return f"{ticker}: 123.4"

            tools = [FunctionTool.from_defaults(fn) for fn in (get_weather, get_stock_quote)]
            # default: all-MiniLM-L6-v2 + embedded Chroma + the SmolLM2 rewriter, all offline
            retriever = QTALlamaIndexRetriever.from_defaults(tools, k=1)

    Usage:
        .. code-block:: python

            nodes = retriever.retrieve("should I take an umbrella in Paris?")
            print(nodes[0].node.id_)  # get_weather
            print(nodes[0].node.metadata["rewritten_query"])

            retriever.persist("./qta_tools")  # catalogue, settings and vectors
            retriever = QTALlamaIndexRetriever.from_persist_dir("./qta_tools")  # no re-embedding

    Use in a query engine:
        .. code-block:: python

            from llama_index.core.query_engine import RetrieverQueryEngine

            llm = ...  # your LlamaIndex LLM
            engine = RetrieverQueryEngine.from_args(retriever, llm=llm)
    """

    def __init__(
        self,
        pipeline: QTAPipeline,
        *,
        k: int | None = None,
        similarity_top_k: int | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        if not isinstance(pipeline, QTAPipeline):
            msg = (
                f"pipeline must be a QTAPipeline, got {type(pipeline).__name__}. Build the "
                "retriever with QTALlamaIndexRetriever.from_defaults(tools, ...) instead."
            )
            raise TypeError(msg)
        self.pipeline = pipeline
        self.k = _resolve_k(pipeline, k, similarity_top_k)
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    @property
    def similarity_top_k(self) -> int:
        """LlamaIndex's name for `k`."""
        return self.k

    # -- construction -----------------------------------------------------------------

    @classmethod
    def from_defaults(
        cls,
        tools: ToolsLike,
        *,
        embed_model: Any | None = None,
        index: Any | None = None,
        rewriter: Any = "default",
        k: int = 5,
        alpha: float = 0.5,
        fetch_k: int | None = None,
        num_context_tools: int = 3,
        persist_dir: str | os.PathLike[str] | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> QTALlamaIndexRetriever:
        """Build the pipeline and the retriever from tools.

        Args:
            tools: LlamaIndex tools, tool dicts, a JSON/JSONL path, ... (see
                `ToolCatalog.from_any`).
            embed_model: A LlamaIndex or LangChain embedding model; default all-MiniLM-L6-v2.
            index: A LlamaIndex ``VectorStoreIndex`` to index the tools into, instead of the
                embedded Chroma (it embeds with its own ``embed_model``).
            rewriter: ``"default"`` (SmolLM2-135M-Instruct), an adapter directory, a
                `QueryRewriter`, a LangChain chat model, or None for dense retrieval only.
            k: Number of tools returned.
            alpha: Weight of the rewrite in the fused score, in [0, 1].
            fetch_k: Hits fetched per query before fusion; default ``max(4k, 20)``.
            num_context_tools: Tools shown to the rewriter as examples of the wording.
            persist_dir: Keep the embedded Chroma index on disk in this directory and save the
                catalogue and settings beside it (see `persist`).
            callback_manager: LlamaIndex callbacks.
            verbose: LlamaIndex verbosity.

        Raises:
            ValueError: if both ``index`` and ``embed_model`` or ``persist_dir`` are given.
        """
        if index is not None and embed_model is not None:
            msg = (
                "Got both index= and embed_model=: the index embeds with its own model. Build "
                "the VectorStoreIndex with embed_model=... and pass only index=."
            )
            raise ValueError(msg)
        if index is not None and persist_dir is not None:
            msg = (
                "Got both index= and persist_dir=: persist_dir is for the embedded Chroma index. "
                "Pass one of them; a VectorStoreIndex is saved with retriever.persist(dir)."
            )
            raise ValueError(msg)
        pipeline = QTAPipeline.from_tools(
            tools,
            embeddings=embed_model,
            llama_index=index,
            persist_directory=Path(persist_dir) / CHROMA_DIR if persist_dir is not None else None,
            rewriter=rewriter,
            k=k,
            alpha=alpha,
            fetch_k=fetch_k,
            num_context_tools=num_context_tools,
        )
        retriever = cls(pipeline, callback_manager=callback_manager, verbose=verbose)
        if persist_dir is not None:
            retriever.persist(persist_dir)
        return retriever

    def persist(self, persist_dir: str | os.PathLike[str]) -> None:
        """Save the catalogue, the settings and the embedded vectors to ``persist_dir``.

        Writes ``tools.json`` (the catalogue), ``qta_retriever.json`` (k, alpha, fetch_k,
        num_context_tools, the rewriter's directory when it was loaded from one, which
        embeddings were used) and the vectors: a persistent Chroma directory for the embedded
        Chroma index, or LlamaIndex's storage files for a ``VectorStoreIndex``. Reloading with
        `from_persist_dir` embeds nothing.

        Raises:
            TypeError: if the index is a vector store other than Chroma (persist it yourself and
                pass it back through ``QTAPipeline``).
        """
        _save_pipeline(self.pipeline, Path(persist_dir))

    @classmethod
    def from_persist_dir(
        cls,
        persist_dir: str | os.PathLike[str],
        *,
        tools: ToolsLike | None = None,
        embed_model: Any | None = None,
        rewriter: Any = SAVED,
        k: int | None = None,
        alpha: float | None = None,
        fetch_k: int | None = None,
        num_context_tools: int | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> QTALlamaIndexRetriever:
        """Reload a retriever saved with `persist` (or ``from_defaults(persist_dir=...)``).

        Args:
            persist_dir: The directory written by `persist`.
            tools: The same tools as live objects (e.g. LlamaIndex ``FunctionTool``s, which
                cannot be saved); their ids must match the saved catalogue. Default: the saved
                catalogue.
            embed_model: The embedding model used when saving. Needed unless it was the default.
            rewriter: ``"saved"`` reloads the saved rewriter; anything else replaces it (see
                `from_defaults`).
            k: Overrides the saved ``k``; likewise ``alpha``, ``fetch_k``, ``num_context_tools``.
            alpha: Overrides the saved ``alpha``.
            fetch_k: Overrides the saved ``fetch_k``.
            num_context_tools: Overrides the saved ``num_context_tools``.
            callback_manager: LlamaIndex callbacks.
            verbose: LlamaIndex verbosity.

        Raises:
            FileNotFoundError: if ``persist_dir`` holds no saved retriever.
            ValueError: if ``tools`` differ from the saved catalogue, or the saved embeddings or
                rewriter cannot be rebuilt without being passed in.
        """
        overrides = {"k": k, "alpha": alpha, "fetch_k": fetch_k}
        overrides["num_context_tools"] = num_context_tools
        pipeline = _load_pipeline(
            Path(persist_dir),
            tools=tools,
            embed_model=embed_model,
            rewriter=rewriter,
            overrides={key: v for key, v in overrides.items() if v is not None},
        )
        return cls(pipeline, callback_manager=callback_manager, verbose=verbose)

    # -- retrieval --------------------------------------------------------------------

    def retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        """The top ``k`` tools as nodes, best first.

        Raises:
            TypeError: if the query is neither a string nor a ``QueryBundle`` of one.
            ValueError: if it is empty or whitespace.
        """
        return super().retrieve(_check_query(str_or_query_bundle))

    async def aretrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        """Async `retrieve`: awaits the pipeline's async path."""
        return await super().aretrieve(_check_query(str_or_query_bundle))

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return result_to_nodes(self.pipeline.retrieve(query_bundle.query_str, k=self.k))

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return result_to_nodes(await self.pipeline.aretrieve(query_bundle.query_str, k=self.k))


class _ToolObjectMapping(BaseObjectNodeMapping[Any]):
    """Maps QTA result nodes (id = tool id) back to the tool objects of the catalogue."""

    def __init__(self, catalog: ToolCatalog) -> None:
        self.catalog = catalog

    @classmethod
    def from_objects(cls, objs: Sequence[Any], *args: Any, **kwargs: Any) -> _ToolObjectMapping:
        """Build from LlamaIndex tools."""
        return cls(ToolCatalog.from_llama_index_tools(objs))

    @property
    def obj_node_mapping(self) -> dict[str, Any]:
        """Tool id -> tool object."""
        return {t.id: t.obj for t in self.catalog}

    def _add_object(self, obj: Any) -> None:
        msg = "Tools are added to the QTA pipeline's catalogue, not to the object mapping."
        raise NotImplementedError(msg)

    def to_node(self, obj: Any) -> BaseNode:
        """The node of a catalogue tool."""
        tool = next((t for t in self.catalog if t.obj is obj), None)
        if tool is None:
            msg = f"{obj!r} is not one of the retriever's tools."
            raise ValueError(msg)
        return TextNode(id_=tool.id, text=tool.text, metadata={"tool_id": tool.id})

    def _from_node(self, node: BaseNode) -> Any:
        return self.catalog[str(node.metadata.get("tool_id", node.node_id))].obj

    def persist(self, persist_dir: str = "", obj_node_mapping_fname: str = "") -> None:
        """Not supported: use `QTAToolRetriever.persist`."""
        msg = "Save the tool retriever with QTAToolRetriever.persist(dir)."
        raise NotImplementedError(msg)

    @classmethod
    def from_persist_dir(
        cls, persist_dir: str = "", obj_node_mapping_fname: str = ""
    ) -> _ToolObjectMapping:
        """Not supported (raising NotImplementedError lets LlamaIndex try other mappings)."""
        msg = "Load the tool retriever with QTAToolRetriever.from_persist_dir(dir, tools=...)."
        raise NotImplementedError(msg)


class QTAToolRetriever(ObjectRetriever[Any]):
    """Retrieves the LlamaIndex tools themselves, for an agent's ``tool_retriever=``.

    ``retrieve(query)`` / ``aretrieve(query)`` return the original tool objects (e.g.
    ``FunctionTool``) of the top ``k`` QTA results. Every catalogue tool must therefore be a
    LlamaIndex tool. A query that is exactly a tool's name returns that tool alone, without
    retrieval: LlamaIndex agents look a tool up this way when the LLM calls it.

    Args:
        pipeline: The QTA pipeline (or pass ``retriever``).
        retriever: A `QTALlamaIndexRetriever` to wrap, instead of ``pipeline``.
        k: Number of tools returned; defaults to the pipeline's ``k``.
        similarity_top_k: LlamaIndex's name for ``k``.
        node_postprocessors: Applied to the retrieved nodes before mapping them to tools.

    Example:
        .. code-block:: python

            from llama_index.core.agent.workflow import FunctionAgent
            from llama_index.core.tools import FunctionTool
            from qta_integrations import QTAToolRetriever

            def get_weather(city: str) -> str:
                \"\"\"Current weather and forecast for a city.\"\"\"
                return f"Sunny in {city}"

            def get_stock_quote(ticker: str) -> str:
                \"\"\"Latest price of a stock ticker symbol.\"\"\"
                return f"{ticker}: 123.4"

            tools = [FunctionTool.from_defaults(fn) for fn in (get_weather, get_stock_quote)]
            tool_retriever = QTAToolRetriever.from_defaults(tools, k=1)
            print(tool_retriever.retrieve("umbrella in Paris?")[0].metadata.name)  # get_weather

            llm = ...  # a LlamaIndex function-calling LLM
            agent = FunctionAgent(tool_retriever=tool_retriever, llm=llm)
    """

    def __init__(
        self,
        pipeline: QTAPipeline | None = None,
        *,
        retriever: QTALlamaIndexRetriever | None = None,
        k: int | None = None,
        similarity_top_k: int | None = None,
        node_postprocessors: list[BaseNodePostprocessor] | None = None,
    ) -> None:
        if retriever is None:
            if pipeline is None:
                msg = (
                    "QTAToolRetriever needs pipeline= or retriever=; or build it with "
                    "QTAToolRetriever.from_defaults(llama_index_tools)."
                )
                raise ValueError(msg)
            retriever = QTALlamaIndexRetriever(pipeline, k=k, similarity_top_k=similarity_top_k)
        elif pipeline is not None or k is not None or similarity_top_k is not None:
            msg = "With retriever=, pass no pipeline/k/similarity_top_k: they are the retriever's."
            raise ValueError(msg)
        catalog = retriever.pipeline.catalog
        _check_tool_objects(catalog)
        super().__init__(
            retriever=retriever,
            object_node_mapping=_ToolObjectMapping(catalog),
            node_postprocessors=node_postprocessors,
        )
        self.qta_retriever = retriever
        self._by_name = {t.obj.metadata.get_name(): t.obj for t in catalog}

    @classmethod
    def from_defaults(cls, tools: ToolsLike, **kwargs: Any) -> QTAToolRetriever:
        """Build from LlamaIndex tools; ``kwargs`` as in `QTALlamaIndexRetriever.from_defaults`."""
        return cls(retriever=QTALlamaIndexRetriever.from_defaults(tools, **kwargs))

    @classmethod
    def from_persist_dir(
        cls, persist_dir: str | os.PathLike[str], *, tools: ToolsLike, **kwargs: Any
    ) -> QTAToolRetriever:
        """Reload a saved retriever; ``tools`` are the live LlamaIndex tools (ids must match)."""
        return cls(
            retriever=QTALlamaIndexRetriever.from_persist_dir(persist_dir, tools=tools, **kwargs)
        )

    def persist(self, persist_dir: str | os.PathLike[str]) -> None:
        """Save the catalogue, settings and vectors (see `QTALlamaIndexRetriever.persist`)."""
        self.qta_retriever.persist(persist_dir)

    def _named(self, query: QueryType) -> list[Any] | None:
        text = query.query_str if isinstance(query, QueryBundle) else query
        tool = self._by_name.get(text) if isinstance(text, str) else None
        return [tool] if tool is not None else None

    def retrieve(self, str_or_query_bundle: QueryType) -> list[Any]:
        """The tools for a query, best first (a tool's exact name returns that tool)."""
        named = self._named(str_or_query_bundle)
        return named if named is not None else super().retrieve(str_or_query_bundle)

    async def aretrieve(self, str_or_query_bundle: QueryType) -> list[Any]:
        """Async `retrieve` (awaits the pipeline's async path)."""
        named = self._named(str_or_query_bundle)
        return named if named is not None else await super().aretrieve(str_or_query_bundle)


def _check_tool_objects(catalog: ToolCatalog) -> None:
    from llama_index.core.tools.types import BaseTool

    for tool in catalog:
        if not isinstance(tool.obj, BaseTool):
            got = "no tool object" if tool.obj is None else f"a {type(tool.obj).__name__}"
            msg = (
                f"Tool {tool.id!r} has {got}. QTAToolRetriever returns the LlamaIndex tools "
                "themselves, so build the catalogue from LlamaIndex tools, e.g. "
                "QTAToolRetriever.from_defaults([FunctionTool.from_defaults(fn=...), ...]). For "
                "tool dicts use QTALlamaIndexRetriever, which returns nodes."
            )
            raise TypeError(msg)


# -- saving and loading a pipeline -----------------------------------------------------------


def _embeddings_name(embeddings: Any) -> str:
    from qta_integrations.embeddings import default_embedding_model_path

    inner = getattr(embeddings, "_langchain_embedding", embeddings)  # LlamaIndex wrapper
    if getattr(inner, "model_name", None) == default_embedding_model_path():
        return "default"
    return type(inner).__name__


def _rewriter_entry(pipeline: QTAPipeline) -> tuple[str | None, str | None]:
    rewriter = pipeline.rewriter
    if rewriter is None:
        return None, None
    return getattr(rewriter, "source", None), type(rewriter).__name__


def _chroma_lives_in(store: Any, directory: Path) -> bool:
    """Whether ``store`` is the default collection of a persistent Chroma in ``directory``."""
    from qta_integrations.index import DEFAULT_COLLECTION_NAME

    client = getattr(store, "_client", None)
    settings = client.get_settings() if client is not None else None
    if settings is None or not settings.is_persistent:
        return False
    same_dir = Path(settings.persist_directory).resolve() == directory.resolve()
    return bool(same_dir and store._collection.name == DEFAULT_COLLECTION_NAME)


def _save_pipeline(pipeline: QTAPipeline, persist_dir: Path) -> None:
    persist_dir.mkdir(parents=True, exist_ok=True)
    index = pipeline.index
    ids = pipeline.catalog.ids
    if isinstance(index, VectorStoreToolIndex):
        from langchain_chroma import Chroma

        store = index.vectorstore
        if not isinstance(store, Chroma):
            msg = (
                f"Cannot save a {type(store).__name__} index: persist() saves the embedded "
                "Chroma index or a LlamaIndex VectorStoreIndex. Persist your vector store "
                "yourself and rebuild the pipeline with QTAPipeline(catalog, index, ...)."
            )
            raise TypeError(msg)
        backend = "chroma"
        embeddings_name = _embeddings_name(store.embeddings)
        if _chroma_lives_in(store, persist_dir / CHROMA_DIR):
            # Already on disk there (from_defaults(persist_dir=...)): drop removed tools only.
            stale = [i for i in store.get(include=[])["ids"] if i not in set(ids)]
            if stale:
                store.delete(stale)
        else:
            _copy_chroma(store, persist_dir / CHROMA_DIR, ids)
    elif isinstance(index, LlamaIndexToolIndex):
        backend = "llama_index"
        embeddings_name = _embeddings_name(getattr(index.index, "_embed_model", None))
        target = persist_dir / LLAMA_INDEX_DIR
        shutil.rmtree(target, ignore_errors=True)
        index.index.storage_context.persist(persist_dir=str(target))
    else:
        msg = (
            f"Cannot save a {type(index).__name__}: persist() saves the embedded Chroma index "
            "or a LlamaIndex VectorStoreIndex."
        )
        raise TypeError(msg)
    rewriter_source, rewriter_type = _rewriter_entry(pipeline)
    config = {
        "format": FORMAT_VERSION,
        "backend": backend,
        "embeddings": embeddings_name,
        "k": pipeline.k,
        "alpha": pipeline.alpha,
        "fetch_k": pipeline.fetch_k,
        "num_context_tools": pipeline.num_context_tools,
        "rewriter": rewriter_source,
        "rewriter_type": rewriter_type,
    }
    (persist_dir / TOOLS_FILE).write_text(
        json.dumps(pipeline.catalog.to_dicts(), indent=2, default=str), encoding="utf-8"
    )
    (persist_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")


def _copy_chroma(store: Any, target: Path, ids: list[str]) -> None:
    """Copy the catalogue's vectors into a fresh persistent Chroma collection (no embedding)."""
    import chromadb
    from chromadb.config import Settings

    from qta_integrations.index import DEFAULT_COLLECTION_NAME

    data = store.get(ids=ids, include=["embeddings", "documents", "metadatas"])
    client = chromadb.PersistentClient(
        path=str(target), settings=Settings(anonymized_telemetry=False)
    )
    if DEFAULT_COLLECTION_NAME in {c.name for c in client.list_collections()}:
        client.delete_collection(DEFAULT_COLLECTION_NAME)
    collection = client.create_collection(
        DEFAULT_COLLECTION_NAME, metadata={"hnsw:space": "cosine"}
    )
    if data["ids"]:
        collection.add(
            ids=data["ids"],
            embeddings=data["embeddings"],
            documents=data["documents"],
            metadatas=data["metadatas"],
        )


def _load_pipeline(
    persist_dir: Path,
    *,
    tools: ToolsLike | None,
    embed_model: Any | None,
    rewriter: Any,
    overrides: dict[str, Any],
) -> QTAPipeline:
    config_file = persist_dir / CONFIG_FILE
    if not config_file.exists():
        msg = (
            f"No saved QTA retriever in {str(persist_dir)!r} (no {CONFIG_FILE}). Save one with "
            "retriever.persist(dir) or from_defaults(tools, persist_dir=dir)."
        )
        raise FileNotFoundError(msg)
    config = json.loads(config_file.read_text(encoding="utf-8"))
    saved = ToolCatalog.from_file(persist_dir / TOOLS_FILE)
    catalog = saved if tools is None else ToolCatalog.from_any(tools)
    if set(catalog.ids) != set(saved.ids):
        missing = sorted(set(saved.ids) - set(catalog.ids))
        extra = sorted(set(catalog.ids) - set(saved.ids))
        msg = (
            f"tools= differ from the catalogue saved in {str(persist_dir)!r}: missing "
            f"{missing}, not saved {extra}. Pass the same tools, or rebuild with "
            "from_defaults(tools, persist_dir=...)."
        )
        raise ValueError(msg)
    if embed_model is None and config["embeddings"] != "default":
        msg = (
            f"The retriever in {str(persist_dir)!r} was saved with {config['embeddings']} "
            "embeddings; pass the same model as embed_model= (queries must be embedded alike)."
        )
        raise ValueError(msg)
    if rewriter == SAVED:
        if config["rewriter"] is None and config["rewriter_type"] is not None:
            msg = (
                f"The retriever in {str(persist_dir)!r} used a {config['rewriter_type']} that "
                "cannot be reloaded from disk; pass it again as rewriter=."
            )
            raise ValueError(msg)
        rewriter = config["rewriter"]
    if config["backend"] == "chroma":
        index: Any = chroma_tool_index(
            resolve_embeddings(embed_model), persist_directory=persist_dir / CHROMA_DIR
        )
    else:
        from llama_index.core import StorageContext, load_index_from_storage

        from qta_integrations.embeddings import to_llama_index_embeddings

        storage = StorageContext.from_defaults(persist_dir=str(persist_dir / LLAMA_INDEX_DIR))
        li_index = load_index_from_storage(
            storage, embed_model=to_llama_index_embeddings(embed_model)
        )
        index = LlamaIndexToolIndex(li_index)
    settings = {key: config[key] for key in ("k", "alpha", "fetch_k", "num_context_tools")}
    settings.update(overrides)
    return QTAPipeline(catalog, index, resolve_rewriter(rewriter), index_tools=False, **settings)
