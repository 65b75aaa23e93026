"""The one format for fitted state: this module owns it, its writing, reading and checking.

Fitted state lives in a directory with one manifest, ``qta_manifest.json``, read by one reader,
`read_adapter`. Two writers fill it: `QTATrainer.save` (an *adapter*: the rewriter's LoRA
weights and the retrieval state) and `qta_integrations.persist.save` (a *saved retriever*: the
retrieval state plus the catalogue and the index, under ``retriever``). Every way of restoring
fitted state reads it through `read_adapter`: `qta_integrations.persist.load`, the faces'
``from_persist_dir`` and `HuggingFaceRewriter.from_pretrained`.

Format (version 3; versions 2 of the adapter manifest and of the saved retriever's
``qta_retriever.json`` are still read)
------------------------------------------------------------------------------------------

A directory holds::

    qta_manifest.json           the manifest (below); written last, it commits a save
    adapter_model.safetensors   the LoRA weights (PEFT layout; absent in a retrieval-only adapter)
    adapter_config.json         the LoRA configuration (PEFT layout; likewise)
    base/                       a copy of the base model, only when it was not on disk
    ...                         any other file is the user's: saves leave it alone

The PEFT files sit at the top level, so a saved directory also loads as a plain PEFT adapter
(e.g. ``vllm serve ... --lora-modules qta=./qta-adapter``).

``qta_manifest.json`` is a JSON object (`AdapterManifest`):

* ``format``: ``"qta-adapter"``; ``format_version``: `ADAPTER_FORMAT_VERSION`.
* ``base_model``: null (no rewriter) or ``{"kind", "name", "sha256"}`` (`BaseModelRef`):
  ``kind`` is ``"default"`` (the packaged SmolLM2-135M-Instruct conversion), ``"bundled"``
  (the copy in ``base/``) or ``"local"`` (a model directory that must be passed again at load
  time with ``base_model=``); ``sha256`` maps each of the base's ``*.safetensors`` files to its
  SHA-256. A base whose weights differ is refused. Hub ids, absolute paths and ``..`` are never
  followed: the package works offline.
* ``files``: every file the adapter owns (relative path -> SHA-256), checked when loading.
  A re-save replaces and removes only these files.
* ``prompt`` / ``prompt_version``: the `RewritePrompt` the rewriter was trained with.
* ``retrieval``: free-form JSON for the retrieval state (``QTAPipeline.state_dict()``: fitted
  fusion settings, labelled examples), or null.
* ``retriever``: null, or for a saved retriever (`qta_integrations.persist`) an object with
  ``catalog`` (``{"file", "sha256", "count"}``: the tool dicts, in a file named after their
  content, also listed in ``files``), ``index`` (the index's reference; its own files, e.g.
  ``chroma/``, live beside it), ``embeddings`` (``"default"``, a class name, or null) and
  ``rewriter`` (``{"source", "type"}``).
* ``config``, ``metrics``, ``ranking``: the training options, training metrics and ranking
  function, for the record.
* ``package_version``, ``created``: who wrote it, and when (UTC).

An adapter may have no LoRA weights at all (a *retrieval-only* adapter: the fitted fusion and
the labelled examples). With a ``base_model`` the base rewriter is loaded unchanged; with
``base_model`` null it names no rewriter, so `HuggingFaceRewriter.from_pretrained` refuses it
and the retrieval state is read with ``read_adapter(dir).retrieval``.

Example:
    .. code-block:: python

        from qta_integrations.adapter import read_adapter

        adapter = read_adapter("qta-adapter")      # validated; every file checked
        print(adapter.manifest.base_model)         # BaseModelRef(kind='default', ...)
        print(adapter.retrieval["settings"]["k"])  # the retrieval state saved with it

Saving is atomic: the new files are written to a hidden staging directory beside the target and
fsynced; the complete staging directory is renamed to ``<target>/.qta-pending`` (the commit);
its files are then linked over the target's one by one, the manifest last, and the pending
directory removed. While ``.qta-pending`` holds a manifest, readers load from it, so at every
instant the directory loads as either the old or the new adapter. The next save finishes an
interrupted one and removes the leftovers of a save interrupted before its commit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from qta_integrations._files import (
    TMP_SUFFIX,
    atomic_write_text,
    file_sha256,
    fsync_dir,
    fsync_file,
    fsync_tree,
)

if TYPE_CHECKING:
    from qta_integrations.prompts import RewritePrompt

__all__ = [
    "ADAPTER_FORMAT",
    "ADAPTER_FORMAT_VERSION",
    "BUNDLED_BASE_DIRNAME",
    "LEGACY_RETRIEVER_CONFIG",
    "LORA_CONFIG_NAME",
    "LORA_WEIGHTS_NAME",
    "MANIFEST_NAME",
    "READABLE_VERSIONS",
    "RETRIEVER_KEYS",
    "AdapterDirectory",
    "AdapterError",
    "AdapterManifest",
    "BaseModelMismatchError",
    "BaseModelRef",
    "atomic_write_text",
    "check_output_dir",
    "default_base_path",
    "describe_base",
    "file_sha256",
    "has_fitted_state",
    "is_adapter_dir",
    "is_default_base",
    "read_adapter",
    "resolve_base",
    "weights_sha256",
    "write_adapter",
]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "qta_manifest.json"
ADAPTER_FORMAT = "qta-adapter"
ADAPTER_FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)
"""Manifest versions `read_adapter` reads (2: before the ``retriever`` section)."""
LEGACY_RETRIEVER_CONFIG = "qta_retriever.json"
"""The manifest of a retriever saved by qta-integrations before format version 3."""
RETRIEVER_KEYS = ("catalog", "index", "embeddings", "rewriter")
LORA_WEIGHTS_NAME = "adapter_model.safetensors"
LORA_CONFIG_NAME = "adapter_config.json"
BUNDLED_BASE_DIRNAME = "base"
BASE_KINDS = ("default", "bundled", "local")

_PENDING = ".qta-pending"
_REMOVE_LIST = ".qta-remove.json"
_STAGING_INFIX = ".qta-staging-"


class AdapterError(ValueError):
    """An adapter directory is broken or cannot be used; the message names the file and the fix."""


class BaseModelMismatchError(AdapterError):
    """The base model found is not the one the adapter was trained on."""


# -- manifest ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaseModelRef:
    """Which base model an adapter applies to, and its identity.

    Attributes:
        kind: ``"default"`` (the packaged SmolLM2 conversion), ``"bundled"`` (a copy inside the
            adapter directory) or ``"local"`` (a model directory passed at load time).
        name: For ``"bundled"``, the subdirectory (``"base"``); otherwise a display name.
        sha256: SHA-256 of each ``*.safetensors`` weights file of the base, by file name.
    """

    kind: str
    name: str
    sha256: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in BASE_KINDS:
            msg = f"base_model kind must be one of {list(BASE_KINDS)}, got {self.kind!r}."
            raise ValueError(msg)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {"kind": self.kind, "name": self.name, "sha256": dict(self.sha256)}


@dataclass(frozen=True)
class AdapterManifest:
    """The contents of ``qta_manifest.json`` (see the module docstring for the format).

    Attributes:
        base_model: The base model, or None for an adapter with no rewriter.
        files: Every file the adapter owns (relative POSIX path -> SHA-256); filled in by
            `write_adapter`.
        prompt: The `RewritePrompt` as a dict, or None.
        prompt_version: The prompt's version string, or None.
        retrieval: Free-form JSON retrieval state (``QTAPipeline.state_dict()``), or None.
        retriever: For a saved retriever: its catalogue, index, embeddings and rewriter
            (see the module docstring), or None.
        config: The training options, or None.
        metrics: Training metrics, or None.
        ranking: The ranking function's repr, or None.
        package_version: The qta-integrations version that wrote it.
        created: When it was written (ISO 8601, UTC).
        format_version: `ADAPTER_FORMAT_VERSION`.
    """

    base_model: BaseModelRef | None = None
    files: dict[str, str] = field(default_factory=dict)
    prompt: dict[str, Any] | None = None
    prompt_version: str | None = None
    retrieval: dict[str, Any] | None = None
    retriever: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    ranking: str | None = None
    package_version: str = ""
    created: str = ""
    format_version: int = ADAPTER_FORMAT_VERSION

    @property
    def has_lora(self) -> bool:
        """Whether the adapter holds LoRA weights (False for a retrieval-only adapter)."""
        return LORA_WEIGHTS_NAME in self.files

    def rewrite_prompt(self) -> RewritePrompt | None:
        """The recorded prompt as a `RewritePrompt`, or None."""
        if self.prompt is None:
            return None
        from qta_integrations.prompts import RewriteExample, RewritePrompt

        data = dict(self.prompt)
        data["examples"] = tuple(RewriteExample(**e) for e in data.get("examples", ()))
        return RewritePrompt(**data)

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON-serialisable data; `from_dict` reads it back."""
        data: dict[str, Any] = {"format": ADAPTER_FORMAT}
        for f in fields(self):
            value = getattr(self, f.name)
            data[f.name] = value.to_dict() if isinstance(value, BaseModelRef) else value
        return data

    @classmethod
    def from_dict(cls, data: Any, *, source: str | Path = MANIFEST_NAME) -> AdapterManifest:
        """Validate and read manifest data.

        Args:
            data: The parsed JSON.
            source: The manifest file, named in errors.

        Raises:
            AdapterError: for anything but a valid manifest of a known version, naming the file,
                the key and what to do.
        """
        where = str(source)
        if not isinstance(data, dict):
            _broken(where, f"it holds a {type(data).__name__}, not a JSON object")
        if data.get("format") != ADAPTER_FORMAT:
            _broken(where, f"'format' is {data.get('format')!r}, not {ADAPTER_FORMAT!r}")
        version = data.get("format_version")
        if version not in READABLE_VERSIONS:
            msg = (
                f"{where}: adapter format version {version!r} is not supported (this "
                f"qta-integrations reads versions {list(READABLE_VERSIONS)}). Use the "
                "qta-integrations version that wrote it, or train (or save) it again."
            )
            raise AdapterError(msg)
        known = {f.name for f in fields(cls)} | {"format"}
        unknown = sorted(set(data) - known)
        if unknown:
            _broken(where, f"unknown keys {unknown} (expected some of {sorted(known)})")
        optional_dicts = ("prompt", "retrieval", "retriever", "config", "metrics")
        for key in optional_dicts:
            _check_type(where, key, data.get(key), (dict, type(None)), "an object or null")
        for key in ("prompt_version", "ranking"):
            _check_type(where, key, data.get(key), (str, type(None)), "a string or null")
        for key in ("package_version", "created"):
            _check_type(where, key, data.get(key, ""), (str,), "a string")
        files = data.get("files", {})
        _check_str_map(where, "files", files)
        for name in files:
            _safe_relative(name, where=where, key="files")
        if LORA_WEIGHTS_NAME in files and LORA_CONFIG_NAME not in files:
            _broken(where, f"'files' lists {LORA_WEIGHTS_NAME} without {LORA_CONFIG_NAME}")
        base = data.get("base_model")
        _check_type(where, "base_model", base, (dict, type(None)), "an object or null")
        base_ref = None
        if base is not None:
            missing = sorted({"kind", "name", "sha256"} - set(base))
            if missing:
                _broken(where, f"'base_model' lacks {missing}")
            _check_type(where, "base_model.name", base["name"], (str,), "a string")
            _check_str_map(where, "base_model.sha256", base["sha256"])
            if base["kind"] not in BASE_KINDS:
                _broken(
                    where,
                    f"'base_model.kind' is {base['kind']!r}; expected one of {list(BASE_KINDS)} "
                    "(hub ids and paths are not followed: the package works offline)",
                )
            if base["kind"] == "bundled":
                _safe_relative(base["name"], where=where, key="base_model.name")
            base_ref = BaseModelRef(base["kind"], base["name"], dict(base["sha256"]))
        if data.get("retriever") is not None:
            _check_retriever(where, data["retriever"], data.get("retrieval"))
        return cls(
            base_model=base_ref,
            files=dict(files),
            prompt=data.get("prompt"),
            prompt_version=data.get("prompt_version"),
            retrieval=data.get("retrieval"),
            retriever=data.get("retriever"),
            config=data.get("config"),
            metrics=data.get("metrics"),
            ranking=data.get("ranking"),
            package_version=data.get("package_version", ""),
            created=data.get("created", ""),
            format_version=version,
        )


