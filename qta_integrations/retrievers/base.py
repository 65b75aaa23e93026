"""What every face shares: one attribute to the core, and one lifecycle written once.

A face (`QTARetriever`, `QTALlamaIndexRetriever`, `QTAToolRetriever`, the LangGraph
`QTAToolSelector`) is a thin layer over one `QTAPipeline`, reached through ``.pipeline``. The
pipeline's settings own ``k``: a face reads it from there and writes it there, so faces that
share a pipeline agree on it, and a saved retriever keeps it.

`RetrieverLifecycle` holds the lifecycle of the retrievers: building from MCP servers
(`RetrieverLifecycle.from_mcp`, `RetrieverLifecycle.afrom_mcp`), replacing the catalogue,
adding and removing labelled examples, saving. A face only says how it is built from tools
(``_from_tools``) and which tools it accepts (``_check_catalog``).

This module imports no agent framework: importing the LangChain face does not import
LlamaIndex, and the other way round.
"""

from __future__ import annotations

import asyncio
import os
import warnings
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from qta_integrations.pipeline import QTAPipeline
from qta_integrations.sources.mcp import DEFAULT_TIMEOUT, Framework, MCPConnections
from qta_integrations.tools import ToolCatalog, ToolsLike
from qta_integrations.validation import check_positive_int

if TYPE_CHECKING:
    from qta_integrations.memory import MemoryExample
    from qta_integrations.stores import SyncResult

__all__ = ["PipelineFace", "RetrieverLifecycle", "pipeline_of", "warn_deprecated"]

_Face = TypeVar("_Face", bound="RetrieverLifecycle")


def pipeline_of(retriever: Any, *, role: str = "retriever") -> QTAPipeline:
    """``retriever.pipeline``: the `QTAPipeline` of a face, or a pipeline itself.

    Every face and the pipeline have a ``pipeline`` attribute (a pipeline's is itself), so this
    is that attribute, checked.

    Args:
        retriever: A `QTAPipeline`, `QTARetriever`, `QTALlamaIndexRetriever`,
            `QTAToolRetriever` or `QTAToolSelector`.
        role: What the argument is called, for the error message.

    Raises:
        TypeError: for anything else, naming the type received.

    Example:
        >>> from qta_integrations.testing import KeywordEmbeddings
        >>> pipeline = QTAPipeline.from_tools(
        ...     [{"id": "weather", "name": "get_weather", "description": "Weather."}],
        ...     embeddings=KeywordEmbeddings(), rewriter=None)
        >>> pipeline_of(pipeline) is pipeline
        True
    """
    pipeline = getattr(retriever, "pipeline", None)
    if isinstance(pipeline, QTAPipeline):
        return pipeline
    msg = (
        f"{role} must be a QTARetriever, a QTALlamaIndexRetriever, a QTAToolRetriever or a "
        f"QTAPipeline, got {type(retriever).__name__}. Build one with QTARetriever(tools=...) "
        "or QTAPipeline.from_tools(...)."
    )
    raise TypeError(msg)


def warn_deprecated(old: str, new: str) -> None:
    """Emit the `DeprecationWarning` of a renamed attribute or call, naming the new one."""
    warnings.warn(f"{old} is deprecated; use {new}.", DeprecationWarning, stacklevel=3)


class PipelineFace:
    """The pipeline a face wraps (``.pipeline``), and ``k``, owned by the pipeline's settings."""

    if TYPE_CHECKING:

        @property
        def pipeline(self) -> QTAPipeline:
            """The `QTAPipeline` the face wraps (a field or property of each face)."""

    @property
    def k(self) -> int:
        """Number of tools returned: the pipeline's ``settings.k``, read and written there."""
        return self.pipeline.settings.k

    @k.setter
    def k(self, value: int) -> None:
        check_positive_int("k", value)
        self.pipeline.settings = self.pipeline.settings.replace(k=value)


