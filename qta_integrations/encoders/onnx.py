"""`OnnxEmbeddings`: a BERT sentence encoder (default all-MiniLM-L6-v2) on ONNX Runtime.

The same contract as the sentence-transformers model it replaces: LangChain `Embeddings`,
mean pooling over the attention mask, L2-normalised vectors (384 dimensions for MiniLM),
inputs truncated to the model's ``max_seq_length`` (256 for MiniLM), batched in length-sorted
passes. (With int8 weights the activations are quantised per pass, so a text's vector can
differ in its last digits with the texts that share its pass; queries are therefore embedded
one per pass, see `OnnxEmbeddings.queries_embed_as_documents`.) One
``onnxruntime.InferenceSession`` is shared by every caller: ONNX Runtime's ``run`` is
thread-safe, and tokenizing holds a lock.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

__all__ = ["DEFAULT_MAX_SEQ_LENGTH", "OnnxEmbeddings"]

DEFAULT_MAX_SEQ_LENGTH = 256
"""Tokens kept per text when the checkpoint does not say (sentence-transformers' MiniLM: 256)."""


class OnnxEmbeddings(Embeddings):
    """A BERT encoder exported to ONNX, mean-pooled and L2-normalised in numpy.

    Build it with `OnnxEmbeddings.from_model_dir` (exports and caches the model on first use)
    or `qta_integrations.embeddings.default_embeddings` (the packaged all-MiniLM-L6-v2).

    Args:
        onnx_path: The ONNX file (inputs ``input_ids``, ``attention_mask``,
            ``token_type_ids``; output the last hidden state).
        tokenizer_path: The checkpoint's ``tokenizer.json``.
        model_name: The checkpoint the file was exported from (kept for identification: a
            saved retriever records the default model by this path).
        name: A short model name, recorded with each index as part of the encoder identity.
        precision: ``"int8"`` or ``"fp32"``, recorded likewise.
        batch_size: Texts per forward pass.
        num_threads: Intra-op threads of the session; None for ONNX Runtime's default.
        max_seq_length: Tokens kept per text.

    Example:
        .. code-block:: python

            from qta_integrations.embeddings import default_embeddings

            embeddings = default_embeddings()  # OnnxEmbeddings, fp32, unless QTA_ENCODER=torch
            print(len(embeddings.embed_query("weather in Paris")))  # 384
    """

    pads_batches = True
    """A pass pads every text to the longest one (`qta_integrations.embeddings.embed_queries`)."""

    def __init__(
        self,
        *,
        onnx_path: str | os.PathLike[str],
        tokenizer_path: str | os.PathLike[str],
        model_name: str | None = None,
        name: str = "all-MiniLM-L6-v2",
        precision: str = "fp32",
        batch_size: int = 32,
        num_threads: int | None = None,
        max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            msg = f"batch_size must be a positive int, got {batch_size!r}."
            raise ValueError(msg)
        if num_threads is not None and (
            isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1
        ):
            msg = f"num_threads must be a positive int or None, got {num_threads!r}."
            raise ValueError(msg)
        if isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int):
            msg = f"max_seq_length must be a positive int, got {max_seq_length!r}."
            raise ValueError(msg)
        if max_seq_length < 2:
            msg = f"max_seq_length must be at least 2 (CLS and SEP), got {max_seq_length}."
            raise ValueError(msg)
        self.onnx_path = Path(onnx_path)
        self.tokenizer_path = Path(tokenizer_path)
        self.model_name = model_name if model_name is not None else str(self.onnx_path)
        self.name = name
        self.precision = precision
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.max_seq_length = max_seq_length
        self._tokenizer = _load_tokenizer(self.tokenizer_path, max_seq_length)
        self._tokenizer_lock = threading.Lock()
        self._session = _load_session(self.onnx_path, num_threads)
        self._input_names = {i.name for i in self._session.get_inputs()}

    def __repr__(self) -> str:
        threads = "default" if self.num_threads is None else self.num_threads
        return (
            f"{type(self).__name__}(name={self.name!r}, precision={self.precision!r}, "
            f"threads={threads})"
        )

    @classmethod
    def from_model_dir(
        cls,
        model_dir: str | os.PathLike[str],
        *,
        precision: str = "fp32",
        name: str | None = None,
        cache: Path | None = None,
        batch_size: int = 32,
        num_threads: int | None = None,
        max_seq_length: int | None = None,
    ) -> OnnxEmbeddings:
        """Export a local BERT checkpoint to ONNX (once, cached) and load it.

        Args:
            model_dir: The checkpoint: ``config.json``, weights and ``tokenizer.json``.
            precision: ``"fp32"`` or ``"int8"`` (dynamic quantisation).
            name: The model's name in the cache and the encoder identity; default the
                directory's name.
            cache: The cache root; default ``$QTA_CACHE_DIR`` or ``~/.cache/qta_integrations``.
            batch_size: Texts per forward pass.
            num_threads: Intra-op threads; None for ONNX Runtime's default.
            max_seq_length: Tokens kept per text; default the checkpoint's
                ``sentence_bert_config.json``, else 256.

        Raises:
            FileNotFoundError: if ``model_dir`` has no ``tokenizer.json``.
            ValueError: for an unknown precision or a bad batch size or thread count.
        """
        from qta_integrations.encoders.export import onnx_model_path

        directory = Path(model_dir)
        tokenizer = directory / "tokenizer.json"
        if not tokenizer.is_file():
            msg = (
                f"{str(directory)!r} has no tokenizer.json; OnnxEmbeddings needs a checkpoint "
                "with a fast tokenizer (save it with AutoTokenizer.save_pretrained)."
            )
            raise FileNotFoundError(msg)
        label = name or directory.name
        path = onnx_model_path(directory, precision=precision, name=label, cache=cache)
        return cls(
            onnx_path=path,
            tokenizer_path=tokenizer,
            model_name=str(directory),
            name=label,
            precision=precision,
            batch_size=batch_size,
            num_threads=num_threads,
            max_seq_length=max_seq_length or _max_seq_length(directory),
        )

    @property
    def queries_embed_as_documents(self) -> bool:
        """Whether a batch of queries may be embedded in one pass (`embed_queries`).

        True for fp32: a text's vector does not depend on the other texts of its pass. Not
        for int8: dynamic quantisation takes one activation scale per pass, so the texts
        (and padding) beside a query move its vector in the last digits, and a batch could
        rank near-ties otherwise than ``invoke``; int8 queries are embedded one at a time.
        """
        return self.precision == "fp32"

    @property
    def encoder_identity(self) -> dict[str, str]:
        """What an index records of the model that embedded it."""
        return {"model": self.name, "backend": "onnxruntime", "precision": self.precision}

    # -- Embeddings -----------------------------------------------------------------------

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts in length-sorted passes of ``batch_size``; L2-normalised vectors."""
        return self.encode(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one query exactly as a document."""
        return self.encode([text])[0].tolist()

    def encode(self, texts: Sequence[str]) -> Any:
        """The normalised embeddings of ``texts`` as a float32 numpy array, one row per text."""
        import numpy as np

        texts = list(texts)
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                msg = f"Texts to embed must be strings; item {position} is {type(text).__name__}."
                raise TypeError(msg)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # Longest first, as sentence-transformers does: passes of similar lengths pad little.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out: Any = None
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            vectors = self._forward([texts[i] for i in chunk])
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[chunk] = vectors
        return out

    @property
    def dimension(self) -> int:
        """The embedding width (384 for MiniLM), from the model's output shape."""
        width = self._session.get_outputs()[0].shape[-1]
        if isinstance(width, int):
            return width
        return int(self._forward(["dimension"]).shape[1])  # pragma: no cover - static in BERT

    def _forward(self, texts: list[str]) -> Any:
        import numpy as np

        with self._tokenizer_lock:
            encodings = self._tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.asarray([e.type_ids for e in encodings], dtype=np.int64)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def _max_seq_length(model_dir: Path) -> int:
    config = model_dir / "sentence_bert_config.json"
    try:
        return int(json.loads(config.read_text(encoding="utf-8"))["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_MAX_SEQ_LENGTH


def _load_tokenizer(path: Path, max_seq_length: int) -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length=max_seq_length)
    pad_token = "[PAD]" if tokenizer.token_to_id("[PAD]") is not None else None
    pad_id = tokenizer.token_to_id(pad_token) if pad_token else 0
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token or "[PAD]")
    return tokenizer


def _load_session(path: Path, num_threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: the optimiser's notes are not for users
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
