"""`QTARetriever`: the LangChain ``BaseRetriever`` over the QTA pipeline."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig
from pydantic import ConfigDict, Field, model_validator

from qta_integrations.pipeline import QTAPipeline, RetrievalResult

__all__ = ["QTARetriever", "result_to_documents"]


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
            },
        )
        for item in result.tools
    ]


class QTARetriever(BaseRetriever):
    """Tool retriever with query-tool alignment (QTA, arXiv 2410.03212).

    A small local LLM rewrites the query to read like the tool documents; the frozen embedding
    retriever searches with both the query and the rewrite, and the union is reranked by
    ``(1 - alpha) * s(query, tool) + alpha * s(rewrite, tool)``.

    Setup:
        .. code-block:: bash

            pip install qta-integrations

    Instantiate:
        .. code-block:: python

            from qta_integrations import QTARetriever

            tools = [
                {"id": "weather", "name": "get_weather", "description": "Weather for a city."},
                {"id": "quote", "name": "get_quote", "description": "Price of a stock ticker."},
                {"id": "route", "name": "plan_route", "description": "Directions between places."},
            ]
            # Defaults: MiniLM embeddings, embedded Chroma, SmolLM2 rewriter.
            retriever = QTARetriever(tools=tools, k=2)

    Usage:
        .. code-block:: python

            docs = retriever.invoke("should I take an umbrella in Paris?")
            print(docs[0].id, docs[0].metadata["rewritten_query"])
            docs = retriever.invoke("how much is AAPL?", k=1)

    Use within a chain:
        .. code-block:: python

            tool_ids = (retriever | (lambda docs: [d.id for d in docs])).invoke("weather?")

    In LlamaIndex:
        .. code-block:: python

            li_retriever = retriever.as_llama_index_retriever()   # NodeWithScore results
            tool_retriever = retriever.as_tool_retriever()         # for agents' tool_retriever=
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
    alpha: float = 0.5
    """Weight of the rewrite in the fused score, in [0, 1]."""
    fetch_k: int | None = None
    """Hits fetched per query before fusion; default max(4k, 20)."""
    num_context_tools: int = 3
    """Top tools for the original query shown to the rewriter as wording examples."""
    pipeline: QTAPipeline | None = Field(default=None, exclude=True)
    """A prebuilt pipeline; when given, the component fields above are ignored."""

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
                k=self.k,
                fetch_k=self.fetch_k,
                num_context_tools=self.num_context_tools,
                alpha=self.alpha,
            )
        elif "k" not in self.model_fields_set:
            self.k = self.pipeline.k  # a prebuilt pipeline's k is the default, as in LlamaIndex
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
        history: Sequence[str] = (),
    ) -> list[Document]:
        result = self.core.retrieve(query, k=self.k if k is None else k, history=history)
        return result_to_documents(result)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        history: Sequence[str] = (),
    ) -> list[Document]:
        result = await self.core.aretrieve(query, k=self.k if k is None else k, history=history)
        return result_to_documents(result)

    def _warm_rewrites(self, inputs: Sequence[Any]) -> None:
        """Generate all rewrites of a batch in one model call; the per-input runs hit the cache."""
        pipeline = self.core
        if pipeline.rewriter is None or pipeline.rewriter.cache_size < len(inputs):
            return
        queries = [q for q in inputs if isinstance(q, str) and q.strip()]
        if queries:
            pipeline.retrieve_batch(queries, k=self.k)

    def batch(
        self,
        inputs: list[str],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[list[Document]]:
        """Retrieve for many queries; rewrites are generated as one batch, callbacks per query."""
        self._warm_rewrites(inputs)
        return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)

    async def abatch(
        self,
        inputs: list[str],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[list[Document]]:
        """Async `batch`; the batched generation runs in a worker thread."""
        import asyncio

        await asyncio.to_thread(self._warm_rewrites, inputs)
        return await super().abatch(inputs, config, return_exceptions=return_exceptions, **kwargs)

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