def _broken(where: str, problem: str) -> None:
    msg = (
        f"{where} is not a valid QTA adapter manifest: {problem}. Save it again "
        "(QTATrainer.save, retriever.persist) or train it again; do not edit it by hand."
    )
    raise AdapterError(msg)


def _check_retriever(where: str, section: Any, retrieval: Any) -> None:
    """Check a saved retriever's ``retriever`` section (and that its state is there)."""
    missing = [key for key in RETRIEVER_KEYS if key not in section]
    if missing:
        _broken(where, f"'retriever' lacks {missing}")
    for key in ("catalog", "index", "rewriter"):
        _check_type(where, f"retriever.{key}", section[key], (dict,), "an object")
    _check_type(where, "retriever.embeddings", section["embeddings"], (str, type(None)), "a string")
    if not isinstance(retrieval, dict) or not isinstance(retrieval.get("settings"), dict):
        _broken(where, "'retrieval' must be an object with 'settings' in a saved retriever")
    name = section["catalog"].get("file")
    if not isinstance(name, str) or not _CATALOG_FILE.fullmatch(name):
        _broken(where, f"'retriever.catalog.file' {name!r} is not a catalogue file name")


_CATALOG_FILE = re.compile(r"tools-[0-9a-f]{16}\.json")


def _check_type(where: str, key: str, value: Any, types: tuple[type, ...], expected: str) -> None:
    if not isinstance(value, types):
        _broken(where, f"{key!r} must be {expected}, got {type(value).__name__} {value!r:.60}")


