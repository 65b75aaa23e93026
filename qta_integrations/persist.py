"""Save a whole retriever to a directory and load it back, without embedding anything again.

`save` and `load` are the one implementation; `QTARetriever.persist` /
`QTARetriever.from_persist_dir` and the LlamaIndex retrievers' ``persist`` /
``from_persist_dir`` call them.

A saved retriever directory holds:

* ``qta_retriever.json`` (`CONFIG_NAME`), written last and atomically (a synced temporary file,
  then ``os.replace``), so a crash leaves the previous one intact:

  * ``format``: ``"qta-retriever"``; ``format_version``: `PERSIST_FORMAT_VERSION`;
    ``package_version``;
  * ``catalog``: ``{"file", "sha256", "count"}``, the catalogue's tool dicts in a JSON file
    named after its content (``tools-<sha256 prefix>.json``), so a new catalogue never
    overwrites the one the current ``qta_retriever.json`` names;
  * ``index``: the index's reference (``ToolIndex.persist_reference``; the index's own files,
    e.g. ``chroma/``, live beside it, or it names a store that must be passed again);
  * ``embeddings``: ``"default"``, the class name of another embedding model (pass it again
    when loading), or null when unknown;
  * ``rewriter``: ``{"source", "type"}``: ``source`` is null, ``"default"`` or the directory
    the rewriter was loaded from (relative when inside the saved directory), ``type`` its
    class name (a rewriter built in memory has a type and no source: pass it again);
  * ``state``: ``QTAPipeline.state_dict()`` (the retrieval settings, fitted fusion weights
    and labelled examples).
* the catalogue file and the index's files.

Example:
    .. code-block:: python

        from qta_integrations import QTARetriever, persist

        retriever = QTARetriever(tools="tools.json")
        persist.save(retriever, "saved-retriever")
        pipeline = persist.load("saved-retriever")  # a QTAPipeline; or:
        retriever = QTARetriever.from_persist_dir("saved-retriever")
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

from qta_integrations._files import TMP_SUFFIX, atomic_write_text
from qta_integrations._version import __version__
from qta_integrations.adapter import is_adapter_dir
from qta_integrations.pipeline import QTAPipeline
from qta_integrations.settings import RetrievalSettings
from qta_integrations.tools import ToolCatalog, ToolsLike

__all__ = [
    "CONFIG_NAME",
    "PERSIST_FORMAT",
    "PERSIST_FORMAT_VERSION",
    "SAVED",
    "PersistError",
    "load",
    "read_config",
    "save",
]

logger = logging.getLogger(__name__)

CONFIG_NAME = "qta_retriever.json"
PERSIST_FORMAT = "qta-retriever"
PERSIST_FORMAT_VERSION = 2
SAVED = "saved"
"""``rewriter=SAVED`` (the default of `load`): reload the saved rewriter."""

_TOOLS_PREFIX = "tools-"
_CATALOG_NAME = re.compile(r"tools-[0-9a-f]{16}\.json")
_REQUIRED = ("catalog", "index", "embeddings", "rewriter", "state")


class PersistError(ValueError):
    """A saved retriever directory is broken or cannot be loaded as asked."""


# -- saving -----------------------------------------------------------------------------------


def save(retriever: Any, directory: str | os.PathLike[str]) -> Path:
    """Save a retriever (or its `QTAPipeline`) to ``directory``.

    Writes the catalogue, the index's data or a reference to it, which embeddings and rewriter
    were used, and the pipeline's state (settings, fitted fusion, labelled examples). Reloading
    with `load` embeds nothing. Other files in ``directory`` are left alone.

    Args:
        retriever: A `QTAPipeline`, a `QTARetriever`, a `QTALlamaIndexRetriever` or a
            `QTAToolRetriever`.
        directory: Where to save; created if needed.

    Returns:
        ``directory`` as a `Path`.

    Raises:
        TypeError: if ``retriever`` holds no `QTAPipeline`, or its index cannot be saved.
        ValueError: if ``directory`` is empty or names a file.
    """
    from qta_integrations.validation import check_storage_directory

    pipeline = getattr(retriever, "pipeline", None)  # a face's, or a pipeline itself
    if not isinstance(pipeline, QTAPipeline):
        msg = (
            f"Cannot save a {type(retriever).__name__}: pass a QTAPipeline, QTARetriever, "
            "QTALlamaIndexRetriever or QTAToolRetriever."
        )
        raise TypeError(msg)
    target = check_storage_directory("directory", directory)
    # Everything that can fail without touching the disk comes first.
    state = pipeline.state_dict()
    try:
        json.dumps(state)
    except (TypeError, ValueError) as err:
        msg = f"The pipeline's state_dict() is not JSON-serialisable ({err}); nothing was saved."
        raise TypeError(msg) from err
    rewriter = _rewriter_reference(pipeline, target)
    embeddings = _embeddings_name(pipeline.index)
    tools_text = json.dumps(pipeline.catalog.to_dicts(), indent=2, default=str)
    digest = hashlib.sha256(tools_text.encode("utf-8")).hexdigest()
    tools_file = f"{_TOOLS_PREFIX}{digest[:16]}.json"

    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob(f".*{TMP_SUFFIX}"):  # temporary files of an interrupted save
        with contextlib.suppress(OSError):
            stale.unlink()
    index_reference = pipeline.index.persist_reference(target)
    atomic_write_text(target / tools_file, tools_text)
    config = {
        "format": PERSIST_FORMAT,
        "format_version": PERSIST_FORMAT_VERSION,
        "package_version": __version__,
        "catalog": {"file": tools_file, "sha256": digest, "count": len(pipeline.catalog)},
        "index": index_reference,
        "embeddings": embeddings,
        "rewriter": rewriter,
        "state": state,
    }
    atomic_write_text(target / CONFIG_NAME, json.dumps(config, indent=2, default=str))
    for stale in target.glob(f"{_TOOLS_PREFIX}*.json"):
        if stale.name != tools_file and _is_catalog_name(stale.name):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()  # earlier catalogues, written by this module
    logger.info("Saved the QTA retriever to %s.", target)
    return target


def _is_catalog_name(name: str) -> bool:
    return _CATALOG_NAME.fullmatch(name) is not None


def _embeddings_name(index: Any) -> str | None:
    """``"default"``, the embedding model's class name, or None when the index hides it."""
    from qta_integrations.embeddings import default_embedding_model_path

    embeddings = getattr(index, "embeddings", None)
    if embeddings is None:
        embeddings = getattr(getattr(index, "vectorstore", None), "embeddings", None)
    if embeddings is None:
        return None
    inner = getattr(embeddings, "_langchain_embedding", embeddings)  # our LlamaIndex wrapper
    if getattr(inner, "model_name", None) == default_embedding_model_path():
        return "default"
    return type(inner).__name__


