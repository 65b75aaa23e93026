"""The embedded Chroma default: `chroma_tool_index` and `ChromaToolIndex`.

`ChromaToolIndex` is a `qta_integrations.stores.vectorstore.VectorStoreToolIndex` over a
``langchain_chroma.Chroma`` store that also holds the ``chromadb`` client, which gives it what
a generic LangChain store lacks: listing its entries (so re-indexing repairs the store), one
batched query for many queries, an inter-process write lock for an on-disk directory, saving
(`persist_reference`), and cleaning up a private in-memory collection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from qta_integrations.embeddings import embed_queries
from qta_integrations.stores.base import (
    EXAMPLE_PREFIX,
    KIND_KEY,
    REFERENCE_FORMAT,
    IndexEntry,
    IndexHit,
    listed_entries,
    stored_hit,
)
from qta_integrations.stores.records import RECORD_FILE, RecordManager
from qta_integrations.stores.vectorstore import VectorStoreToolIndex
from qta_integrations.validation import check_storage_directory

__all__ = ["CHROMA_DIR", "DEFAULT_COLLECTION_NAME", "ChromaToolIndex", "chroma_tool_index"]

logger = logging.getLogger(__name__)

DEFAULT_COLLECTION_NAME = "qta_tools"
CHROMA_DIR = "chroma"
"""Where a saved retriever keeps a copied Chroma collection, inside its directory."""
CHROMA_DB = "chroma.sqlite3"
"""Chroma's database file inside an on-disk directory."""
LOCK_FILE = ".qta_write.lock"
"""The inter-process write lock's file inside an on-disk Chroma directory."""
DEFAULT_LOCK_TIMEOUT = 120.0
PAGE = 5000
"""Rows read per ``get`` with their metadata (far below SQLite's variable limit)."""
ID_PAGE = 25000
"""Ids read per ``get`` without metadata (the fastest page size measured at 100,000 rows)."""
ENCODER_KEY = "encoder"
"""The record's key for the identity of the encoder that wrote the stored vectors."""
REEMBED_PAGE = 4096
"""Entries embedded per call when a store is re-embedded for another encoder."""


