"""The adapter directory format: atomic saves, validation, base model identity."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from qta_integrations import _files
from qta_integrations import adapter as adapter_module
from qta_integrations.adapter import (
    MANIFEST_NAME,
    AdapterError,
    AdapterManifest,
    BaseModelMismatchError,
    BaseModelRef,
    describe_base,
    file_sha256,
    read_adapter,
    write_adapter,
)
from qta_integrations.prompts import RewritePrompt
from qta_integrations.rewriter import HuggingFaceRewriter
from qta_integrations.testing import KeywordEmbeddings, tiny_hf_rewriter
from qta_integrations.training import QTATrainer, QTATrainingConfig
from qta_integrations.training import trainer as trainer_module
from qta_integrations.training.pairs import PreferencePair
from tests.conftest import REPO_ROOT, TOOLS

SHORT_PROMPT = RewritePrompt(instruction="Rewrite for tool search.", max_tool_chars=30)
PROMPTS = ["<|user|>rain in oslo<|end|><|assistant|>", "<|user|>price of MSFT<|end|><|assistant|>"]


def _trainer(rewriter: HuggingFaceRewriter | None = None) -> QTATrainer:
    config = QTATrainingConfig(lora_r=2, lora_alpha=4, lora_dropout=0.0, show_progress=False)
    return QTATrainer(
        tools=[dict(t) for t in TOOLS],
        rewriter=rewriter or tiny_hf_rewriter(prompt=SHORT_PROMPT, max_new_tokens=4),
        embeddings=KeywordEmbeddings(),
        config=config,
    )


def _with_lora(trainer: QTATrainer, seed: int) -> QTATrainer:
    """Put a LoRA adapter with seeded random weights on the trainer's rewriter."""
    import torch

    trainer._prepare_model()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in trainer.rewriter.model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    trainer.rewriter.model.eval()
    # save() writes the LoRA weights of a trainer that found preference pairs.
    trainer.pairs = [PreferencePair("q", "prompt", "good", "bad", (1.0,), (0.0,))]
    return trainer


def _saved(tmp_path: Path, name: str, seed: int) -> tuple[QTATrainer, Path]:
    trainer = _with_lora(_trainer(), seed)
    return trainer, trainer.save(tmp_path / name)


def _lora_hash(directory: Path) -> str:
    return read_adapter(directory).manifest.files["adapter_model.safetensors"]


# -- the manifest ------------------------------------------------------------------------------


def test_manifest_round_trip() -> None:
    manifest = AdapterManifest(
        base_model=BaseModelRef("bundled", "base", {"model.safetensors": "ab" * 32}),
        files={"adapter_model.safetensors": "cd" * 32, "adapter_config.json": "ef" * 32},
        prompt={"instruction": "x"},
        prompt_version="v1",
        retrieval={"settings": {"k": 3}, "examples": [{"query": "q", "tools": ["t"]}]},
        config={"lora_r": 2},
        metrics={"rounds": []},
        ranking="SufficiencyNDCG()",
        package_version="1.0",
        created="2026-01-01T00:00:00Z",
    )
    data = json.loads(json.dumps(manifest.to_dict()))
    assert data["format"] == "qta-adapter" and data["format_version"] == 3
    assert AdapterManifest.from_dict(data) == manifest
    assert manifest.has_lora
    assert not AdapterManifest().has_lora


def test_save_writes_a_verified_manifest_and_loads_identically(tmp_path: Path) -> None:
    trainer, out = _saved(tmp_path, "adapter", seed=1)
    saved = read_adapter(out)
    manifest = saved.manifest
    assert saved.files_dir == out and saved.lora_dir == out
    assert {"adapter_model.safetensors", "adapter_config.json"} <= set(manifest.files)
    assert "base/model.safetensors" in manifest.files
    assert manifest.base_model is not None
    assert manifest.base_model.kind == "bundled"
    assert manifest.base_model.sha256 == {
        "model.safetensors": file_sha256(out / "base" / "model.safetensors")
    }
    assert all(file_sha256(out / name) == digest for name, digest in manifest.files.items())
    loaded = HuggingFaceRewriter.from_pretrained(out, max_new_tokens=4)
    assert loaded.prompt == SHORT_PROMPT
    assert loaded.source == str(out.resolve())
    assert loaded.generate_from_prompts(PROMPTS) == trainer.rewriter.generate_from_prompts(PROMPTS)


