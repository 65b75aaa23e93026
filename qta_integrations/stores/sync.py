"""Re-indexing as a sync: `sync_index` brings a store's entries to the source's.

Indexing a catalogue into a store that already holds an older one must not only add: tools that
left the catalogue must go, changed tools must be embedded again, and unchanged tools should not
be. As in LangChain's ``index()`` with a record manager, a
`qta_integrations.stores.records.RecordManager` remembers, per namespace, the content hash of
every entry written; `sync_index` compares the source entries with it and adds, updates, skips
and deletes accordingly.

Two namespaces share one store: ``"tools"`` (tool entries) and ``"examples"`` (labelled example
queries). Syncing one never touches the other.

Where the store can list its own entries (Chroma, embedded or server; ``InMemoryVectorStore``;
a LlamaIndex ``VectorStoreIndex`` on its default store; `ExactToolIndex`), the listing is the
truth and the record is only a cache: a store written by an older version, by another process
or left half-written by a crash is brought back to the source exactly. (An embedded Chroma
lists only its ids and takes the hashes of recorded ids from its record, which lives in its
directory and is written under its write lock: `ToolIndex.sync_listing`.) Where it cannot
list, the record is all there is; with no record, everything is upserted and a warning says
that entries written before cannot be removed.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from qta_integrations.stores.base import IndexEntry, ToolIndex
from qta_integrations.stores.records import RecordManager

__all__ = ["NAMESPACES", "SyncResult", "sync_index"]

logger = logging.getLogger(__name__)

Namespace = Literal["tools", "examples"]
NAMESPACES: dict[str, str] = {"tools": "tool", "examples": "example"}
"""Each namespace and the entry kind it holds."""

DEFAULT_BATCH_SIZE = 4096
"""Entries embedded and written per call to the index. Large batches let sentence-transformers
sort more texts by length (less padding) and keep the store's calls few; 4,096 vectors of 384
floats are about 50 MB as Python lists."""


@dataclass(frozen=True)
class SyncResult:
    """What `sync_index` did.

    Attributes:
        num_added: Entries that were not in the store (embedded and written).
        num_updated: Entries whose content changed (embedded again and overwritten).
        num_skipped: Unchanged entries (not embedded).
        num_deleted: Entries of the namespace that are no longer in the source (removed).
    """

    num_added: int = 0
    num_updated: int = 0
    num_skipped: int = 0
    num_deleted: int = 0


def sync_index(
    index: ToolIndex,
    entries: Sequence[IndexEntry],
    *,
    namespace: Namespace,
    record_manager: RecordManager | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    show_progress: bool = False,
) -> SyncResult:
    """Make the ``namespace`` entries of ``index`` equal ``entries``.

    New entries are embedded and added, changed ones (another content hash) embedded again,
    unchanged ones skipped, and entries of the namespace missing from ``entries`` deleted.
    Entries of the other namespace are never touched. The whole sync runs under the index's
    write lock (`ToolIndex.write_lock`), so two processes syncing one on-disk store take turns.

    Args:
        index: The index to bring up to date.
        entries: The source: every entry the namespace should hold. Duplicate ids must have
            the same content (the first is kept).
        namespace: ``"tools"`` (tool entries) or ``"examples"`` (example entries).
        record_manager: Where the written hashes are kept; default ``index.record_manager``.
        batch_size: Entries embedded and written per call to the index.
        show_progress: Show a progress bar while writing.

    Returns:
        The counts of added, updated, skipped and deleted entries.

    Raises:
        ValueError: if ``namespace`` is unknown, an entry's kind does not belong to it, two
            entries share an id with different contents, or ``batch_size`` is not positive.

    Example:
        .. code-block:: python

            from qta_integrations.stores import ExactToolIndex, IndexEntry
            from qta_integrations.stores import sync_index
            from qta_integrations.testing import KeywordEmbeddings
            from qta_integrations.tools import Tool

            index = ExactToolIndex(KeywordEmbeddings())
            tools = [Tool(id="w", name="weather", description="Weather for a city.")]
            entries = [IndexEntry.for_tool(t) for t in tools]
            print(sync_index(index, entries, namespace="tools"))
            # SyncResult(num_added=1, num_updated=0, num_skipped=0, num_deleted=0)
            print(sync_index(index, entries, namespace="tools").num_skipped)  # 1
    """
    kind = NAMESPACES.get(namespace)
    if kind is None:
        msg = f"namespace must be one of {sorted(NAMESPACES)}, got {namespace!r}."
        raise ValueError(msg)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        msg = f"batch_size must be a positive int, got {batch_size!r}."
        raise ValueError(msg)
    source = _unique_entries(entries, kind, namespace)
    records = record_manager if record_manager is not None else index.record_manager
    with index.write_lock():
        existing = _existing_hashes(index, kind, namespace, records)
        to_write = [e for e in source.values() if existing.get(e.id) != e.content_hash]
        num_added = sum(1 for e in to_write if e.id not in existing)
        stale = [i for i in existing if i not in source]
        _write(index, records, namespace, to_write, existing.keys(), batch_size, show_progress)
        if stale:
            # Forget first: a crash in between leaves an unrecorded entry, which a store that
            # lists its entries finds and deletes on the next sync.
            records.delete(namespace, stale)
            index.delete(stale)
    result = SyncResult(
        num_added=num_added,
        num_updated=len(to_write) - num_added,
        num_skipped=len(source) - len(to_write),
        num_deleted=len(stale),
    )
    logger.debug("Synced namespace %r of %s: %s", namespace, type(index).__name__, result)
    return result


def _unique_entries(
    entries: Sequence[IndexEntry], kind: str, namespace: str
) -> dict[str, IndexEntry]:
    source: dict[str, IndexEntry] = {}
    for entry in entries:
        if entry.kind != kind:
            msg = (
                f"Entry {entry.id!r} is a {entry.kind!r} entry, but namespace {namespace!r} holds "
                f"{kind!r} entries; sync tools with namespace='tools' and examples with "
                "namespace='examples'."
            )
            raise ValueError(msg)
        first = source.setdefault(entry.id, entry)
        if first is not entry and first.content_hash != entry.content_hash:
            msg = (
                f"Two entries share the id {entry.id!r} with different contents; ids must be "
                "unique (a tool id, or IndexEntry.for_example's hash of the query and tools)."
            )
            raise ValueError(msg)
    return source


def _existing_hashes(
    index: ToolIndex, kind: str, namespace: str, records: RecordManager
) -> dict[str, str | None]:
    recorded = records.get(namespace)
    listed = index.sync_listing(kind, recorded)
    if listed is None:
        if not recorded:
            logger.warning(
                "%s cannot list its entries and no record of earlier writes exists for "
                "namespace %r: everything is upserted, and %s entries written before (by "
                "another process or an older version) that are no longer in the source stay in "
                "the store. Sync through the same index object (its record_manager), or use a "
                "store that can list its entries (Chroma).",
                type(index).__name__,
                namespace,
                kind,
            )
        return dict(recorded)
    # The store is the truth; its hash of an entry is kept, else the record's when it agrees
    # the entry exists (an entry written by an older version has no stored hash: rewritten).
    existing: dict[str, str | None] = {
        i: stored if stored is not None else recorded.get(i) for i, stored in listed.items()
    }
    if recorded.keys() != existing.keys() or any(recorded[i] != h for i, h in existing.items()):
        records.replace(namespace, {i: h for i, h in existing.items() if h is not None})
    return existing


def _write(
    index: ToolIndex,
    records: RecordManager,
    namespace: str,
    entries: list[IndexEntry],
    stored: Collection[str],
    batch_size: int,
    show_progress: bool,
) -> None:
    if not entries:
        return
    from tqdm.auto import tqdm

    with tqdm(
        total=len(entries), desc=f"Indexing {namespace}", unit="entry", disable=not show_progress
    ) as progress:
        for start in range(0, len(entries), batch_size):
            batch = entries[start : start + batch_size]
            # Forget what is rewritten first: a crash in between leaves it unrecorded, so the
            # next sync reads it from the store instead of trusting a hash the store may lack.
            records.delete(namespace, [e.id for e in batch if e.id in stored])
            index.upsert(batch)
            records.update(namespace, {e.id: e.content_hash for e in batch})
            progress.update(len(batch))
