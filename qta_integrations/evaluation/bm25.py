"""The BM25 baseline: `qta_integrations.lexical.BM25ToolIndex`, re-exported here."""

from qta_integrations.lexical import BM25ToolIndex

__all__ = ["BM25ToolIndex"]
