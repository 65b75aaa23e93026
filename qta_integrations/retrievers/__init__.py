"""Framework adapters: thin layers over `qta_integrations.pipeline.QTAPipeline`."""

from __future__ import annotations

from typing import Any

from qta_integrations.pipeline import QTAPipeline

__all__ = ["as_pipeline"]


def as_pipeline(retriever: Any) -> QTAPipeline:
    """The `QTAPipeline` behind a `QTARetriever`, a `QTALlamaIndexRetriever`, or a pipeline.

    Raises:
        TypeError: for anything else, naming the type received.
    """
    if isinstance(retriever, QTAPipeline):
        return retriever
    from qta_integrations.retrievers.langchain import QTARetriever
    from qta_integrations.retrievers.llama_index import QTALlamaIndexRetriever

    if isinstance(retriever, QTARetriever):
        return retriever.core
    if isinstance(retriever, QTALlamaIndexRetriever):
        return retriever.pipeline
    msg = (
        f"retriever must be a QTARetriever, a QTALlamaIndexRetriever or a QTAPipeline, got "
        f"{type(retriever).__name__}. Build one with QTARetriever(tools=...) or "
        "QTAPipeline.from_tools(...)."
    )
    raise TypeError(msg)