def _check_str_map(where: str, key: str, value: Any) -> None:
    _check_type(where, key, value, (dict,), "an object")
    for k, v in value.items():
        if not isinstance(v, str):
            _broken(where, f"{key!r}[{k!r}] must be a string, got {type(v).__name__}")


def _safe_relative(name: str, *, where: str, key: str) -> PurePosixPath:
    """``name`` as a relative POSIX path that stays inside the adapter directory."""
    path = PurePosixPath(name)
    if (
        not name
        or path.is_absolute()
        or "\\" in name
        or ":" in name
        or any(part in ("..", "") for part in name.split("/"))
    ):
        _broken(where, f"{key} {name!r} is not a plain relative path inside the directory")
    return path


# -- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdapterDirectory:
    """A read and checked adapter directory.

    Attributes:
        path: The directory as given.
        files_dir: Where its files are read from: ``path``, or its pending directory while a
            save is being completed.
        manifest: The manifest.
    """

    path: Path
    files_dir: Path
    manifest: AdapterManifest

    @property
    def manifest_file(self) -> Path:
        """The manifest file read."""
        return self.files_dir / MANIFEST_NAME

    @property
    def lora_dir(self) -> Path | None:
        """The directory to give ``PeftModel.from_pretrained``; None without LoRA weights."""
        return self.files_dir if self.manifest.has_lora else None

    @property
    def retrieval(self) -> dict[str, Any] | None:
        """The retrieval state stored with the adapter (`AdapterManifest.retrieval`)."""
        return self.manifest.retrieval