# -- broken adapter directories ----------------------------------------------------------------


def _edit(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def edit(data: dict[str, Any]) -> Any:
        target = data
        *path, last = key.split(".")
        for part in path:
            target = target[part]
        target[last] = value
        return data

    return edit


def _drop(key: str) -> Callable[[dict[str, Any]], Any]:
    def edit(data: dict[str, Any]) -> Any:
        target = data
        *path, last = key.split(".")
        for part in path:
            target = target[part]
        del target[last]
        return data

    return edit


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        ("{not json", "not valid JSON"),
        (lambda data: [data], "holds a list, not a JSON object"),
        (_edit("format", "peft"), "'format' is 'peft'"),
        (_edit("format_version", 99), "format version 99 is not supported"),
        (_drop("format_version"), "format version None is not supported"),
        (_edit("files", ["adapter_model.safetensors"]), "'files' must be an object"),
        (_edit("prompt", 3), "'prompt' must be an object or null"),
        (_edit("created", 5), "'created' must be a string"),
        (_edit("surprise", 1), r"unknown keys \['surprise'\]"),
        (_drop("base_model.sha256"), r"'base_model' lacks \['sha256'\]"),
        (_edit("base_model.kind", "hub"), "'base_model.kind' is 'hub'"),
        (_edit("base_model.name", "../../elsewhere"), "not a plain relative path"),
        (_edit("base_model.name", "/opt/models/x"), "not a plain relative path"),
        (_edit("files", {"../outside.bin": "00"}), "not a plain relative path"),
        (
            lambda data: {**data, "files": {"adapter_model.safetensors": "00"}},
            "adapter_model.safetensors without adapter_config.json",
        ),
    ],
)
def test_a_broken_manifest_names_the_file_and_the_fix(
    tmp_path: Path, edit: str | Callable[[dict[str, Any]], Any], pattern: str
) -> None:
    _, out = _saved(tmp_path, "adapter", seed=1)
    manifest_file = out / MANIFEST_NAME
    if isinstance(edit, str):
        manifest_file.write_text(edit)
    else:
        manifest_file.write_text(json.dumps(edit(json.loads(manifest_file.read_text()))))
    with pytest.raises(AdapterError, match=pattern) as info:
        HuggingFaceRewriter.from_pretrained(out)
    assert str(manifest_file) in str(info.value)
    assert "again" in str(info.value)  # says what to do


def test_a_missing_or_altered_file_is_refused(tmp_path: Path) -> None:
    _, out = _saved(tmp_path, "adapter", seed=1)
    weights = out / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(AdapterError, match=r"adapter_model.safetensors.*SHA-256.*changed"):
        HuggingFaceRewriter.from_pretrained(out)
    weights.unlink()
    with pytest.raises(AdapterError, match=r"adapter_model.safetensors.*is missing"):
        HuggingFaceRewriter.from_pretrained(out)
    with pytest.raises(AdapterError, match=r"no qta_manifest\.json"):
        read_adapter(tmp_path)
    with pytest.raises(FileNotFoundError, match="No adapter directory"):
        read_adapter(tmp_path / "nothing")


# -- the base model ----------------------------------------------------------------------------


def _model_dir(path: Path, seed: int) -> Path:
    model = tiny_hf_rewriter(seed=seed)
    model.model.save_pretrained(path)
    model.tokenizer.save_pretrained(path)
    return path


