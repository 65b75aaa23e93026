"""`encoder_identity`: the model, backend and precision behind an embedding model.

An on-disk index records the identity of the encoder that wrote its vectors; opened with
another encoder, it is re-embedded (`qta_integrations.stores.chroma.ChromaToolIndex`), so that
queries and stored vectors always come from the same model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_MODEL_NAME", "encoder_identity", "identity_key"]

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


def encoder_identity(embeddings: Any) -> dict[str, str]:
    """``{"model", "backend", "precision"}`` of a LangChain or LlamaIndex embedding model.

    * a model with an ``encoder_identity`` property (`OnnxEmbeddings`, or your own class)
      gives its own;
    * a ``HuggingFaceEmbeddings`` is ``sentence-transformers`` at ``fp32`` (or the dtype in
      its ``model_kwargs``), named ``all-MiniLM-L6-v2`` for the packaged weights and by its
      ``model_name`` otherwise;
    * anything else is named by its class and its ``model_name`` / ``model`` attribute, at
      an ``unknown`` precision.

    Our LlamaIndex wrappers and LangChain's ``CacheBackedEmbeddings`` are looked through; a
    wrapper of your own can return its model's identity from an ``encoder_identity`` property.

    Example:
        .. code-block:: python

            from langchain_core.embeddings import DeterministicFakeEmbedding
            from qta_integrations.encoders import encoder_identity

            print(encoder_identity(DeterministicFakeEmbedding(size=8))["model"])
            # DeterministicFakeEmbedding(size=8)
    """
    inner = getattr(embeddings, "_langchain_embedding", None)  # LlamaIndex's LangchainEmbedding
    if inner is not None:
        embeddings = inner
    wrapped = getattr(embeddings, "embed_model", None)  # our LlamaIndexEmbeddingsAdapter
    if wrapped is not None and type(embeddings).__name__ == "LlamaIndexEmbeddingsAdapter":
        embeddings = wrapped
    underlying = getattr(embeddings, "underlying_embeddings", None)  # CacheBackedEmbeddings
    if underlying is not None:
        return encoder_identity(underlying)
    own = getattr(embeddings, "encoder_identity", None)
    if isinstance(own, dict):
        return {str(k): str(v) for k, v in own.items()}
    cls = type(embeddings)
    backend = f"{cls.__module__}.{cls.__qualname__}"
    if cls.__name__ == "HuggingFaceEmbeddings":
        kwargs = getattr(embeddings, "model_kwargs", None) or {}
        dtype = kwargs.get("torch_dtype", kwargs.get("dtype"))
        return {
            "model": _model_name(str(getattr(embeddings, "model_name", ""))),
            "backend": "sentence-transformers",
            "precision": "fp32" if dtype is None else str(dtype).replace("torch.", ""),
        }
    name = getattr(embeddings, "model_name", None) or getattr(embeddings, "model", None)
    model = cls.__name__ if not isinstance(name, str) or not name else name
    size = getattr(embeddings, "size", None)
    if isinstance(size, int) and not isinstance(size, bool):
        model = f"{model}(size={size})"
    return {"model": model, "backend": backend, "precision": "unknown"}


def identity_key(identity: dict[str, str]) -> str:
    """The identity as canonical JSON, as it is stored in an index's record."""
    return json.dumps(identity, sort_keys=True)


def _model_name(path: str) -> str:
    from qta_integrations.models import default_embedding_model_path

    try:
        default = default_embedding_model_path()
    except ImportError:  # pragma: no cover - a hard dependency
        default = None
    if path and default is not None and Path(path) == Path(default):
        return DEFAULT_MODEL_NAME
    return path or "unknown"
