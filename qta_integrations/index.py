"""The tool index: where tools (and labelled example queries) are embedded and searched.

`ToolIndex` is the one interface the core searches through. A store holds `IndexEntry` rows of
two kinds: ``"tool"`` (a tool's text, keyed by its id) and ``"example"`` (a user's labelled
query, carrying its gold tool ids). `ToolIndex.search` returns tools only; `search_entries`
returns both. Three backends:

* `VectorStoreToolIndex` over any LangChain ``VectorStore`` (embedded Chroma by default, built
  by `chroma_tool_index`; a Chroma server or a user's own store works the same way);
* `LlamaIndexToolIndex` over a LlamaIndex ``VectorStoreIndex``;
* `ExactToolIndex`, brute-force cosine over an in-memory matrix. It gives the frozen
  retriever's exact ranking of the *whole* catalogue, which DPO pair construction needs.

Scores are similarities: higher is better (cosine for normalised embeddings). Re-indexing is a
sync (`qta_integrations.indexing.sync_index`); every index saves itself with
`ToolIndex.persist_reference` and comes back with `load_index`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
from langchain_core.embeddings import Embeddings

from qta_integrations.indexing import RECORD_FILE, RecordManager
from qta_integrations.tools import Tool, ToolCatalog
from qta_integrations.validation import check_storage_directory

__all__ = [
    "ExactToolIndex",
    "IndexEntry",
    "IndexHit",
    "LlamaIndexToolIndex",
    "ScoredToolIndex",
    "ToolHit",
    "ToolIndex",
    "VectorStoreToolIndex",
    "chroma_tool_index",
    "load_index",
]

logger = logging.getLogger(__name__)

DEFAULT_COLLECTION_NAME = "qta_tools"
CHROMA_DIR = "chroma"
LLAMA_INDEX_DIR = "llama_index"
EXACT_INDEX_FILE = "exact_index.npz"
LOCK_FILE = ".qta_write.lock"
"""The inter-process write lock's file inside an on-disk Chroma directory."""
DEFAULT_LOCK_TIMEOUT = 120.0
REFERENCE_FORMAT = 1

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
            digits of the sha256 of the query and its tool ids (`for_example`).
        text: What is embedded.
        kind: ``"tool"`` or ``"example"``.
        tool_ids: A tool entry: ``(id,)`` (filled in when empty). An example: its gold tools.
        metadata: Flat extra metadata (str, int, float or bool values), stored with the entry.
            The keys ``qta_kind``, ``qta_tool_ids``, ``qta_hash`` and ``tool_id`` are reserved.

    Raises:
        ValueError: if the id is empty, the kind unknown, an example has no tool ids, a tool's
            ``tool_ids`` is not ``(id,)``, or the metadata is not flat or uses a reserved key.

    Example:
        .. code-block:: python

            from qta_integrations.index import IndexEntry

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


def _entry_kind(metadata: Mapping[str, Any] | None) -> str | None:
    """The kind of a stored row; None for a row this package did not write."""
    metadata = metadata or {}
    kind = metadata.get(KIND_KEY)
    if isinstance(kind, str):
        return kind
    return "tool" if "tool_id" in metadata else None  # written by an older version


def _stored_hash(metadata: Mapping[str, Any] | None) -> str | None:
    value = (metadata or {}).get(HASH_KEY)
    return value if isinstance(value, str) else None


def _hit(entry_id: Any, metadata: Mapping[str, Any] | None, score: float) -> IndexHit:
    metadata = metadata or {}
    kind = _entry_kind(metadata) or "tool"
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


def _to_tool_hits(hits: Sequence[IndexHit]) -> list[ToolHit]:
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
                tools = _to_tool_hits(hits)
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
            tools = _to_tool_hits(hits)
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


# -- LangChain vector stores ------------------------------------------------------------------


