"""`ExactToolIndex`: exact cosine search over in-memory embedding matrices."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from qta_integrations.embeddings import embed_queries
from qta_integrations.stores.base import (
    REFERENCE_FORMAT,
    IndexEntry,
    IndexHit,
    ScoredToolIndex,
    top_indices,
)
from qta_integrations.tools import Tool, ToolCatalog

__all__ = ["EXACT_INDEX_FILE", "ExactToolIndex"]

EXACT_INDEX_FILE = "exact_index.npz"


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
        return _normalise(np.asarray(embed_queries(self.embeddings, list(queries))))

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
            order = top_indices(row, k)
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
