"""Agent integrations: QTA tool selection for LangGraph, LangChain 1.x agents and langgraph-bigtool.

LlamaIndex agents take ``QTARetriever.as_tool_retriever()`` as their ``tool_retriever=``.
`QTAToolSelectorMiddleware` (for ``langchain.agents.create_agent``) is imported on first use: it
needs LangChain 1.x, ``pip install -e ".[agents]"``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from qta_integrations.agents.langgraph import (
    ConversationQuery,
    QTAAgentState,
    QTAToolSelector,
    bigtool_retrieve_functions,
    conversation_query,
    create_qta_agent,
)

if TYPE_CHECKING:
    from qta_integrations.agents.middleware import QTAToolSelectorMiddleware

__all__ = [
    "ConversationQuery",
    "QTAAgentState",
    "QTAToolSelector",
    "QTAToolSelectorMiddleware",
    "bigtool_retrieve_functions",
    "conversation_query",
    "create_qta_agent",
]

_LAZY = {"QTAToolSelectorMiddleware": "qta_integrations.agents.middleware"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'qta_integrations.agents' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