class RetrieverLifecycle(PipelineFace):
    """The lifecycle of a retriever face, written once over its `QTAPipeline`.

    A face defines ``_from_tools`` (how it is built from a tool catalogue), and may narrow
    ``_check_catalog`` (which tools it can return) and ``_mcp_framework`` (which framework's
    tools MCP servers are listed as).
    """

    _mcp_framework: ClassVar[Framework] = "langchain"

    @classmethod
    def _from_tools(cls: type[_Face], tools: ToolsLike, **kwargs: Any) -> _Face:
        raise NotImplementedError

    def _check_catalog(self, catalog: ToolCatalog) -> None:
        """Raise if this face cannot serve ``catalog`` (default: it serves any)."""

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_mcp(
        cls: type[_Face],
        connections: MCPConnections,
        *,
        tool_name_prefix: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        **kwargs: Any,
    ) -> _Face:
        """Build the retriever over every tool of some MCP servers.

        The tools are listed with `qta_integrations.sources.mcp.load_mcp_tools`: ids are
        ``"<server>.<tool>"``, each result names its ``mcp_server`` in its metadata, and the
        catalogue's tools call their server (LangChain tools for `QTARetriever` and
        `QTALlamaIndexRetriever`'s nodes, LlamaIndex ``FunctionTool``s for `QTAToolRetriever`).
        In async code use `afrom_mcp`.

        Args:
            connections: Server name -> connection, as ``MultiServerMCPClient`` takes them.
            tool_name_prefix: Name tools ``"<server>_<tool>"`` (needed when two servers have
                a tool of the same name).
            timeout: Seconds each server has to list its tools.
            **kwargs: What the face's constructor takes (``k``, ``embeddings`` or
                ``embed_model``, ``rewriter`` ...).

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

        tools = load_mcp_tools(
            connections,
            tool_name_prefix=tool_name_prefix,
            timeout=timeout,
            framework=cls._mcp_framework,
        )
        return cls._from_tools(tools, **kwargs)

    @classmethod
    async def afrom_mcp(
        cls: type[_Face],
        connections: MCPConnections,
        *,
        tool_name_prefix: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        **kwargs: Any,
    ) -> _Face:
        """Async `from_mcp`: the servers are listed on the loop, the tools embedded off it.

        Example:
            .. code-block:: python

                retriever = await QTARetriever.afrom_mcp(connections, k=3)
        """
        from qta_integrations.sources.mcp import aload_mcp_tools

        tools = await aload_mcp_tools(
            connections,
            tool_name_prefix=tool_name_prefix,
            timeout=timeout,
            framework=cls._mcp_framework,
        )
        return await asyncio.to_thread(lambda: cls._from_tools(tools, **kwargs))

    # -- the catalogue and the labels -----------------------------------------------------

    def update_catalog(self, tools: ToolsLike) -> SyncResult:
        """Replace the tools and re-sync the index (see `QTAPipeline.update_catalog`).

        Only new and edited tools are embedded; removed ones leave the index, and labelled
        examples that name them are dropped (with a warning).

        Raises:
            ValueError: for an invalid catalogue (the index is left as it was).
            TypeError: for tools this face cannot return (`QTAToolRetriever` returns the
                LlamaIndex tools themselves); the catalogue is left as it was.

        Example:
            .. code-block:: python

                from qta_integrations.sources.mcp import aload_mcp_tools

                result = retriever.update_catalog(await aload_mcp_tools(connections))
                print(result)  # SyncResult(num_added=1, num_updated=1, num_skipped=88, ...)
        """
        catalog = ToolCatalog.from_any(tools)
        self._check_catalog(catalog)
        return self.pipeline.update_catalog(catalog)

    def add_examples(self, examples: Any, *, fit: bool = True) -> list[MemoryExample]:
        """Teach the retriever with labelled queries (see `QTAPipeline.add_examples`).

        Example:
            .. code-block:: python

                retriever.add_examples([{"query": "umbrella in Oslo?", "tools": ["weather"]}])
        """
        return self.pipeline.add_examples(examples, fit=fit)

    def remove_examples(self, queries: Any, *, fit: bool = True) -> list[MemoryExample]:
        """Forget labelled queries (see `QTAPipeline.remove_examples`)."""
        return self.pipeline.remove_examples(queries, fit=fit)

    # -- saving -------------------------------------------------------------------------

    def persist(self, persist_dir: str | os.PathLike[str]) -> None:
        """Save the retriever to ``persist_dir`` (`qta_integrations.persist.save`).

        Writes the catalogue, the index's vectors (the embedded Chroma's directory, LlamaIndex's
        storage files for a ``VectorStoreIndex``) or a reference to your own store, which
        embeddings and rewriter were used, and the pipeline's fitted state (settings, fusion
        weights, labelled examples). The face's ``from_persist_dir`` reloads it without
        embedding anything.

        Raises:
            ValueError: if ``persist_dir`` is empty or names a file.

        Example:
            .. code-block:: python

                retriever.persist("saved-retriever")
                retriever = QTARetriever.from_persist_dir("saved-retriever")
        """
        from qta_integrations import persist

        persist.save(self.pipeline, persist_dir)