class ChromaToolIndex(VectorStoreToolIndex):
    """A `VectorStoreToolIndex` over a Chroma collection whose ``chromadb`` client it holds.

    Build it with `chroma_tool_index`. Scores are exact cosines (``1 - cosine distance``).

    Args:
        vectorstore: The ``langchain_chroma.Chroma`` store.
        chroma_client: The ``chromadb`` client behind it.
        collection_name: The collection's name.
        persist_directory: The on-disk Chroma's directory: every write then holds an
            inter-process lock (``.qta_write.lock``) and the record lives there.
        lock_timeout: Seconds a writer waits for another process's write before failing.
        record_manager: Where re-indexing records what it wrote; default: a SQLite file in
            ``persist_directory``, else in memory.
    """

    def __init__(
        self,
        vectorstore: Any,
        *,
        chroma_client: Any,
        collection_name: str,
        persist_directory: str | os.PathLike[str] | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        record_manager: RecordManager | None = None,
    ) -> None:
        directory = Path(persist_directory) if persist_directory is not None else None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            if record_manager is None:
                # Collections sharing a directory share its record file, each in its own scope.
                scope = None if collection_name == DEFAULT_COLLECTION_NAME else collection_name
                record_manager = RecordManager(directory / RECORD_FILE, scope=scope)
        super().__init__(
            vectorstore,
            distance_to_similarity=cosine_from_distance,
            record_manager=record_manager,
        )
        self.chroma_client = chroma_client
        self.collection_name = collection_name
        self.persist_directory = directory
        self.lock_timeout = lock_timeout
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._collection: Any = None
        self._private = False  # a scratch collection only this object writes

    def __repr__(self) -> str:
        return f"{type(self).__name__}(collection={self.collection_name!r})"

    def chroma_collection(self) -> Any:
        """The ``chromadb`` collection behind the store (public client API)."""
        # Looked up once: on a server every lookup is a request.
        if self._collection is None:
            self._collection = self.chroma_client.get_collection(self.collection_name)
        return self._collection

    def write_lock(self) -> contextlib.AbstractContextManager[Any]:
        """The inter-process lock of an on-disk store (a no-op otherwise)."""
        if self.persist_directory is None:
            return contextlib.nullcontext()
        return directory_lock(self.persist_directory, self.lock_timeout)

    def close(self) -> None:
        """Release what this index opened; idempotent.

        A private in-memory index deletes its collection and scratch directory; an on-disk one
        closes the client it opened (chromadb shares one client per directory in a process and
        counts its users, so another open index on the same directory keeps working). A client
        passed in by the caller is left open.
        """
        if self._finalizer is not None:
            self._finalizer()

    def check_encoder(self) -> int:
        """Make the stored vectors those of this index's embedding model; return how many changed.

        The record of an on-disk store keeps the identity of the encoder that wrote its
        vectors (`qta_integrations.encoders.encoder_identity`: model, backend, precision).
        Opened with another encoder, or written by a version that kept no identity, every
        stored entry (tools and labelled examples) is embedded again from its stored text
        and overwritten in place (a model of another width recreates the collection with the
        same rows), under the write lock, and a warning counts them; the identity is
        recorded once all are rewritten, so an interrupted re-embedding is done again on the
        next open. Ids, texts and metadata are unchanged, so the next sync
        skips every entry. A store without a directory (in memory, on a server) records
        nothing here and returns 0.
        """
        if self.persist_directory is None:
            return 0
        from qta_integrations.encoders.identity import encoder_identity, identity_key

        embeddings = self.vectorstore.embeddings
        current = identity_key(encoder_identity(embeddings))
        records = self.record_manager
        if records.get_meta(ENCODER_KEY) == current:
            return 0
        with self.write_lock():
            recorded = records.get_meta(ENCODER_KEY)
            if recorded == current:
                return 0
            collection = self.chroma_collection()
            if collection.count() == 0:
                records.set_meta(ENCODER_KEY, current)
                return 0
            rows = list(chroma_rows(collection, include=["documents", "metadatas"]))
            vectors: list[list[float]] = []
            for start in range(0, len(rows), REEMBED_PAGE):
                chunk = rows[start : start + REEMBED_PAGE]
                vectors += embeddings.embed_documents([r["documents"] or "" for _, r in chunk])
            self._rewrite_vectors(rows, vectors)
            records.set_meta(ENCODER_KEY, current)
        examples = sum(1 for i, _ in rows if i.startswith(EXAMPLE_PREFIX))
        before = "no recorded encoder" if recorded is None else recorded
        logger.warning(
            "The index in %s was embedded by %s; re-embedded its %d tools and %d labelled "
            "examples with %s.",
            self.persist_directory,
            before,
            len(rows) - examples,
            examples,
            current,
        )
        return len(rows)

    def _rewrite_vectors(
        self, rows: list[tuple[str, dict[str, Any]]], vectors: list[list[float]]
    ) -> None:
        """Overwrite the vectors of ``rows``; a new width recreates the collection (same rows)."""
        collection = self.chroma_collection()
        first = collection.get(ids=[rows[0][0]], include=["embeddings"])["embeddings"]
        batch = max(1, int(self.chroma_client.get_max_batch_size()))
        if len(first) and len(first[0]) == len(vectors[0]):
            for at in range(0, len(rows), batch):
                collection.update(
                    ids=[i for i, _ in rows[at : at + batch]], embeddings=vectors[at : at + batch]
                )
            return
        # Chroma fixes a collection's width: recreate it empty (same name and metadata), then
        # add every row back with its text, metadata and new vector.
        self.vectorstore.reset_collection()
        self._collection = None
        collection = self.chroma_collection()
        for at in range(0, len(rows), batch):
            part = rows[at : at + batch]
            collection.add(
                ids=[i for i, _ in part],
                embeddings=vectors[at : at + batch],
                documents=[r["documents"] for _, r in part],
                metadatas=[r["metadatas"] for _, r in part],
            )

    def upsert(self, entries: Sequence[IndexEntry]) -> None:
        """Upsert entries, at most the client's ``get_max_batch_size()`` per Chroma call."""
        size = max(1, int(self.chroma_client.get_max_batch_size()))
        with self.write_lock():
            for start in range(0, len(entries), size):
                super().upsert(entries[start : start + size])

    def list_entries(self, kind: str | None = None) -> dict[str, str | None]:
        """Every entry of the collection (of ``kind``), read a page at a time."""
        # Every example row carries its kind, so Chroma filters them; tools include rows of
        # older versions without a kind, so they are read whole.
        where = {KIND_KEY: kind} if kind == "example" else None
        found = chroma_rows(self.chroma_collection(), include=["metadatas"], where=where)
        return listed_entries([(i, r["metadatas"]) for i, r in found], kind)

    def sync_listing(self, kind: str, recorded: Mapping[str, str]) -> dict[str, str | None] | None:
        """`list_entries`, reading only ids where the record is this store's alone.

        Chroma reads metadata at about 0.1 ms a row (10 s for 100,000 tools) and ids about
        twenty times faster. An on-disk store's record lives in its directory and is written
        under its write lock, and a private in-memory store is written by this object only:
        there the hash of a recorded id is taken from the record (`sync_index` forgets an id
        before rewriting it, so a crash never leaves a recorded hash the store lacks), and
        the metadata of unrecorded ids is read. A server's or a shared collection's record is
        this process's alone, so it is listed whole.
        """
        own_record = self.persist_directory is not None or self._private
        if kind == "example" or not recorded or not own_record:
            return self.list_entries(kind)
        collection = self.chroma_collection()
        ids = [i for i, _ in chroma_rows(collection, include=[], page=ID_PAGE)]
        listed: dict[str, str | None] = {i: recorded[i] for i in ids if i in recorded}
        unknown = [i for i in ids if i not in recorded]
        for start in range(0, len(unknown), PAGE):
            got = collection.get(ids=unknown[start : start + PAGE], include=["metadatas"])
            rows = list(zip(got["ids"], got["metadatas"], strict=True))
            listed.update(listed_entries(rows, kind))
        return listed

    def search_entries(self, query: str, k: int) -> list[IndexHit]:
        """The ``k`` entries nearest to ``query`` (see `search_entries_many`)."""
        return self._query([self.vectorstore.embeddings.embed_query(query)], k)[0]

    def search_entries_many(self, queries: Sequence[str], k: int) -> list[list[IndexHit]]:
        """One embedding pass and one collection query for all ``queries``."""
        if len(queries) < 2:
            return [self.search_entries(q, k) for q in queries]
        return self._query(embed_queries(self.vectorstore.embeddings, list(queries)), k)

    async def asearch_entries(self, query: str, k: int) -> list[IndexHit]:
        """`search_entries` in a worker thread, off the event loop."""
        return await asyncio.to_thread(self.search_entries, query, k)

    def _query(self, vectors: list[list[float]], k: int) -> list[list[IndexHit]]:
        # Ids and distances only: metadata would cost Chroma about 0.1 ms a hit, most of a
        # deep query's time. A tool entry's id is its tool id and an example's id has the
        # "example:" prefix, so only prefixed hits are read, in one `get` for the batch.
        collection = self.chroma_collection()
        found = collection.query(query_embeddings=vectors, n_results=k, include=["distances"])
        prefixed = sorted({i for ids in found["ids"] for i in ids if i.startswith(EXAMPLE_PREFIX)})
        metadata: dict[str, Any] = {}
        if prefixed:
            got = collection.get(ids=prefixed, include=["metadatas"])
            metadata = dict(zip(got["ids"], got["metadatas"], strict=True))
        return [
            [
                stored_hit(i, metadata.get(i), cosine_from_distance(d))
                for i, d in zip(ids, dists, strict=True)
                # A prefixed row deleted since the query is left out.
                if i in metadata or not i.startswith(EXAMPLE_PREFIX)
            ]
            for ids, dists in zip(found["ids"], found["distances"], strict=True)
        ]

    def persist_reference(self, directory: Path) -> dict[str, Any]:
        """Reference (or copy) the collection so that `load_index` finds it from ``directory``.

        * an on-disk Chroma inside ``directory``: referenced by its relative path;
        * a Chroma server: referenced by host, port and collection;
        * any other Chroma (in memory, or on disk elsewhere): its ids, documents, embeddings
          and metadata are copied into ``directory / "chroma"`` (no embedding).
        """
        directory = Path(directory)
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
        copy_chroma_collection(self.chroma_collection(), directory / CHROMA_DIR)
        from qta_integrations.encoders.identity import encoder_identity, identity_key

        RecordManager(directory / CHROMA_DIR / RECORD_FILE).set_meta(
            ENCODER_KEY, identity_key(encoder_identity(self.vectorstore.embeddings))
        )
        return {
            "format": REFERENCE_FORMAT,
            "backend": "chroma",
            "path": CHROMA_DIR,
            "collection_name": DEFAULT_COLLECTION_NAME,
        }