class VectorStoreToolIndex(ToolIndex):
    """A `ToolIndex` over any LangChain ``VectorStore``.

    Entries are added with their id as the document id (stores such as Chroma upsert by id, so
    indexing twice changes nothing) and flat metadata (``qta_kind``, ``qta_tool_ids``,
    ``qta_hash``; ``tool_id`` / ``tool_name`` for tools). Search uses the store's
    ``similarity_search_with_relevance_scores``; a store without a relevance function
    (``InMemoryVectorStore``) gives its raw scores, which must then be similarities (higher is
    better), as ``InMemoryVectorStore``'s cosine is.

    Args:
        vectorstore: The LangChain vector store. It must have an embedding function.
        distance_to_similarity: Search with the store's raw distances and map them through this
            function instead (`chroma_tool_index` passes ``1 - cosine distance``, the exact
            cosine, which LangChain's relevance check would flag when it is negative).
        chroma_client: The ``chromadb`` client behind a Chroma store, with
            ``collection_name``: enables batched search, listing entries and saving (set by
            `chroma_tool_index`).
        collection_name: The Chroma collection's name.
        persist_directory: The on-disk Chroma's directory: every write then holds an
            inter-process lock (``.qta_write.lock``) and the record lives there.
        lock_timeout: Seconds a writer waits for another process's write before failing.
        record_manager: Where re-indexing records what it wrote; default: a SQLite file in
            ``persist_directory``, else in memory.

    Example:
        .. code-block:: python

            from langchain_core.embeddings import DeterministicFakeEmbedding
            from langchain_core.vectorstores import InMemoryVectorStore
            from qta_integrations.index import VectorStoreToolIndex
            from qta_integrations.tools import Tool

            index = VectorStoreToolIndex(InMemoryVectorStore(DeterministicFakeEmbedding(size=16)))
            index.add_tools([Tool(id="w", name="weather", description="Weather for a city.")])
            print(index.search("weather", k=1)[0].tool_id)  # w
    """

    def __init__(
        self,
        vectorstore: Any,
        *,
        distance_to_similarity: Callable[[float], float] | None = None,
        chroma_client: Any | None = None,
        collection_name: str | None = None,
        persist_directory: str | os.PathLike[str] | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        record_manager: RecordManager | None = None,
    ) -> None:
        if (chroma_client is None) != (collection_name is None):
            msg = "Pass chroma_client and collection_name together (or neither)."
            raise ValueError(msg)
        self.vectorstore = vectorstore
        self.distance_to_similarity = distance_to_similarity
        self.chroma_client = chroma_client
        self.collection_name = collection_name
        self.persist_directory = Path(persist_directory) if persist_directory is not None else None
        self.lock_timeout = lock_timeout
        if self.persist_directory is not None:
            self.persist_directory.mkdir(parents=True, exist_ok=True)
            if record_manager is None:
                record_manager = RecordManager(self.persist_directory / RECORD_FILE)
        self._record_manager = record_manager
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def __repr__(self) -> str:
        where = f", collection={self.collection_name!r}" if self.collection_name else ""
        return f"{type(self).__name__}({type(self.vectorstore).__name__}{where})"

    # -- Chroma -----------------------------------------------------------------------

    def chroma_collection(self) -> Any:
        """The ``chromadb`` collection behind the store (public client API).

        Raises:
            ValueError: if the index was not built with a Chroma client.
        """
        if self.chroma_client is None or self.collection_name is None:
            msg = (
                f"This {type(self).__name__} over {type(self.vectorstore).__name__} has no "
                "Chroma client; build it with chroma_tool_index(...)."
            )
            raise ValueError(msg)
        return self.chroma_client.get_collection(self.collection_name)

    def write_lock(self) -> contextlib.AbstractContextManager[Any]:
        """The inter-process lock of an on-disk store (a no-op otherwise)."""
        if self.persist_directory is None:
            return contextlib.nullcontext()
        return _directory_lock(self.persist_directory, self.lock_timeout)

    def close(self) -> None:
        """Delete the in-memory Chroma collection this index created (no-op otherwise)."""
        if self._finalizer is not None:
            self._finalizer()

    # -- writing ----------------------------------------------------------------------

    def upsert(self, entries: Sequence[IndexEntry]) -> None:
        """Upsert entries into the store, keyed by entry id."""
        if not entries:
            return
        with self.write_lock():
            self.vectorstore.add_texts(
                [e.text for e in entries],
                metadatas=[e.stored_metadata() for e in entries],
                ids=[e.id for e in entries],
            )

    def delete(self, ids: Sequence[str]) -> None:
        """Delete entries by id with the store's ``delete(ids=...)``."""
        if not ids:
            return
        with self.write_lock():
            self.vectorstore.delete(ids=list(ids))

    def list_entries(self, kind: str | None = None) -> dict[str, str | None] | None:
        """List a Chroma collection (``get``) or an ``InMemoryVectorStore``; None otherwise."""
        rows: list[tuple[str, Mapping[str, Any] | None]]
        if self.chroma_client is not None:
            found = _chroma_rows(self.chroma_collection(), include=["metadatas"])
            rows = [(i, r["metadatas"]) for i, r in found]
        else:
            from langchain_core.vectorstores import InMemoryVectorStore

            if not isinstance(self.vectorstore, InMemoryVectorStore):
                return None
            rows = [(i, d.get("metadata")) for i, d in self.vectorstore.store.items()]
        return _listed(rows, kind)

    # -- searching --------------------------------------------------------------------

    def _hits(self, pairs: Sequence[tuple[Any, float]], *, raw: bool) -> list[IndexHit]:
        convert = self.distance_to_similarity if raw and self.distance_to_similarity else float
        return [_hit(doc.id, doc.metadata, float(convert(score))) for doc, score in pairs]

    def search_entries(self, query: str, k: int) -> list[IndexHit]:
        """Search the store with its own embedding of ``query``."""
        if self.distance_to_similarity is None:
            try:
                pairs = self.vectorstore.similarity_search_with_relevance_scores(query, k=k)
                return self._hits(pairs, raw=False)
            except NotImplementedError:  # no relevance function (InMemoryVectorStore): raw scores
                pass
        return self._hits(self.vectorstore.similarity_search_with_score(query, k=k), raw=True)

    def search_entries_many(self, queries: Sequence[str], k: int) -> list[list[IndexHit]]:
        """Batched search: for Chroma, one embedding call and one query for all ``queries``."""
        if self.chroma_client is None or len(queries) < 2:
            return [self.search_entries(q, k) for q in queries]
        embeddings = self.vectorstore.embeddings
        vectors = embeddings.embed_documents(list(queries))
        found = self.chroma_collection().query(
            query_embeddings=vectors, n_results=k, include=["metadatas", "distances"]
        )
        convert = self.distance_to_similarity or _cosine_from_distance
        return [
            [_hit(i, m, convert(d)) for i, m, d in zip(ids, metas, dists, strict=True)]
            for ids, metas, dists in zip(
                found["ids"], found["metadatas"], found["distances"], strict=True
            )
        ]

    async def asearch_entries(self, query: str, k: int) -> list[IndexHit]:
        """Search through the store's async API."""
        if self.distance_to_similarity is None:
            try:
                pairs = await self.vectorstore.asimilarity_search_with_relevance_scores(query, k=k)
                return self._hits(pairs, raw=False)
            except NotImplementedError:
                pass
        pairs = await self.vectorstore.asimilarity_search_with_score(query, k=k)
        return self._hits(pairs, raw=True)

    # -- saving -----------------------------------------------------------------------

    def persist_reference(self, directory: Path) -> dict[str, Any]:
        """Reference (or copy) the store so that `load_index` finds it from ``directory``.

        * an on-disk Chroma inside ``directory``: referenced by its relative path;
        * a Chroma server: referenced by host, port and collection;
        * any other Chroma (in memory, or on disk elsewhere): its ids, documents, embeddings
          and metadata are copied into ``directory / "chroma"`` (no embedding);
        * any other LangChain store: a reference saying it must be passed again at load time.
        """
        directory = Path(directory)
        if self.chroma_client is None or self.collection_name is None:
            return {
                "format": REFERENCE_FORMAT,
                "backend": "vectorstore",
                "type": type(self.vectorstore).__name__,
            }
        settings = self.chroma_client.get_settings()
        if settings.is_persistent and self.persist_directory is not None:
            own = self.persist_directory.resolve()
            if own.is_relative_to(directory.resolve()):
                return {
                    "format": REFERENCE_FORMAT,
                    "backend": "chroma",
                    "path": own.relative_to(directory.resolve()).as_posix(),
                    "collection_name": self.collection_name,
                }
        elif settings.chroma_server_host:
            return {
                "format": REFERENCE_FORMAT,
                "backend": "chroma_server",
                "host": settings.chroma_server_host,
                "port": int(settings.chroma_server_http_port or 8000),
                "ssl": bool(settings.chroma_server_ssl_enabled),
                "collection_name": self.collection_name,
            }
        _copy_chroma_collection(self.chroma_collection(), directory / CHROMA_DIR)
        return {
            "format": REFERENCE_FORMAT,
            "backend": "chroma",
            "path": CHROMA_DIR,
            "collection_name": DEFAULT_COLLECTION_NAME,
        }