def _rewriter_reference(pipeline: QTAPipeline, directory: Path) -> dict[str, Any]:
    """Where the rewriter comes from: None, "default" or a directory (relative when inside)."""
    source = pipeline.rewriter_reference
    kind = "HuggingFaceRewriter"  # what a name or a directory resolves to
    if source is None:
        if not pipeline.has_rewriter:
            return {"source": None, "type": None}
        rewriter = pipeline.rewriter
        source, kind = getattr(rewriter, "source", None), type(rewriter).__name__
        model = getattr(rewriter, "model", None)
        if hasattr(model, "peft_config") and not (source and is_adapter_dir(source)):
            msg = (
                "The rewriter has a LoRA adapter that was not saved, so the retriever could not "
                "be reloaded with it. Save the adapter first (QTATrainer.save(dir)), then "
                "persist the retriever."
            )
            raise ValueError(msg)
    if source is not None and source != "default":
        path = Path(source).resolve()
        if path.is_relative_to(directory.resolve()):
            source = path.relative_to(directory.resolve()).as_posix() or "."
        else:
            source = str(path)
    return {"source": source, "type": kind}


# -- loading ----------------------------------------------------------------------------------


def read_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate ``qta_retriever.json`` of a saved retriever directory.

    Raises:
        FileNotFoundError: if ``directory`` or its ``qta_retriever.json`` does not exist.
        PersistError: if it is not a directory, or the file is not valid JSON, lacks keys, or
            has an unknown format version (each message names the file and what to do).
    """
    path = Path(directory)
    if not path.exists():
        msg = (
            f"No saved QTA retriever at {str(path)!r}: the directory does not exist. Save one "
            "with retriever.persist(dir)."
        )
        raise FileNotFoundError(msg)
    if not path.is_dir():
        msg = f"{str(path)!r} is a file, not a saved QTA retriever directory."
        raise PersistError(msg)
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        msg = (
            f"No saved QTA retriever in {str(path)!r} (no {CONFIG_NAME}). Save one with "
            "retriever.persist(dir) or from_defaults(tools, persist_dir=dir)."
        )
        raise FileNotFoundError(msg)
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        _broken(config_file, f"it is not valid JSON ({err})")
    if not isinstance(config, dict):
        _broken(config_file, f"it holds a {type(config).__name__}, not a JSON object")
    if config.get("format") != PERSIST_FORMAT:
        _broken(config_file, f"'format' is {config.get('format')!r}, not {PERSIST_FORMAT!r}")
    version = config.get("format_version")
    if version != PERSIST_FORMAT_VERSION:
        msg = (
            f"{config_file}: saved retriever format version {version!r} is not supported (this "
            f"qta-integrations reads version {PERSIST_FORMAT_VERSION}). Save the retriever again "
            "with this version (retriever.persist(dir))."
        )
        raise PersistError(msg)
    missing = [key for key in _REQUIRED if key not in config]
    if missing:
        _broken(config_file, f"it lacks {missing}")
    for key in ("catalog", "index", "rewriter", "state"):
        if not isinstance(config[key], dict):
            _broken(config_file, f"{key!r} must be an object, got {type(config[key]).__name__}")
    if not isinstance(config["embeddings"], (str, type(None))):
        _broken(config_file, "'embeddings' must be a string or null")
    catalog_name = config["catalog"].get("file")
    if not isinstance(catalog_name, str) or not _is_catalog_name(catalog_name):
        _broken(config_file, f"'catalog.file' {catalog_name!r} is not a catalogue file name")
    return config


def _broken(config_file: Path, problem: str) -> None:
    msg = (
        f"{config_file} is not a valid saved QTA retriever: {problem}. Save the retriever again "
        "(retriever.persist(dir)); do not edit the file by hand."
    )
    raise PersistError(msg)


def load(
    directory: str | os.PathLike[str],
    *,
    tools: ToolsLike | None = None,
    embeddings: Any | None = None,
    vectorstore: Any | None = None,
    llama_index: Any | None = None,
    rewriter: Any = SAVED,
    settings: RetrievalSettings | None = None,
    **overrides: Any,
) -> QTAPipeline:
    """Load a retriever saved with `save` as a `QTAPipeline` (nothing is embedded).

    Args:
        directory: The saved retriever directory.
        tools: The same tools as live objects (e.g. LlamaIndex ``FunctionTool``s, which cannot
            be saved); their ids must match the saved catalogue. Default: the saved catalogue.
        embeddings: The embedding model used when saving; needed unless it was the default or
            the index is passed again.
        vectorstore: The LangChain vector store, when the saved index was the user's own store.
        llama_index: The LlamaIndex index, when the saved index was the user's own.
        rewriter: `SAVED` reloads the saved rewriter; anything else replaces it (see
            `qta_integrations.rewriter.resolve_rewriter`; None for no rewrite).
        settings: A `RetrievalSettings` replacing the saved settings.
        **overrides: Single settings replacing the saved ones (``k=3``, ``fetch_k=40``, ...).

    Raises:
        FileNotFoundError: if ``directory`` holds no saved retriever.
        PersistError: for a broken or unknown-version ``qta_retriever.json`` or catalogue file.
        ValueError: if ``tools`` differ from the saved catalogue, or the saved embeddings,
            index or rewriter cannot be rebuilt without being passed in.
    """
    from qta_integrations.rewriter import resolve_rewriter
    from qta_integrations.stores import load_index

    path = Path(directory)
    config = read_config(path)
    state = _apply_overrides(dict(config["state"]), settings, overrides, path / CONFIG_NAME)
    saved = _read_catalog(path, config)
    catalog = saved if tools is None else ToolCatalog.from_any(tools)
    if set(catalog.ids) != set(saved.ids):
        missing = sorted(set(saved.ids) - set(catalog.ids))
        extra = sorted(set(catalog.ids) - set(saved.ids))
        msg = (
            f"tools= differ from the catalogue saved in {str(path)!r}: missing {missing}, not "
            f"saved {extra}. Pass the same tools, or build and save the retriever again."
        )
        raise ValueError(msg)
    passed_index = vectorstore is not None or llama_index is not None
    saved_embeddings = config["embeddings"]
    if embeddings is None and not passed_index and saved_embeddings != "default":
        what = f"{saved_embeddings} embeddings" if saved_embeddings else "a custom embedding model"
        msg = (
            f"The retriever in {str(path)!r} was saved with {what}; pass the same model as "
            "embeddings= (embed_model= in LlamaIndex): queries must be embedded alike."
        )
        raise ValueError(msg)
    index = load_index(
        config["index"],
        path,
        embeddings=embeddings,
        vectorstore=vectorstore,
        llama_index=llama_index,
    )
    if isinstance(rewriter, str) and rewriter == SAVED:
        rewriter = _saved_rewriter(config["rewriter"], path)
    pipeline: QTAPipeline
    if isinstance(rewriter, (str, os.PathLike)):
        spec = rewriter  # a name or a directory: loaded when first needed, as in from_tools
        pipeline = QTAPipeline(catalog, index, lambda: resolve_rewriter(spec), index_tools=False)
        pipeline.rewriter_reference = "default" if spec == "default" else str(Path(spec))
    else:
        pipeline = QTAPipeline(catalog, index, resolve_rewriter(rewriter), index_tools=False)
    pipeline.load_state_dict(state)
    return pipeline


def _read_catalog(path: Path, config: dict[str, Any]) -> ToolCatalog:
    entry = config["catalog"]
    file = path / entry["file"]
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = (
            f"{file}, the catalogue named in {path / CONFIG_NAME}, is missing. Copy the whole "
            "directory, or save the retriever again."
        )
        raise PersistError(msg) from None
    if entry.get("sha256") not in (None, hashlib.sha256(text.encode("utf-8")).hexdigest()):
        msg = (
            f"{file} does not match the SHA-256 recorded in {path / CONFIG_NAME}: it was "
            "changed. Save the retriever again."
        )
        raise PersistError(msg)
    try:
        return ToolCatalog.from_dicts(json.loads(text))
    except (json.JSONDecodeError, TypeError, ValueError, KeyError) as err:
        msg = f"{file} is not a valid catalogue ({err}). Save the retriever again."
        raise PersistError(msg) from err


def _saved_rewriter(reference: dict[str, Any], path: Path) -> Any:
    source, kind = reference.get("source"), reference.get("type")
    if source is None:
        if kind is not None:
            msg = (
                f"The retriever in {str(path)!r} used a {kind} that cannot be reloaded from "
                "disk; pass it again as rewriter= (or rewriter=None)."
            )
            raise ValueError(msg)
        return None
    if source == "default":
        return "default"
    location = Path(source)
    if not location.is_absolute():
        location = path / location
    if not location.exists():
        msg = (
            f"The retriever in {str(path)!r} used the rewriter in {str(location)!r}, which no "
            "longer exists; pass a rewriter= (an adapter directory, 'default' or None)."
        )
        raise ValueError(msg)
    return location


def _apply_overrides(
    state: dict[str, Any],
    settings: RetrievalSettings | None,
    overrides: dict[str, Any],
    config_file: Path,
) -> dict[str, Any]:
    saved = state.get("settings")
    if not isinstance(saved, dict):
        _broken(config_file, "'state.settings' must be an object")
    assert isinstance(saved, dict)  # for mypy: _broken raised otherwise
    if settings is not None:
        if not isinstance(settings, RetrievalSettings):
            msg = f"settings must be a RetrievalSettings, got {type(settings).__name__}."
            raise TypeError(msg)
        saved = settings.to_dict()
    if not overrides:
        return {**state, "settings": saved}
    known = {f.name for f in fields(RetrievalSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        msg = f"Unknown settings {unknown}; expected some of {sorted(known)}."
        raise TypeError(msg)
    return {**state, "settings": {**saved, **overrides}}
