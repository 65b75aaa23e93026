"""The framework-agnostic core: search once, score every candidate with each signal, fuse.

`QTAPipeline` is the one place where retrieval happens. The LangChain retriever, the LlamaIndex
retrievers, the LangGraph tool selector, the evaluation harness and the trainer are all thin
layers over it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import warnings
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

import qta_integrations.fusion as fusion_module
from qta_integrations.embeddings import resolve_embeddings
from qta_integrations.fusion import LABEL_GATE_GRID, FusionFit, FusionWeights, fuse
from qta_integrations.memory import ExampleMemory, LabelledExample, parse_examples
from qta_integrations.prompts import RewriteRequest
from qta_integrations.ranking import fuse_hits
from qta_integrations.rewriter import QueryRewriter, open_rewriter_reference, resolve_rewriter
from qta_integrations.selection import CutoffFit, ToolSelection, fit_cutoff, resolve_selection
from qta_integrations.settings import RetrievalSettings
from qta_integrations.signals import (
    Signal,
    SignalContext,
    SignalResources,
    SignalScores,
    build_signal,
    build_signals,
    registered_signals,
    standardise,
)
from qta_integrations.stores import (
    BM25ToolIndex,
    IndexEntry,
    IndexHit,
    LlamaIndexToolIndex,
    SyncResult,
    ToolHit,
    ToolIndex,
    VectorStoreToolIndex,
    chroma_tool_index,
    sync_index,
)
from qta_integrations.stores.base import tool_hits
from qta_integrations.tools import Tool, ToolCatalog, ToolsLike
from qta_integrations.validation import check_positive_int as _check_positive
from qta_integrations.validation import validate_histories, validate_history, validate_query

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import VectorStore
    from llama_index.core import VectorStoreIndex
    from llama_index.core.base.embeddings.base import BaseEmbedding

__all__ = ["QTAPipeline", "RetrievalResult", "RetrievedTool", "validate_query"]

RewriterLike = QueryRewriter | str | os.PathLike[str] | Any | None
"""What ``rewriter=`` accepts: see `qta_integrations.rewriter.resolve_rewriter`."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrievedTool:
    """A tool in a result list: its fused score, 1-based rank and each signal's score.

    ``signals`` maps the name of every signal that took part in the fusion to its score for this
    tool (empty for a dense-only retrieval, where ``score`` is the similarity itself).
    ``always_included`` marks a tool of ``ToolSelection.always_include``: it comes after the
    retrieved tools, with its score when the search reached it (else the lowest score listed).
    """

    tool: Tool
    score: float
    rank: int
    signals: Mapping[str, float] = field(default_factory=dict)
    always_included: bool = False


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


_T = TypeVar("_T")


@dataclass(frozen=True)
class _Step:
    """One call to the store or the rewriter that a retrieval waits on.

    Retrieval is written once, as generators that yield these (`QTAPipeline._retrieval_steps`);
    ``_run`` answers them with the blocking batched calls, ``_arun`` with the async ones.

    Attributes:
        op: ``"dense"`` (tools nearest to each query, examples skipped), ``"entries"`` (tools
            and examples), ``"tools"`` (tools only) or ``"rewrite"``.
        items: The queries (or the rewrite requests).
        k: How many hits per query.
        rewriter: For ``"rewrite"``: the rewriter to call.
    """

    op: str
    items: list[Any]
    k: int = 0
    rewriter: QueryRewriter | None = None


