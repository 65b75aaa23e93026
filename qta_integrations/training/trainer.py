"""`QTATrainer`: align the query rewriter with DPO from a handful of labelled queries.

The QTA recipe (arXiv 2410.03212), with the retriever frozen:

1. For each example, build the rewrite prompt exactly as the retriever does at inference
   (`QTAPipeline.rewrite_request`: the top ``num_context_tools`` tools for the original query
   as context) and sample ``num_candidates`` rewrites.
2. Grade every candidate, and the original query, with a `RankingFunction` over where the
   gold tools land in the frozen retriever's ranking of the whole catalogue (exact cosine over
   the same embeddings). By default a candidate is graded fused with the original query, as the
   retriever will use it (``grade_mode="fused"``).
3. Best = chosen, worst = rejected (ties give no pair); train a LoRA adapter with trl's
   ``DPOTrainer``. Optionally: several pairs per example, a supervised warm-up on the chosen
   rewrites, iterative rounds (sample again from the updated model), few-shot examples.
4. Save the adapter directory atomically (`qta_integrations.adapter`): the LoRA weights
   (safetensors) and a ``qta_manifest.json`` recording the base model's identity, the prompt
   and the retrieval state.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from qta_integrations.adapter import (
    BUNDLED_BASE_DIRNAME,
    AdapterManifest,
    BaseModelRef,
    check_output_dir,
    default_base_path,
    describe_base,
    write_adapter,
)
from qta_integrations.embeddings import resolve_embeddings
from qta_integrations.memory import ExamplesLike, LabelledExample, parse_examples
from qta_integrations.pipeline import QTAPipeline
from qta_integrations.prompts import PROMPT_VERSION, RewriteExample, RewriteRequest
from qta_integrations.ranking import RankingFunction, SufficiencyNDCG
from qta_integrations.retrievers.base import pipeline_of
from qta_integrations.rewriter import (
    HuggingFaceRewriter,
    open_rewriter_reference,
    resolve_rewriter,
)
from qta_integrations.stores import ExactToolIndex, ToolIndex
from qta_integrations.tools import ToolCatalog
from qta_integrations.training.config import QTATrainingConfig
from qta_integrations.training.pairs import (
    GradedCandidate,
    PreferencePair,
    grade_candidates,
    select_pairs,
)

__all__ = ["NoPreferencePairsError", "NoPreferencePairsWarning", "QTATrainer"]

logger = logging.getLogger(__name__)


class NoPreferencePairsError(ValueError):
    """Every candidate of every example tied, so DPO has nothing to learn from."""


class NoPreferencePairsWarning(UserWarning):
    """DPO found no preference pair; the memory and the fitted fusion are still used."""


class QTATrainer:
    """Align a `HuggingFaceRewriter` with DPO so its rewrites retrieve the right tools.

    Build it from a `QTARetriever` (or a `QTAPipeline`): the trainer then trains that retriever's
    rewriter in place, with the retriever's own prompt, context tools and fusion weight. Or build
    it from a catalogue, a rewriter and embeddings.

    Args:
        retriever: A `QTARetriever` or `QTAPipeline` whose rewriter is a `HuggingFaceRewriter`.
        tools: Without ``retriever``: the catalogue (anything `ToolCatalog.from_any` accepts).
        rewriter: Without ``retriever``: ``"default"`` (SmolLM2-135M-Instruct), a model or
            adapter directory, or a `HuggingFaceRewriter`.
        embeddings: Without ``retriever``: the frozen retriever's embeddings (default MiniLM).
            With a retriever whose index is not an `ExactToolIndex`, the embeddings used to
            grade candidates (default: the retriever's own).
        config: Training options.
        ranking: Grades a full catalogue ranking; default `SufficiencyNDCG`.
        num_context_tools: Without ``retriever``: context tools shown to the rewriter.
        alpha: DPO: the weight of a candidate rewrite when it is graded fused with the query
            (``grade_mode="fused"``); not a retrieval setting.

    Example:
        .. code-block:: python

            from qta_integrations import QTARetriever
            from qta_integrations.training import QTATrainer, QTATrainingConfig

            retriever = QTARetriever(tools="tools.json")
            trainer = QTATrainer(retriever, config=QTATrainingConfig(seed=0))
            trainer.fit(
                [{"query": "who directed Inception?", "tools": ["search_movie", "movie_credits"]}],
                output_dir="qta-adapter",
            )
            retriever.invoke("who directed Inception?")      # uses the trained rewriter now
            QTARetriever(tools="tools.json", rewriter="qta-adapter")  # or load it later
    """

    def __init__(
        self,
        retriever: Any = None,
        *,
        tools: Any = None,
        rewriter: Any = "default",
        embeddings: Any = None,
        config: QTATrainingConfig | None = None,
        ranking: RankingFunction | None = None,
        num_context_tools: int = 3,
        alpha: float = 0.5,
    ) -> None:
        self.config = config or QTATrainingConfig()
        if not isinstance(self.config, QTATrainingConfig):
            msg = f"config must be a QTATrainingConfig, got {type(self.config).__name__}."
            raise TypeError(msg)
        self.ranking: RankingFunction = ranking or SufficiencyNDCG()
        if not callable(self.ranking):
            msg = f"ranking must be a RankingFunction (callable), got {self.ranking!r}."
            raise TypeError(msg)
        self.alpha = alpha
        if retriever is not None:
            if tools is not None:
                msg = "Pass either a retriever or tools=, not both."
                raise ValueError(msg)
            try:
                self.pipeline = pipeline_of(retriever)
            except TypeError as err:
                msg = f"{err} To train from a catalogue, pass tools=."
                raise TypeError(msg) from None
            self.retriever: Any = retriever
            self._grading_embeddings = embeddings or getattr(retriever, "embeddings", None)
        else:
            if tools is None:
                msg = "QTATrainer needs a retriever (QTARetriever / QTAPipeline) or tools=."
                raise ValueError(msg)
            spec = rewriter
            if isinstance(spec, (str, os.PathLike)):
                open_rewriter_reference(spec)  # a bad path fails now, not after training
            catalog = ToolCatalog.from_any(tools)
            index = ExactToolIndex.from_catalog(catalog, resolve_embeddings(embeddings))
            self.pipeline = QTAPipeline(
                catalog,
                index,
                (lambda: resolve_rewriter(spec)) if isinstance(spec, (str, os.PathLike)) else spec,
                num_context_tools=num_context_tools,
                index_tools=False,
            )
            self.retriever = self.pipeline
            self._grading_embeddings = None
            self._grading: ExactToolIndex | None = index
        self.metrics: dict[str, Any] = {}
        self.pairs: list[PreferencePair] = []
        self.candidates: list[dict[str, Any]] = []
        """Every graded candidate of the last `fit` (both gradings), for analysis."""

    # -- components -------------------------------------------------------------------

    @property
    def rewriter(self) -> HuggingFaceRewriter:
        """The retriever's rewriter, which DPO trains in place (loaded when first needed).

        Raises:
            TypeError: if it is not a local `HuggingFaceRewriter`.
        """
        rewriter = self.pipeline.rewriter
        if not isinstance(rewriter, HuggingFaceRewriter):
            msg = (
                "DPO trains a local HuggingFaceRewriter (a causal LM it can put a LoRA "
                f"adapter on), got {type(rewriter).__name__}. Use rewriter='default' or "
                "HuggingFaceRewriter.from_pretrained(path), or QTATrainingConfig(dpo=False)."
            )
            raise TypeError(msg)
        return rewriter

    @property
    def grading_index(self) -> ExactToolIndex:
        """The frozen retriever's exact ranking of the whole catalogue, for grading rewrites."""
        if getattr(self, "_grading", None) is None:
            self._grading = _grading_index(
                self.pipeline.index, self.pipeline.catalog, self._grading_embeddings
            )
        assert self._grading is not None
        return self._grading

    # -- public API -------------------------------------------------------------------

    def fit(self, examples: ExamplesLike, output_dir: str | Path | None = None) -> Any:
        """Learn from labelled examples: example memory, fitted fusion, then (optionally) DPO.

        1. The examples are attached to their tools (`QTAPipeline.add_examples`) and the
           fusion weights are fitted on them by leave-one-out (`QTAPipeline.fit_fusion`):
           seconds, from one example up.
        2. With ``config.dpo`` (the paper's method), the rewriter is aligned with DPO on
           preference pairs; when no example gives a pair, a warning says so and training goes
           on without it. The rewrite signal's weight is then fitted too, and kept only if it
           beats the fit without it by at least one example's Sufficiency@5 (the rewriter has
           seen these examples, so its held-out score is optimistic).
        3. With ``output_dir``, everything is saved as an adapter directory
           (`qta_integrations.adapter`): LoRA weights when DPO ran, and the retrieval state.

        Args:
            examples: 1 to N labelled queries: ``[{"query": str, "tools": [ids]}, ...]``, a
                queries file (JSON list / JSONL of such records) or a dataset with ``.queries``.
            output_dir: Where to save the adapter directory (written atomically).

        Returns:
            The retriever the trainer was built from (its pipeline now uses what was learned),
            or the trainer's own `QTAPipeline` when it was built from ``tools=``.

        Raises:
            ValueError: for zero examples, or gold ids that are not in the catalogue.
        """
        cfg = self.config
        data = parse_examples(examples, self.pipeline.catalog)
        target = check_output_dir(output_dir) if output_dir is not None else None
        started = time.perf_counter()
        self.metrics = {"num_examples": len(data), "rounds": []}
        self.pairs, self.candidates = [], []
        self.pipeline.add_examples(data, fit=False)
        fusion = self.pipeline.fit_fusion()
        self.metrics["fusion"] = fusion.to_dict()
        self.metrics["fusion_seconds"] = round(time.perf_counter() - started, 2)
        if cfg.dpo:
            self._align_rewriter(data)
        self.metrics["train_seconds"] = round(time.perf_counter() - started, 2)
        if target is not None:
            self.save(target)
        return self.retriever

    def _align_rewriter(self, data: Sequence[LabelledExample]) -> None:
        """DPO rounds on the rewriter, then the rewrite signal's weight (see `fit`)."""
        cfg = self.config
        # Seeded here rather than in fit(): only DPO draws random numbers (the LoRA init
        # first), and seeding imports torch, which a fit without DPO never needs.
        _seed_everything(cfg.seed)
        self._prepare_model()
        # The rewriter is about to change: its old name no longer describes it (save() names
        # the adapter directory instead).
        self.pipeline.rewriter_reference = None
        if cfg.num_few_shot:
            self._add_few_shot(data)
        requests = self._requests(data)
        for round_index in range(cfg.rounds):
            _seed_everything(cfg.seed + round_index)
            pairs, stats = self.make_pairs(data, requests, round_index=round_index)
            if not pairs:
                warnings.warn(
                    _no_pairs_message(len(data), cfg, round_index),
                    NoPreferencePairsWarning,
                    stacklevel=3,
                )
                break
            self.pairs.extend(pairs)
            if round_index == 0 and cfg.sft_epochs:
                stats["sft"] = self._sft(pairs)
            stats["dpo"] = self._dpo(pairs, seed=cfg.seed + round_index)
            self.metrics["rounds"].append(stats)
            self.rewriter.clear_cache()
        self.rewriter.model.eval()
        self.rewriter.clear_cache()
        if not self.pairs:
            return
        without = self.pipeline.fusion
        without_score = self.pipeline.last_fit.score if self.pipeline.last_fit else 0.0
        with_rewrite = self.pipeline.fit_fusion(rewrite=True)
        margin = 1.0 / len(data)
        kept = with_rewrite.weights.uses_rewrite and with_rewrite.score >= without_score + margin
        if not kept:
            self.pipeline.settings = self.pipeline.settings.replace(fusion=without)
        self.metrics["fusion_with_rewrite"] = {**with_rewrite.to_dict(), "kept": kept}

    def make_pairs(
        self,
        examples: Sequence[LabelledExample],
        requests: Sequence[RewriteRequest] | None = None,
        *,
        round_index: int = 0,
    ) -> tuple[list[PreferencePair], dict[str, Any]]:
        """Sample candidates for every example, grade them and pick preference pairs.

        Returns:
            The pairs and statistics (pairs, skipped examples, how often the chosen candidate
            was a rewrite that beats the original query).
        """
        cfg = self.config
        requests = list(requests) if requests is not None else self._requests(examples)
        prompts = self._prompt_strings(requests)
        started = time.perf_counter()
        samples = self._sample(prompts, [e.query for e in examples])
        sample_seconds = time.perf_counter() - started
        pairs: list[PreferencePair] = []
        skipped: list[int] = []
        improved = 0
        disagree = 0
        for i, (example, prompt, cands) in enumerate(zip(examples, prompts, samples, strict=True)):
            texts = list(cands)
            if cfg.reference_candidate:
                texts.append(self._reference_rewrite(example))
            if cfg.include_original:
                texts.append(example.query)
            both = {
                mode: grade_candidates(
                    self.grading_index,
                    example.query,
                    texts,
                    example.tools,
                    self.ranking,
                    alpha=self.alpha,
                    fused=mode == "fused",
                )
                for mode in ("fused", "alone")
            }
            grades = both[cfg.grade_mode]
            # Both gradings are recorded, to measure whether the choice changes the pairs.
            self.candidates.append(
                {
                    "round": round_index + 1,
                    "query": example.query,
                    "candidates": [
                        {"text": t, "fused": list(f), "alone": list(a)}
                        for t, f, a in zip(texts, both["fused"], both["alone"], strict=True)
                    ],
                }
            )
            if _best_index(both["fused"]) != _best_index(both["alone"]):
                disagree += 1
            graded = [
                GradedCandidate(t, g, is_original=cfg.include_original and j == len(texts) - 1)
                for j, (t, g) in enumerate(zip(texts, grades, strict=True))
            ]
            chosen_rejected = select_pairs(graded, max_pairs=cfg.pairs_per_example)
            if not chosen_rejected:
                skipped.append(i)
                warnings.warn(
                    f"Example #{i} ({example.query!r}): all {len(set(texts))} distinct "
                    f"candidates rank the gold tools equally (grade {grades[0]}), so it gives no "
                    "preference pair this round and is skipped.",
                    stacklevel=2,
                )
                continue
            original_grade = grades[-1] if cfg.include_original else None
            best = chosen_rejected[0][0]
            if original_grade is not None and best.grade > original_grade:
                improved += 1
            for chosen, rejected in chosen_rejected:
                pairs.append(
                    PreferencePair(
                        query=example.query,
                        prompt=prompt,
                        chosen=chosen.text,
                        rejected=rejected.text,
                        chosen_grade=chosen.grade,
                        rejected_grade=rejected.grade,
                    )
                )
        stats = {
            "round": round_index + 1,
            "pairs": len(pairs),
            "skipped_examples": skipped,
            "examples_with_rewrite_better_than_query": improved,
            "sample_seconds": round(sample_seconds, 2),
            "examples_where_fused_and_alone_pick_different_best": disagree,
        }
        logger.info(
            "Round %d: %d pairs from %d examples (%d skipped: all candidates tie).",
            round_index + 1,
            len(pairs),
            len(examples),
            len(skipped),
        )
        return pairs, stats

    def save(self, output_dir: str | Path) -> Path:
        """Save the adapter directory atomically (format: `qta_integrations.adapter`).

        Writes the LoRA weights (safetensors), a copy of the base model when it is not on disk,
        and ``qta_manifest.json``: the base model's identity (SHA-256 of its weights), the
        prompt, the retrieval state (``QTAPipeline.state_dict()``), the training options and
        metrics. At every instant ``output_dir`` loads as either the previous adapter or this
        one, and other files in it are kept. When DPO did not run (or found no pairs) this writes a
        retrieval-only adapter: the fitted weights and the examples, no LoRA weights.

        Raises:
            ValueError: if ``output_dir`` is a file or a non-empty directory holding no adapter.
        """
        target = check_output_dir(output_dir)
        # Without DPO pairs the rewriter is unchanged (and maybe never loaded): the adapter is
        # retrieval-only, and loading it keeps whatever rewriter the retriever is given.
        aligned = bool(self.pairs)

        def build(staging: Path) -> AdapterManifest:
            rewriter = self.rewriter if aligned else None
            if rewriter is not None:
                rewriter.model.save_pretrained(str(staging), safe_serialization=True)
                (staging / "README.md").unlink(missing_ok=True)  # PEFT's empty model card
            return AdapterManifest(
                base_model=self._base_model_reference(staging) if rewriter else None,
                prompt=asdict(rewriter.prompt) if rewriter else None,
                prompt_version=(rewriter.prompt.version or PROMPT_VERSION) if rewriter else None,
                retrieval=self.pipeline.state_dict(),
                config=self.config.to_dict(),
                metrics=dict(self.metrics),
                ranking=repr(self.ranking),
                package_version=_package_version(),
                created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )

        write_adapter(target, build)
        if aligned:  # the rewriter in memory is now the saved adapter: a persisted retriever
            self.rewriter.source = str(target.resolve())  # names it
            self.pipeline.rewriter_reference = str(target.resolve())
        logger.info("Saved the QTA adapter to %s.", target)
        return target

    # -- steps ------------------------------------------------------------------------

    def _requests(self, examples: Sequence[LabelledExample]) -> list[RewriteRequest]:
        """The inference requests: the retriever's own context tools for each query."""
        return self.pipeline.rewrite_requests(
            [e.query for e in examples], [e.history for e in examples]
        )

    def _prompt_strings(self, requests: Sequence[RewriteRequest]) -> list[str]:
        return self.rewriter.prompt_strings(requests)

    def _sample(self, prompts: Sequence[str], queries: Sequence[str]) -> list[list[str]]:
        """``num_candidates`` cleaned samples per prompt, batched, with a progress bar."""
        from tqdm.auto import tqdm

        cfg = self.config
        rewriter = self.rewriter
        rewriter.model.eval()
        out: list[list[str]] = []
        step = max(1, rewriter.batch_size)
        for start in tqdm(
            range(0, len(prompts), step),
            desc="Sampling candidates",
            unit="batch",
            disable=not cfg.show_progress,
        ):
            raws = rewriter.generate_from_prompts(
                prompts[start : start + step],
                do_sample=True,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                num_return_sequences=cfg.num_candidates,
                max_new_tokens=cfg.max_new_tokens,
            )
            for query, group in zip(queries[start : start + step], raws, strict=True):
                out.append([rewriter.finalize(query, raw) for raw in group])
        return out

    def _reference_rewrite(self, example: LabelledExample) -> str:
        """The gold tools' own texts, joined: a rewrite that lines up with the catalogue."""
        return "; ".join(self.pipeline.catalog[tool_id].text for tool_id in example.tools)

    def _add_few_shot(self, examples: Sequence[LabelledExample]) -> None:
        """Sample once, then show the best rewrites of the best examples as few-shot turns."""
        pairs, _ = self.make_pairs(examples, round_index=-1)
        best: dict[str, PreferencePair] = {}
        for pair in pairs:
            if pair.chosen != pair.query:
                best.setdefault(pair.query, pair)
        ranked = sorted(best.values(), key=lambda p: p.chosen_grade, reverse=True)
        shots = [RewriteExample(p.query, p.chosen) for p in ranked[: self.config.num_few_shot]]
        if shots:
            self.rewriter.prompt = self.rewriter.prompt.with_examples(shots)
            self.rewriter.clear_cache()
        self.metrics["few_shot"] = [asdict(s) for s in shots]

    def _prepare_model(self) -> None:
        """Put a fresh LoRA adapter on the rewriter's model (or make its adapter trainable)."""
        from peft import LoraConfig, PeftModel, get_peft_model

        rewriter = self.rewriter
        model = rewriter.model
        if getattr(model, "is_quantized", False) or getattr(model, "hf_quantizer", None):
            msg = (
                "The rewriter's model is quantized (e.g. loaded from GGUF), which DPO cannot "
                "train. Load the plain safetensors checkpoint: rewriter='default' does that."
            )
            raise ValueError(msg)
        if isinstance(model, PeftModel):
            for name, param in model.named_parameters():
                if "lora_" in name:
                    param.requires_grad_(True)
            return
        self._base_snapshot: Path | None = None
        if _base_reference(rewriter) is None:
            # The base model is not on disk: keep a copy so the saved adapter can be reloaded.
            self._base_snapshot = Path(tempfile.mkdtemp(prefix="qta-base-"))
            model.save_pretrained(str(self._base_snapshot))
            rewriter.tokenizer.save_pretrained(str(self._base_snapshot))
        cfg = self.config
        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=(
                cfg.target_modules
                if isinstance(cfg.target_modules, str)
                else list(cfg.target_modules)
            ),
            task_type="CAUSAL_LM",
        )
        rewriter.model = get_peft_model(model, lora)

    def _training_args(self, cls: Any, seed: int, epochs: int, **extra: Any) -> Any:
        cfg = self.config
        return cls(
            output_dir=tempfile.mkdtemp(prefix="qta-trainer-"),
            per_device_train_batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            num_train_epochs=epochs,
            learning_rate=cfg.learning_rate,
            warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio in transformers 5
            lr_scheduler_type="linear",
            logging_steps=cfg.logging_steps,
            save_strategy="no",
            report_to="none",
            seed=seed,
            data_seed=seed,
            gradient_checkpointing=False,
            bf16=False,
            fp16=False,
            disable_tqdm=not cfg.show_progress,
            dataloader_num_workers=0,
            max_length=cfg.max_length,
            **extra,
        )

    def _dpo(self, pairs: Sequence[PreferencePair], *, seed: int) -> dict[str, Any]:
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer

        args = self._training_args(
            DPOConfig,
            seed,
            self.config.num_epochs,
            beta=self.config.beta,
            precompute_ref_log_probs=True,  # the reference is frozen: one pass, not one per epoch
        )
        model = self.rewriter.model
        model.train()
        try:
            trainer = DPOTrainer(
                model=model,
                ref_model=None,
                args=args,
                train_dataset=Dataset.from_list([p.as_record() for p in pairs]),
                processing_class=self.rewriter.tokenizer,
            )
            trainer.train()
            history = list(trainer.state.log_history)
        finally:
            _drop_ref_adapter(model)
            shutil.rmtree(args.output_dir, ignore_errors=True)
            model.eval()
        return _summarise_log(history)

    def _sft(self, pairs: Sequence[PreferencePair]) -> dict[str, Any]:
        """Supervised warm-up on the chosen rewrites (completion-only loss)."""
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        records = {(p.prompt, p.chosen) for p in pairs}
        data = Dataset.from_list([{"prompt": p, "completion": c} for p, c in sorted(records)])
        args = self._training_args(SFTConfig, self.config.seed, self.config.sft_epochs)
        model = self.rewriter.model
        model.train()
        try:
            trainer = SFTTrainer(
                model=model, args=args, train_dataset=data, processing_class=self.rewriter.tokenizer
            )
            trainer.train()
            history = list(trainer.state.log_history)
        finally:
            shutil.rmtree(args.output_dir, ignore_errors=True)
            model.eval()
        return _summarise_log(history)

    def _base_model_reference(self, adapter_dir: Path) -> BaseModelRef:
        """The base model's identity; a base that is not on disk is copied into the adapter."""
        reference = _base_reference(self.rewriter)
        if reference == "default":
            return describe_base(default_base_path(), kind="default", name="default")
        if reference is not None:
            return describe_base(reference)
        bundled = adapter_dir / BUNDLED_BASE_DIRNAME
        snapshot = getattr(self, "_base_snapshot", None)
        if snapshot is not None:
            shutil.copytree(snapshot, bundled)
        else:  # no LoRA on it yet: the model in memory is the base
            base = self.rewriter.model
            if hasattr(base, "peft_config"):
                msg = (
                    f"Cannot tell where the base model {self.rewriter.name!r} lives, so the "
                    "adapter could not be reloaded. Load the rewriter with "
                    "HuggingFaceRewriter.from_pretrained(path) before training."
                )
                raise RuntimeError(msg)
            base.save_pretrained(str(bundled))
            self.rewriter.tokenizer.save_pretrained(str(bundled))
        return describe_base(bundled, kind="bundled", name=BUNDLED_BASE_DIRNAME)


