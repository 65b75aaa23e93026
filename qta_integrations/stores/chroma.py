"""The embedded Chroma default: `chroma_tool_index` and `ChromaToolIndex`.

`ChromaToolIndex` is a `qta_integrations.stores.vectorstore.VectorStoreToolIndex` over a
``langchain_chroma.Chroma`` store that also holds the ``chromadb`` client, which gives it what
a generic LangChain store lacks: listing its entries (so re-indexing repairs the store), one
batched query for many queries, an inter-process write lock for an on-disk directory, saving
(`persist_reference`), and cleaning up a private in-memory collection.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from qta_integrations.embeddings import embed_queries
from qta_integrations.stores.base import REFERENCE_FORMAT, IndexHit, listed_entries, stored_hit
from qta_integrations.stores.records import RECORD_FILE, RecordManager
from qta_integrations.stores.vectorstore import VectorStoreToolIndex
from qta_integrations.validation import check_storage_directory

__all__ = ["CHROMA_DIR", "DEFAULT_COLLECTION_NAME", "ChromaToolIndex", "chroma_tool_index"]

DEFAULT_COLLECTION_NAME = "qta_tools"
CHROMA_DIR = "chroma"
"""Where a saved retriever keeps a copied Chroma collection, inside its directory."""
LOCK_FILE = ".qta_write.lock"
"""The inter-process write lock's file inside an on-disk Chroma directory."""
DEFAULT_LOCK_TIMEOUT = 120.0


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
                record_manager = RecordManager(directory / RECORD_FILE)
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

    def __repr__(self) -> str:
        return f"{type(self).__name__}(collection={self.collection_name!r})"

    def chroma_collection(self) -> Any:
        """The ``chromadb`` collection behind the store (public client API)."""
        return self.chroma_client.get_collection(self.collection_name)

    def write_lock(self) -> contextlib.AbstractContextManager[Any]:
        """The inter-process lock of an on-disk store (a no-op otherwise)."""
        if self.persist_directory is None:
            return contextlib.nullcontext()
        return directory_lock(self.persist_directory, self.lock_timeout)

    def close(self) -> None:
        """Delete the in-memory Chroma collection this index created (no-op otherwise)."""
        if self._finalizer is not None:
            self._finalizer()

    def list_entries(self, kind: str | None = None) -> dict[str, str | None]:
        """Every entry of the collection (read a page at a time)."""
        found = chroma_rows(self.chroma_collection(), include=["metadatas"])
        return listed_entries([(i, r["metadatas"]) for i, r in found], kind)

    def search_entries_many(self, queries: Sequence[str], k: int) -> list[list[IndexHit]]:
        """One embedding pass and one collection query for all ``queries``."""
        if len(queries) < 2:
            return [self.search_entries(q, k) for q in queries]
        vectors = embed_queries(self.vectorstore.embeddings, list(queries))
        found = self.chroma_collection().query(
            query_embeddings=vectors, n_results=k, include=["metadatas", "distances"]
        )
        return [
            [
                stored_hit(i, m, cosine_from_distance(d))
                for i, m, d in zip(ids, metas, dists, strict=True)
            ]
            for ids, metas, dists in zip(
                found["ids"], found["metadatas"], found["distances"], strict=True
            )
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
        return {
            "format": REFERENCE_FORMAT,
            "backend": "chroma",
            "path": CHROMA_DIR,
            "collection_name": DEFAULT_COLLECTION_NAME,
        }


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
    return index