def is_adapter_dir(directory: str | Path) -> bool:
    """Whether ``directory`` holds a QTA adapter (a manifest, possibly a pending save)."""
    path = Path(directory)
    return (path / MANIFEST_NAME).is_file() or (path / _PENDING / MANIFEST_NAME).is_file()


def has_fitted_state(directory: str | Path) -> bool:
    """Whether ``directory`` holds fitted state `read_adapter` reads (any version)."""
    return is_adapter_dir(directory) or (Path(directory) / LEGACY_RETRIEVER_CONFIG).is_file()


def _legacy_retriever(config_file: Path) -> AdapterManifest:
    """A retriever saved before format version 3 (``qta_retriever.json``), as a manifest."""
    where = str(config_file)
    data = _read_json(config_file)
    if not isinstance(data, dict):
        _broken(where, f"it holds a {type(data).__name__}, not a JSON object")
    if data.get("format") != "qta-retriever":
        _broken(where, f"'format' is {data.get('format')!r}, not 'qta-retriever'")
    if data.get("format_version") != 2:
        msg = (
            f"{where}: saved retriever format version {data.get('format_version')!r} is not "
            "supported (this qta-integrations reads version 2 of qta_retriever.json, and "
            f"{MANIFEST_NAME} since). Save the retriever again (retriever.persist(dir))."
        )
        raise AdapterError(msg)
    missing = [key for key in (*RETRIEVER_KEYS, "state") if key not in data]
    if missing:
        _broken(where, f"it lacks {missing}")
    _check_type(where, "state", data["state"], (dict,), "an object")
    manifest = {
        "format": ADAPTER_FORMAT,
        "format_version": 2,
        "package_version": data.get("package_version", ""),
        "retrieval": data["state"],
        "retriever": {key: data[key] for key in RETRIEVER_KEYS},
    }
    return AdapterManifest.from_dict(manifest, source=config_file)


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        _broken(str(file), f"it is not valid JSON ({err})")