class QTAPipeline:
    """Retrieve tools by fusing signals, with weights learned from a few labelled examples.

    For a query: one search of the wrapped store returns the nearest tools *and* the nearest
    labelled examples (the example memory); each signal (`qta_integrations.signals`: dense,
    lexical, memory, prior, rewrite) scores the candidates; `qta_integrations.fusion.fuse` adds
    them up with the weights in ``settings.fusion``; the top ``k`` are returned. Without
    labels the weights are dense only, so retrieval is the frozen retriever's own ranking; with
    labels (`add_examples`), `fit_fusion` learns the weights by leave-one-out. The rewriter is
    one signal: it is called only when its weight is not zero.

    Args:
        catalog: The tools.
        index: Where tools and examples are searched. The catalogue is synced into it unless
            ``index_tools=False``.
        rewriter: The query rewriter: a `QueryRewriter`, ``"default"`` (SmolLM2-135M), an
            adapter directory (its rewriter; restoring its fitted weights and examples this way
            is deprecated: use `qta_integrations.persist.load`), a LangChain chat model, a
            zero-argument callable that builds one, or None (no rewrite signal). Named
            rewriters are loaded only when the fusion first needs them.
        settings: Retrieval settings (k, fetch depth, context tools, fusion weights).
        index_tools: Sync the catalogue into ``index`` now.
        show_progress: Show a progress bar while indexing.
        **overrides: Fields of `RetrievalSettings` (``k=3``) applied over ``settings``.

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
        rewriter: RewriterLike | Callable[[], QueryRewriter | None] = None,
        *,
        settings: RetrievalSettings | None = None,
        index_tools: bool = True,
        show_progress: bool = False,
        **overrides: Any,
    ) -> None:
        if settings is not None and not isinstance(settings, RetrievalSettings):
            msg = f"settings must be a RetrievalSettings, got {type(settings).__name__}."
            raise TypeError(msg)
        settings = settings or RetrievalSettings()
        self.settings: RetrievalSettings = settings.replace(**overrides) if overrides else settings
        self.catalog = catalog
        self.index = index
        self._rewriter: QueryRewriter | None = None
        self._rewriter_factory: Callable[[], QueryRewriter | None] | None = None
        self.rewriter_reference: str | None = None
        """How the rewriter was named ("default", an adapter directory), for persistence."""
        state: Mapping[str, Any] | None = None
        if isinstance(rewriter, (str, os.PathLike)):
            spec = rewriter
            self._rewriter_factory = lambda: resolve_rewriter(spec)
            self.rewriter_reference = str(spec)
            adapter = open_rewriter_reference(spec)  # raises now for a bad path, not at first use
            state = adapter.retrieval if adapter is not None else None
            if state:
                warnings.warn(
                    f"Restoring fitted weights and labelled examples through rewriter={spec!r} "
                    "is deprecated: rewriter= names the rewriter alone. Restore the directory "
                    f"with QTARetriever.from_persist_dir({str(spec)!r}, tools=tools) (a "
                    f"pipeline: qta_integrations.persist.load({str(spec)!r}, tools=tools)).",
                    DeprecationWarning,
                    stacklevel=2,
                )
        elif isinstance(rewriter, QueryRewriter) or rewriter is None:
            self._rewriter = rewriter
        elif callable(rewriter):
            self._rewriter_factory = rewriter
        else:
            self._rewriter = resolve_rewriter(rewriter)  # a LangChain chat model / Runnable
        self.memory = ExampleMemory()
        self._lexical_index: BM25ToolIndex | None = None
        self.signal_resources = SignalResources(
            catalog=lambda: self.catalog, lexical_index=self._lexical, memory=lambda: self.memory
        )
        """What the signals read from this pipeline (`qta_integrations.signals.registry`)."""
        self.signals: dict[str, Signal] = build_signals(self.signal_resources)
        """One instance of each registered signal, by name; a signal registered later is
        built on first use."""
        self.last_fit: FusionFit | None = None
        self.last_cutoff: CutoffFit | None = None
        """The last fit of an adaptive selection's margin (`qta_integrations.selection`)."""
        self.selection_for(None)  # always_include must name catalogue tools: fail early
        if index_tools:
            self.index_catalog(show_progress=show_progress)
        if state:
            self.load_state_dict(state, overrides=overrides, source=self.rewriter_reference)

    @classmethod
    def from_tools(
        cls,
        tools: ToolsLike,
        *,
        embeddings: Embeddings | BaseEmbedding | None = None,
        vectorstore: VectorStore | None = None,
        llama_index: VectorStoreIndex | None = None,
        persist_directory: str | os.PathLike[str] | None = None,
        rewriter: RewriterLike = "default",
        settings: RetrievalSettings | None = None,
        **kwargs: Any,
    ) -> QTAPipeline:
        """Build a pipeline from tools and optional components.

        A rewriter given by name (``"default"``) or adapter directory is loaded only when the
        fusion first needs it. (An adapter directory that carries retrieval state, fitted
        weights and labelled examples written by `QTATrainer`, still restores it, with a
        `DeprecationWarning`: restore it with `qta_integrations.persist.load`.)

        Args:
            tools: Anything `ToolCatalog.from_any` accepts.
            embeddings: LangChain or LlamaIndex embeddings; default all-MiniLM-L6-v2.
            vectorstore: A LangChain ``VectorStore`` to index into (its own embeddings are used).
            llama_index: A LlamaIndex ``VectorStoreIndex`` to index into.
            persist_directory: For the default embedded Chroma: keep the index on disk here.
            rewriter: See `qta_integrations.rewriter.resolve_rewriter`; None for no rewrite.
            settings: Retrieval settings; fields may also be given as keyword arguments.
            **kwargs: Passed to `QTAPipeline` (``k=3``, ``index_tools=False`` ...).

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
        return cls(catalog, index, rewriter, settings=settings, **kwargs)

    # -- components -------------------------------------------------------------------

    @property
    def rewriter(self) -> QueryRewriter | None:
        """The rewriter, built on first use when it was given by name."""
        if self._rewriter_factory is not None:
            factory, self._rewriter_factory = self._rewriter_factory, None
            self._rewriter = factory()
        return self._rewriter

    @rewriter.setter
    def rewriter(self, value: QueryRewriter | None) -> None:
        self._rewriter, self._rewriter_factory = value, None

    @property
    def rewriter_loaded(self) -> bool:
        """Whether the rewriter has been built (a named one is built on first use)."""
        return self._rewriter is not None

    @property
    def has_rewriter(self) -> bool:
        """Whether a rewriter is configured (without loading it)."""
        return self._rewriter is not None or self._rewriter_factory is not None

    @property
    def pipeline(self) -> QTAPipeline:
        """The pipeline itself: every face and the pipeline reach the core as ``.pipeline``."""
        return self

    @property
    def k(self) -> int:
        """Default number of tools returned (``settings.k``)."""
        return self.settings.k

    @property
    def fusion(self) -> FusionWeights:
        """The fusion weights in use (``settings.fusion``)."""
        return self.settings.fusion

    def _lexical(self) -> BM25ToolIndex:
        # Built on first use: a dense-only pipeline never pays for it.
        if self._lexical_index is None:
            lexical = BM25ToolIndex()
            lexical.add_tools(list(self.catalog))
            self._lexical_index = lexical
        return self._lexical_index

    # -- indexing ---------------------------------------------------------------------

    def index_catalog(self, *, show_progress: bool = False) -> SyncResult:
        """Sync the index's tools with the catalogue (`qta_integrations.stores.sync_index`).

        New tools are embedded and added, changed ones embedded again, unchanged ones skipped,
        and tools no longer in the catalogue deleted; stored examples are left alone.
        """
        return self._sync_tools(self.catalog, show_progress=show_progress)

    def _sync_tools(self, catalog: ToolCatalog, *, show_progress: bool = False) -> SyncResult:
        return sync_index(
            self.index,
            [IndexEntry.for_tool(t) for t in catalog],
            namespace="tools",
            record_manager=self.index.record_manager,
            show_progress=show_progress,
        )

    def update_catalog(self, tools: ToolsLike, *, show_progress: bool = False) -> SyncResult:
        """Replace the catalogue with ``tools`` and sync the index with it.

        For a tool list that changed (an MCP server's, after a re-listing): added tools are
        embedded, edited ones embedded again, unchanged ones skipped, removed ones deleted
        (`index_catalog`). Labelled examples that name a tool no longer in the catalogue are
        dropped, with a warning, and the fusion is refitted on the rest.

        Args:
            tools: The new catalogue: anything `ToolCatalog.from_any` accepts.
            show_progress: Show a progress bar while indexing.

        Returns:
            What the sync of the tools did (`SyncResult`).

        Raises:
            ValueError: for an invalid catalogue (the index is left as it was).
            TypeError: for an unsupported ``tools`` argument.

        Example:
            .. code-block:: python

                result = pipeline.update_catalog(new_tools)
                print(result.num_added, result.num_updated, result.num_deleted)
        """
        catalog = ToolCatalog.from_any(tools)
        # Index first, then swap: a concurrent retrieval never meets an unindexed tool.
        result = self._sync_tools(catalog, show_progress=show_progress)
        self.catalog = catalog
        self._lexical_index = None  # rebuilt from the new catalogue on first use
        stale = [e for e in self.memory if any(t not in catalog for t in e.tool_ids)]
        if stale:
            logger.warning(
                "%d of %d labelled examples name tools that left the catalogue (e.g. %r for %r);"
                " they are dropped and the fusion is refitted on the %d left.",
                len(stale),
                len(self.memory),
                sorted(t for t in stale[0].tool_ids if t not in catalog),
                stale[0].query,
                len(self.memory) - len(stale),
            )
            self.memory.remove(e.query for e in stale)
            self._sync_examples()
            self.fit_fusion()
        return result

    # -- labelled examples --------------------------------------------------------------

    def add_examples(self, examples: Any, *, fit: bool = True) -> list[LabelledExample]:
        """Attach labelled queries to their tools, and (by default) refit the fusion.

        Each example is stored in the index as an extra entry carrying its gold tool ids
        (namespace ``"examples"``), extends its tools' lexical text, and counts in their prior.

        Args:
            examples: ``[{"query": ..., "tools": [tool ids]}, ...]``, a JSON/JSONL file of such
                records, `LabelledExample`s or a labelled dataset (see
                `qta_integrations.memory.parse_examples`).
            fit: Refit the fusion weights on all examples in memory (`fit_fusion`), in seconds.

        Returns:
            The examples that were new.

        Raises:
            ValueError: for malformed examples or tool ids not in the catalogue (naming them).
        """
        added = self.memory.add(parse_examples(examples, self.catalog))
        self._sync_examples()
        if fit:
            self.fit_fusion()
        return added

    def remove_examples(self, queries: Iterable[str], *, fit: bool = True) -> list[LabelledExample]:
        """Forget the labelled examples with these queries (and refit the fusion by default)."""
        if isinstance(queries, str):
            queries = [queries]
        removed = self.memory.remove(queries)
        self._sync_examples()
        if fit:
            self.fit_fusion()
        return removed

    def _sync_examples(self) -> SyncResult:
        return sync_index(
            self.index,
            self.memory.entries(),
            namespace="examples",
            record_manager=self.index.record_manager,
        )

    def fit_fusion(
        self, *, rewrite: bool = False, grid: Mapping[str, Sequence[float]] | None = None
    ) -> FusionFit:
        """Learn the fusion weights from the examples in memory, held out two ways.

        Each example is scored by every signal without its own entry (*covered*: its tools
        keep their other examples), and again with its tools unlabelled (*uncovered*: no
        example's evidence for them, while the other labelled tools keep theirs). The weights
        that rank the covered examples' gold tools best replace ``settings.fusion``; with
        ``settings.label_fit == "safe"`` (the default) only among weights that do not score
        the uncovered view below the default (`qta_integrations.fusion.fit_weights`). With no
        examples the weights go back to the default (dense only).

        Args:
            rewrite: Also fit the rewrite signal's weight (generates a rewrite per example; the
                trainer does this after aligning the rewriter).
            grid: Weights to try per signal (default `qta_integrations.fusion.DEFAULT_GRID`).

        Returns:
            The fit: the chosen weights and their held-out scores beside the default's.
        """
        from qta_integrations.fusion import fit_weights

        examples = list(self.memory)
        start = self.settings.fit_start()
        if not examples:
            self.settings = self.settings.replace(fusion=start, base=start)
            self.last_fit = None
            self._fit_selection(None, [])
            return FusionFit(start, 0.0, 0.0, 0, 0)
        rewrite = rewrite and self.has_rewriter
        queries = [e.query for e in examples]
        context = self._context(
            queries,
            [()] * len(queries),
            depth=self.settings.fetch_depth(10),
            rewrite=rewrite,
            exclude=[frozenset({e.entry_id}) for e in examples],
        )
        # The uncovered view: the same searches, each example's own tools unlabelled (no
        # example's evidence for them) while every other labelled tool keeps its evidence.
        both = dataclasses.replace(
            context,
            queries=[*context.queries, *context.queries],
            entry_hits=[*context.entry_hits, *context.entry_hits],
            rewrite_hits=[*context.rewrite_hits, *context.rewrite_hits],
            rewrites=[*context.rewrites, *context.rewrites],
            exclude=[*context.exclude, *context.exclude],
            exclude_tools=[frozenset()] * len(examples) + [frozenset(e.tool_ids) for e in examples],
        )
        names = [n for n, spec in registered_signals().items() if rewrite or not spec.needs_rewrite]
        scored = self._signal_scores(both, names)
        n = len(examples)
        covered = [{name: scored[name][i] for name in names} for i in range(n)]
        uncovered = [{name: scored[name][n + i] for name in names} for i in range(n)]
        safe = self.settings.label_fit == "safe"
        fit = fit_weights(
            covered,
            [e.tool_ids for e in examples],
            uncovered=uncovered if safe else None,
            default=start,
            grid=grid,
            margins=[both.label_margin(i) for i in range(n)],
            uncovered_margins=[both.label_margin(n + i) for i in range(n)],
            coverage=self.memory.coverage() if safe else None,
            # For labelled traffic alone the labels may also count ungated.
            gates=None if safe else (None, *LABEL_GATE_GRID),
            shrinkage=None
            if self.settings.label_shrinkage is None
            else (fusion_module.FREE_SHRINKAGE, self.settings.label_shrinkage),
        )
        self.settings = self.settings.replace(fusion=fit.weights, base=start)
        self.last_fit = fit
        logger.info(
            "Fitted fusion on %d examples (%s): %s (held-out score %.3f, base %.3f).",
            fit.num_examples,
            self.settings.label_fit,
            fit.weights.to_dict(),
            fit.score,
            fit.default_score,
        )
        self._fit_selection(context, examples)
        return fit

    def _fit_selection(
        self, context: SignalContext | None, examples: Sequence[LabelledExample]
    ) -> None:
        """Fit an adaptive selection's margin on the examples' held-out fused rankings.

        ``context`` is `fit_fusion`'s leave-one-out context: ranked with the weights just
        fitted, each example is scored without itself. Without examples the margin is unset
        (a fixed top ``k``).
        """
        selection = self.settings.selection
        if not selection.adaptive:
            return
        self.last_cutoff = None
        if context is None or not examples:
            self.settings = self.settings.replace(selection=selection.replace(margin=None))
            return
        k = self.settings.k
        results = self._fused_results(context, k + len(selection.always_include))
        fit = fit_cutoff(
            [[(t.tool.id, t.score) for t in r.tools] for r in results],
            [e.tool_ids for e in examples],
            max_k=k,
            always_include=selection.always_include,
        )
        self.settings = self.settings.replace(
            selection=selection.replace(margin=fit.margin, min_k=fit.min_k)
        )
        self.last_cutoff = fit
        logger.info("Fitted the tool selection's cut-off: %s.", fit.to_dict())

    # -- state ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """What the labels taught, JSON-serialisable: the settings and the examples."""
        return {"settings": self.settings.to_dict(), "examples": self.memory.to_list()}

    def load_state_dict(
        self,
        state: Mapping[str, Any],
        *,
        overrides: Mapping[str, Any] | None = None,
        source: str | None = None,
    ) -> None:
        """Restore `state_dict` output (the examples are synced into the index).

        Args:
            state: `state_dict` output.
            overrides: Settings fields that win over the saved ones (e.g. a ``k`` the caller
                passed explicitly).
            source: Where the state was read from (an adapter directory), named in warnings.

        Saved examples that name tools missing from this catalogue are left out (with a
        warning) and the fusion is refitted on the rest: fitted weights are specific to the
        catalogue they were fitted on, and with no applicable examples the no-label default
        (dense) is used.

        Raises:
            ValueError: for a malformed state.
        """
        if not isinstance(state, Mapping):
            msg = f"The retrieval state must be a dict, got {type(state).__name__}."
            raise ValueError(msg)
        settings = RetrievalSettings.from_dict(dict(state.get("settings") or {}))
        known = {k: v for k, v in (overrides or {}).items() if hasattr(settings, k)}
        self.settings = settings.replace(**known) if known else settings
        records = list(state.get("examples") or ())
        memory = ExampleMemory.from_list(records)
        foreign = [e for e in memory if any(t not in self.catalog for t in e.tool_ids)]
        if foreign:
            # Fitted weights belong to the catalogue they were fitted on: keep the examples
            # that apply here and refit on them, or fall back to the no-label default.
            logger.warning(
                "%d of %d saved labelled examples%s name tools that are not in this catalogue "
                "(e.g. %r); they are left out and the fusion is refitted on the %d that apply. "
                "Was it fitted on another catalogue? Fit again on this one (add_examples, or "
                "qta train) to keep every label.",
                len(foreign),
                len(memory),
                f" in {source!r}" if source else "",
                sorted(t for t in foreign[0].tool_ids if t not in self.catalog)[:3],
                len(memory) - len(foreign),
            )
            memory.remove(e.query for e in foreign)
        self.memory = memory
        self._sync_examples()
        if foreign:
            self.fit_fusion()

    # -- retrieval --------------------------------------------------------------------

    def rewrite_request(
        self, query: str, hits: Sequence[ToolHit], history: Sequence[str] = ()
    ) -> RewriteRequest:
        """The rewriter's input for ``query``: the top ``num_context_tools`` of ``hits`` as context.

        The trainer builds its prompts with this too, so training and inference see the same
        prompt.
        """
        n = self.settings.num_context_tools
        context = tuple(t for t in (self.catalog.get(h.tool_id) for h in hits[:n]) if t)
        return RewriteRequest(query=query, context=context, history=validate_history(history))

    def rewrite_requests(
        self, queries: Sequence[str], histories: Sequence[Sequence[str]] | None = None
    ) -> list[RewriteRequest]:
        """The rewriter's inputs for ``queries``, searching only as deep as the context needs.

        For callers that rewrite without retrieving (the trainer, analyses); retrieval builds
        the same requests from its deeper search.
        """
        histories = self._histories(queries, histories)
        hits = self.index.search_many(list(queries), max(1, self.settings.num_context_tools))
        return [
            self.rewrite_request(q, h, hist)
            for q, h, hist in zip(queries, hits, histories, strict=True)
        ]

    def _entry_depth(self, depth: int) -> int:
        # Examples share the store with tools: fetch deeper so they do not crowd tools out.
        return depth + min(len(self.memory), depth)

    def _known_entries(self, hits: Sequence[IndexHit]) -> list[IndexHit]:
        # Examples in the store that this pipeline's memory does not hold (left by another
        # retriever on the same store) are ignored, and removed at the next sync of examples.
        known = self.memory.entry_ids() if any(h.kind != "tool" for h in hits) else set()
        return [h for h in hits if h.kind == "tool" or h.entry_id in known]

    def _dense_hits(self, queries: Sequence[str], k: int) -> list[list[ToolHit]]:
        if not len(self.memory):
            return self.index.search_many(queries, k)
        # The store holds this pipeline's examples too: fetch past them in one search, and
        # search again only for a query whose nearest entries were nearly all examples.
        depth = self._entry_depth(k)
        batches = self.index.search_entries_many(list(queries), depth)
        hits = [tool_hits(h)[:k] for h in batches]
        short = [
            i
            for i, (h, b) in enumerate(zip(hits, batches, strict=True))
            if len(h) < k and len(b) == depth
        ]
        if short:
            for i, found in zip(
                short, self.index.search_many([queries[i] for i in short], k), strict=True
            ):
                hits[i] = found
        return hits

    def _context(
        self, queries: Sequence[str], histories: Sequence[Sequence[str]], **options: Any
    ) -> SignalContext:
        """`_context_steps` run blocking (``depth``, ``rewrite``, ``exclude`` as there)."""
        return self._run(self._context_steps(queries, histories, **options))

    def _context_steps(
        self,
        queries: Sequence[str],
        histories: Sequence[Sequence[str]],
        *,
        depth: int,
        rewrite: bool,
        normalize: bool = True,
        exclude: Sequence[frozenset[str]] = (),
    ) -> Generator[_Step, Any, SignalContext]:
        """Search, rewrite and search the rewrites: the signals' input, one `_Step` at a time."""
        entry_hits = [
            self._known_entries(h)
            for h in (yield _Step("entries", list(queries), self._entry_depth(depth)))
        ]
        rewrites: list[str | None] = [None] * len(queries)
        rewrite_hits: list[list[ToolHit] | None] = [None] * len(queries)
        rewriter = self.rewriter if rewrite else None
        if rewriter is not None:
            requests = [
                self.rewrite_request(q, tool_hits(h), hist)
                for q, h, hist in zip(queries, entry_hits, histories, strict=True)
            ]
            generated = yield _Step("rewrite", requests, rewriter=rewriter)
            to_search = [
                i for i, (q, r) in enumerate(zip(queries, generated, strict=True)) if r != q
            ]
            searched = yield _Step("tools", [generated[i] for i in to_search], depth)
            for i, hits in zip(to_search, searched, strict=True):
                rewrites[i], rewrite_hits[i] = generated[i], hits
        return SignalContext(
            queries=list(queries),
            entry_hits=entry_hits,
            rewrite_hits=rewrite_hits,
            rewrites=rewrites,
            exclude=list(exclude),
            depth=depth,
            normalize=normalize,
        )

    def signal(self, name: str) -> Signal:
        """This pipeline's instance of signal ``name`` (built now if registered since).

        Raises:
            KeyError: for a name no registered signal has.
        """
        found = self.signals.get(name)
        if found is None:
            found = self.signals[name] = build_signal(name, self.signal_resources)
        return found

    def _run(self, steps: Generator[_Step, Any, _T]) -> _T:
        """Drive ``steps`` with the blocking store and rewriter calls (batched)."""
        try:
            step = next(steps)
            while True:
                if step.op == "dense":
                    answer: Any = self._dense_hits(step.items, step.k)
                elif step.op == "entries":
                    answer = self.index.search_entries_many(step.items, step.k)
                elif step.op == "tools":
                    answer = self.index.search_many(step.items, step.k)
                else:
                    assert step.rewriter is not None
                    answer = step.rewriter.rewrite_batch(step.items)
                step = steps.send(answer)
        except StopIteration as done:
            return done.value

    async def _arun(self, steps: Generator[_Step, Any, _T]) -> _T:
        """Drive ``steps`` with the async store and rewriter calls, awaited one by one."""
        try:
            step = next(steps)
            while True:
                if step.op in ("dense", "tools"):
                    answer: Any = [await self.index.asearch(q, step.k) for q in step.items]
                elif step.op == "entries":
                    answer = [await self.index.asearch_entries(q, step.k) for q in step.items]
                else:
                    assert step.rewriter is not None
                    answer = [await step.rewriter.arewrite(r) for r in step.items]
                step = steps.send(answer)
        except StopIteration as done:
            return done.value

    def _signal_scores(
        self, context: SignalContext, names: Sequence[str]
    ) -> dict[str, list[SignalScores]]:
        return {name: self.signal(name).scores(context) for name in names}

    def _fused_results(self, context: SignalContext, k: int) -> list[RetrievalResult]:
        weights = self.settings.fusion
        names = weights.active()
        scored = self._signal_scores(context, names)
        results = []
        gated = weights.label_gate is not None
        for i, query in enumerate(context.queries):
            per_signal = {n: scored[n][i] for n in names}
            margin = context.label_margin(i) if gated else math.inf
            ranked = fuse(per_signal, weights, label_margin=margin)
            rewrite = context.rewrites[i] if context.rewrites else None
            results.append(self._result(query, rewrite, ranked, k, per_signal))
        return results

    def _result(
        self,
        query: str,
        rewrite: str | None,
        ranked: Sequence[tuple[str, float]],
        k: int,
        per_signal: Mapping[str, SignalScores] | None = None,
    ) -> RetrievalResult:
        tools: list[RetrievedTool] = []
        for tool_id, score in ranked:
            tool = self.catalog.get(tool_id)
            if tool is None:
                logger.warning(
                    "The index returned tool id %r, which is not in the catalogue; it is left "
                    "out. Re-index from the current catalogue (index_catalog()).",
                    tool_id,
                )
                continue
            signals = {n: round(v.get(tool_id), 6) for n, v in (per_signal or {}).items()}
            tools.append(RetrievedTool(tool, score, len(tools) + 1, signals))
            if len(tools) == k:
                break
        return RetrievalResult(query=query, rewrites=(rewrite,) if rewrite else (), tools=tools)

    def retrieve(
        self,
        query: str,
        *,
        k: int | None = None,
        history: Sequence[str] | None = (),
        selection: ToolSelection | None = None,
    ) -> RetrievalResult:
        """Retrieve the top ``k`` tools for ``query``.

        Args:
            query: The user's query.
            k: Number of tools (the most, with a score cut-off); defaults to ``settings.k``.
            history: Earlier user turns, oldest first, shown to the rewriter for follow-ups.
            selection: Which ranked tools to return (`ToolSelection`); default
                ``settings.selection``.
        """
        histories = [validate_history(history)]
        return self.retrieve_batch([query], k=k, histories=histories, selection=selection)[0]

    def retrieve_batch(
        self,
        queries: Sequence[str],
        *,
        k: int | None = None,
        histories: Sequence[Sequence[str]] | None = None,
        selection: ToolSelection | None = None,
    ) -> list[RetrievalResult]:
        """`retrieve` for many queries: one batched search, rewrites generated in one batch."""
        if isinstance(queries, str):
            msg = (
                f"retrieve_batch takes a list of queries, got the string {queries[:50]!r}; "
                "use retrieve(query) for one query, or wrap it: [query]."
            )
            raise TypeError(msg)
        return self._run(self._retrieval_steps(queries, k, histories, selection))

    async def aretrieve(
        self,
        query: str,
        *,
        k: int | None = None,
        history: Sequence[str] | None = (),
        selection: ToolSelection | None = None,
    ) -> RetrievalResult:
        """Async `retrieve`: the store and the rewriter are awaited, never run on the loop.

        The same steps as `retrieve_batch`, driven with the store's and rewriter's async calls.
        """
        histories = [validate_history(history)]
        steps = self._retrieval_steps([query], k, histories, selection)
        return (await self._arun(steps))[0]

    def _retrieval_steps(
        self,
        queries: Sequence[str],
        k: int | None,
        histories: Sequence[Sequence[str]] | None,
        selection: ToolSelection | None,
    ) -> Generator[_Step, Any, list[RetrievalResult]]:
        """A retrieval as steps (`_Step`): `_run` drives it blocking, `_arun` awaiting."""
        k = self._k(k)
        chosen = self.selection_for(selection)
        queries = [validate_query(q) for q in queries]
        histories = self._histories(queries, histories)
        weights = self.settings.fusion
        fetch = k + len(chosen.always_include)  # always-included tools do not count against k
        if weights.dense_only and not chosen.cuts:
            found = yield _Step("dense", queries, fetch)
            results = [
                self._result(q, None, [(h.tool_id, h.score) for h in hs], fetch)
                for q, hs in zip(queries, found, strict=True)
            ]
        else:  # a cut-off compares fused (standardised) scores, even for dense-only weights
            context = yield from self._context_steps(
                queries,
                histories,
                depth=self.settings.fetch_depth(fetch),
                rewrite=weights.uses_rewrite,
                normalize=weights.normalize,
            )
            results = self._fused_results(context, fetch)
        return [self._select(r, chosen, k) for r in results]

    async def aretrieve_batch(
        self,
        queries: Sequence[str],
        *,
        k: int | None = None,
        histories: Sequence[Sequence[str]] | None = None,
        selection: ToolSelection | None = None,
    ) -> list[RetrievalResult]:
        """Async `retrieve_batch` (runs in a worker thread so rewrites stay batched)."""
        return await asyncio.to_thread(
            self.retrieve_batch, queries, k=k, histories=histories, selection=selection
        )

    def retrieve_turn(
        self,
        query: str,
        *,
        history: Sequence[str] | None = (),
        context_query: str | None = None,
        context_weight: float = 0.5,
        k: int | None = None,
        selection: ToolSelection | None = None,
    ) -> RetrievalResult:
        """The tools for one turn of a conversation: the selection an agent binds.

        ``query`` (the last user turn; the rewriter sees ``history``) is retrieved a pool deep
        (``max(4 k, 20)`` tools, at most the catalogue). With a ``context_query`` (the recent
        turns joined, `qta_integrations.agents.conversation_query`), the index is searched
        with it too and the two rankings are fused (`qta_integrations.ranking.fuse_hits`,
        weight ``context_weight`` on the context search), so a follow-up such as "and
        tomorrow?" keeps the earlier topic's tools. ``selection`` then decides, on the query's
        own scores, how many to keep (at most ``k``); its always-included tools come last.

        Args:
            query: The last user turn.
            history: Earlier user turns, oldest first.
            context_query: The recent turns joined, or None (the first turn).
            context_weight: Weight of the context search in the fused ranking, in [0, 1].
            k: The most tools kept, not counting those always included; default
                ``settings.k``.
            selection: Tools always included and a score cut-off; default
                ``settings.selection``.

        Example:
            .. code-block:: python

                result = pipeline.retrieve_turn(
                    "and in Berlin?", history=["weather in Paris?"],
                    context_query="weather in Paris? and in Berlin?",
                )
                print(result.tool_ids)  # ['weather', ...]
        """
        steps = self._turn_steps(query, history, context_query, context_weight, k, selection)
        return self._run(steps)

    async def aretrieve_turn(self, query: str, **options: Any) -> RetrievalResult:
        """Async `retrieve_turn` (the same keyword arguments): the same steps, awaited."""
        return await self._arun(self._turn_steps(query, **options))

    def _turn_steps(
        self,
        query: str,
        history: Sequence[str] | None = (),
        context_query: str | None = None,
        context_weight: float = 0.5,
        k: int | None = None,
        selection: ToolSelection | None = None,
    ) -> Generator[_Step, Any, RetrievalResult]:
        if not 0.0 <= context_weight <= 1.0:
            msg = f"context_weight must be in [0, 1], got {context_weight}. Use 0 to ignore it."
            raise ValueError(msg)
        k = self._k(k)
        chosen = self.selection_for(selection)
        pool = min(len(self.catalog), max(4 * k, 20))
        # An infinite margin keeps the whole pool but scores it on the scale the cut-off uses.
        uncut = ToolSelection(margin=math.inf) if chosen.cuts else ToolSelection()
        histories = [validate_history(history)]
        [result] = yield from self._retrieval_steps([query], pool, histories, uncut)
        always = chosen.always_include
        order = [t for t in result.tools if t.tool.id not in always]
        if context_query is not None:
            [context] = yield _Step("tools", [context_query], pool)
            ranked = [ToolHit(t.tool.id, t.score) for t in order]
            context = [h for h in context if h.tool_id not in always]
            if not (self.settings.fusion.dense_only and not uncut.cuts):
                # The query's scores are fused ones, the context's similarities: fuse_hits
                # adds them, so both are standardised first.
                ranked, context = _standardised(ranked), _standardised(context)
            fused = fuse_hits(ranked, [context], alpha=context_weight)
            reached = {t.tool.id: t for t in order}
            order = [
                replace(reached[h.tool_id], score=h.score)
                if h.tool_id in reached
                else RetrievedTool(self.catalog[h.tool_id], h.score, 0)
                for h in fused
                if h.tool_id in self.catalog
            ]
        return self._select(result, chosen, k, order)

    def selection_for(self, selection: ToolSelection | None) -> ToolSelection:
        """The selection a retrieval given ``selection`` uses (None: ``settings.selection``).

        Raises:
            ValueError: if it always includes tools that are not in the catalogue, or is
                adaptive while ``settings.selection`` is not (see `resolve_selection`).
        """
        chosen = resolve_selection(selection, self.settings.selection)
        if chosen.always_include:
            chosen.check_tools(self.catalog, known=self.catalog.ids[:5])
        return chosen

    def _select(
        self,
        result: RetrievalResult,
        selection: ToolSelection,
        k: int,
        order: Sequence[RetrievedTool] | None = None,
    ) -> RetrievalResult:
        """Apply ``selection`` to a result ranked ``k + len(always_include)`` deep.

        How many tools are kept is decided on the result's own scores; ``order`` (the result's
        tools re-ranked, as `retrieve_turn` fuses them with a context search) is what they are
        then taken from.
        """
        if selection.is_default and order is None:
            return result
        always = selection.always_include
        ranked = [t for t in result.tools if t.tool.id not in always]
        kept = list(ranked if order is None else order)[
            : selection.count([t.score for t in ranked], k)
        ]
        tools = [replace(t, rank=rank) for rank, t in enumerate(kept, start=1)]
        reached = {t.tool.id: t for t in result.tools}
        floor = min((t.score for t in result.tools), default=0.0)
        for tool_id in always:
            rank = len(tools) + 1
            hit = reached.get(tool_id)
            tools.append(
                replace(hit, rank=rank, always_included=True)
                if hit is not None
                else RetrievedTool(self.catalog[tool_id], floor, rank, always_included=True)
            )
        return replace(result, tools=tools)

    def _k(self, k: int | None) -> int:
        if k is None:
            return self.settings.k
        return _check_positive("k", k)

    @staticmethod
    def _histories(
        queries: Sequence[str], histories: Sequence[Sequence[str]] | None
    ) -> list[tuple[str, ...]]:
        return validate_histories(queries, histories)


def _standardised(hits: Sequence[ToolHit]) -> list[ToolHit]:
    """``hits`` with their scores z-scored over the list (one scale for lists to be fused)."""
    scores = standardise([(h.tool_id, h.score) for h in hits], normalize=True).scores
    return [ToolHit(h.tool_id, scores[h.tool_id]) for h in hits]
