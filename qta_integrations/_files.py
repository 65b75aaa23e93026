"""File helpers for the package's saved directories: atomic writes, fsync, SHA-256.

Private: the saved-state format (`qta_integrations.adapter`) and the retriever saver
(`qta_integrations.persist`) write through these, so a crash never leaves half a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path

__all__ = [
    "TMP_SUFFIX",
    "atomic_write_text",
    "file_sha256",
    "fsync_dir",
    "fsync_file",
    "fsync_tree",
]

logger = logging.getLogger(__name__)

TMP_SUFFIX = ".qta-tmp"
"""The suffix of a temporary file written next to its target (removed by the next save)."""
_HASH_CACHE_NAME = "sha256_cache.json"


# -- hashing ----------------------------------------------------------------------------------

_hash_lock = threading.Lock()
_hash_memory: dict[str, tuple[int, int, str]] = {}


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file, computed once per (path, size, mtime).

    Kept in memory, and for files of 16 MiB or more (model weights) also in the package's cache
    directory, so a base model is hashed once per machine, not once per load.
    """
    file = Path(path).resolve()
    stat = file.stat()
    key = str(file)
    with _hash_lock:
        known = _hash_memory.get(key)
        if known is None:
            known = _disk_cache().get(key)
        if known is not None and known[:2] == (stat.st_size, stat.st_mtime_ns):
            _hash_memory[key] = known
            return known[2]
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    entry = (stat.st_size, stat.st_mtime_ns, value)
    with _hash_lock:
        _hash_memory[key] = entry
        if stat.st_size >= 1 << 24:  # only big files are worth a disk write
            _store_disk_cache(key, entry)
    return value


def _hash_cache_file() -> Path:
    from qta_integrations.models import cache_dir

    return cache_dir() / _HASH_CACHE_NAME


def _disk_cache() -> dict[str, tuple[int, int, str]]:
    try:
        raw = json.loads(_hash_cache_file().read_text(encoding="utf-8"))
        return {k: (int(v[0]), int(v[1]), str(v[2])) for k, v in raw.items()}
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return {}  # no cache yet, or an unreadable one: recompute


def _store_disk_cache(key: str, entry: tuple[int, int, str]) -> None:
    cache = _disk_cache()
    cache[key] = entry
    file = _hash_cache_file()
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(file, json.dumps({k: list(v) for k, v in cache.items()}))
    except OSError as err:  # a read-only cache only costs recomputing
        logger.debug("Could not write the hash cache %s: %s", file, err)


# -- writing ---------------------------------------------------------------------------------


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a synced temporary file, then ``os.replace``."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TMP_SUFFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries to disk (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. directories cannot be opened on Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file and directory under ``root``, deepest first, then ``root``."""
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_file():
            fsync_file(path)
        else:
            fsync_dir(path)
    fsync_dir(root)