@contextlib.contextmanager
def _directory_lock(directory: Path, timeout: float) -> Iterator[None]:
    """The inter-process write lock of an on-disk Chroma directory, re-entrant in a process."""
    from filelock import FileLock, Timeout

    directory.mkdir(parents=True, exist_ok=True)
    # One lock object per file in a process (is_singleton), so the lock is re-entrant across
    # indexes over the same directory instead of blocking on itself.
    lock = FileLock(directory / LOCK_FILE, is_singleton=True)
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        msg = (
            f"Another process has been writing to the Chroma directory {str(directory)!r} for "
            f"more than {timeout:g} s (lock file {LOCK_FILE}). An embedded on-disk Chroma takes "
            "one writer at a time: wait and retry, raise lock_timeout, or run a Chroma server "
            "(`chroma run --path DIR`) and pass chroma_tool_index(..., "
            "client=chromadb.HttpClient(...)) for several writers."
        )
        raise TimeoutError(msg) from None
    try:
        yield
    finally:
        lock.release()


def _chroma_rows(
    collection: Any, *, include: list[str], page: int = 5000
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every row of a Chroma collection, ``(id, {field: value})``, read a page at a time."""
    offset = 0
    while True:
        got = collection.get(include=include, limit=page, offset=offset)
        ids = got["ids"]
        for n, entry_id in enumerate(ids):
            yield entry_id, {name: got[name][n] for name in include}
        if len(ids) < page:
            return
        offset += page


def _listed(
    rows: Sequence[tuple[str, Mapping[str, Any] | None]], kind: str | None
) -> dict[str, str | None]:
    listed: dict[str, str | None] = {}
    for entry_id, metadata in rows:
        row_kind = _entry_kind(metadata)
        if row_kind is not None and (kind is None or row_kind == kind):
            listed[str(entry_id)] = _stored_hash(metadata)
    return listed


def _copy_chroma_collection(source: Any, target: Path) -> None:
    """Copy a Chroma collection into a fresh persistent collection at ``target`` (no embedding)."""
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(
        path=str(target), settings=Settings(anonymized_telemetry=False)
    )
    if DEFAULT_COLLECTION_NAME in {c.name for c in client.list_collections()}:
        client.delete_collection(DEFAULT_COLLECTION_NAME)
    collection = client.create_collection(
        DEFAULT_COLLECTION_NAME, metadata={"hnsw:space": "cosine"}
    )
    batch = client.get_max_batch_size()
    rows = list(_chroma_rows(source, include=["embeddings", "documents", "metadatas"]))
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        collection.add(
            ids=[i for i, _ in chunk],
            embeddings=[r["embeddings"] for _, r in chunk],
            documents=[r["documents"] for _, r in chunk],
            metadatas=[r["metadatas"] for _, r in chunk],
        )


def _drop_scratch_chroma(client: Any, name: str, directory: str) -> None:
    """Finalizer of an in-memory index: drop its collection, close its client, remove its files.

    Runs at most once (`weakref.finalize`); a collection already deleted is not an error.
    """
    with contextlib.suppress(Exception):
        client.delete_collection(name)
    with contextlib.suppress(Exception):
        client.close()
    shutil.rmtree(directory, ignore_errors=True)


def chroma_tool_index(
    embeddings: Embeddings,
    *,
    persist_directory: str | os.PathLike[str] | None = None,
    collection_name: str | None = None,
    client: Any | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> VectorStoreToolIndex:
    """An embedded Chroma collection (cosine space, telemetry off) wrapped as a `ToolIndex`.

    Without ``persist_directory`` nor ``client``, the index is private and temporary: a Chroma
    client of its own over a scratch directory (``tempfile.mkdtemp``), whose collection is
    deleted, client closed and directory removed when the index is garbage-collected or
    `VectorStoreToolIndex.close` is called. (Chroma's process-wide in-memory client keeps the
    memory of deleted collections, so an application creating and dropping indexes would
    grow without bound.) With ``collection_name`` and no directory, the collection lives in
    that process-wide in-memory client and is shared by every index given the same name.

    On disk, every write holds an inter-process lock (``.qta_write.lock`` in the directory), so
    two processes writing one directory take turns; for several writers at once, use a Chroma
    server (``client=chromadb.HttpClient(...)``).

    Args:
        embeddings: The embedding model (Chroma's default would download one: we never use it).
        persist_directory: Keep the index on disk here; temporary when None.
        collection_name: Defaults to ``"qta_tools"`` on disk or on a given client, and to a
            fresh unique name otherwise.
        client: An existing ``chromadb`` client, e.g. ``chromadb.HttpClient`` for a server.
        lock_timeout: Seconds an on-disk writer waits for another process's write.

    Example:
        .. code-block:: python

            from qta_integrations.index import chroma_tool_index
            from qta_integrations.testing import KeywordEmbeddings
            from qta_integrations.tools import Tool

            with chroma_tool_index(KeywordEmbeddings()) as index:
                index.add_tools([Tool(id="w", name="weather", description="Weather in a city.")])
                print(index.search("weather", k=1)[0].tool_id)  # w
    """
    import tempfile

    import chromadb
    from chromadb.config import Settings
    from langchain_chroma import Chroma

    if persist_directory is not None:  # "" would write into the current or the root directory
        persist_directory = check_storage_directory("persist_directory", persist_directory)
    scratch = None
    settings = Settings(anonymized_telemetry=False)
    opening: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if persist_directory is not None:
        # Opening a directory creates its database and collection: one process at a time.
        opening = _directory_lock(Path(persist_directory), lock_timeout)
    with opening:
        if client is None and persist_directory is None:
            if collection_name is None:
                scratch = tempfile.mkdtemp(prefix="qta_chroma_")
                client = chromadb.PersistentClient(path=scratch, settings=settings)
            else:
                client = chromadb.EphemeralClient(settings=settings)
        elif client is None:
            client = chromadb.PersistentClient(path=str(persist_directory), settings=settings)
        if collection_name is None:
            collection_name = (
                f"{DEFAULT_COLLECTION_NAME}_{uuid.uuid4().hex[:12]}"
                if scratch is not None
                else DEFAULT_COLLECTION_NAME
            )
        store = Chroma(
            collection_name=collection_name,
            embedding_function=embeddings,
            client=client,
            collection_metadata={"hnsw:space": "cosine"},
        )
    index = VectorStoreToolIndex(
        store,
        distance_to_similarity=_cosine_from_distance,
        chroma_client=client,
        collection_name=collection_name,
        persist_directory=persist_directory,
        lock_timeout=lock_timeout,
    )
    if scratch is not None:
        # Holds the client, the name and the directory, not the index, so it can be collected.
        index._finalizer = weakref.finalize(
            index, _drop_scratch_chroma, client, collection_name, scratch
        )
    return index


def _cosine_from_distance(distance: float) -> float:
    return 1.0 - distance


# -- LlamaIndex -------------------------------------------------------------------------------


class LlamaIndexToolIndex(ToolIndex):
    """A `ToolIndex` over a LlamaIndex ``VectorStoreIndex`` (or any index with ``as_retriever``).

    Entries are inserted as ``TextNode``s whose ``id_`` is the entry id. `upsert` replaces:
    the nodes of entries already in the index are deleted before the new ones are inserted, so
    indexing the same tools twice leaves one node per tool.
    """

    def __init__(self, index: Any) -> None:
        self.index = index

    def upsert(self, entries: Sequence[IndexEntry]) -> None:
        """Upsert entries as nodes keyed by entry id."""
        from llama_index.core.schema import TextNode

        if not entries:
            return
        nodes = []
        for entry in entries:
            metadata = entry.stored_metadata()
            # Embed (and show an LLM) the entry text alone, as the other backends do.
            hidden = list(metadata)
            nodes.append(
                TextNode(
                    id_=entry.id,
                    text=entry.text,
                    metadata=metadata,
                    excluded_embed_metadata_keys=hidden,
                    excluded_llm_metadata_keys=hidden,
                )
            )
        self._delete_existing([n.id_ for n in nodes])
        self.index.insert_nodes(nodes)

    def delete(self, ids: Sequence[str]) -> None:
        """Delete nodes by id (unknown ids are ignored)."""
        if ids:
            self._delete_existing(list(ids))

    def _stores_text(self) -> bool:
        return bool(getattr(getattr(self.index, "vector_store", None), "stores_text", False))

    def _delete_existing(self, ids: list[str]) -> None:
        if self._stores_text():
            # The store keeps the nodes (Chroma, Qdrant, ...): delete by id (unknown ids: no-op).
            try:
                self.index.delete_nodes(ids)
            except NotImplementedError:
                logger.warning(
                    "%s cannot delete nodes by id; re-indexed entries rely on it upserting by id.",
                    type(self.index.vector_store).__name__,
                )
            return
        # Otherwise the index tracks nodes in its own table (and docstore): delete the known ones
        # from the vector store, that table and the docstore.
        present = [i for i in ids if i in self._known_ids()]
        if present:
            self.index.delete_nodes(present, delete_from_docstore=True)

    def _known_ids(self) -> set[str]:
        index_struct = getattr(self.index, "index_struct", None)
        return set(getattr(index_struct, "nodes_dict", None) or ())

    def list_entries(self, kind: str | None = None) -> dict[str, str | None] | None:
        """List the index's own node table, or the vector store's ``get_nodes()``."""
        if not self._stores_text():
            docstore = self.index.docstore
            rows = []
            for node_id in self._known_ids():
                node = docstore.get_node(node_id, raise_error=False)
                rows.append((node_id, node.metadata if node is not None else None))
            return _listed(rows, kind)
        try:
            nodes = self.index.vector_store.get_nodes()
        except NotImplementedError:
            return None
        return _listed([(n.node_id, n.metadata) for n in nodes], kind)

    def _retriever(self, k: int) -> Any:
        return self.index.as_retriever(similarity_top_k=k)

    def search_entries(self, query: str, k: int) -> list[IndexHit]:
        """Search with the index's own retriever."""
        return [_node_hit(n) for n in self._retriever(k).retrieve(query)]

    async def asearch_entries(self, query: str, k: int) -> list[IndexHit]:
        """Search with the index's own async retriever."""
        return [_node_hit(n) for n in await self._retriever(k).aretrieve(query)]

    def persist_reference(self, directory: Path) -> dict[str, Any]:
        """Save LlamaIndex's storage files to ``directory / "llama_index"``.

        An index whose vector store keeps the nodes elsewhere (Chroma, Qdrant, ...) is
        referenced only: pass it again to `load_index` as ``llama_index=``.
        """
        if self._stores_text():
            return {
                "format": REFERENCE_FORMAT,
                "backend": "llama_index_external",
                "type": type(self.index.vector_store).__name__,
            }
        target = Path(directory) / LLAMA_INDEX_DIR
        shutil.rmtree(target, ignore_errors=True)
        self.index.storage_context.persist(persist_dir=str(target))
        return {"format": REFERENCE_FORMAT, "backend": "llama_index", "path": LLAMA_INDEX_DIR}


def _node_hit(node_with_score: Any) -> IndexHit:
    node = node_with_score.node
    return _hit(node.node_id, node.metadata, float(node_with_score.score or 0.0))


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
            order = np.argsort(-row, kind="stable")[:k]
            results.append([ToolHit(self._ids[i], float(row[i])) for i in order])
        return results

    def search(self, query: str, k: int) -> list[ToolHit]:
        """Top ``k`` tools for one query."""
        return self.search_many([query], k)[0]


class ExactToolIndex(ScoredToolIndex):
    """Exact cosine search over in-memory matrices of tool and example embeddings.

    This is the frozen retriever's full ranking: `rank_all` orders the *whole* catalogue,
    which is what the trainer's ranking function and the evaluation harness need. Example
    entries live in a second matrix, searched by `search_entries` only.
    """

    def __init__(self, embeddings: Embeddings, tools: Sequence[Tool] = ()) -> None:
        self.embeddings = embeddings
        self._ids: list[str] = []
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._example_ids: list[str] = []
        self._example_matrix = np.zeros((0, 0), dtype=np.float32)
        self._example_tool_ids: list[tuple[str, ...]] = []
        self._hashes: dict[str, str] = {}
        if tools:
            self.add_tools(tools)

    @classmethod
    def from_catalog(cls, catalog: ToolCatalog, embeddings: Embeddings) -> ExactToolIndex:
        """Embed every tool in ``catalog``."""
        return cls(embeddings, list(catalog))

    def upsert(self, entries: Sequence[IndexEntry]) -> None:
        """Embed and upsert entries (tools and examples)."""
        if not entries:
            return
        vectors = _normalise(np.asarray(self.embeddings.embed_documents([e.text for e in entries])))
        tools = [(e, v) for e, v in zip(entries, vectors, strict=True) if e.kind == "tool"]
        examples = [(e, v) for e, v in zip(entries, vectors, strict=True) if e.kind == "example"]
        self._ids, self._matrix = _upsert_rows(self._ids, self._matrix, tools)
        old_tools = dict(zip(self._example_ids, self._example_tool_ids, strict=True))
        self._example_ids, self._example_matrix = _upsert_rows(
            self._example_ids, self._example_matrix, examples
        )
        old_tools.update({e.id: e.tool_ids for e, _ in examples})
        self._example_tool_ids = [old_tools[i] for i in self._example_ids]
        self._hashes.update({e.id: e.content_hash for e in entries})

    def delete(self, ids: Sequence[str]) -> None:
        """Remove entries by id (unknown ids are ignored)."""
        gone = set(ids)
        keep = [n for n, i in enumerate(self._ids) if i not in gone]
        self._ids = [self._ids[n] for n in keep]
        self._matrix = self._matrix[keep] if self._matrix.size else self._matrix
        keep = [n for n, i in enumerate(self._example_ids) if i not in gone]
        self._example_ids = [self._example_ids[n] for n in keep]
        self._example_tool_ids = [self._example_tool_ids[n] for n in keep]
        if self._example_matrix.size:
            self._example_matrix = self._example_matrix[keep]
        for i in gone:
            self._hashes.pop(i, None)

    def list_entries(self, kind: str | None = None) -> dict[str, str | None]:
        """The stored entries and their hashes."""
        ids = [*(self._ids if kind in (None, "tool") else ())]
        ids += self._example_ids if kind in (None, "example") else []
        return {i: self._hashes.get(i) for i in ids}

    @property
    def ids(self) -> list[str]:
        """Indexed tool ids, in insertion order."""
        return list(self._ids)

    @property
    def example_ids(self) -> list[str]:
        """Indexed example ids, in insertion order."""
        return list(self._example_ids)

    def _embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        return _normalise(np.asarray(self.embeddings.embed_documents(list(queries))))

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """Cosine similarity of each query to each tool, shape ``(len(queries), n_tools)``."""
        if not queries or not self._ids:
            return np.zeros((len(queries), len(self._ids)), dtype=np.float32)
        return np.asarray(self._embed_queries(queries) @ self._matrix.T)

    def search_entries(self, query: str, k: int) -> list[IndexHit]:
        """Top ``k`` entries, tools and examples, for one query."""
        return self.search_entries_many([query], k)[0]

    def search_entries_many(self, queries: Sequence[str], k: int) -> list[list[IndexHit]]:
        """Top ``k`` entries for each query, embedding the queries in one batch."""
        if not queries:
            return []
        vectors = self._embed_queries(queries)
        blocks = [m for m in (self._matrix, self._example_matrix) if m.size]
        if not blocks:
            return [[] for _ in queries]
        scores = vectors @ np.vstack(blocks).T
        tool_hits = [IndexHit(i, 0.0, "tool", (i,)) for i in self._ids] if self._matrix.size else []
        example_hits = [
            IndexHit(i, 0.0, "example", t)
            for i, t in zip(self._example_ids, self._example_tool_ids, strict=True)
        ]
        rows = tool_hits + example_hits
        results = []
        for row in scores:
            order = np.argsort(-row, kind="stable")[:k]
            results.append(
                [
                    IndexHit(rows[n].entry_id, float(row[n]), rows[n].kind, rows[n].tool_ids)
                    for n in order
                ]
            )
        return results

    def persist_reference(self, directory: Path) -> dict[str, Any]:
        """Write the matrices, ids and hashes to ``directory / "exact_index.npz"``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(
            directory / EXACT_INDEX_FILE,
            matrix=self._matrix,
            example_matrix=self._example_matrix,
            meta=np.asarray(
                json.dumps(
                    {
                        "ids": self._ids,
                        "example_ids": self._example_ids,
                        "example_tool_ids": [list(t) for t in self._example_tool_ids],
                        "hashes": self._hashes,
                    }
                )
            ),
        )
        return {"format": REFERENCE_FORMAT, "backend": "exact", "path": EXACT_INDEX_FILE}

    @classmethod
    def load(cls, path: Path, embeddings: Embeddings) -> ExactToolIndex:
        """Reload an index written by `persist_reference` (nothing is embedded)."""
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            index = cls(embeddings)
            index._matrix = np.asarray(data["matrix"], dtype=np.float32)
            index._example_matrix = np.asarray(data["example_matrix"], dtype=np.float32)
        index._ids = list(meta["ids"])
        index._example_ids = list(meta["example_ids"])
        index._example_tool_ids = [tuple(t) for t in meta["example_tool_ids"]]
        index._hashes = dict(meta["hashes"])
        return index


def _upsert_rows(
    ids: list[str], matrix: np.ndarray, rows: Sequence[tuple[IndexEntry, np.ndarray]]
) -> tuple[list[str], np.ndarray]:
    if not rows:
        return ids, matrix
    ids = list(ids)
    position = {entry_id: n for n, entry_id in enumerate(ids)}
    matrix = matrix.copy() if matrix.size else matrix
    new_rows = []
    for entry, vector in rows:
        if entry.id in position:
            matrix[position[entry.id]] = vector
        else:
            position[entry.id] = len(ids)
            ids.append(entry.id)
            new_rows.append(vector)
    if new_rows:
        stacked = np.stack(new_rows).astype(np.float32)
        matrix = stacked if matrix.size == 0 else np.vstack([matrix, stacked])
    return ids, matrix


def _normalise(matrix: np.ndarray) -> np.ndarray:
    matrix = matrix.astype(np.float32, copy=False)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


# -- loading ----------------------------------------------------------------------------------


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