def test_a_local_base_is_identified_by_its_weights(tmp_path: Path) -> None:
    base = _model_dir(tmp_path / "my-model", seed=0)
    other = _model_dir(tmp_path / "other-model", seed=1)
    rewriter = HuggingFaceRewriter.from_pretrained(base, prompt=SHORT_PROMPT, max_new_tokens=4)
    trainer = _with_lora(_trainer(rewriter), seed=2)
    out = trainer.save(tmp_path / "adapter")
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["base_model"] == {
        "kind": "local",
        "name": "my-model",
        "sha256": {"model.safetensors": file_sha256(base / "model.safetensors")},
    }
    assert str(tmp_path) not in json.dumps(manifest["base_model"])  # no absolute path recorded
    with pytest.raises(AdapterError, match="trained on the local base model 'my-model'"):
        HuggingFaceRewriter.from_pretrained(out)
    with pytest.raises(BaseModelMismatchError) as info:
        HuggingFaceRewriter.from_pretrained(out, base_model=other)
    message = str(info.value)
    assert file_sha256(other / "model.safetensors") in message
    assert file_sha256(base / "model.safetensors") in message
    assert "train it again" in message
    loaded = HuggingFaceRewriter.from_pretrained(out, base_model=base, max_new_tokens=4)
    assert loaded.generate_from_prompts(PROMPTS) == trainer.rewriter.generate_from_prompts(PROMPTS)


def test_the_default_base_is_checked_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default = _model_dir(tmp_path / "default-model", seed=0)
    monkeypatch.setattr(adapter_module, "default_base_path", lambda: default)
    monkeypatch.setattr(trainer_module, "default_base_path", lambda: default)
    monkeypatch.setattr(adapter_module, "is_default_base", lambda path: Path(path) == default)
    rewriter = HuggingFaceRewriter.from_pretrained(default, prompt=SHORT_PROMPT)
    assert rewriter.name == "default"
    out = _with_lora(_trainer(rewriter), seed=3).save(tmp_path / "adapter")
    ref = read_adapter(out).manifest.base_model
    assert ref is not None and (ref.kind, ref.name) == ("default", "default")
    assert not (out / "base").exists()  # the default base is not copied
    assert HuggingFaceRewriter.from_pretrained(out).source == str(out.resolve())
    _model_dir(default, seed=5)  # the default model changed under the adapter
    with pytest.raises(BaseModelMismatchError, match="trained on default base 'default'"):
        HuggingFaceRewriter.from_pretrained(out)


