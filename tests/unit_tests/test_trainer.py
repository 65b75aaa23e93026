from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from qta_integrations.adapter import MANIFEST_NAME
from qta_integrations.fusion import FusionWeights
from qta_integrations.pipeline import QTAPipeline
from qta_integrations.prompts import RewritePrompt
from qta_integrations.rewriter import HuggingFaceRewriter, QueryRewriter
from qta_integrations.settings import RetrievalSettings
from qta_integrations.testing import FakeRewriter, KeywordEmbeddings, tiny_hf_rewriter
from qta_integrations.training import NoPreferencePairsWarning, QTATrainer, QTATrainingConfig
from qta_integrations.training import trainer as trainer_module
from tests.conftest import TOOLS

SHORT_PROMPT = RewritePrompt(instruction="Rewrite for tool search.", max_tool_chars=30)
EXAMPLES = [
    {"query": "will it rain in paris", "tools": ["weather"]},
    {"query": "what is AAPL at", "tools": ["stock_quote"]},
]
# Candidates the sampler "returns": the first uses the tool's words, the second does not.
SCRIPTED = {
    "will it rain in paris": ["current weather forecast for a city", "send an email"],
    "what is AAPL at": ["latest price of a stock ticker symbol", "translate text"],
}


def _config(**overrides: Any) -> QTATrainingConfig:
    values: dict[str, Any] = {
        "num_candidates": 2,
        "num_epochs": 1,
        "batch_size": 2,
        "max_new_tokens": 4,
        "show_progress": False,
        "learning_rate": 1e-2,
        "max_length": 512,
        "lora_r": 4,
        "lora_alpha": 8,
        "lora_dropout": 0.0,
    }
    values.update(overrides)
    return QTATrainingConfig(**values)


def _trainer(
    tool_dicts: list[dict[str, str]], scripted: dict[str, list[str]] | None = None, **overrides: Any
) -> QTATrainer:
    rewriter = tiny_hf_rewriter(prompt=SHORT_PROMPT, max_new_tokens=4)
    trainer = QTATrainer(
        tools=tool_dicts,
        rewriter=rewriter,
        embeddings=KeywordEmbeddings(),
        config=_config(**overrides),
        num_context_tools=1,
    )
    table = scripted or SCRIPTED

    def sample(prompts: Sequence[str], queries: Sequence[str]) -> list[list[str]]:
        assert len(prompts) == len(queries)
        return [list(table[q]) for q in queries]

    trainer._sample = sample  # type: ignore[method-assign]
    return trainer


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[QTATrainer, dict[str, Any], Path]:
    """One training run on the tiny model, shared by the tests that only inspect it."""
    trainer = _trainer([dict(t) for t in TOOLS])
    trainer_module._seed_everything(trainer.config.seed)  # as fit() does before the LoRA init
    trainer._prepare_model()
    before = _lora_state(trainer.rewriter)
    out = tmp_path_factory.mktemp("fitted") / "adapter"
    trainer.fit(EXAMPLES, output_dir=out)
    return trainer, before, out


def _lora_state(rewriter: HuggingFaceRewriter) -> dict[str, Any]:
    return {n: p.detach().clone() for n, p in rewriter.model.named_parameters() if "lora_" in n}


def test_fit_trains_the_adapter_and_saves_a_loadable_manifest(
    fitted: tuple[QTATrainer, dict[str, Any], Path],
) -> None:
    import torch

    trainer, before, out = fitted
    after = _lora_state(trainer.rewriter)
    assert before.keys() == after.keys() and before
    assert any(not torch.equal(before[n], after[n]) for n in before)
    # pairs: rewrite with the tool's words chosen, the off-topic one rejected
    assert {(p.chosen, p.rejected) for p in trainer.pairs} == {
        ("current weather forecast for a city", "send an email"),
        ("latest price of a stock ticker symbol", "translate text"),
    }
    files = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", MANIFEST_NAME} <= files
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    # the tiny model is not on disk: a copy is saved, identified by its weights' SHA-256
    assert manifest["base_model"]["kind"] == "bundled"
    assert manifest["base_model"]["name"] == "base"
    assert set(manifest["base_model"]["sha256"]) == {"model.safetensors"}
    assert manifest["format_version"] == 3
    assert "README.md" not in files
    assert manifest["prompt"]["instruction"] == SHORT_PROMPT.instruction
    assert manifest["prompt_version"] == SHORT_PROMPT.version
    assert manifest["config"]["num_candidates"] == 2
    assert manifest["metrics"]["rounds"][0]["pairs"] == 2
    assert "loss" in manifest["metrics"]["rounds"][0]["dpo"]["log"][0]
    assert manifest["package_version"]


