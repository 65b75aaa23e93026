"""The store interface: `ToolIndex`, the rows it holds (`IndexEntry`) and what it returns.

`ToolIndex` is the one interface the core searches through. A store holds `IndexEntry` rows of
two kinds: ``"tool"`` (a tool's text, keyed by its id) and ``"example"`` (a user's labelled
query, carrying its gold tool ids). `ToolIndex.search` returns tools only; `search_entries`
returns both. Scores are similarities: higher is better (cosine for normalised embeddings).

`ScoredToolIndex` is the base of the in-memory indexes that score the whole catalogue at once
(`qta_integrations.stores.exact.ExactToolIndex`, `qta_integrations.stores.bm25.BM25ToolIndex`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from qta_integrations.stores.records import RecordManager
from qta_integrations.tools import Tool

__all__ = [
    "ENTRY_KINDS",
    "REFERENCE_FORMAT",
    "IndexEntry",
    "IndexHit",
    "ScoredToolIndex",
    "ToolHit",
    "ToolIndex",
    "top_indices",
]

REFERENCE_FORMAT = 1
"""The version of the dicts `ToolIndex.persist_reference` returns."""

EntryKind = Literal["tool", "example"]
ENTRY_KINDS: tuple[str, ...] = ("tool", "example")
KIND_KEY = "qta_kind"
TOOL_IDS_KEY = "qta_tool_ids"
HASH_KEY = "qta_hash"
EXAMPLE_PREFIX = "example:"
_RESERVED_KEYS = frozenset({KIND_KEY, TOOL_IDS_KEY, HASH_KEY, "tool_id"})
_SCALARS = (str, int, float, bool)

MetadataValue = str | int | float | bool


# -- entries and hits -------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolHit:
    """One search result: a tool id and its similarity to the query (higher is better)."""

    tool_id: str
    score: float


@dataclass(frozen=True)
class IndexEntry:
    """One row of an index: a tool, or a labelled example query.

    Attributes:
        id: Tool entries: the tool id. Example entries: ``"example:"`` + the first 16 hex
            digits of the sha256 of the query and its tool ids (`for_example`); an example's
            id always starts with ``"example:"``.
        text: What is embedded.
        kind: ``"tool"`` or ``"example"``.
        tool_ids: A tool entry: ``(id,)`` (filled in when empty). An example: its gold tools.
        metadata: Flat extra metadata (str, int, float or bool values), stored with the entry.
            The keys ``qta_kind``, ``qta_tool_ids``, ``qta_hash`` and ``tool_id`` are reserved.

    Raises:
        ValueError: if the id is empty, the kind unknown, an example has no tool ids or an id
            without the ``"example:"`` prefix, a tool's ``tool_ids`` is not ``(id,)``, or the
            metadata is not flat or uses a reserved key.

    Example:
        .. code-block:: python

            from qta_integrations.stores import IndexEntry

            entry = IndexEntry.for_example("will it rain in Oslo?", ["weather"])
            print(entry.id.startswith("example:"), entry.tool_ids)  # True ('weather',)
    """

    id: str
    text: str
    kind: EntryKind = "tool"
    tool_ids: tuple[str, ...] = ()
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            msg = f"IndexEntry.id must be a non-empty str, got {self.id!r}."
            raise ValueError(msg)
        if not isinstance(self.text, str):
            msg = f"IndexEntry.text of {self.id!r} must be a str, got {type(self.text).__name__}."
            raise TypeError(msg)
        if self.kind not in ENTRY_KINDS:
            msg = f"IndexEntry.kind of {self.id!r} must be one of {ENTRY_KINDS}, got {self.kind!r}."
            raise ValueError(msg)
        tool_ids = _tool_id_tuple(self.tool_ids, where=f"IndexEntry {self.id!r}")
        if self.kind == "tool":
            if not tool_ids:
                tool_ids = (self.id,)
            elif tool_ids != (self.id,):
                msg = (
                    f"A tool entry's tool_ids must be ({self.id!r},), got {tool_ids!r}; use "
                    "kind='example' for an entry that points at other tools."
                )
                raise ValueError(msg)
        elif not tool_ids:
            msg = f"Example entry {self.id!r} has no tool ids; give it its gold tools."
            raise ValueError(msg)
        elif not self.id.startswith(EXAMPLE_PREFIX):
            # Stores tell examples from tools by the id alone, without reading metadata.
            msg = (
                f"An example entry's id must start with {EXAMPLE_PREFIX!r}, got {self.id!r}; "
                "build it with IndexEntry.for_example(query, tool_ids)."
            )
            raise ValueError(msg)
        object.__setattr__(self, "tool_ids", tool_ids)
        object.__setattr__(self, "metadata", _flat_metadata(self.metadata, self.id))

    @cached_property
    def content_hash(self) -> str:
        """sha256 (hex) over kind, text, tool ids and metadata, as stable JSON."""
        payload = {
            "kind": self.kind,
            "text": self.text,
            "tool_ids": list(self.tool_ids),
            "metadata": dict(self.metadata),
        }
        data = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(data.encode("utf-8")).hexdigest()

    @classmethod
    def for_tool(cls, tool: Tool) -> IndexEntry:
        """The entry of a tool: its id, ``tool.text``, its flat metadata and ``tool_name``.

        Metadata values that are not str, int, float or bool are left out (stores only take
        flat scalars), as are the reserved keys.
        """
        metadata: dict[str, MetadataValue] = {
            k: v
            for k, v in tool.metadata.items()
            if isinstance(k, str) and isinstance(v, _SCALARS) and k not in _RESERVED_KEYS
        }
        metadata["tool_name"] = tool.name
        return cls(id=tool.id, text=tool.text, kind="tool", metadata=metadata)

    @classmethod
    def for_example(cls, query: str, tool_ids: Sequence[str]) -> IndexEntry:
        """The entry of a labelled query: its text is the query, its ``tool_ids`` the gold tools.

        The id is ``"example:"`` + ``sha256(json.dumps([query, list(tool_ids)]))[:16]``, so the
        same labelled query always gets the same id.

        Raises:
            ValueError: if the query is blank or there are no tool ids.
        """
        if not isinstance(query, str) or not query.strip():
            msg = f"An example's query must be a non-blank str, got {query!r}."
            raise ValueError(msg)
        ids = _tool_id_tuple(tool_ids, where=f"example {query!r}")
        if not ids:
            msg = f"Example {query!r} has no tool ids; label it with the tools it needs."
            raise ValueError(msg)
        digest = hashlib.sha256(json.dumps([query, list(ids)]).encode("utf-8")).hexdigest()
        return cls(id=f"{EXAMPLE_PREFIX}{digest[:16]}", text=query, kind="example", tool_ids=ids)

    def stored_metadata(self) -> dict[str, MetadataValue]:
        """The flat metadata written to a store.

        The entry's own metadata plus ``qta_kind``, ``qta_tool_ids`` (a JSON list),
        ``qta_hash`` and, for tools, ``tool_id`` / ``tool_name``.
        """
        stored: dict[str, MetadataValue] = {
            **self.metadata,
            KIND_KEY: self.kind,
            TOOL_IDS_KEY: json.dumps(list(self.tool_ids)),
            HASH_KEY: self.content_hash,
        }
        if self.kind == "tool":
            stored["tool_id"] = self.id
            stored["tool_name"] = self.metadata.get("tool_name", self.id)
        return stored


@dataclass(frozen=True)
class IndexHit:
    """One entry found by `ToolIndex.search_entries`.

    Attributes:
        entry_id: The entry's id (a tool id, or ``"example:..."``).
        score: Similarity to the query, higher is better (the same scale as `ToolHit.score`).
        kind: ``"tool"`` or ``"example"``.
        tool_ids: The tool itself, or the example's gold tools.
    """

    entry_id: str
    score: float
    kind: str
    tool_ids: tuple[str, ...]


def _tool_id_tuple(tool_ids: Any, *, where: str) -> tuple[str, ...]:
    if isinstance(tool_ids, str) or not isinstance(tool_ids, Sequence):
        msg = f"{where}: tool_ids must be a sequence of tool id strings, got {tool_ids!r}."
        raise TypeError(msg)
    bad = [t for t in tool_ids if not isinstance(t, str) or not t]
    if bad:
        msg = f"{where}: every tool id must be a non-empty str, got {bad!r}."
        raise ValueError(msg)
    return tuple(tool_ids)


def _flat_metadata(metadata: Any, entry_id: str) -> dict[str, MetadataValue]:
    if not isinstance(metadata, Mapping):
        msg = f"IndexEntry {entry_id!r}: metadata must be a mapping, got {metadata!r}."
        raise TypeError(msg)
    for key, value in metadata.items():
        if not isinstance(key, str) or key in _RESERVED_KEYS:
            msg = (
                f"IndexEntry {entry_id!r}: metadata key {key!r} is reserved or not a str; "
                f"rename it (reserved: {sorted(_RESERVED_KEYS)})."
            )
            raise ValueError(msg)
        if not isinstance(value, _SCALARS):
            msg = (
                f"IndexEntry {entry_id!r}: metadata[{key!r}] = {value!r} is not a str, int, "
                "float or bool; stores take flat metadata only (serialise it to a str)."
            )
            raise ValueError(msg)
    return dict(metadata)


def entry_kind(metadata: Mapping[str, Any] | None) -> str | None:
    """The kind of a stored row; None for a row this package did not write."""
    metadata = metadata or {}
    kind = metadata.get(KIND_KEY)
    if isinstance(kind, str):
        return kind
    return "tool" if "tool_id" in metadata else None  # written by an older version


def _stored_hash(metadata: Mapping[str, Any] | None) -> str | None:
    value = (metadata or {}).get(HASH_KEY)
    return value if isinstance(value, str) else None


def stored_hit(entry_id: Any, metadata: Mapping[str, Any] | None, score: float) -> IndexHit:
    metadata = metadata or {}
    kind = entry_kind(metadata) or "tool"
    raw = metadata.get(TOOL_IDS_KEY)
    if isinstance(raw, str):
        tool_ids = tuple(str(t) for t in json.loads(raw))
    else:
        tool_id = metadata.get("tool_id", entry_id)
        if tool_id is None:
            msg = (
                "A document in the vector store has neither a 'tool_id' in its metadata nor an "
                "id; index tools through QTARetriever (or ToolIndex.add_tools) so each carries "
                "its id."
            )
            raise ValueError(msg)
        tool_ids = (str(tool_id),)
    if entry_id is None:
        entry_id = tool_ids[0]
    return IndexHit(str(entry_id), float(score), kind, tool_ids)


def _entry_as_tool(entry: IndexEntry) -> Tool:
    # For indexes that only implement add_tools: Tool.text is the description when the name is
    # empty, so the tool embeds exactly the entry's text.
    return Tool(id=entry.id, name="", description=entry.text, metadata=dict(entry.metadata))


def tool_hits(hits: Sequence[IndexHit]) -> list[ToolHit]:
    return [ToolHit(h.tool_ids[0], h.score) for h in hits if h.kind == "tool"]


# -- the interface ----------------------------------------------------------------------------


class ToolIndex:
    """Search tools (and labelled examples) by text.

    A backend implements `upsert`, `delete` and `search_entries` (and `search_entries_many` /
    `asearch_entries` to batch or await); the tool-only `add_tools`, `search`, `search_many`
    and `asearch` are derived here. An older backend that implements only `add_tools` and
    `search` keeps working for tools (it cannot hold examples).

    The index also carries what re-indexing needs: a `record_manager` (what was written),
    `list_entries` (what is in the store, where the store can tell) and `write_lock` (held by
    every write; an inter-process lock for an on-disk Chroma).
    """

    _record_manager: RecordManager | None = None

    # -- writing ---------------------------------------------------------------------

    def upsert(self, entries: Sequence[IndexEntry]) -> None:
        """Insert or replace (keyed by entry id) the given entries, embedding their texts.

        Raises:
            NotImplementedError: if the backend implements neither this nor `add_tools`, or
                implements only `add_tools` and ``entries`` holds examples.
        """
        if type(self).add_tools is ToolIndex.add_tools:
            msg = f"{type(self).__name__} implements neither upsert() nor add_tools()."
            raise NotImplementedError(msg)
        examples = [e.id for e in entries if e.kind != "tool"]
        if examples:
            msg = (
                f"{type(self).__name__} stores tools only (it implements add_tools, not upsert); "
                f"got example entries {examples[:3]}. Keep examples in an index that stores "
                "them: chroma_tool_index, VectorStoreToolIndex, LlamaIndexToolIndex or "
                "ExactToolIndex."
            )
            raise NotImplementedError(msg)
        if entries:
            self.add_tools([_entry_as_tool(e) for e in entries])

    def delete(self, ids: Sequence[str]) -> None:
        """Delete entries by id (unknown ids are ignored).

        Raises:
            NotImplementedError: if the backend cannot delete.
        """
        msg = (
            f"{type(self).__name__} cannot delete entries (asked to delete {list(ids)[:3]}); "
            "rebuild it from the current catalogue instead."
        )
        raise NotImplementedError(msg)

    def add_tools(self, tools: Sequence[Tool]) -> None:
        """Upsert tools (keyed by tool id): `upsert` of their `IndexEntry.for_tool` entries."""
        self.upsert([IndexEntry.for_tool(t) for t in tools])

    # -- searching -------------------------------------------------------------------

    def search_entries(self, query: str, k: int) -> list[IndexHit]:
        """Return up to ``k`` entries (tools and examples) most similar to ``query``, best first.

        Raises:
            NotImplementedError: if the backend implements neither this nor `search`.
        """
        if type(self).search is ToolIndex.search:
            msg = f"{type(self).__name__} implements neither search_entries() nor search()."
            raise NotImplementedError(msg)
        return [IndexHit(h.tool_id, h.score, "tool", (h.tool_id,)) for h in self.search(query, k)]

    def search_entries_many(self, queries: Sequence[str], k: int) -> list[list[IndexHit]]:
        """`search_entries` for several queries. Backends override this to batch the embedding."""
        return [self.search_entries(q, k) for q in queries]

    async def asearch_entries(self, query: str, k: int) -> list[IndexHit]:
        """Async `search_entries`. The default runs it in a worker thread, off the event loop."""
        return await asyncio.to_thread(self.search_entries, query, k)

    def search(self, query: str, k: int) -> list[ToolHit]:
        """Return up to ``k`` tools most similar to ``query``, best first (examples left out)."""
        return self.search_many([query], k)[0]

    def search_many(self, queries: Sequence[str], k: int) -> list[list[ToolHit]]:
        """`search` for several queries, through `search_entries_many` (batched where it is).

        Entries are fetched ``k`` at a time, and again twice as deep for the queries whose
        first ``k`` hits included examples, until ``k`` tools are found or the store runs out.
        """
        results: list[list[ToolHit]] = [[] for _ in queries]
        pending = list(range(len(queries)))
        fetch = k
        while pending:
            batch = self.search_entries_many([queries[i] for i in pending], fetch)
            still = []
            for i, hits in zip(pending, batch, strict=True):
                tools = tool_hits(hits)
                if len(tools) >= k or len(hits) < fetch:
                    results[i] = tools[:k]
                else:
                    still.append(i)
            pending, fetch = still, fetch * 2
        return results

    async def asearch(self, query: str, k: int) -> list[ToolHit]:
        """Async `search`, through `asearch_entries`."""
        fetch = k
        while True:
            hits = await self.asearch_entries(query, fetch)
            tools = tool_hits(hits)
            if len(tools) >= k or len(hits) < fetch:
                return tools[:k]
            fetch *= 2

    # -- re-indexing, locking, saving -------------------------------------------------

    @property
    def record_manager(self) -> RecordManager:
        """What was written to this index (in memory unless the store lives on disk)."""
        if self._record_manager is None:
            self._record_manager = RecordManager()
        return self._record_manager

    @record_manager.setter
    def record_manager(self, value: RecordManager) -> None:
        self._record_manager = value

    def list_entries(self, kind: str | None = None) -> dict[str, str | None] | None:
        """The stored entries (of ``kind``, or all): ``id -> content hash`` (None if unknown).

        Returns None when the backend cannot list its entries. Rows that this package did
        not write (no ``qta_kind`` nor ``tool_id`` metadata) are not listed, so re-indexing
        never deletes them.
        """
        return None

    def sync_listing(self, kind: str, recorded: Mapping[str, str]) -> dict[str, str | None] | None:
        """What `sync_index` compares the source with: `list_entries` of ``kind``.

        ``recorded`` is what this package recorded writing to this index (``id -> content
        hash``, the index's `record_manager`). A store whose metadata is slow to read (Chroma)
        may list only its ids and take the hash of every recorded id from ``recorded``, reading
        the metadata of the others only, where the record is known to be this store's alone.
        The default lists the entries.
        """
        return self.list_entries(kind)

    def write_lock(self) -> contextlib.AbstractContextManager[Any]:
        """A context manager held around every write (re-entrant). No-op unless on disk."""
        return contextlib.nullcontext()

    def close(self) -> None:
        """Release what the index holds (an in-memory Chroma collection). Idempotent."""

    def __enter__(self) -> ToolIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def persist_reference(self, directory: Path) -> dict[str, Any]:
        """Make the index's data live in (or be referenced from) ``directory``.

        Returns a small JSON-serialisable dict that `load_index` turns back into an index.

        Raises:
            TypeError: if this kind of index cannot be saved.
        """
        msg = (
            f"A {type(self).__name__} cannot be saved: save the embedded Chroma index, a "
            "LlamaIndex VectorStoreIndex, an ExactToolIndex, or pass your own store again when "
            "loading."
        )
        raise TypeError(msg)


# -- in-memory matrices -----------------------------------------------------------------------


class ScoredToolIndex(ToolIndex):
    """An index that scores every tool for a query at once (a ``queries x tools`` matrix).

    Subclasses implement `scores` and keep tool ids in ``_ids`` (matrix column order);
    searching and full rankings are derived from the matrix here. `scores` and `rank_all`
    cover tools only.
    """

    _ids: list[str]

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """A ``len(queries) x len(ids)`` matrix of scores, higher is better."""
        raise NotImplementedError(f"{type(self).__name__} must implement scores().")

    def rank_all(self, queries: Sequence[str]) -> list[list[str]]:
        """The full ranking of tool ids for each query, best first (ties by catalogue order)."""
        return self.rank_scores(self.scores(queries))

    def rank_scores(self, scores: np.ndarray) -> list[list[str]]:
        """Full rankings from a ``queries x tools`` matrix in `scores`' column order."""
        return [[self._ids[i] for i in np.argsort(-row, kind="stable")] for row in scores]

    def search_many(self, queries: Sequence[str], k: int) -> list[list[ToolHit]]:
        """Top ``k`` tools for each query, scoring all queries in one batch."""
        results = []
        for row in self.scores(queries):
            order = top_indices(row, k)
            results.append([ToolHit(self._ids[i], float(row[i])) for i in order])
        return results

    def search(self, query: str, k: int) -> list[ToolHit]:
        """Top ``k`` tools for one query."""
        return self.search_many([query], k)[0]


def listed_entries(
    rows: Sequence[tuple[str, Mapping[str, Any] | None]], kind: str | None
) -> dict[str, str | None]:
    listed: dict[str, str | None] = {}
    for entry_id, metadata in rows:
        row_kind = entry_kind(metadata)
        if row_kind is not None and (kind is None or row_kind == kind):
            listed[str(entry_id)] = _stored_hash(metadata)
    return listed


def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """``np.argsort(-scores, kind="stable")[:k]``, without sorting every score.

    The ``k``-th highest score is found by partition and only the scores at or above it are
    sorted, stably, so ties keep their order exactly as a full sort would. Over 100,000 tools
    this takes about a millisecond where the full stable sort took tens.

    Example:
        .. code-block:: python

            import numpy as np
            from qta_integrations.stores.base import top_indices

            print(top_indices(np.array([0.1, 0.5, 0.5, 0.2]), 2).tolist())  # [1, 2]
    """
    scores = np.asarray(scores)
    if k <= 0:
        return np.empty(0, dtype=np.intp)
    if k >= len(scores) or np.isnan(scores).any():  # NaN would upset the partition
        return np.argsort(-scores, kind="stable")[:k]
    kth = np.partition(scores, len(scores) - k)[len(scores) - k]
    candidates = np.flatnonzero(scores >= kth)
    return candidates[np.argsort(-scores[candidates], kind="stable")][:k]
