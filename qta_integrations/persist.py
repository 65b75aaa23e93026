"""Save a whole retriever to a directory and load it back, without embedding anything again.

`save` and `load` are the one implementation; the faces' ``persist`` and ``from_persist_dir``
call them. The directory is in the one format of fitted state (`qta_integrations.adapter`):
``qta_manifest.json`` holds the pipeline's state under ``retrieval`` (settings, fitted fusion
weights, labelled examples) and the rest under ``retriever``:

* ``catalog``: ``{"file", "sha256", "count"}``, the catalogue's tool dicts in a JSON file
  named after its content (``tools-<sha256 prefix>.json``), so a new catalogue never
  overwrites the one the current manifest names;
* ``index``: the index's reference (``ToolIndex.persist_reference``; the index's own files,
  e.g. ``chroma/``, live beside it, or it names a store that must be passed again);
* ``embeddings``: ``"default"``, the class name of another embedding model (pass it again
  when loading), or null when unknown;
* ``rewriter``: ``{"source", "type"}``: ``source`` is null, ``"default"`` or the directory
  the rewriter was loaded from (relative when inside the saved directory), ``type`` its
  class name (a rewriter built in memory has a type and no source: pass it again).

The manifest is written last and atomically (a synced temporary file, then ``os.replace``), so
a crash leaves the previous save intact. `load` also reads a retriever saved before this
format (``qta_retriever.json``), and a `QTATrainer` adapter directory (its rewriter, fitted
weights and labelled examples; the tools are then passed, and embedded).

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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from qta_integrations._files import TMP_SUFFIX, atomic_write_text
from qta_integrations._version import __version__
from qta_integrations.adapter import (
    ADAPTER_FORMAT,
    ADAPTER_FORMAT_VERSION,
    LEGACY_RETRIEVER_CONFIG,
    MANIFEST_NAME,
    AdapterError,
    AdapterManifest,
    has_fitted_state,
    is_adapter_dir,
    read_adapter,
)
from qta_integrations.pipeline import QTAPipeline
from qta_integrations.settings import RetrievalSettings
from qta_integrations.stores import ToolIndex
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

CONFIG_NAME = MANIFEST_NAME
"""The manifest of a saved retriever: the one of every directory of fitted state."""
PERSIST_FORMAT = ADAPTER_FORMAT
PERSIST_FORMAT_VERSION = ADAPTER_FORMAT_VERSION
SAVED = "saved"
"""``rewriter=SAVED`` (the default of `load`): reload the saved rewriter."""

_TOOLS_PREFIX = "tools-"
_CATALOG_NAME = re.compile(r"tools-[0-9a-f]{16}\.json")

PersistError = AdapterError
"""A saved retriever directory is broken: the format's error (`AdapterError`)."""


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
    manifest = AdapterManifest(
        files={tools_file: digest},
        retrieval=state,
        retriever={
            "catalog": {"file": tools_file, "sha256": digest, "count": len(pipeline.catalog)},
            "index": index_reference,
            "embeddings": embeddings,
            "rewriter": rewriter,
        },
        package_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    text = json.dumps(manifest.to_dict(), indent=2, default=str)
    atomic_write_text(target / CONFIG_NAME, text)
    with contextlib.suppress(FileNotFoundError):
        (target / LEGACY_RETRIEVER_CONFIG).unlink()  # this module's own, before version 3
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
    """The manifest of a saved retriever (or adapter) directory, read and checked.

    The one reader, `qta_integrations.adapter.read_adapter`, reads it (any readable version,
    including a retriever saved before version 3).

    Raises:
        FileNotFoundError: if ``directory`` does not exist, or holds no fitted state.
        PersistError: if it is a file, or its manifest is broken or of an unknown version
            (each message names the file and what to do).
    """
    return read_adapter(_existing(Path(directory)), verify=False).manifest.to_dict()


def _existing(path: Path) -> Path:
    if not path.exists():
        msg = (
            f"No saved QTA retriever at {str(path)!r}: the directory does not exist. Save one "
            "with retriever.persist(dir)."
        )
        raise FileNotFoundError(msg)
    if not path.is_dir():
        msg = f"{str(path)!r} is a file, not a saved QTA retriever directory."
        raise PersistError(msg)
    if not has_fitted_state(path):
        msg = (
            f"No saved QTA retriever in {str(path)!r} (no {CONFIG_NAME}). Save one with "
            "retriever.persist(dir) or from_defaults(tools, persist_dir=dir), or train an "
            "adapter there (qta train --output DIR)."
        )
        raise FileNotFoundError(msg)
    return path


def load(
    directory: str | os.PathLike[str],
    *,
    tools: ToolsLike | None = None,
    embeddings: Any | None = None,
    vectorstore: Any | None = None,
    llama_index: Any | None = None,
    index: ToolIndex | None = None,
    rewriter: Any = SAVED,
    settings: RetrievalSettings | None = None,
    show_progress: bool = False,
    **overrides: Any,
) -> QTAPipeline:
    """Restore fitted state as a `QTAPipeline`: a saved retriever, or a trained adapter.

    A directory written by `save` comes back whole: its catalogue, index (nothing is embedded),
    rewriter and fitted state. A directory written by `QTATrainer` (``qta train --output``)
    holds a rewriter and fitted state without tools: pass ``tools=`` (they are indexed, into
    the embedded Chroma unless ``vectorstore=``, ``llama_index=`` or ``index=`` is given), and
    the adapter's rewriter, fitted weights and labelled examples are restored.

    Args:
        directory: The saved retriever or adapter directory.
        tools: The same tools as live objects (e.g. LlamaIndex ``FunctionTool``s, which cannot
            be saved); their ids must match a saved catalogue. Default: the saved catalogue.
            Required for an adapter directory.
        embeddings: The embedding model used when saving; needed unless it was the default or
            the index is passed again.
        vectorstore: The LangChain vector store, when the saved index was the user's own store
            (for an adapter: a store to index the tools into).
        llama_index: The LlamaIndex index, likewise.
        index: For an adapter: a prebuilt `ToolIndex` to index the tools into.
        rewriter: `SAVED` reloads the saved rewriter (an adapter's own); anything else
            replaces it (see `qta_integrations.rewriter.resolve_rewriter`; None for no
            rewrite).
        settings: A `RetrievalSettings` replacing the saved settings.
        show_progress: For an adapter: show a progress bar while indexing the tools.
        **overrides: Single settings replacing the saved ones (``k=3``, ``fetch_k=40``, ...).

    Raises:
        FileNotFoundError: if ``directory`` holds no saved retriever or adapter.
        PersistError: for a broken or unknown-version manifest or catalogue file.
        ValueError: if ``tools`` differ from the saved catalogue (or are missing for an
            adapter), or the saved embeddings, index or rewriter cannot be rebuilt without
            being passed in.

    Example:
        .. code-block:: python

            pipeline = persist.load("saved-retriever")                 # persist.save's
            pipeline = persist.load("qta-adapter", tools="tools.json")  # QTATrainer's
    """
    path = _existing(Path(directory))
    saved_dir = read_adapter(path, verify=False)
    manifest, source = saved_dir.manifest, saved_dir.manifest_file
    if manifest.format_version < 3 and manifest.retriever is not None:
        source = path / LEGACY_RETRIEVER_CONFIG
    state = dict(manifest.retrieval or {"settings": {}, "examples": []})
    state = _apply_overrides(state, settings, overrides, source)
    backends = {"embeddings": embeddings, "vectorstore": vectorstore, "llama_index": llama_index}
    if manifest.retriever is None:
        return _load_adapter(path, state, tools, rewriter, index, show_progress, backends)
    from qta_integrations.stores import load_index

    saved = manifest.retriever
    catalog = _read_catalog(path, saved["catalog"], source)
    if tools is not None:
        catalog = _same_tools(ToolCatalog.from_any(tools), catalog, path)
    passed_index = vectorstore is not None or llama_index is not None
    saved_embeddings = saved["embeddings"]
    if embeddings is None and not passed_index and saved_embeddings != "default":
        what = f"{saved_embeddings} embeddings" if saved_embeddings else "a custom embedding model"
        msg = (
            f"The retriever in {str(path)!r} was saved with {what}; pass the same model as "
            "embeddings= (embed_model= in LlamaIndex): queries must be embedded alike."
        )
        raise ValueError(msg)
    if index is None:
        index = load_index(saved["index"], path, **backends)
    if isinstance(rewriter, str) and rewriter == SAVED:
        rewriter = _saved_rewriter(saved["rewriter"], path)
    pipeline = QTAPipeline(catalog, index, _named(rewriter), index_tools=False)
    pipeline.rewriter_reference = _reference(rewriter)
    pipeline.load_state_dict(state)
    return pipeline


def _load_adapter(
    path: Path,
    state: dict[str, Any],
    tools: ToolsLike | None,
    rewriter: Any,
    index: ToolIndex | None,
    show_progress: bool,
    backends: dict[str, Any],
) -> QTAPipeline:
    """A `QTATrainer` adapter over ``tools``: its rewriter, weights and examples restored."""
    if tools is None:
        msg = (
            f"{str(path)!r} is an adapter directory (written by QTATrainer): it holds the fitted "
            "state and the rewriter, not the tools. Pass the tools it was fitted on: tools=..."
        )
        raise ValueError(msg)
    if isinstance(rewriter, str) and rewriter == SAVED:
        rewriter = path  # resolve_rewriter: its LoRA rewriter, or the default for none
    catalog = ToolCatalog.from_any(tools)
    if index is None:
        pipeline = QTAPipeline.from_tools(
            catalog, **backends, rewriter=_named(rewriter), show_progress=show_progress
        )
    else:
        pipeline = QTAPipeline(catalog, index, _named(rewriter), show_progress=show_progress)
    pipeline.rewriter_reference = _reference(rewriter)
    pipeline.load_state_dict(state, source=str(path))
    return pipeline


def _named(rewriter: Any) -> Any:
    """A rewriter named by a string or path, as a factory: loaded when first needed."""
    from qta_integrations.rewriter import open_rewriter_reference, resolve_rewriter

    if isinstance(rewriter, (str, os.PathLike)):
        spec = rewriter
        open_rewriter_reference(spec)  # a bad path fails now, not at first use
        return lambda: resolve_rewriter(spec)
    return resolve_rewriter(rewriter)


def _reference(rewriter: Any) -> str | None:
    if isinstance(rewriter, (str, os.PathLike)):
        return "default" if str(rewriter) == "default" else str(Path(rewriter))
    return None


def _same_tools(catalog: ToolCatalog, saved: ToolCatalog, path: Path) -> ToolCatalog:
    if set(catalog.ids) != set(saved.ids):
        missing = sorted(set(saved.ids) - set(catalog.ids))
        extra = sorted(set(catalog.ids) - set(saved.ids))
        msg = (
            f"tools= differ from the catalogue saved in {str(path)!r}: missing {missing}, not "
            f"saved {extra}. Pass the same tools, or build and save the retriever again."
        )
        raise ValueError(msg)
    return catalog


def _read_catalog(path: Path, entry: dict[str, Any], source: Path) -> ToolCatalog:
    file = path / entry["file"]
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = (
            f"{file}, the catalogue named in {source}, is missing. Copy the whole "
            "directory, or save the retriever again."
        )
        raise PersistError(msg) from None
    if entry.get("sha256") not in (None, hashlib.sha256(text.encode("utf-8")).hexdigest()):
        msg = (
            f"{file} does not match the SHA-256 recorded in {source}: it was "
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
        msg = (
            f"{config_file}: the saved 'settings' must be an object. Save the retriever again "
            "(retriever.persist(dir)); do not edit the file by hand."
        )
        raise PersistError(msg)
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
