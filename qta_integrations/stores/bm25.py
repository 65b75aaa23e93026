"""`BM25ToolIndex`: the lexical index over the catalogue (BM25 via ``bm25s``).

It is the core's lexical signal (`qta_integrations.signals.LexicalSignal` scores every tool
with it) and, since it implements the `ToolIndex` interface, the paper's sparse baseline too
(``QTAPipeline(catalog, BM25ToolIndex())``). A tool's text can be *expanded* with the labelled
example queries that need it (`with_expansions`), so the user's own wording of a request
matches the tool lexically.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from qta_integrations.stores.base import ScoredToolIndex
from qta_integrations.stores.tokenize import LexicalTokenizer
from qta_integrations.tools import Tool


class Default:
    """The type of `DEFAULT`: "not given", where None means something else."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT = Default()

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

    Texts are read by a `LexicalTokenizer` (the default: identifiers split into their words,
    the whole word kept beside its parts, English stopwords dropped, stemmed), or, with
    ``tokenizer=None``, by ``bm25s.tokenize`` (lower-cased words of two or more characters,
    ``stopwords`` dropped, no stemming). Scores are raw BM25 scores (not in [0, 1]); ties,
    including tools sharing no word with the query (score 0), keep catalogue order, so
    rankings are deterministic.

    Args:
        k1: BM25 term-frequency saturation.
        b: BM25 length normalisation.
        method: The ``bm25s`` BM25 variant (``"lucene"``, ``"robertson"``, ``"atire"``,
            ``"bm25l"``, ``"bm25+"``).
        stopwords: With ``tokenizer=None``: the stopword list name or list passed to
            ``bm25s.tokenize`` (None for none).
        tokenizer: Texts -> token lists (default `LexicalTokenizer()`); None for
            ``bm25s.tokenize``.

    Example:
        .. code-block:: python

            from qta_integrations import Tool
            from qta_integrations.stores import BM25ToolIndex

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
        tokenizer: Callable[[Sequence[str]], list[list[str]]] | Default | None = DEFAULT,
    ) -> None:
        self.k1 = k1
        self.b = b
        self.method = method
        self.stopwords = stopwords
        self.tokenizer: Callable[[Sequence[str]], list[list[str]]] | None = (
            LexicalTokenizer() if isinstance(tokenizer, Default) else tokenizer
        )
        self._tools: dict[str, Tool] = {}
        self._ids: list[str] = []
        self._expansions: dict[str, tuple[str, ...]] = {}
        # Each text's tokens, kept so that a rebuild (an added tool, an expanded copy)
        # tokenises only new texts: tokenising is about half of building 100,000 tools.
        self._tokens: dict[str, list[str]] = {}
        self._expansion_tokens: dict[str, list[str]] = {}
        self._model: Any = None
        self._presence: Any = None  # tools x vocabulary, 1 where the tool has the token
        self._lock = threading.Lock()

    @property
    def ids(self) -> list[str]:
        """Indexed tool ids, in insertion order."""
        return list(self._ids)

    def _tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        if self.tokenizer is not None:
            return self.tokenizer(list(texts))
        bm25s = _import_bm25s()
        tokens = bm25s.tokenize(
            list(texts), stopwords=self.stopwords, return_ids=False, show_progress=False
        )
        return [list(t) for t in tokens]

    def add_tools(self, tools: Sequence[Tool]) -> None:
        """Upsert tools (keyed by id) and rebuild the BM25 statistics over the whole corpus."""
        if not tools:
            return
        with self._lock:
            changed = []
            for tool in tools:
                if tool.id not in self._tools:
                    self._ids.append(tool.id)
                if tool.id not in self._tools or self._tools[tool.id].text != tool.text:
                    changed.append(tool)
                self._tools[tool.id] = tool
            tokens = self._tokenize([t.text for t in changed])
            # A new dict: expanded copies share the old one (see with_expansions).
            self._tokens = {
                **self._tokens,
                **{t.id: w for t, w in zip(changed, tokens, strict=True)},
            }
            self._rebuild()

    def delete(self, ids: Sequence[str]) -> None:
        """Remove tools by id (unknown ids are ignored) and rebuild the statistics."""
        gone = set(ids) & set(self._tools)
        if not gone:
            return
        with self._lock:
            self._tokens = {i: t for i, t in self._tokens.items() if i not in gone}
            for tool_id in gone:
                del self._tools[tool_id]
                self._expansions.pop(tool_id, None)
                self._expansion_tokens.pop(tool_id, None)
            self._ids = [i for i in self._ids if i not in gone]
            self._rebuild()

    def list_entries(self, kind: str | None = None) -> dict[str, str | None]:
        """The indexed tools (``id -> None``: no content hash is kept); it holds no examples."""
        return {} if kind == "example" else dict.fromkeys(self._ids)

    def _rebuild(self) -> None:
        if not self._ids:
            self._model = None
            return
        bm25s = _import_bm25s()
        model = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        # A tool's expanded text is its text and its expansions joined by spaces; words never
        # cross a space, so its tokens are the texts' tokens one after the other.
        extra = self._expansion_tokens
        corpus = [self._tokens[i] + extra[i] if i in extra else self._tokens[i] for i in self._ids]
        model.index(corpus, show_progress=False)
        self._model = model
        self._presence = None

    @property
    def expansions(self) -> dict[str, tuple[str, ...]]:
        """Extra texts appended to each tool's text (tool id -> texts)."""
        return dict(self._expansions)

    def with_expansions(self, expansions: Mapping[str, Sequence[str]]) -> BM25ToolIndex:
        """A new index over the same tools, each tool's text extended with ``expansions[id]``.

        Ids that are not indexed tools are ignored. The original index is unchanged.
        """
        copy = BM25ToolIndex(
            k1=self.k1,
            b=self.b,
            method=self.method,
            stopwords=self.stopwords,
            tokenizer=self.tokenizer,
        )
        copy._tools = dict(self._tools)
        copy._ids = list(self._ids)
        copy._tokens = self._tokens  # shared: writers replace the dict, never change it
        copy._expansions = {
            tool_id: tuple(texts) for tool_id, texts in expansions.items() if tool_id in self._tools
        }
        ids = list(copy._expansions)
        tokens = copy._tokenize([" ".join(copy._expansions[i]) for i in ids])
        copy._expansion_tokens = dict(zip(ids, tokens, strict=True))
        copy._rebuild()
        return copy

    def _query_tokens(self, queries: Sequence[str]) -> list[list[str]]:
        if self._model is None:
            msg = "The BM25 index is empty: call add_tools(...) before searching."
            raise RuntimeError(msg)
        return self._tokenize(queries)

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """BM25 score of each query against each tool, shape ``(len(queries), n_tools)``.

        Raises:
            RuntimeError: if no tool has been added yet.
        """
        return self._scores_of(self._query_tokens(queries))

    def match_coverage(self, queries: Sequence[str]) -> np.ndarray:
        """For each query, the largest share of its idf mass that one tool's words hold.

        A query's distinct tokens are weighed by their idf over the catalogue (Lucene's
        ``ln(1 + (N - df + 0.5) / (df + 0.5))``; a token no tool has counts with ``df = 0``);
        a tool covers the idf of the tokens it contains. 1 means some tool has every word of
        the query, 0 that no tool has any (or the query has no indexable word). It tells how
        far a lexical match can be trusted for this query, with no labels.

        Raises:
            RuntimeError: if no tool has been added yet.
        """
        return self._coverage_of(self._query_tokens(queries))

    def scores_and_coverage(self, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """`scores` and `match_coverage` of the same queries, tokenised once."""
        tokens = self._query_tokens(queries)
        return self._scores_of(tokens), self._coverage_of(tokens)

    def _scores_of(self, tokens: list[list[str]]) -> np.ndarray:
        with self._lock:
            n = len(self._ids)
            # A query with no indexable word (all stopwords) scores 0 everywhere.
            rows = [
                np.asarray(self._model.get_scores(t), dtype=np.float32)
                if t
                else np.zeros(n, dtype=np.float32)
                for t in tokens
            ]
        return np.stack(rows) if rows else np.zeros((0, n), dtype=np.float32)

    def _coverage_of(self, tokens: list[list[str]]) -> np.ndarray:
        with self._lock:
            presence, vocabulary = self._presence_matrix()
        n = presence.shape[0]
        out = np.zeros(len(tokens), dtype=np.float64)
        for row, query in enumerate(tokens):
            distinct = list(dict.fromkeys(query))
            if not distinct:
                continue
            columns = [vocabulary.get(t, -1) for t in distinct]
            df = np.asarray(
                [presence.indptr[c + 1] - presence.indptr[c] if c >= 0 else 0 for c in columns],
                dtype=np.float64,
            )
            idf = np.log1p((n - df + 0.5) / (df + 0.5))
            known = [i for i, c in enumerate(columns) if c >= 0]
            if known:
                matched = presence[:, [columns[i] for i in known]] @ idf[known]
                out[row] = float(matched.max()) / float(idf.sum())
        return out

    def _presence_matrix(self) -> tuple[Any, dict[str, int]]:
        # Built on first use from the kept tokens (the tools' own texts, not the expansions).
        if self._presence is None:
            from scipy import sparse

            vocabulary: dict[str, int] = {}
            rows, cols = [], []
            for row, tool_id in enumerate(self._ids):
                for token in set(self._tokens[tool_id]):
                    rows.append(row)
                    cols.append(vocabulary.setdefault(token, len(vocabulary)))
            data = np.ones(len(rows), dtype=np.float64)
            shape = (len(self._ids), len(vocabulary))
            self._presence = (sparse.csc_matrix((data, (rows, cols)), shape=shape), vocabulary)
        presence: tuple[Any, dict[str, int]] = self._presence
        return presence