def test_save_load_round_trip_gives_identical_greedy_rewrites(
    fitted: tuple[QTATrainer, dict[str, Any], Path],
) -> None:
    trainer, _, out = fitted
    rewriter = trainer.rewriter
    loaded = QueryRewriter.from_pretrained(out, max_new_tokens=4)
    assert isinstance(loaded, HuggingFaceRewriter)
    assert loaded.prompt == rewriter.prompt
    prompts = [
        rewriter.prompt_text(rewriter.prompt.messages(_request(q)))
        for q in ("rain in oslo", "price of MSFT")
    ]
    assert rewriter.generate_from_prompts(prompts) == loaded.generate_from_prompts(prompts)
    assert rewriter.rewrite_batch(["rain in oslo"]) == loaded.rewrite_batch(["rain in oslo"])


def _request(query: str) -> Any:
    from qta_integrations.prompts import RewriteRequest

    return RewriteRequest(query)


def test_training_is_repeatable_with_a_seed(
    fitted: tuple[QTATrainer, dict[str, Any], Path],
) -> None:
    import torch

    first = _lora_state(fitted[0].rewriter)
    again = _trainer([dict(t) for t in TOOLS])
    assert again.fit(EXAMPLES) is again.pipeline  # fit returns the retriever it trained
    second = _lora_state(again.rewriter)  # same seed (0)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[n], second[n]) for n in first)


def test_several_pairs_per_example_and_sft_and_rounds(tool_dicts: list[dict[str, str]]) -> None:
    scripted = {
        "will it rain in paris": ["current weather forecast for a city", "send an email", "x y"],
        "what is AAPL at": ["latest price of a stock ticker symbol", "translate text", "hm ok"],
    }
    trainer = _trainer(
        tool_dicts, scripted, num_candidates=3, pairs_per_example=3, sft_epochs=1, rounds=2
    )
    trainer.fit(EXAMPLES)
    rounds = trainer.metrics["rounds"]
    assert len(rounds) == 2
    assert rounds[0]["pairs"] > 2  # more than one pair per example
    assert rounds[0]["sft"]["steps"] >= 1 and "sft" not in rounds[1]
    assert "ref" not in trainer.rewriter.model.peft_config  # trl's reference copy is removed


def test_reference_candidate_from_the_gold_tools_becomes_chosen(
    tool_dicts: list[dict[str, str]],
) -> None:
    bad = {q: ["send an email", "translate text"] for q in SCRIPTED}
    trainer = _trainer(tool_dicts, bad, reference_candidate=True)
    trainer._prepare_model()
    pairs, _ = trainer.make_pairs(trainer_module.parse_examples(EXAMPLES, trainer.pipeline.catalog))
    chosen = {pair.query: pair.chosen for pair in pairs}
    assert chosen == {
        "will it rain in paris": "get_weather: Current weather and forecast for a city.",
        "what is AAPL at": "get_stock_quote: Latest price of a stock ticker symbol.",
    }
    graded = trainer.candidates[0]["candidates"]
    assert [c["text"] for c in graded][-2:] == [
        chosen["will it rain in paris"],
        EXAMPLES[0]["query"],
    ]


def test_every_candidate_tying_warns_and_keeps_what_the_labels_taught(
    tool_dicts: list[dict[str, str]], tmp_path: Path
) -> None:
    ties = {q: [q, q] for q in SCRIPTED}  # every candidate falls back to the query itself
    trainer = _trainer(tool_dicts, ties)
    out = tmp_path / "adapter"
    with pytest.warns(NoPreferencePairsWarning, match="num_candidates=2"):
        fitted = trainer.fit(EXAMPLES, output_dir=out)
    # Not an error: the examples are in memory, the fusion is fitted, the retriever is returned.
    assert fitted is trainer.pipeline
    assert [e.query for e in fitted.memory] == [e["query"] for e in EXAMPLES]
    assert sorted(fitted.index.list_entries("example") or {}) == sorted(
        e.entry_id for e in fitted.memory
    )
    assert trainer.pairs == []
    assert trainer.metrics["rounds"] == []
    assert "fusion" in trainer.metrics
    assert not fitted.fusion.uses_rewrite  # the rewrite weight is never fitted without pairs
    # The adapter is retrieval-only: no LoRA weights, the fitted state and the examples.
    files = {p.name for p in out.iterdir()}
    assert "adapter_model.safetensors" not in files
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["base_model"] is None
    assert manifest["retrieval"] == fitted.state_dict()


