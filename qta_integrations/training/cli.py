"""``qta train``: train a QTA adapter from the command line.

Registered by ``qta_integrations.cli`` through `add_train_parser`. Its flags are built from
the `QTATrainingConfig` fields, so the CLI and the library never disagree on an option.

Examples:
    .. code-block:: bash

        qta train --dataset mtrb-restbench --output adapters/restbench
        qta train --tools tools.jsonl --train train.jsonl --output my-adapter --num-candidates 8
        qta eval --dataset mtrb-restbench --method qta --adapter adapters/restbench
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from typing import Any

from qta_integrations.settings import LABEL_FITS, RetrievalSettings
from qta_integrations.training.config import QTATrainingConfig

__all__ = ["add_config_arguments", "add_train_parser", "config_from_args", "run_train"]

logger = logging.getLogger(__name__)

MTRB_PREFIX = "mtrb-"


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per `QTATrainingConfig` field (help text and default from the field)."""
    group = parser.add_argument_group("training options (QTATrainingConfig)")
    for f in dataclasses.fields(QTATrainingConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata.get('help', '')} Default: {f.default!r}."
        if isinstance(f.default, bool):
            group.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        elif f.name == "target_modules":
            group.add_argument(flag, dest=f.name, nargs="+", default=None, help=help_text)
        else:
            group.add_argument(
                flag, dest=f.name, type=type(f.default), default=None, help=help_text
            )


def config_from_args(args: argparse.Namespace) -> QTATrainingConfig:
    """A `QTATrainingConfig` with the flags that were given; the others keep their defaults."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(QTATrainingConfig):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        if f.name == "target_modules":
            value = value[0] if len(value) == 1 and value[0] == "all-linear" else tuple(value)
        values[f.name] = value
    return QTATrainingConfig(**values)


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``train`` subcommand on ``subparsers`` (from ``add_subparsers``)."""
    parser = subparsers.add_parser(
        "train",
        help="Learn from labelled queries (memory + fitted fusion; optionally DPO) and save.",
        description=(
            "Attach the labelled queries to their tools and fit the fusion weights on them by "
            "leave-one-out (seconds); unless --no-dpo, also align the rewriter with DPO, the QTA "
            "recipe (sample rewrites, rank them by where the gold tools land, DPO on best vs "
            "worst; minutes on a CPU). Everything is saved as an adapter directory: load it with "
            "QTARetriever(rewriter=OUTPUT) or `qta eval --method qta --adapter OUTPUT`."
        ),
    )
    source = parser.add_argument_group("data (either --dataset, or --tools and --train)")
    source.add_argument(
        "--dataset",
        choices=("mtrb-restbench", "mtrb-metatool", "mtrb-toolbench"),
        help="An MTRB subset (its 10-query train split).",
    )
    source.add_argument("--data-dir", default=None, help="Local MTRB directory ($QTA_MTRB_DIR).")
    source.add_argument(
        "--tools", help="Tool catalogue: JSON list or JSONL of {id, name, description}."
    )
    source.add_argument(
        "--train", help="Training queries: JSON list or JSONL of {query, tools: [ids]}."
    )
    source.add_argument(
        "--names-from-ids",
        action="store_true",
        help="--tools: use a tool's id as its name when the record has no 'name' (by default "
        "such a record is an error).",
    )
    parser.add_argument("--output", required=True, help="Directory to write the adapter to.")
    parser.add_argument(
        "--n-examples", type=int, default=None, help="Use only the first N training queries."
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=0.5,
        help="DPO: weight of a candidate rewrite when it is graded fused with the query.",
    )
    parser.add_argument(
        "--num-context-tools", type=int, default=3, help="Context tools shown to the rewriter."
    )
    parser.add_argument(
        "--rewriter", default="default", help="Base rewriter: 'default' or a model directory."
    )
    parser.add_argument(
        "--label-fit",
        choices=LABEL_FITS,
        default=RetrievalSettings().label_fit,
        help="How the fusion weights are fitted (RetrievalSettings.label_fit): 'safe' never "
        "lowers held-out queries whose tools no label names; 'labelled' maximises held-out "
        "labelled queries alone.",
    )
    add_config_arguments(parser)
    parser.set_defaults(handler=run_train)
    return parser


def _load_training_data(args: argparse.Namespace) -> Any:
    from qta_integrations.evaluation import load_mtrb, load_retrieval_dataset

    if args.dataset and (args.tools or args.train):
        msg = "Pass either --dataset or --tools with --train, not both."
        raise ValueError(msg)
    if args.data_dir is not None and not args.dataset:
        msg = "--data-dir applies only to --dataset mtrb-*, not to --tools/--train; drop it."
        raise ValueError(msg)
    if args.names_from_ids and args.dataset:
        msg = "--names-from-ids applies only to --tools files; drop it with --dataset."
        raise ValueError(msg)
    if args.dataset:
        if not args.dataset.startswith(MTRB_PREFIX):
            msg = (
                f"--dataset {args.dataset!r} is not an MTRB subset; use mtrb-restbench, "
                "mtrb-metatool or mtrb-toolbench, or pass --tools FILE --train FILE."
            )
            raise ValueError(msg)
        return load_mtrb(args.dataset[len(MTRB_PREFIX) :], "train", args.data_dir)
    if not (args.tools and args.train):
        msg = "qta train needs --dataset, or both --tools FILE and --train FILE."
        raise ValueError(msg)
    return load_retrieval_dataset(args.tools, args.train, names_from_ids=args.names_from_ids)


def run_train(args: argparse.Namespace) -> int:
    """Handler of ``qta train``: load the data, train, save, print a summary."""
    from qta_integrations.evaluation import build_pipeline
    from qta_integrations.training.trainer import QTATrainer

    config = config_from_args(args)
    data = _load_training_data(args)
    examples = list(data.queries)
    if args.n_examples is not None:
        if args.n_examples < 1:
            msg = f"--n-examples must be >= 1, got {args.n_examples}."
            raise ValueError(msg)
        examples = examples[: args.n_examples]
    overrides = getattr(args, "overrides", None)  # components injected by tests / notebooks
    pipeline = build_pipeline(
        "qta",
        data.catalog,
        embeddings=getattr(overrides, "embeddings", None),
        rewriter=getattr(overrides, "rewriter", None) or args.rewriter,
        num_context_tools=args.num_context_tools,
        label_fit=args.label_fit,
    )
    trainer = QTATrainer(pipeline, config=config, alpha=args.alpha)
    trainer.fit(examples, output_dir=args.output)
    summary = {
        "output": args.output,
        "examples": len(examples),
        "fusion": pipeline.fusion.to_dict(),
        "dpo_pairs": [r["pairs"] for r in trainer.metrics["rounds"]],
        "train_seconds": trainer.metrics["train_seconds"],
    }
    print(json.dumps(summary))
    return 0