def read_adapter(directory: str | Path, *, verify: bool = True) -> AdapterDirectory:
    """Read and validate a directory of fitted state: the one reader of the format.

    Reads a manifest of any readable version, including a retriever saved before version 3
    (``qta_retriever.json``).

    Args:
        directory: The adapter (or saved retriever) directory.
        verify: Check every file the manifest lists against its SHA-256.

    Raises:
        FileNotFoundError: if ``directory`` does not exist.
        AdapterError: if it is not an adapter directory, or is broken (unreadable or invalid
            manifest, unknown version, missing or altered file); the message names the file.
    """
    path = Path(directory)
    if not path.exists():
        msg = f"No adapter directory at {str(path)!r}."
        raise FileNotFoundError(msg)
    if not path.is_dir():
        msg = f"{str(path)!r} is a file, not a QTA adapter directory."
        raise AdapterError(msg)
    pending = path / _PENDING
    files_dir = pending if (pending / MANIFEST_NAME).is_file() else path
    manifest_file = files_dir / MANIFEST_NAME
    if not manifest_file.is_file() and (path / LEGACY_RETRIEVER_CONFIG).is_file():
        manifest = _legacy_retriever(path / LEGACY_RETRIEVER_CONFIG)
        return AdapterDirectory(path=path, files_dir=path, manifest=manifest)
    if not manifest_file.is_file():
        msg = (
            f"{str(path)!r} is not a QTA adapter directory: it has no {MANIFEST_NAME}. Pass the "
            "directory QTATrainer or retriever.persist saved, or a model directory."
        )
        raise AdapterError(msg)
    manifest = AdapterManifest.from_dict(_read_json(manifest_file), source=manifest_file)
    if verify:
        for name, expected in manifest.files.items():
            file = files_dir / name
            if not file.is_file():
                msg = (
                    f"{str(file)!r}, listed in {manifest_file}, is missing. The adapter "
                    "directory is incomplete: copy it again or save the adapter again."
                )
                raise AdapterError(msg)
            actual = file_sha256(file)
            if actual != expected:
                msg = (
                    f"{str(file)!r} has SHA-256 {actual} but {manifest_file} records "
                    f"{expected}: the file was changed or corrupted. Copy the adapter again or "
                    "save it again."
                )
                raise AdapterError(msg)
    return AdapterDirectory(path=path, files_dir=files_dir, manifest=manifest)


# -- base model -------------------------------------------------------------------------------


def default_base_path() -> Path:
    """The packaged SmolLM2-135M-Instruct safetensors checkpoint (converted on first use)."""
    from qta_integrations.models import default_rewriter_path

    return default_rewriter_path()


def is_default_base(path: str | Path) -> bool:
    """Whether ``path`` is the default checkpoint's directory (without converting it)."""
    from qta_integrations.models import _CONVERTED_DIRNAME, cache_dir

    return Path(path).resolve() == (cache_dir() / _CONVERTED_DIRNAME).resolve()


def weights_sha256(model_dir: str | Path) -> dict[str, str]:
    """SHA-256 of each ``*.safetensors`` file of a model directory (cached by size and mtime).

    Raises:
        AdapterError: if the directory has no ``*.safetensors`` file.
    """
    path = Path(model_dir)
    files = sorted(p for p in path.glob("*.safetensors") if p.is_file())
    if not files:
        msg = (
            f"No *.safetensors weights in {str(path)!r}. Only safetensors checkpoints are "
            "loaded; save the model with model.save_pretrained(dir) (safetensors by default)."
        )
        raise AdapterError(msg)
    return {p.name: file_sha256(p) for p in files}


