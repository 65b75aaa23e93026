"""`EncoderConfig`: which backend runs the default embedding model, and how.

The default all-MiniLM-L6-v2 runs through ONNX Runtime in fp32
(`qta_integrations.encoders.onnx.OnnxEmbeddings`); ``backend="torch"`` keeps the
sentence-transformers model. Each field can also be set by an environment variable, read by
`EncoderConfig.from_env`:

* ``QTA_ENCODER``: ``onnx`` (default) or ``torch``;
* ``QTA_ENCODER_PRECISION``: ``fp32`` (default) or ``int8`` (ONNX only; dynamically quantised
  weights: faster, and S@5 moves by 1 to 4 points on the development catalogues);
* ``QTA_ENCODER_THREADS``: intra-op threads of the ONNX session (default: ONNX Runtime's own,
  one per physical core).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["BACKENDS", "ENV_BACKEND", "ENV_PRECISION", "ENV_THREADS", "PRECISIONS", "EncoderConfig"]

BACKENDS = ("onnx", "torch")
PRECISIONS = ("int8", "fp32")
ENV_BACKEND = "QTA_ENCODER"
ENV_PRECISION = "QTA_ENCODER_PRECISION"
ENV_THREADS = "QTA_ENCODER_THREADS"


@dataclass(frozen=True)
class EncoderConfig:
    """How the default embedding model is run.

    Example:
        .. code-block:: python

            from qta_integrations.encoders import EncoderConfig

            print(EncoderConfig())
            # EncoderConfig(backend='onnx', precision='fp32', num_threads=None)
            print(EncoderConfig.from_env({"QTA_ENCODER": "torch"}).backend)  # torch
    """

    backend: str = field(
        default="onnx",
        metadata={
            "help": "'onnx' (ONNX Runtime, the default) or 'torch' (sentence-transformers). "
            f"Environment: {ENV_BACKEND}."
        },
    )
    precision: str = field(
        default="fp32",
        metadata={
            "help": "Weights of the ONNX model: 'fp32' (the default) or 'int8' (dynamic "
            "quantisation: faster, less exact). The torch backend is always fp32. "
            f"Environment: {ENV_PRECISION}."
        },
    )
    num_threads: int | None = field(
        default=None,
        metadata={
            "help": "Intra-op threads of the ONNX session; None for ONNX Runtime's default "
            f"(one per physical core). Environment: {ENV_THREADS}."
        },
    )

    def __post_init__(self) -> None:
        backend = str(self.backend).strip().lower() if isinstance(self.backend, str) else None
        if backend not in BACKENDS:
            msg = (
                f"EncoderConfig.backend must be one of {list(BACKENDS)}, got {self.backend!r} "
                f"(set {ENV_BACKEND}=onnx or {ENV_BACKEND}=torch)."
            )
            raise ValueError(msg)
        precision = str(self.precision).strip().lower() if isinstance(self.precision, str) else None
        if precision not in PRECISIONS:
            msg = (
                f"EncoderConfig.precision must be one of {list(PRECISIONS)}, got "
                f"{self.precision!r} (set {ENV_PRECISION}=int8 or {ENV_PRECISION}=fp32)."
            )
            raise ValueError(msg)
        threads = self.num_threads
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            msg = (
                f"EncoderConfig.num_threads must be a positive int or None, got {threads!r} "
                f"(set {ENV_THREADS} to a positive integer, or leave it unset)."
            )
            raise ValueError(msg)
        object.__setattr__(self, "backend", backend)
        object.__setattr__(self, "precision", precision)

    @property
    def effective_precision(self) -> str:
        """The precision the encoder runs at (the torch backend is always ``"fp32"``)."""
        return "fp32" if self.backend == "torch" else self.precision

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> EncoderConfig:
        """The configuration from ``QTA_ENCODER*`` variables; ``overrides`` that are not None win.

        Args:
            environ: Where to read the variables; default ``os.environ``.
            **overrides: Fields to set regardless of the environment (None leaves a field
                to the environment).

        Raises:
            ValueError: for an unknown backend or precision, or a thread count that is not a
                positive integer, naming the variable.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if env.get(ENV_BACKEND, "").strip():
            values["backend"] = env[ENV_BACKEND]
        if env.get(ENV_PRECISION, "").strip():
            values["precision"] = env[ENV_PRECISION]
        raw_threads = env.get(ENV_THREADS, "").strip()
        if raw_threads:
            try:
                values["num_threads"] = int(raw_threads)
            except ValueError:
                msg = f"{ENV_THREADS} must be a positive integer, got {raw_threads!r}."
                raise ValueError(msg) from None
        config = cls(**values)
        chosen = {k: v for k, v in overrides.items() if v is not None}
        return replace(config, **chosen) if chosen else config