# -- helpers ------------------------------------------------------------------------------


def _grading_index(index: ToolIndex, catalog: ToolCatalog, embeddings: Any) -> ExactToolIndex:
    """The frozen retriever's full ranking: the pipeline's own exact index, or one beside it."""
    if isinstance(index, ExactToolIndex):
        return index
    if embeddings is None:
        embeddings = getattr(getattr(index, "vectorstore", None), "embeddings", None)
    return ExactToolIndex.from_catalog(catalog, resolve_embeddings(embeddings))


def _base_reference(rewriter: HuggingFaceRewriter) -> str | None:
    """How the manifest names the base model: 'default', an absolute path, or None (unknown)."""
    if rewriter.name == "default":
        return "default"
    path = Path(rewriter.name)
    if (path / "config.json").exists():
        return str(path.resolve())
    return None


def _drop_ref_adapter(model: Any) -> None:
    """Remove the 'ref' copy trl adds of an existing adapter as the DPO reference."""
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")
        model.set_adapter("default")


def _summarise_log(history: list[dict[str, Any]]) -> dict[str, Any]:
    steps = [h for h in history if "loss" in h]
    summary: dict[str, Any] = {
        "steps": len(steps),
        "log": [
            {k: round(v, 5) if isinstance(v, float) else v for k, v in h.items()} for h in steps
        ],
    }
    final: dict[str, Any] = next((h for h in reversed(history) if "train_loss" in h), {})
    for key in ("train_loss", "train_runtime"):
        if key in final:
            summary[key] = round(float(final[key]), 4)
    if steps:
        for key in ("loss", "rewards/margins", "rewards/accuracies"):
            values = [h[key] for h in steps if key in h and not math.isnan(h[key])]
            if values:
                summary[f"first_{key}"] = round(values[0], 5)
                summary[f"last_{key}"] = round(values[-1], 5)
    return summary


def _best_index(grades: Sequence[tuple[float, ...]]) -> int:
    return max(range(len(grades)), key=lambda i: (grades[i], -i))


def _no_pairs_message(num_examples: int, cfg: QTATrainingConfig, round_index: int = 0) -> str:
    return (
        f"No preference pairs in DPO round {round_index + 1}: for all {num_examples} "
        "example(s), every sampled candidate ranked the gold tools exactly as well as the "
        "others, so the rewriter is left as it is; the example memory and the fitted fusion are "
        f"used all the same. For pairs, sample more or more varied candidates (num_candidates="
        f"{cfg.num_candidates}, temperature={cfg.temperature}), add examples the retriever does "
        "not already get right, or set QTATrainingConfig(dpo=False) to skip DPO."
    )


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _package_version() -> str:
    from qta_integrations._version import __version__

    return __version__