def describe_base(
    model_dir: str | Path, *, kind: str | None = None, name: str | None = None
) -> BaseModelRef:
    """The `BaseModelRef` of a model directory: its kind, name and weights' SHA-256.

    Args:
        model_dir: The base model's directory.
        kind: Default: ``"default"`` for the packaged checkpoint, else ``"local"``.
        name: Default: ``"default"`` for the packaged checkpoint, else the directory's name.
    """
    path = Path(model_dir)
    if kind is None:
        kind = "default" if is_default_base(path) else "local"
    if name is None:
        name = "default" if kind == "default" else path.resolve().name
    return BaseModelRef(kind=kind, name=name, sha256=weights_sha256(path))


def resolve_base(adapter: AdapterDirectory, base_model: str | Path | None = None) -> Path | None:
    """The verified base model directory of an adapter; None when it has no rewriter.

    Args:
        adapter: From `read_adapter`.
        base_model: A local model directory to use as the base: required for a ``"local"``
            base, optional otherwise (it must still have the recorded weights).

    Raises:
        AdapterError: if a ``"local"`` base is not given, or the directory does not exist.
        BaseModelMismatchError: if the base's weights differ from the ones recorded.
    """
    ref = adapter.manifest.base_model
    manifest_file = adapter.manifest_file
    if ref is None:
        if base_model is not None:
            msg = (
                f"{manifest_file} describes a retrieval-only adapter without a rewriter, so "
                f"base_model={str(base_model)!r} has nothing to apply to; leave it out."
            )
            raise AdapterError(msg)
        return None
    if base_model is not None:
        path = Path(base_model)
        if not path.is_dir():
            msg = f"base_model={str(base_model)!r} is not a model directory."
            raise AdapterError(msg)
    elif ref.kind == "default":
        path = default_base_path()
    elif ref.kind == "bundled":
        path = adapter.files_dir / ref.name
        root = adapter.files_dir.resolve()
        if not path.resolve().is_relative_to(root):
            msg = f"{manifest_file}: bundled base {ref.name!r} leads outside the adapter directory."
            raise AdapterError(msg)
    else:
        msg = (
            f"The adapter {str(adapter.path)!r} was trained on the local base model "
            f"{ref.name!r} ({_short(ref.sha256)}), which is not stored with it. Pass that "
            "model's directory: HuggingFaceRewriter.from_pretrained(adapter_dir, "
            "base_model='path/to/model')."
        )
        raise AdapterError(msg)
    actual = weights_sha256(path)
    if actual != ref.sha256:
        msg = (
            f"The base model in {str(path)!r} has weights {_short(actual)}, but the adapter "
            f"{str(adapter.path)!r} was trained on {ref.kind} base {ref.name!r} with weights "
            f"{_short(ref.sha256)} ({manifest_file}). Load the adapter with the base model it "
            "was trained on (base_model='path/to/model'), or train it again on this base."
        )
        raise BaseModelMismatchError(msg)
    return path


def _short(hashes: Mapping[str, str]) -> str:
    return ", ".join(f"{name} sha256={digest}" for name, digest in sorted(hashes.items()))


# -- writing ----------------------------------------------------------------------------------


def check_output_dir(directory: str | Path) -> Path:
    """``directory`` as a `Path` if an adapter may be saved there.

    It may be new, empty, or an existing adapter directory (which is replaced, keeping other
    files in it).

    Raises:
        ValueError: if it is a file, or a non-empty directory that holds no adapter.
    """
    target = Path(directory)
    if target.exists() and (
        not target.is_dir()
        or (
            any(p for p in target.iterdir() if not p.name.startswith(".qta-"))
            and not is_adapter_dir(target)
        )
    ):
        msg = (
            f"output_dir {str(target)!r} exists and is not a QTA adapter directory; pass a new "
            "or empty directory (an existing adapter directory is replaced)."
        )
        raise ValueError(msg)
    if is_adapter_dir(target) and _saved_retriever(target):
        msg = (
            f"output_dir {str(target)!r} holds a saved retriever (retriever.persist), which an "
            "adapter would replace; pass a new or empty directory."
        )
        raise ValueError(msg)
    return target


