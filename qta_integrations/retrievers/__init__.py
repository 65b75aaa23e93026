"""The retriever faces: thin layers over `qta_integrations.pipeline.QTAPipeline`.

Every face reaches the core through one attribute, ``.pipeline`` (a pipeline's is itself);
their shared lifecycle is `qta_integrations.retrievers.base.RetrieverLifecycle`.
"""

from __future__ import annotations

from typing import Any

from qta_integrations.pipeline import QTAPipeline
from qta_integrations.retrievers.base import pipeline_of, warn_deprecated

__all__ = ["as_pipeline"]


def as_pipeline(retriever: Any) -> QTAPipeline:
    """Deprecated: every face and the pipeline have ``.pipeline``; read that attribute.

    Raises:
        TypeError: for anything without a pipeline, naming the type received.
    """
    warn_deprecated("qta_integrations.retrievers.as_pipeline(retriever)", "retriever.pipeline")
    return pipeline_of(retriever)
