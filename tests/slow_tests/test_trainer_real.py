"""End-to-end QTA training with the real SmolLM2-135M rewriter and MiniLM embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qta_integrations.adapter import MANIFEST_NAME
from qta_integrations.rewriter import HuggingFaceRewriter


@pytest.mark.slow
def test_train_two_restbench_examples_save_and_reload(mtrb_dir: Path, tmp_path: Path) -> None:
    from qta_integrations import QTARetriever
    from qta_integrations.evaluation import load_mtrb
    from qta_integrations.training import QTATrainer, QTATrainingConfig

    train = load_mtrb("restbench", "train", mtrb_dir)
    retriever = QTARetriever(tools=train.catalog, k=5)
    config = QTATrainingConfig(
        num_candidates=3, max_new_tokens=16, num_epochs=1, batch_size=2, show_progress=False
    )
    trainer = QTATrainer(retriever, config=config)
    examples = list(train.queries)[:2]
    out = tmp_path / "adapter"
    rewriter = trainer.fit(examples, output_dir=out)

    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["base_model"]["kind"] == "default"
    assert (out / "adapter_model.safetensors").exists()
    assert sum(r["pairs"] for r in manifest["metrics"]["rounds"]) >= 1
    assert retriever.core.rewriter is rewriter

    loaded = HuggingFaceRewriter.from_pretrained(out)
    prompts = [trainer.pairs[0].prompt]  # the exact inference prompt of a training query
    assert rewriter.generate_from_prompts(prompts, max_new_tokens=12) == (
        loaded.generate_from_prompts(prompts, max_new_tokens=12)
    )
    reloaded = QTARetriever(tools=train.catalog, k=5, rewriter=str(out))
    docs = reloaded.invoke(examples[0].query)
    assert len(docs) == 5