def test_bad_examples_fail_before_training(tool_dicts: list[dict[str, str]]) -> None:
    trainer = _trainer(tool_dicts)
    with pytest.raises(ValueError, match="at least one labelled query"):
        trainer.fit([])
    with pytest.raises(ValueError, match="'no_such_tool'"):
        trainer.fit([{"query": "rain", "tools": ["weather", "no_such_tool"]}])
    assert not hasattr(trainer.rewriter.model, "peft_config")  # nothing was trained


def test_a_failed_save_leaves_no_adapter(
    fitted: tuple[QTATrainer, dict[str, Any], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trainer = fitted[0]
    out = tmp_path / "adapter"

    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(trainer_module, "_package_version", explode)  # fails mid-save
    with pytest.raises(RuntimeError, match="disk full"):
        trainer.save(out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary directory is gone too


def test_an_existing_adapter_is_replaced_but_other_folders_are_refused(
    fitted: tuple[QTATrainer, dict[str, Any], Path], tmp_path: Path
) -> None:
    trainer, _, first = fitted
    out = tmp_path / "adapter"
    trainer.save(out)
    stamp = (out / MANIFEST_NAME).stat().st_mtime_ns
    trainer.save(out)
    assert (out / MANIFEST_NAME).stat().st_mtime_ns >= stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # no leftovers
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a QTA adapter directory"):
        trainer.save(precious)
    with pytest.raises(ValueError, match="not a QTA adapter directory"):
        _trainer([dict(t) for t in TOOLS]).fit(EXAMPLES, output_dir=precious)
    assert (precious / "notes.txt").read_text() == "keep me"
    assert first.exists()


def test_trains_a_retrievers_rewriter_in_place_skipping_tied_examples(
    tool_dicts: list[dict[str, str]],
) -> None:
    from qta_integrations import QTARetriever

    rewriter = tiny_hf_rewriter(prompt=SHORT_PROMPT, max_new_tokens=4)
    retriever = QTARetriever(
        tools=tool_dicts,
        embeddings=KeywordEmbeddings(),
        rewriter=rewriter,
        settings=RetrievalSettings(num_context_tools=1),
    )
    trainer = QTATrainer(retriever, config=_config())
    # the second example's candidates all fall back to the query: a partial tie
    scripted = dict(SCRIPTED, **{"what is AAPL at": ["what is AAPL at", "what is AAPL at"]})
    trainer._sample = lambda prompts, queries: [list(scripted[q]) for q in queries]  # type: ignore[method-assign]
    with pytest.warns(UserWarning, match="what is AAPL at"):
        fitted = trainer.fit(EXAMPLES)
    assert fitted is retriever
    assert trainer.metrics["rounds"][0]["skipped_examples"] == [1]
    assert trainer.metrics["rounds"][0]["pairs"] == 1
    assert retriever.pipeline.rewriter is rewriter is trainer.rewriter
    assert hasattr(rewriter.model, "peft_config")
    assert len(retriever.pipeline.memory) == len(EXAMPLES)
    assert "fusion_with_rewrite" in trainer.metrics  # the rewrite weight was fitted after DPO
    assert retriever.invoke("will it rain in paris", k=1)


def test_prompts_are_the_retrievers_inference_prompts(
    fitted: tuple[QTATrainer, dict[str, Any], Path],
) -> None:
    trainer = fitted[0]
    pipeline = trainer.pipeline
    hits = pipeline.index.search("will it rain in paris", 5)
    request = pipeline.rewrite_request("will it rain in paris", hits)
    expected = trainer.rewriter.prompt_text(trainer.rewriter.prompt.messages(request))
    assert any(p.prompt == expected for p in trainer.pairs)


def test_only_local_hugging_face_rewriters_can_be_trained(
    tool_dicts: list[dict[str, str]],
) -> None:
    fake = FakeRewriter()
    trainer = QTATrainer(tools=tool_dicts, rewriter=fake, embeddings=KeywordEmbeddings())
    # The rewriter is checked when DPO needs it, not before.
    with pytest.raises(TypeError, match="HuggingFaceRewriter"):
        trainer.rewriter  # noqa: B018
    with pytest.raises(TypeError, match=r"HuggingFaceRewriter.*QTATrainingConfig\(dpo=False\)"):
        trainer.fit(EXAMPLES)
    # Without DPO any rewriter (or none) is fine: memory and fusion only, the rewriter unused.
    no_dpo = QTATrainer(
        tools=tool_dicts,
        rewriter=fake,
        embeddings=KeywordEmbeddings(),
        config=QTATrainingConfig(dpo=False),
    )
    fitted = no_dpo.fit(EXAMPLES)
    assert isinstance(fitted, QTAPipeline)
    assert len(fitted.memory) == len(EXAMPLES)
    assert fake.calls == []
    with pytest.raises(ValueError, match="retriever"):
        QTATrainer()
    with pytest.raises(TypeError, match="QTARetriever"):
        QTATrainer(object())


def test_a_rewriter_named_by_path_is_loaded_only_for_dpo(
    tool_dicts: list[dict[str, str]], tmp_path: Path
) -> None:
    (tmp_path / "config.json").write_text("{}")  # a model directory that cannot be loaded
    trainer = QTATrainer(
        tools=tool_dicts,
        rewriter=str(tmp_path),
        embeddings=KeywordEmbeddings(),
        config=QTATrainingConfig(dpo=False),
    )
    fitted = trainer.fit(EXAMPLES)  # never loads the model
    assert len(fitted.memory) == len(EXAMPLES)
    assert fitted.has_rewriter and not fitted.rewriter_loaded
    with pytest.raises(FileNotFoundError, match="No adapter or model directory"):
        QTATrainer(tools=tool_dicts, rewriter="/no/such/rewriter/model")


def test_alpha_is_the_grading_weight_of_dpo_candidates(tool_dicts: list[dict[str, str]]) -> None:
    def pairs_with(alpha: float) -> list[Any]:
        trainer = QTATrainer(
            tools=tool_dicts,
            rewriter=tiny_hf_rewriter(prompt=SHORT_PROMPT, max_new_tokens=4),
            embeddings=KeywordEmbeddings(),
            config=_config(),
            num_context_tools=1,
            alpha=alpha,
        )
        trainer._sample = lambda prompts, queries: [list(SCRIPTED[q]) for q in queries]  # type: ignore[method-assign]
        examples = trainer_module.parse_examples(EXAMPLES, trainer.pipeline.catalog)
        return trainer.make_pairs(examples)[0]

    assert len(pairs_with(0.5)) == 2
    # alpha=0: a candidate fused with the query is graded as the query alone, so all tie.
    with pytest.warns(UserWarning, match="rank the gold tools equally"):
        assert pairs_with(0.0) == []


def test_qta_train_cli_writes_an_adapter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from qta_integrations.cli import Overrides, main

    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([dict(t) for t in TOOLS]))
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(json.dumps(e) for e in EXAMPLES))
    monkeypatch.setattr(
        QTATrainer, "_sample", lambda self, prompts, queries: [list(SCRIPTED[q]) for q in queries]
    )
    out = tmp_path / "adapter"
    overrides = Overrides(
        embeddings=KeywordEmbeddings(),
        rewriter=tiny_hf_rewriter(prompt=SHORT_PROMPT, max_new_tokens=4),
    )
    argv = [
        "train",
        "--tools",
        str(tools),
        "--train",
        str(train),
        "--output",
        str(out),
        "--num-candidates",
        "2",
        "--num-epochs",
        "1",
        "--lora-r",
        "4",
        "--no-show-progress",
    ]
    assert main(argv, overrides=overrides) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["examples"] == 2 and summary["dpo_pairs"] == [2]
    fusion = FusionWeights.from_dict(summary["fusion"])
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["config"]["num_candidates"] == 2
    assert manifest["config"]["lora_r"] == 4
    assert manifest["retrieval"]["settings"]["fusion"] == fusion.to_dict()
    assert [e["query"] for e in manifest["retrieval"]["examples"]] == [e["query"] for e in EXAMPLES]
    assert "adapter_model.safetensors" in {p.name for p in out.iterdir()}


def test_qta_train_cli_reports_bad_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qta_integrations.cli import Overrides, main

    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([dict(t) for t in TOOLS]))
    train = tmp_path / "train.json"
    train.write_text(json.dumps([{"query": "rain?", "tools": ["no_such_tool"]}]))
    overrides = Overrides(embeddings=KeywordEmbeddings(), rewriter=tiny_hf_rewriter())
    argv = ["train", "--tools", str(tools), "--train", str(train), "--output", str(tmp_path / "a")]
    assert main(argv, overrides=overrides) == 2
    assert "no_such_tool" in capsys.readouterr().err
    assert main(["train", "--output", str(tmp_path / "a")], overrides=overrides) == 2
    assert "--dataset" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
