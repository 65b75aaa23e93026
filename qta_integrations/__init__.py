"""qta-integrations: tool retrieval for LLM agents that learns from a handful of labels.

Every candidate tool gets named scores from several signals (dense similarity from the wrapped
vector store, BM25, the labelled examples stored beside the tools, a label prior, and a small
local LLM's rewrite of the query, as in query-tool alignment, QTA); the fusion weights are fitted
on the labels by leave-one-out (`QTAPipeline.add_examples`, `QTATrainer`).

Heavy dependencies (torch, transformers, trl, peft) are imported only when a name that needs
them is first used, so ``import qta_integrations`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from qta_integrations._version import __version__

if TYPE_CHECKING:
    from qta_integrations.agents.langgraph import QTAToolSelector, create_qta_agent
    from qta_integrations.embeddings import default_embeddings
    from qta_integrations.fusion import FusionWeights
    from qta_integrations.memory import ExampleMemory
    from qta_integrations.pipeline import QTAPipeline, RetrievalResult, RetrievedTool
    from qta_integrations.prompts import RewriteExample, RewritePrompt, RewriteRequest
    from qta_integrations.ranking import RankingFunction, SufficiencyNDCG, fuse_hits
    from qta_integrations.retrievers.langchain import QTARetriever
    from qta_integrations.retrievers.llama_index import QTALlamaIndexRetriever, QTAToolRetriever
    from qta_integrations.rewriter import HuggingFaceRewriter, QueryRewriter, RunnableRewriter
    from qta_integrations.selection import ToolSelection
    from qta_integrations.settings import RetrievalSettings
    from qta_integrations.signals import Signal, SignalScores
    from qta_integrations.stores import (
        ExactToolIndex,
        IndexEntry,
        IndexHit,
        LlamaIndexToolIndex,
        ToolHit,
        ToolIndex,
        VectorStoreToolIndex,
        chroma_tool_index,
    )
    from qta_integrations.tools import Tool, ToolCatalog
    from qta_integrations.training import QTATrainer, QTATrainingConfig

_LAZY: dict[str, str] = {
    "SignalScores": "qta_integrations.signals",
    "Signal": "qta_integrations.signals",
    "RetrievalSettings": "qta_integrations.settings",
    "IndexHit": "qta_integrations.stores",
    "IndexEntry": "qta_integrations.stores",
    "FusionWeights": "qta_integrations.fusion",
    "ExampleMemory": "qta_integrations.memory",
    "BM25ToolIndex": "qta_integrations.stores",
    "ExactToolIndex": "qta_integrations.stores",
    "HuggingFaceRewriter": "qta_integrations.rewriter",
    "LlamaIndexToolIndex": "qta_integrations.stores",
    "QTALlamaIndexRetriever": "qta_integrations.retrievers.llama_index",
    "QTAPipeline": "qta_integrations.pipeline",
    "QTARetriever": "qta_integrations.retrievers.langchain",
    "QTATrainer": "qta_integrations.training",
    "QTATrainingConfig": "qta_integrations.training",
    "QTAToolSelector": "qta_integrations.agents.langgraph",
    "QTAToolRetriever": "qta_integrations.retrievers.llama_index",
    "QueryRewriter": "qta_integrations.rewriter",
    "RankingFunction": "qta_integrations.ranking",
    "RetrievalResult": "qta_integrations.pipeline",
    "RetrievedTool": "qta_integrations.pipeline",
    "RewriteExample": "qta_integrations.prompts",
    "RewritePrompt": "qta_integrations.prompts",
    "RewriteRequest": "qta_integrations.prompts",
    "RunnableRewriter": "qta_integrations.rewriter",
    "SufficiencyNDCG": "qta_integrations.ranking",
    "Tool": "qta_integrations.tools",
    "ToolCatalog": "qta_integrations.tools",
    "ToolHit": "qta_integrations.stores",
    "ToolIndex": "qta_integrations.stores",
    "ToolSelection": "qta_integrations.selection",
    "VectorStoreToolIndex": "qta_integrations.stores",
    "chroma_tool_index": "qta_integrations.stores",
    "create_qta_agent": "qta_integrations.agents.langgraph",
    "default_embeddings": "qta_integrations.embeddings",
    "fuse_hits": "qta_integrations.ranking",
}

__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'qta_integrations' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
