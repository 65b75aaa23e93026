"""The framework-agnostic core: search, rewrite, search again, fuse.

`QTAPipeline` is the one place where retrieval happens. The LangChain retriever, the LlamaIndex
retrievers, the LangGraph tool selector, the evaluation harness and the trainer are all thin
layers over it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from qta_integrations.embeddings import resolve_embeddings
from qta_integrations.index import (
    LlamaIndexToolIndex,
    ToolHit,
    ToolIndex,
    VectorStoreToolIndex,
    chroma_tool_index,
)
from qta_integrations.prompts import RewriteRequest
from qta_integrations.ranking import fuse_hits
from qta_integrations.rewriter import QueryRewriter, resolve_rewriter
from qta_integrations.tools import Tool, ToolCatalog, ToolsLike

__all__ = ["QTAPipeline", "RetrievalResult", "RetrievedTool", "validate_query"]

logger = logging.getLogger(__name__)

INDEX_BATCH_SIZE = 256


@dataclass(frozen=True)
class RetrievedTool:
    """A tool in a result list, with its fused score and 1-based rank."""

    tool: Tool
    score: float
    rank: int


@dataclass(frozen=True)
class RetrievalResult:
    """The outcome of one retrieval.

    Attributes:
        query: The original query.
        rewrites: The rewrites used (empty without a rewriter, or when the rewrite fell back
            to the original query).
        tools: The top tools, best first.
    """

    query: str
    rewrites: tuple[str, ...] = ()
    tools: list[RetrievedTool] = field(default_factory=list)

    @property
    def tool_ids(self) -> list[str]:
        """Ids of the retrieved tools, best first."""
        return [t.tool.id for t in self.tools]


def validate_query(query: Any) -> str:
    """Return ``query`` if it is a non-blank string.

    Raises:
        TypeError: if ``query`` is not a string.
        ValueError: if it is empty or whitespace.
    """
    if not isinstance(query, str):
        msg = f"query must be a str, got {type(query).__name__}: {query!r}."
        raise TypeError(msg)
    if not query.strip():
        msg = f"query must not be empty or whitespace, got {query!r}."
        raise ValueError(msg)
    return query


class QTAPipeline:
    """Retrieve tools with the original query and its rewrite, fused by alignment.

    For a query ``q``: search the index with ``q`` (``fetch_k`` hits); show the top
    ``num_context_tools`` of them to the rewriter as examples of the catalogue's wording; search
    again with the rewrite; fuse the two lists with `qta_integrations.ranking.fuse_hits`
    (``score = (1 - alpha) * s(q, t) + alpha * s(rewrite, t)``); return the top ``k``.

    Args:
        catalog: The tools.
        index: Where they are searched. Tools are upserted into it unless ``index_tools=False``.
        rewriter: The query rewriter; None retrieves with the original query only (dense).
        k: Default number of tools returned.
        fetch_k: Hits fetched per query before fusion; default ``max(4 * k, 20)``.
        num_context_tools: Tools shown to the rewriter as context (0 for none).
        alpha: Weight of the rewrite in the fused score, in [0, 1].
        index_tools: Upsert the catalogue into ``index`` now.
        show_progress: Show a progress bar while indexing.

    Example:
        .. code-block:: python

            from langchain_core.embeddings import DeterministicFakeEmbedding
            from qta_integrations import QTAPipeline

            pipeline = QTAPipeline.from_tools(
                [{"id": "weather", "name": "get_weather", "description": "Weather for a city."},
                 {"id": "stocks", "name": "get_quote", "description": "Latest stock price."}],
                embeddings=DeterministicFakeEmbedding(size=32),
                rewriter=None,
            )
            print(len(pipeline.retrieve("weather in Paris", k=1).tools))  # 1
    """

    def __init__(
        self,
        catalog: ToolCatalog,
        index: ToolIndex,
        rewriter: QueryRewriter | None = None,
        *,
        k: int = 5,
        fetch_k: int | None = None,
        num_context_tools: int = 3,
        alpha: float = 0.5,
        index_tools: bool = True,
        show_progress: bool = False,
    ) -> None:
        _check_positive("k", k)
        if fetch_k is not None:
            _check_positive("fetch_k", fetch_k)
        if num_context_tools < 0:
            msg = f"num_context_tools must be >= 0, got {num_context_tools}."
            raise ValueError(msg)
        if not 0.0 <= alpha <= 1.0:
            msg = f"alpha must be in [0, 1], got {alpha}. Use 0 to ignore the rewrite."
            raise ValueError(msg)
        self.catalog = catalog
        self.index = index
        self.rewriter = rewriter
        self.k = k
        self.fetch_k = fetch_k
        self.num_context_tools = num_context_tools
        self.alpha = alpha
        if index_tools:
            self.index_catalog(show_progress=show_progress)

    @classmethod
    def from_tools(
        cls,
        tools: ToolsLike,
        *,
        embeddings: Any | None = None,
        vectorstore: Any | None = None,
        llama_index: Any | None = None,
        persist_directory: str | os.PathLike[str] | None = None,
        rewriter: Any = "default",
        **kwargs: Any,
    ) -> QTAPipeline:
        """Build a pipeline from tools and optional components.

        Args:
            tools: Anything `ToolCatalog.from_any` accepts.
            embeddings: LangChain or LlamaIndex embeddings; default all-MiniLM-L6-v2.
            vectorstore: A LangChain ``VectorStore`` to index into (its own embeddings are used).
            llama_index: A LlamaIndex ``VectorStoreIndex`` to index into.
            persist_directory: For the default embedded Chroma: keep the index on disk here.
            rewriter: See `qta_integrations.rewriter.resolve_rewriter`; None for no rewrite.
            **kwargs: Passed to `QTAPipeline`.

        Raises:
            ValueError: if more than one index backend is given.
        """
        backends = [
            n
            for n, v in (
                ("vectorstore", vectorstore),
                ("llama_index", llama_index),
                ("persist_directory", persist_directory),
            )
            if v is not None
        ]
        if len(backends) > 1:
            msg = f"Pass only one of vectorstore, llama_index, persist_directory; got {backends}."
            raise ValueError(msg)
        catalog = ToolCatalog.from_any(tools)
        index: ToolIndex
        if vectorstore is not None:
            index = VectorStoreToolIndex(vectorstore)
        elif llama_index is not None:
            index = LlamaIndexToolIndex(llama_index)
        else:
            index = chroma_tool_index(
                resolve_embeddings(embeddings), persist_directory=persist_directory
            )
        return cls(catalog, index, resolve_rewriter(rewriter), **kwargs)

    # -- indexing ---------------------------------------------------------------------

    def index_catalog(self, *, show_progress: bool = False) -> None:
        """Upsert every catalogue tool into the index, in batches."""
        from tqdm.auto import tqdm

        tools = list(self.catalog)
        batches = range(0, len(tools), INDEX_BATCH_SIZE)
        for start in tqdm(batches, desc="Indexing tools", unit="batch", disable=not show_progress):
            self.index.add_tools(tools[start : start + INDEX_BATCH_SIZE])

    # -- retrieval --------------------------------------------------------------------

    def _fetch_k(self, k: int) -> int:
        return min(len(self.catalog), self.fetch_k or max(4 * k, 20))

    def rewrite_request(
        self, query: str, hits: Sequence[ToolHit], history: Sequence[str] = ()
    ) -> RewriteRequest:
        """The rewriter's input for ``query``: the top ``num_context_tools`` of ``hits`` as context.

        The trainer builds its prompts with this too, so training and inference see the same
        prompt.
        """
        context = tuple(
            t for t in (self.catalog.get(h.tool_id) for h in hits[: self.num_context_tools]) if t
        )
        return RewriteRequest(query=query, context=context, history=tuple(history))

    def rewrite_requests(
        self, queries: Sequence[str], histories: Sequence[Sequence[str]] | None = None
    ) -> list[RewriteRequest]:
        """The rewriter's inputs for ``queries``, searching only as deep as the context needs.

        For callers that rewrite without retrieving (the trainer, analyses); `retrieve_batch`
        builds the same requests from its deeper search.
        """
        histories = self._histories(queries, histories)
        hits = self.index.search_many(list(queries), max(1, self.num_context_tools))
        return [
            self.rewrite_request(q, h, hist)
            for q, h, hist in zip(queries, hits, histories, strict=True)
        ]

    def _result(
        self, query: str, rewrite: str | None, hits: list[ToolHit], k: int
    ) -> RetrievalResult:
        tools: list[RetrievedTool] = []
        for hit in hits:
            tool = self.catalog.get(hit.tool_id)
            if tool is None:
                logger.warning(
                    "The index returned tool id %r, which is not in the catalogue; it is left "
                    "out. Rebuild the index from the current catalogue.",
                    hit.tool_id,
                )
                continue
            tools.append(RetrievedTool(tool=tool, score=hit.score, rank=len(tools) + 1))
            if len(tools) == k:
                break
        return RetrievalResult(query=query, rewrites=(rewrite,) if rewrite else (), tools=tools)

    def _fuse(
        self,
        query: str,
        rewrite: str,
        original: list[ToolHit],
        rewritten: list[ToolHit] | None,
        k: int,
    ) -> RetrievalResult:
        if rewritten is None:  # no rewriter, or the rewrite fell back to the query itself
            return self._result(query, None, original, k)
        return self._result(query, rewrite, fuse_hits(original, [rewritten], alpha=self.alpha), k)

    def retrieve(
        self, query: str, *, k: int | None = None, history: Sequence[str] = ()
    ) -> RetrievalResult:
        """Retrieve the top ``k`` tools for ``query``.

        Args:
            query: The user's query.
            k: Number of tools; defaults to the pipeline's ``k``.
            history: Earlier user turns, oldest first, shown to the rewriter for follow-ups.
        """
        return self.retrieve_batch([query], k=k, histories=[history])[0]

    def retrieve_batch(
        self,
        queries: Sequence[str],
        *,
        k: int | None = None,
        histories: Sequence[Sequence[str]] | None = None,
    ) -> list[RetrievalResult]:
        """`retrieve` for many queries; the rewrites are generated in one batch."""
        k = self._k(k)
        queries = [validate_query(q) for q in queries]
        histories = self._histories(queries, histories)
        fetch = self._fetch_k(k)
        originals = self.index.search_many(queries, fetch)
        if self.rewriter is None:
            return [
                self._result(q, None, hits, k) for q, hits in zip(queries, originals, strict=True)
            ]
        requests = [
            self.rewrite_request(q, h, hist)
            for q, h, hist in zip(queries, originals, histories, strict=True)
        ]
        rewrites = self.rewriter.rewrite_batch(requests)
        to_search = [i for i, (q, r) in enumerate(zip(queries, rewrites, strict=True)) if r != q]
        searched = self.index.search_many([rewrites[i] for i in to_search], fetch)
        rewritten: list[list[ToolHit] | None] = [None] * len(queries)
        for i, hits in zip(to_search, searched, strict=True):
            rewritten[i] = hits
        return [
            self._fuse(q, r, o, rw, k)
            for q, r, o, rw in zip(queries, rewrites, originals, rewritten, strict=True)
        ]

    async def aretrieve(
        self, query: str, *, k: int | None = None, history: Sequence[str] = ()
    ) -> RetrievalResult:
        """Async `retrieve`: the index and the rewriter are awaited, never run on the loop."""
        k = self._k(k)
        query = validate_query(query)
        fetch = self._fetch_k(k)
        original = await self.index.asearch(query, fetch)
        if self.rewriter is None:
            return self._result(query, None, original, k)
        rewrite = await self.rewriter.arewrite(self.rewrite_request(query, original, history))
        rewritten = await self.index.asearch(rewrite, fetch) if rewrite != query else None
        return self._fuse(query, rewrite, original, rewritten, k)

    async def aretrieve_batch(
        self,
        queries: Sequence[str],
        *,
        k: int | None = None,
        histories: Sequence[Sequence[str]] | None = None,
    ) -> list[RetrievalResult]:
        """Async `retrieve_batch` (runs in a worker thread so rewrites stay batched)."""
        return await asyncio.to_thread(self.retrieve_batch, queries, k=k, histories=histories)

    def _k(self, k: int | None) -> int:
        if k is None:
            return self.k
        _check_positive("k", k)
        return k

    @staticmethod
    def _histories(
        queries: Sequence[str], histories: Sequence[Sequence[str]] | None
    ) -> list[Sequence[str]]:
        if histories is None:
            return [()] * len(queries)
        if len(histories) != len(queries):
            msg = f"Got {len(histories)} histories for {len(queries)} queries; pass one per query."
            raise ValueError(msg)
        return list(histories)


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{name} must be a positive int, got {value!r}."
        raise ValueError(msg)