def _saved_retriever(target: Path) -> bool:
    try:
        return read_adapter(target, verify=False).manifest.retriever is not None
    except (OSError, AdapterError):
        return False


def write_adapter(directory: str | Path, build: Callable[[Path], AdapterManifest]) -> Path:
    """Write an adapter directory atomically.

    ``build(staging)`` writes the adapter's files (LoRA weights, a bundled base) into the empty
    directory ``staging`` and returns the manifest; its ``files`` are filled in here. At every
    instant ``directory`` loads as either the previous adapter or the new one; files the
    adapter format does not own are never touched. One process saves to a directory at a time.

    Returns:
        ``directory`` as a `Path`.

    Raises:
        ValueError: if ``directory`` holds something other than an adapter (`check_output_dir`).
    """
    target = check_output_dir(directory)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}{_STAGING_INFIX}", dir=parent))
    try:
        manifest = build(staging)
        if (staging / MANIFEST_NAME).exists():
            msg = f"build() must not write {MANIFEST_NAME}; write_adapter writes it."
            raise ValueError(msg)
        owned = {
            p.relative_to(staging).as_posix(): file_sha256(p)
            for p in sorted(staging.rglob("*"))
            if p.is_file()
        }
        manifest = replace(manifest, files=owned)
        obsolete = sorted(set(_owned_files(target)) - set(owned))
        if obsolete:
            (staging / _REMOVE_LIST).write_text(json.dumps(obsolete), encoding="utf-8")
        (staging / MANIFEST_NAME).write_text(
            json.dumps(manifest.to_dict(), indent=2, default=str), encoding="utf-8"
        )
        fsync_tree(staging)
        if not target.exists():
            os.rename(staging, target)  # the commit of a first save
            fsync_dir(parent)
            return target
        pending = target / _PENDING
        os.rename(staging, pending)  # the commit: a complete new adapter is in place
        fsync_dir(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _install(pending, target)
    return target


def _owned_files(target: Path) -> list[str]:
    """The files the adapter at ``target`` owns (none if it has no readable manifest)."""
    try:
        return [*read_adapter(target, verify=False).manifest.files, MANIFEST_NAME]
    except (OSError, AdapterError):
        return []


def _clean_leftovers(target: Path) -> None:
    """Finish a committed but interrupted save; remove the staging dirs of uncommitted ones."""
    for leftover in target.parent.glob(f".{target.name}{_STAGING_INFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    if not target.is_dir():
        return
    for tmp in target.rglob(f"*{TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            tmp.unlink()
    pending = target / _PENDING
    if (pending / MANIFEST_NAME).is_file():
        try:
            read_adapter(target)  # reads and checks the pending copy
        except AdapterError as err:
            logger.warning("Discarding an unusable interrupted save in %s: %s", pending, err)
        else:
            _install(pending, target)
            return
    if pending.exists():
        shutil.rmtree(pending, ignore_errors=True)


def _install(pending: Path, target: Path) -> None:
    """Link every file of the committed ``pending`` over ``target``'s, the manifest last."""
    manifest = json.loads((pending / MANIFEST_NAME).read_text(encoding="utf-8"))
    names = [n for n in manifest.get("files", {}) if n != MANIFEST_NAME]
    for name in [*names, MANIFEST_NAME]:
        source = pending / name
        dest = target / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + TMP_SUFFIX)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:  # no hard links on this file system: copy
            shutil.copy2(source, tmp)
            fsync_file(tmp)
        os.replace(tmp, dest)
    fsync_dir(target)
    remove_list = pending / _REMOVE_LIST
    if remove_list.exists():
        for name in json.loads(remove_list.read_text(encoding="utf-8")):
            if name in names or name == MANIFEST_NAME:
                continue
            _remove_owned(target, name)
    # Drop the pending manifest first: without it, readers use the (complete) top level.
    (pending / MANIFEST_NAME).unlink()
    fsync_dir(pending)
    shutil.rmtree(pending, ignore_errors=True)


def _remove_owned(target: Path, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (target / name).unlink()
    parent = (target / name).parent
    while parent != target and parent.is_relative_to(target):
        try:
            parent.rmdir()  # only if empty: a user's file in it keeps it
        except OSError:
            break
        parent = parent.parent