def _corrupt_directory_error(directory: Path, err: BaseException) -> RuntimeError:
    msg = (
        f"The Chroma directory {str(directory)!r} cannot be opened ({type(err).__name__}: "
        f"{err}). Its files are damaged or were written by an incompatible chromadb version. "
        "The index is derived data: delete the directory and build the retriever again (the "
        "tools are re-embedded and the labelled examples re-indexed from your catalogue and "
        "saved state)."
    )
    return RuntimeError(msg)


def cosine_from_distance(distance: float) -> float:
    """Chroma's cosine distance back to the cosine similarity."""
    return 1.0 - distance


@contextlib.contextmanager
def directory_lock(directory: Path, timeout: float) -> Iterator[None]:
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


def chroma_rows(
    collection: Any,
    *,
    include: list[str],
    page: int = PAGE,
    where: Mapping[str, Any] | None = None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every row of a Chroma collection (matching ``where``), ``(id, {field: value})``.

    Read ``page`` rows at a time: one ``get`` of 100,000 rows with their metadata exceeds
    SQLite's limit on query variables.
    """
    offset = 0
    while True:
        got = collection.get(
            include=include, limit=page, offset=offset, where=dict(where) if where else None
        )
        ids = got["ids"]
        for n, entry_id in enumerate(ids):
            yield entry_id, {name: got[name][n] for name in include}
        if len(ids) < page:
            return
        offset += page


def copy_chroma_collection(source: Any, target: Path) -> None:
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
    rows = list(chroma_rows(source, include=["embeddings", "documents", "metadatas"]))
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        collection.add(
            ids=[i for i, _ in chunk],
            embeddings=[r["embeddings"] for _, r in chunk],
            documents=[r["documents"] for _, r in chunk],
            metadatas=[r["metadatas"] for _, r in chunk],
        )


def _forget_broken_client(client: Any, directory: str) -> None:
    """Drop a client whose directory failed to open, so that a later open starts afresh.

    chromadb keeps one system per directory in a process and caches it before starting it;
    when starting fails the broken system stays cached and every later client for that path
    (even after the directory was deleted and re-created) fails too. Evicting it uses a
    private chromadb table: guarded, since it may change.
    """
    with contextlib.suppress(Exception):
        if client is not None:
            client.close()
    with contextlib.suppress(Exception):
        from chromadb.api.shared_system_client import SharedSystemClient

        SharedSystemClient._identifier_to_system.pop(directory, None)
        SharedSystemClient._identifier_to_refcount.pop(directory, None)


def _close_client(client: Any) -> None:
    """Finalizer of an on-disk index: release the client it opened (at most once)."""
    with contextlib.suppress(Exception):
        client.close()


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
) -> ChromaToolIndex:
    """An embedded Chroma collection (cosine space, telemetry off) wrapped as a `ToolIndex`.

    Without ``persist_directory`` nor ``client``, the index is private and temporary: a Chroma
    client of its own over a scratch directory (``tempfile.mkdtemp``), whose collection is
    deleted, client closed and directory removed when the index is garbage-collected or
    `ChromaToolIndex.close` is called. (Chroma's process-wide in-memory client keeps the
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

            from qta_integrations.stores import chroma_tool_index
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
        opening = directory_lock(Path(persist_directory), lock_timeout)
    own_client = client is None
    with opening:
        if client is None and persist_directory is None:
            if collection_name is None:
                scratch = tempfile.mkdtemp(prefix="qta_chroma_")
                client = chromadb.PersistentClient(path=scratch, settings=settings)
            else:
                client = chromadb.EphemeralClient(settings=settings)
        if collection_name is None:
            collection_name = (
                f"{DEFAULT_COLLECTION_NAME}_{uuid.uuid4().hex[:12]}"
                if scratch is not None
                else DEFAULT_COLLECTION_NAME
            )
        try:
            if client is None:
                client = chromadb.PersistentClient(path=str(persist_directory), settings=settings)
            store = Chroma(
                collection_name=collection_name,
                embedding_function=embeddings,
                client=client,
                collection_metadata={"hnsw:space": "cosine"},
            )
        except Exception as err:
            if own_client:
                _forget_broken_client(client, str(persist_directory))
            # Only an existing database can be damaged; other failures keep their own error.
            if persist_directory is None or not (Path(persist_directory) / CHROMA_DB).is_file():
                raise
            raise _corrupt_directory_error(Path(persist_directory), err) from err
    index = ChromaToolIndex(
        store,
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
        index._private = True
    elif own_client and persist_directory is not None:
        index._finalizer = weakref.finalize(index, _close_client, client)
    index.check_encoder()  # never search vectors of another encoder
    return index
