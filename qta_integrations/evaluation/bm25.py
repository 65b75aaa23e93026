"""The BM25 baseline: `qta_integrations.stores.BM25ToolIndex`, re-exported here."""

from qta_integrations.stores import BM25ToolIndex

__all__ = ["BM25ToolIndex"]
