"""Agent integrations: QTA tool selection for LangGraph (and langgraph-bigtool).

LlamaIndex agents take ``QTARetriever.as_tool_retriever()`` as their ``tool_retriever=``.
"""

from qta_integrations.agents.langgraph import (
    ConversationQuery,
    QTAAgentState,
    QTAToolSelector,
    bigtool_retrieve_functions,
    conversation_query,
    create_qta_agent,
)

__all__ = [
    "ConversationQuery",
    "QTAAgentState",
    "QTAToolSelector",
    "bigtool_retrieve_functions",
    "conversation_query",
    "create_qta_agent",
]