def test_models_are_loaded_from_safetensors_without_remote_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    _, out = _saved(tmp_path, "adapter", seed=1)
    calls: list[tuple[str, dict[str, Any]]] = []
    for cls_name in ("AutoModelForCausalLM", "AutoTokenizer"):
        cls = getattr(transformers, cls_name)
        original = cls.from_pretrained

        def record(*args: Any, _name: str = cls_name, _orig: Any = original, **kwargs: Any) -> Any:
            calls.append((_name, kwargs))
            return _orig(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", record)
    HuggingFaceRewriter.from_pretrained(out)
    kwargs = dict(calls)
    assert kwargs["AutoModelForCausalLM"]["use_safetensors"] is True
    assert kwargs["AutoModelForCausalLM"]["trust_remote_code"] is False
    assert kwargs["AutoTokenizer"]["trust_remote_code"] is False


def test_a_plain_peft_adapter_must_be_safetensors(tmp_path: Path) -> None:
    trainer = _with_lora(_trainer(), seed=1)
    base = _model_dir(tmp_path / "base", seed=0)  # tiny_hf_rewriter's default seed: the same base
    peft_dir = tmp_path / "peft"
    trainer.rewriter.model.save_pretrained(peft_dir)
    loaded = HuggingFaceRewriter.from_pretrained(base, adapter=peft_dir, max_new_tokens=4)
    assert loaded.generate_from_prompts(PROMPTS) == trainer.rewriter.generate_from_prompts(PROMPTS)
    (peft_dir / "adapter_model.safetensors").rename(peft_dir / "adapter_model.bin")
    with pytest.raises(ValueError, match="only safetensors adapters are loaded"):
        HuggingFaceRewriter.from_pretrained(base, adapter=peft_dir)


def test_file_hashes_are_cached_by_size_and_mtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QTA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(_files, "_hash_memory", {})
    file = tmp_path / "weights.safetensors"
    file.write_bytes(b"a" * 100)
    first = file_sha256(file)
    stat = file.stat()
    file.write_bytes(b"b" * 100)  # same size; put the old mtime back
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_sha256(file) == first  # served from the cache, not read again
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert file_sha256(file) != first  # a new mtime: hashed again


# -- saving over an existing adapter -----------------------------------------------------------


def test_a_resave_replaces_only_the_adapters_own_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, out = _saved(tmp_path, "adapter", seed=1)
    (out / "notes.txt").write_text("keep me")
    (out / "base" / "mine.txt").write_text("mine too")
    # A trainer that found no preference pairs saves a retrieval-only adapter.
    trainer = _trainer()
    state = {"settings": {"k": 3}, "examples": [{"query": "rain?", "tools": ["weather"]}]}
    monkeypatch.setattr(trainer.pipeline, "state_dict", lambda: state, raising=False)
    trainer.save(out)
    for owned in ("adapter_model.safetensors", "adapter_config.json", "base/model.safetensors"):
        assert not (out / owned).exists(), owned
    assert (out / "notes.txt").read_text() == "keep me"
    assert (out / "base" / "mine.txt").read_text() == "mine too"
    saved = read_adapter(out)
    assert saved.manifest.retrieval == state and saved.retrieval == state
    assert not saved.manifest.has_lora and saved.lora_dir is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # no temporary leftovers


def test_a_retrieval_only_adapter_over_an_unchanged_base(tmp_path: Path) -> None:
    base = _model_dir(tmp_path / "my-model", seed=0)
    state = {"settings": {"k": 3}}
    out = write_adapter(
        tmp_path / "fusion",
        lambda staging: AdapterManifest(
            base_model=describe_base(base), prompt=asdict(SHORT_PROMPT), retrieval=state
        ),
    )
    loaded = HuggingFaceRewriter.from_pretrained(out, base_model=base, max_new_tokens=4)
    assert not hasattr(loaded.model, "peft_config")  # the base rewriter, unchanged
    assert loaded.prompt == SHORT_PROMPT
    assert loaded.source == str(out.resolve())
    plain = HuggingFaceRewriter.from_pretrained(base, max_new_tokens=4)
    assert loaded.generate_from_prompts(PROMPTS) == plain.generate_from_prompts(PROMPTS)


def test_a_retrieval_only_adapter_without_a_rewriter(tmp_path: Path) -> None:
    state = {"settings": {"k": 2}}
    out = write_adapter(tmp_path / "fusion", lambda staging: AdapterManifest(retrieval=state))
    saved = read_adapter(out)
    assert saved.manifest.base_model is None and saved.retrieval == state
    with pytest.raises(ValueError, match="retrieval-only adapter without a rewriter"):
        HuggingFaceRewriter.from_pretrained(out)


def test_leftovers_of_interrupted_saves_are_cleaned(tmp_path: Path) -> None:
    trainer, out = _saved(tmp_path, "adapter", seed=1)
    staging = tmp_path / ".adapter.qta-staging-dead"
    staging.mkdir()
    (staging / "adapter_model.safetensors").write_bytes(b"half")
    (out / ".qta-pending").mkdir()  # no manifest: removed before it was complete
    (out / "adapter_model.safetensors.qta-tmp").write_bytes(b"half")
    assert _lora_hash(out)  # the leftovers do not hide the adapter
    trainer.save(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
    assert not (out / ".qta-pending").exists()
    assert not list(out.rglob("*.qta-tmp"))


_CHILD = textwrap.dedent(
    """
    import os, shutil, sys
    from pathlib import Path
    from qta_integrations import adapter

    target, source = Path(sys.argv[1]), Path(sys.argv[2])

    def step(name):
        print(name, flush=True)
        if sys.stdin.readline() != "go\\n":
            sys.exit(3)

    def gated(name, real):
        def call(*args, **kwargs):
            step(name)
            return real(*args, **kwargs)
        return call

    for name in ("rename", "replace", "link", "unlink"):
        setattr(os, name, gated(name, getattr(os, name)))

    def build(staging):
        saved = adapter.read_adapter(source)
        for rel in saved.manifest.files:
            step("copy " + rel)
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / rel, staging / rel)
        return saved.manifest

    adapter.write_adapter(target, build)
    print("done", flush=True)
    """
)


def _run_child(target: Path, source: Path, kill_at: int | None) -> int:
    """Save ``source`` over ``target`` in a subprocess, SIGKILLed before step ``kill_at``."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(target), str(source)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    steps = 0
    while True:
        line = proc.stdout.readline()
        if line in ("", "done\n"):
            break
        steps += 1
        if steps == kill_at:
            proc.kill()  # SIGKILL: no cleanup runs
            break
        proc.stdin.write("go\n")
        proc.stdin.flush()
    _, err = proc.communicate(timeout=60)
    if kill_at is None or steps < kill_at:
        assert proc.returncode == 0, err
    return steps


def test_a_save_killed_at_any_point_leaves_the_old_or_the_new_adapter(tmp_path: Path) -> None:
    old_trainer, old = _saved(tmp_path, "old", seed=1)
    new_trainer, new = _saved(tmp_path, "new", seed=2)
    old_hash, new_hash = _lora_hash(old), _lora_hash(new)
    assert old_hash != new_hash
    outputs = {
        old_hash: old_trainer.rewriter.generate_from_prompts(PROMPTS),
        new_hash: new_trainer.rewriter.generate_from_prompts(PROMPTS),
    }
    target = tmp_path / "work" / "adapter"

    def fresh_target() -> None:
        shutil.rmtree(tmp_path / "work", ignore_errors=True)
        shutil.copytree(old, target)
        (target / "notes.txt").write_text("keep me")

    fresh_target()
    total = _run_child(target, new, kill_at=None)
    assert _lora_hash(target) == new_hash
    assert total > 30, total  # copies, the commit, the per-file swaps, the clean-up
    seen = set()
    # Every 4th step (about 12 of them) covers each phase; each step is one file operation.
    for kill_at in sorted({*range(1, total + 1, 4), total}):
        fresh_target()
        _run_child(target, new, kill_at=kill_at)
        loaded_hash = _lora_hash(target)  # verifies every file against the manifest
        assert loaded_hash in (old_hash, new_hash), kill_at
        seen.add(loaded_hash)
        assert (target / "notes.txt").read_text() == "keep me"
        if kill_at % 3 == 0:
            loaded = HuggingFaceRewriter.from_pretrained(target, max_new_tokens=4)
            assert loaded.generate_from_prompts(PROMPTS) == outputs[loaded_hash], kill_at
        # The next save finishes or discards the interrupted one and leaves nothing behind.
        new_trainer.save(target)
        assert _lora_hash(target) == new_hash
        assert sorted(p.name for p in target.parent.iterdir()) == ["adapter"]
        assert not (target / ".qta-pending").exists()
        assert not list(target.rglob("*.qta-tmp"))
        assert (target / "notes.txt").read_text() == "keep me"
    assert seen == {old_hash, new_hash}


def test_a_version_2_manifest_still_reads() -> None:
    state = {"settings": {"k": 3}, "examples": [{"query": "rain?", "tools": ["weather"]}]}
    old = AdapterManifest.from_dict(
        {"format": "qta-adapter", "format_version": 2, "retrieval": state}
    )
    assert (old.format_version, old.retrieval, old.retriever) == (2, state, None)
    with pytest.raises(AdapterError, match=r"'retriever' lacks \['index'"):
        AdapterManifest.from_dict(
            {"format": "qta-adapter", "format_version": 3, "retriever": {"catalog": {}}}
        )
