"""The record of what was written to a store: `RecordManager`.

As in LangChain's indexing API, re-indexing is a sync, not an append: a record of every entry
written (its id and content hash, per namespace) lets `qta_integrations.stores.sync.sync_index`
add, update, skip and delete so that the store always equals the source.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["RECORD_FILE", "RecordManager"]

RECORD_FILE = "qta_records.sqlite3"
"""The record file's name inside an on-disk store's directory."""


class RecordManager:
    """What was written to an index: entry id -> content hash, per namespace.

    Beside the hashes it keeps a few values about the index as a whole (`get_meta` /
    `set_meta`): the embedded Chroma records there which encoder wrote its vectors.

    In memory by default; with ``path``, a small SQLite file (one table, safe to open from
    several processes: SQLite locks it, and `sync_index` runs under the index's write lock).

    Args:
        path: The SQLite file; None keeps the record in memory.
        scope: Keeps this record apart from others in the same file (the embedded Chroma
            passes the collection name of any collection but the default one).

    Example:
        .. code-block:: python

            from qta_integrations.stores.records import RecordManager

            records = RecordManager()
            records.update("tools", {"weather": "ab12"})
            print(records.get("tools"))  # {'weather': 'ab12'}
    """

    def __init__(self, path: str | Path | None = None, *, scope: str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.scope = scope
        self._memory: dict[str, dict[str, str]] = {}
        self._meta: dict[str, str] = {}
        self._lock = threading.Lock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with self._connect() as db:
                    db.execute(
                        "CREATE TABLE IF NOT EXISTS records (namespace TEXT NOT NULL, id TEXT "
                        "NOT NULL, hash TEXT NOT NULL, updated_at REAL NOT NULL, "
                        "PRIMARY KEY (namespace, id))"
                    )
                    db.execute(
                        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT "
                        "NULL)"
                    )
            except sqlite3.DatabaseError as err:
                msg = (
                    f"The index record {str(self.path)!r} cannot be read ({err}). It only "
                    "caches what was written to the store: delete the file and index again "
                    "(a store that lists its entries, such as Chroma, is repaired exactly)."
                )
                raise RuntimeError(msg) from err

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "memory"
        scope = f", scope={self.scope!r}" if self.scope is not None else ""
        return f"RecordManager({where!r}{scope})"

    def _key(self, namespace: str) -> str:
        return namespace if self.scope is None else f"{self.scope}/{namespace}"

    def _connect(self) -> sqlite3.Connection:
        assert self.path is not None
        return sqlite3.connect(self.path, timeout=60.0)

    def get(self, namespace: str) -> dict[str, str]:
        """The recorded ``id -> content hash`` of ``namespace`` (empty when nothing is recorded)."""
        namespace = self._key(namespace)
        if self.path is None:
            with self._lock:
                return dict(self._memory.get(namespace, {}))
        with self._lock, self._connect() as db:
            rows = db.execute(
                "SELECT id, hash FROM records WHERE namespace = ?", (namespace,)
            ).fetchall()
        return {str(i): str(h) for i, h in rows}

    def update(self, namespace: str, records: Mapping[str, str]) -> None:
        """Record (insert or replace) ``id -> content hash`` pairs in ``namespace``."""
        if not records:
            return
        namespace = self._key(namespace)
        if self.path is None:
            with self._lock:
                self._memory.setdefault(namespace, {}).update(records)
            return
        now = time.time()
        with self._lock, self._connect() as db:
            db.executemany(
                "INSERT OR REPLACE INTO records (namespace, id, hash, updated_at) "
                "VALUES (?, ?, ?, ?)",
                [(namespace, i, h, now) for i, h in records.items()],
            )

    def delete(self, namespace: str, ids: Iterable[str]) -> None:
        """Forget ``ids`` in ``namespace`` (unknown ids are ignored)."""
        ids = list(ids)
        if not ids:
            return
        namespace = self._key(namespace)
        if self.path is None:
            with self._lock:
                recorded = self._memory.get(namespace, {})
                for i in ids:
                    recorded.pop(i, None)
            return
        with self._lock, self._connect() as db:
            db.executemany(
                "DELETE FROM records WHERE namespace = ? AND id = ?", [(namespace, i) for i in ids]
            )

    def replace(self, namespace: str, records: Mapping[str, str]) -> None:
        """Make ``records`` the whole record of ``namespace``."""
        current = self.get(namespace)
        self.delete(namespace, [i for i in current if i not in records])
        self.update(namespace, {i: h for i, h in records.items() if current.get(i) != h})

    def get_meta(self, key: str) -> str | None:
        """A value recorded about the index as a whole (e.g. ``"encoder"``), or None."""
        key = self._key(key)
        if self.path is None:
            with self._lock:
                return self._meta.get(key)
        with self._lock, self._connect() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Record ``value`` about the index as a whole under ``key``."""
        key = self._key(key)
        if self.path is None:
            with self._lock:
                self._meta[key] = value
            return
        with self._lock, self._connect() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
