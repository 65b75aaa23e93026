"""`QTATrainingConfig`: every option of a QTA training run, validated in one place.

Modelled on trl's ``DPOConfig`` and peft's ``LoraConfig``: a dataclass whose fields carry
``metadata={"help": ...}`` (the CLI builds its flags from them) and whose ``__post_init__``
rejects a bad value with the field name, the value received and what would be valid.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["GradeMode", "QTATrainingConfig"]

GradeMode = Literal["fused", "alone"]
_GRADE_MODES = ("fused", "alone")


@dataclass
class QTATrainingConfig:
    """Options for `QTATrainer`: candidate sampling, pair construction, LoRA and DPO.

    The defaults were chosen by measurement on MTRB-RestBench with SmolLM2-135M on 2 CPU
    cores (see ``docs/benchmarks.md``, section "QTA after DPO training").

    Example:
        >>> from qta_integrations.training import QTATrainingConfig
        >>> config = QTATrainingConfig(num_candidates=6, learning_rate=1e-4)
        >>> config.num_candidates, config.beta
        (6, 0.1)
        >>> QTATrainingConfig(num_candidates=1)
        Traceback (most recent call last):
        ...
        ValueError: num_candidates must be >= 2 (a pair needs two candidates), got 1.
    """

    # -- what to learn ----------------------------------------------------------------
    dpo: bool = field(
        default=True,
        metadata={
            "help": "After the example memory and the fused weights (seconds), also align the "
            "rewriter with DPO (the paper's method; minutes on a CPU). Its weight in the fusion "
            "is fitted like the others, so a rewriter that does not help is never called."
        },
    )

    # -- candidates -------------------------------------------------------------------
    num_candidates: int = field(
        default=8,
        metadata={"help": "Rewrites sampled per example and round (the paper samples several)."},
    )
    temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature for candidate rewrites (> 0)."}
    )
    top_p: float = field(
        default=0.95, metadata={"help": "Nucleus sampling for candidates, in (0, 1]."}
    )
    max_new_tokens: int = field(
        default=48, metadata={"help": "Length limit of a sampled candidate, in tokens."}
    )
    include_original: bool = field(
        default=True,
        metadata={
            "help": "Rank the original query with the candidates, so a rewrite worse than no "
            "rewrite can be rejected (and one better can be chosen over it)."
        },
    )
    reference_candidate: bool = field(
        default=False,
        metadata={
            "help": "Also grade a reference rewrite written from the gold tools' own texts "
            "(joined with '; '). It ranks the gold tools first, so it usually becomes the "
            "chosen rewrite and training teaches the model to write like the catalogue."
        },
    )
    grade_mode: GradeMode = field(
        default="fused",
        metadata={
            "help": "How a candidate is graded: 'fused' ranks the catalogue with the candidate "
            "fused with the original query exactly as the retriever will use it (alpha); "
            "'alone' ranks with the candidate only."
        },
    )
    pairs_per_example: int = field(
        default=1,
        metadata={
            "help": "Preference pairs per example and round: the best candidate against the "
            "worst, then the next worst, ... (only strictly worse candidates)."
        },
    )
    # -- schedule ---------------------------------------------------------------------
    rounds: int = field(
        default=1,
        metadata={
            "help": "Iterative rounds: after each round candidates are sampled again from the "
            "updated model and it is trained again."
        },
    )
    sft_epochs: int = field(
        default=0,
        metadata={
            "help": "Supervised warm-up epochs on the chosen rewrites before the first DPO "
            "round (0 disables it)."
        },
    )
    num_few_shot: int = field(
        default=0,
        metadata={
            "help": "Put this many (query, best rewrite) training pairs in the saved prompt as "
            "few-shot examples (0: none)."
        },
    )
    # -- DPO --------------------------------------------------------------------------
    num_epochs: int = field(default=3, metadata={"help": "DPO epochs over the pairs of a round."})
    learning_rate: float = field(
        default=2e-4,
        metadata={
            "help": "AdamW learning rate for the LoRA weights (DPOConfig's 1e-6 default is for "
            "full fine-tuning and far too low for a LoRA adapter trained on ten pairs)."
        },
    )
    beta: float = field(
        default=0.1,
        metadata={"help": "DPO temperature: how far the policy may move from the reference."},
    )
    batch_size: int = field(default=2, metadata={"help": "Pairs per optimisation step."})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Steps whose gradients are summed before an update."}
    )
    max_length: int = field(
        default=1024, metadata={"help": "Prompt + completion tokens kept per pair."}
    )
    warmup_ratio: float = field(
        default=0.0, metadata={"help": "Fraction of steps with a linear learning-rate warm-up."}
    )
    # -- LoRA -------------------------------------------------------------------------
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    target_modules: tuple[str, ...] | str = field(
        default="all-linear",
        metadata={
            "help": "Modules that get LoRA weights: 'all-linear' or names such as "
            "('q_proj', 'v_proj')."
        },
    )
    # -- run --------------------------------------------------------------------------
    seed: int = field(default=0, metadata={"help": "Seed for sampling, LoRA init and data order."})
    logging_steps: int = field(default=1, metadata={"help": "Log loss and rewards every N steps."})
    show_progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def __post_init__(self) -> None:
        """Validate every field; raise `ValueError` naming the field, the value and the fix."""
        for name, minimum, why in (
            ("num_candidates", 2, " (a pair needs two candidates)"),
            ("max_new_tokens", 1, ""),
            ("pairs_per_example", 1, ""),
            ("rounds", 1, ""),
            ("num_epochs", 1, ""),
            ("batch_size", 1, ""),
            ("gradient_accumulation_steps", 1, ""),
            ("max_length", 16, ""),
            ("lora_r", 1, ""),
            ("lora_alpha", 1, ""),
            ("logging_steps", 1, ""),
            ("sft_epochs", 0, ""),
            ("num_few_shot", 0, ""),
            ("seed", 0, ""),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                msg = f"{name} must be an int >= {minimum}{why}, got {value!r}."
                raise ValueError(msg)
            if value < minimum:
                msg = f"{name} must be >= {minimum}{why}, got {value!r}."
                raise ValueError(msg)
        for name, low, high, low_open in (
            ("temperature", 0.0, None, True),
            ("top_p", 0.0, 1.0, True),
            ("learning_rate", 0.0, None, True),
            ("beta", 0.0, None, True),
            ("lora_dropout", 0.0, 1.0, False),
            ("warmup_ratio", 0.0, 0.99, False),
        ):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and (value > low if low_open else value >= low)
            ok = ok and (high is None or value <= high)
            if not ok:
                left = "(" if low_open else "["
                right = f"{high}]" if high is not None else "inf)"
                msg = f"{name} must be a number in {left}{low}, {right}, got {value!r}."
                raise ValueError(msg)
        if self.grade_mode not in _GRADE_MODES:
            msg = f"grade_mode must be one of {_GRADE_MODES}, got {self.grade_mode!r}."
            raise ValueError(msg)
        if isinstance(self.target_modules, str):
            if not self.target_modules.strip():
                msg = "target_modules must be 'all-linear' or module names, got ''."
                raise ValueError(msg)
        else:
            modules = tuple(self.target_modules)
            if not modules or not all(isinstance(m, str) and m for m in modules):
                msg = (
                    "target_modules must be 'all-linear' or a non-empty sequence of module names "
                    f"such as ('q_proj', 'v_proj'), got {self.target_modules!r}."
                )
                raise ValueError(msg)
            self.target_modules = modules

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the options (recorded in the adapter manifest)."""
        data = dataclasses.asdict(self)
        if isinstance(data["target_modules"], tuple):
            data["target_modules"] = list(data["target_modules"])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QTATrainingConfig:
        """Rebuild a config from `to_dict` output; unknown keys raise `ValueError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            msg = f"Unknown QTATrainingConfig fields {unknown}; valid fields are {sorted(names)}."
            raise ValueError(msg)
        data = dict(data)
        if isinstance(data.get("target_modules"), list):
            data["target_modules"] = tuple(data["target_modules"])
        return cls(**data)
