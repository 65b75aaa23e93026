"""`BM25ToolIndex`: a lexical `ToolIndex` (BM25 via ``bm25s``), the paper's sparse baseline.

It implements the same interface as the dense indexes, so it plugs into `QTAPipeline`
unchanged (``QTAPipeline(catalog, BM25ToolIndex(), rewriter=None)``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from qta_integrations.index import ScoredToolIndex
from qta_integrations.tools import Tool

__all__ = ["BM25ToolIndex"]


def _import_bm25s() -> Any:
    """Import ``bm25s``, undoing its import-time ``setLevel(DEBUG)`` on its own logger.

    Without this, any application that configures logging prints bm25s's debug chatter
    ("Building index from tokens") on every index build.
    """
    import bm25s

    bm25s_logger = logging.getLogger("bm25s")
    if bm25s_logger.level == logging.DEBUG:
        bm25s_logger.setLevel(logging.NOTSET)
    return bm25s


class BM25ToolIndex(ScoredToolIndex):
    """BM25 over tool texts (``Tool.text``), with ``bm25s``.

    Texts are lower-cased, split into words of two or more characters and English stopwords
    are dropped (``bm25s.tokenize`` defaults); no stemming. Scores are raw BM25 scores (not
    in [0, 1]); ties, including tools sharing no word with the query (score 0), keep
    catalogue order, so rankings are deterministic.

    Args:
        k1: BM25 term-frequency saturation.
        b: BM25 length normalisation.
        method: The ``bm25s`` BM25 variant (``"lucene"``, ``"robertson"``, ``"atire"``,
            ``"bm25l"``, ``"bm25+"``).
        stopwords: Stopword list name or list passed to ``bm25s.tokenize`` (None for none).

    Example:
        .. code-block:: python

            from qta_integrations import Tool
            from qta_integrations.evaluation import BM25ToolIndex

            index = BM25ToolIndex()
            index.add_tools([
                Tool(id="weather", name="get_weather", description="Weather forecast for a city."),
                Tool(id="stocks", name="get_quote", description="Latest stock price."),
            ])
            print(index.search("forecast for Oslo", k=1)[0].tool_id)  # weather
    """

    def __init__(
        self,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        stopwords: str | list[str] | None = "en",
    ) -> None:
        self.k1 = k1
        self.b = b
        self.method = method
        self.stopwords = stopwords
        self._tools: dict[str, Tool] = {}
        self._ids: list[str] = []
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def ids(self) -> list[str]:
        """Indexed tool ids, in insertion order."""
        return list(self._ids)

    def _tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        bm25s = _import_bm25s()
        tokens = bm25s.tokenize(
            list(texts), stopwords=self.stopwords, return_ids=False, show_progress=False
        )
        return [list(t) for t in tokens]

    def add_tools(self, tools: Sequence[Tool]) -> None:
        """Upsert tools (keyed by id) and rebuild the BM25 statistics over the whole corpus."""
        bm25s = _import_bm25s()
        if not tools:
            return
        with self._lock:
            for tool in tools:
                if tool.id not in self._tools:
                    self._ids.append(tool.id)
                self._tools[tool.id] = tool
            model = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
            model.index(
                self._tokenize([self._tools[i].text for i in self._ids]), show_progress=False
            )
            self._model = model

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """BM25 score of each query against each tool, shape ``(len(queries), n_tools)``.

        Raises:
            RuntimeError: if no tool has been added yet.
        """
        if self._model is None:
            msg = "The BM25 index is empty: call add_tools(...) before searching."
            raise RuntimeError(msg)
        tokens = self._tokenize(queries)
        with self._lock:
            n = len(self._ids)
            # A query with no indexable word (all stopwords) scores 0 everywhere.
            rows = [
                np.asarray(self._model.get_scores(t), dtype=np.float32)
                if t
                else np.zeros(n, dtype=np.float32)
                for t in tokens
            ]
        return np.stack(rows) if rows else np.zeros((0, len(self._ids)), dtype=np.float32)
