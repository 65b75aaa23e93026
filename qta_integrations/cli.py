"""The ``qta`` command line.

Commands (run from the repository root, offline)::

    # The paper's benchmark: dense (MiniLM zero-shot), BM25 and QTA (default untuned SmolLM2)
    qta eval --dataset mtrb-restbench --data-dir MTRB_DIR --method dense bm25 qta

    # Your own labelled data, a trained adapter, results saved with per-query rankings
    qta eval --tools tools.jsonl --queries queries.jsonl --method dense qta
    qta eval --tools tools.jsonl --queries queries.jsonl --method qta --adapter runs/qta-adapter
    qta eval --dataset mtrb-metatool --method dense bm25 --k 1 5 10 --output results.json

    # Index 15 built-in tools, rewrite a few queries with the default models, show the top tools
    qta demo

Adding a subcommand: write ``add_<name>_parser(subparsers)`` that calls
``subparsers.add_parser(...)``, adds its options and ``parser.set_defaults(handler=fn)`` with
``fn(args: argparse.Namespace) -> int`` (the exit code), then list it in `SUBCOMMANDS` below.
Keep heavy imports (torch, transformers) inside ``fn`` so ``qta --help`` stays fast. The
training command is registered this way from ``qta_integrations/training/cli.py``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

__all__ = ["DEMO_QUERIES", "DEMO_TOOLS", "SUBCOMMANDS", "Overrides", "build_parser", "main"]

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------
# Subcommand registration point.
# Each entry is (module, function); the function is called with the argparse subparsers
# object. A module that does not exist (yet) is skipped; any other import error is raised.
# ---------------------------------------------------------------------------------------
SUBCOMMANDS: list[tuple[str, str]] = [
    ("qta_integrations.cli", "add_eval_parser"),
    ("qta_integrations.cli", "add_demo_parser"),
    ("qta_integrations.training.cli", "add_train_parser"),  # `qta train` (the DPO trainer)
]

DATASETS = ("mtrb-restbench", "mtrb-metatool", "mtrb-toolbench")


@dataclass
class Overrides:
    """Components injected by `main`'s callers instead of the default models (tests, notebooks).

    Attributes:
        embeddings: Used instead of all-MiniLM-L6-v2 (e.g. ``KeywordEmbeddings()``).
        rewriter: Used instead of the default SmolLM2 rewriter (e.g. a ``FakeRewriter``).
    """

    embeddings: Any | None = None
    rewriter: Any | None = None


class CLIError(Exception):
    """A user-facing error: printed as ``qta: error: ...`` without a traceback."""


# -- eval -------------------------------------------------------------------------------


def add_eval_parser(subparsers: Any) -> None:
    """Register ``qta eval``."""
    from qta_integrations.evaluation.harness import DEFAULT_METHODS, METHODS
    from qta_integrations.settings import LABEL_FITS, RetrievalSettings

    parser = subparsers.add_parser(
        "eval",
        help="Evaluate tool retrieval (dense, BM25, QTA) on MTRB or your own labelled data.",
        description=(
            "Evaluate tool retrieval on a labelled dataset and print S@k and NDCG@k, with the "
            "paper's numbers beside (MTRB). Example: qta eval --dataset mtrb-restbench "
            "--method dense bm25 qta --k 5 10"
        ),
    )
    source = parser.add_argument_group("data (either --dataset or --tools and --queries)")
    source.add_argument("--dataset", help=f"An MTRB subset: {', '.join(DATASETS)}.")
    source.add_argument(
        "--split", default=None, help="MTRB split: test (90 queries, the default) or train."
    )
    source.add_argument(
        "--data-dir",
        type=Path,
        help="Local MTRB directory (default $QTA_MTRB_DIR; else the upstream test sets of "
        "restbench/metatool are downloaded and checksummed).",
    )
    source.add_argument(
        "--text",
        default=None,
        choices=("rewrite", "original"),
        help="MTRB: index the rewritten descriptions (default) or RestBench's original ones.",
    )
    source.add_argument(
        "--include-name",
        action="store_true",
        default=None,
        help="MTRB: index 'name: description'.",
    )
    source.add_argument(
        "--tools", type=Path, help='Tools JSON/JSONL: {"id", "name", "description"}.'
    )
    source.add_argument(
        "--queries", type=Path, help='Queries JSON/JSONL: {"query", "tools": [ids]}.'
    )
    source.add_argument(
        "--names-from-ids",
        action="store_true",
        help="--tools: use a tool's id as its name when the record has no 'name' (by default "
        "such a record is an error).",
    )
    source.add_argument(
        "--name",
        help="The dataset's name in the table and the JSON (default: the --dataset name, or "
        "the queries file's name without extension).",
    )
    parser.add_argument(
        "--method",
        nargs="+",
        default=list(DEFAULT_METHODS),
        metavar="METHOD",
        help=f"One or more of {', '.join(METHODS)} (default: {' '.join(DEFAULT_METHODS)}; "
        "qta-paper generates a rewrite per query: minutes on a CPU).",
    )
    parser.add_argument(
        "--adapter",
        type=Path,
        help="qta: an adapter directory written by `qta train` (its labelled examples and "
        "fitted weights); qta-paper: its DPO-aligned rewriter.",
    )
    parser.add_argument("--k", nargs="+", type=int, default=[5, 10], help="Cutoffs (default 5 10).")
    parser.add_argument("--batch-size", type=int, default=16, help="Queries per batch.")
    parser.add_argument(
        "--tool-disjoint",
        type=int,
        default=0,
        metavar="DRAWS",
        help="MTRB only: also run the tool-disjoint protocol with this many draws (10 labels "
        "each from one half of the tools; evaluation on test queries none of whose tools a "
        "label names), fitting a fresh retriever per draw, against dense.",
    )
    parser.add_argument(
        "--label-fit",
        choices=LABEL_FITS,
        default=RetrievalSettings().label_fit,
        help="How the tool-disjoint draws fit the labels (RetrievalSettings.label_fit).",
    )
    parser.add_argument("--output", type=Path, help="Write reports (with per-query rankings) here.")
    parser.add_argument("--no-progress", action="store_true", help="Hide progress bars.")
    parser.set_defaults(handler=run_eval)


def _load_eval_dataset(args: argparse.Namespace) -> Any:
    from qta_integrations.evaluation.datasets import load_mtrb, load_retrieval_dataset

    own = args.tools is not None or args.queries is not None
    if args.dataset is not None and own:
        msg = "Pass either --dataset or --tools/--queries, not both."
        raise CLIError(msg)
    mtrb_only = [
        flag
        for flag, value in (
            ("--split", args.split),
            ("--text", args.text),
            ("--include-name", args.include_name),
            ("--data-dir", args.data_dir),
        )
        if value is not None
    ]
    if own and mtrb_only:
        msg = (
            f"{', '.join(mtrb_only)} apply only to --dataset mtrb-*, not to --tools/--queries; "
            "drop them (your files are indexed as they are)."
        )
        raise CLIError(msg)
    if args.dataset is not None and args.names_from_ids:
        msg = "--names-from-ids applies only to --tools files; drop it with --dataset."
        raise CLIError(msg)
    if args.dataset is not None:
        if args.dataset not in DATASETS:
            msg = f"Unknown dataset {args.dataset!r}; choose one of: {', '.join(DATASETS)}."
            raise CLIError(msg)
        try:
            dataset = load_mtrb(
                args.dataset.removeprefix("mtrb-"),
                args.split or "test",
                args.data_dir,
                text=args.text or "rewrite",
                include_name=bool(args.include_name),
            )
        except OSError as err:
            if isinstance(err, FileNotFoundError):
                raise
            msg = (
                f"could not download {args.dataset} ({err.__cause__ or err}). Pass --data-dir "
                "DIR or set QTA_MTRB_DIR=DIR, DIR being a local MTRB directory "
                "(<subset>/<file>, e.g. restbench/tmdb_tool_rewrite.json)."
            )
            raise CLIError(msg) from err
        return dataset if args.name is None else replace(dataset, name=args.name)
    if args.tools is None or args.queries is None:
        msg = (
            "Say what to evaluate on: --dataset "
            f"{{{','.join(DATASETS)}}}, or both --tools FILE and --queries FILE."
        )
        raise CLIError(msg)
    return load_retrieval_dataset(
        args.tools, args.queries, name=args.name, names_from_ids=args.names_from_ids
    )


def _check_output_file(path: Path) -> None:
    """Refuse an ``--output`` that cannot be written, before any work is done."""
    if path.is_dir():
        msg = (
            f"--output must be a file path, got the directory {str(path)!r}; pass e.g. "
            f"{str(path / 'results.json')!r}."
        )
        raise CLIError(msg)
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        msg = f"--output {str(path)!r} cannot be created: {str(parent)!r} is a file."
        raise CLIError(msg)


def run_eval(args: argparse.Namespace) -> int:
    """``qta eval``: build each method's pipeline, evaluate it, print and save the reports."""
    from qta_integrations.evaluation.harness import (
        METHODS,
        build_pipeline,
        evaluate,
        format_reports,
    )

    overrides: Overrides = getattr(args, "overrides", None) or Overrides()
    methods = list(dict.fromkeys(args.method))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        msg = f"Unknown method(s) {unknown}; choose from: {', '.join(METHODS)}."
        raise CLIError(msg)
    if any(k < 1 for k in args.k):
        msg = f"--k takes positive cutoffs, got {args.k}."
        raise CLIError(msg)
    if args.batch_size < 1:
        msg = f"--batch-size must be >= 1, got {args.batch_size}."
        raise CLIError(msg)
    if args.adapter is not None and not {"qta", "qta-paper"} & set(methods):
        msg = "--adapter only applies to --method qta or qta-paper; add one to --method."
        raise CLIError(msg)
    if args.adapter is not None and not args.adapter.exists():
        msg = f"No adapter directory at {str(args.adapter)!r}."
        raise CLIError(msg)
    if args.output is not None:
        _check_output_file(args.output)
    dataset = _load_eval_dataset(args)
    print(f"{dataset!r}", file=sys.stderr)
    reports = []
    for method in methods:
        kwargs: dict[str, Any] = {}
        if method in ("qta", "qta-paper"):
            kwargs["adapter"] = args.adapter
            kwargs["rewriter"] = overrides.rewriter if args.adapter is None else None
        embeddings = overrides.embeddings if method != "bm25" else None
        start = time.perf_counter()
        pipeline = build_pipeline(
            method,
            dataset.catalog,
            embeddings=embeddings,
            show_progress=not args.no_progress,
            **kwargs,
        )
        setup_seconds = time.perf_counter() - start
        info: dict[str, Any] = {"setup_seconds": setup_seconds, **dict(dataset.metadata)}
        info.update(
            settings=pipeline.settings.to_dict(),
            examples=len(pipeline.memory),
            rewriter=pipeline.rewriter_reference,
            adapter=str(args.adapter) if args.adapter is not None else None,
        )
        reports.append(
            evaluate(
                pipeline,
                dataset,
                ks=args.k,
                method=method,
                batch_size=args.batch_size,
                show_progress=not args.no_progress,
                info=info,
            )
        )
    print(format_reports(reports))
    disjoint = _run_tool_disjoint(args, dataset, overrides) if args.tool_disjoint else None
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "command": getattr(args, "argv", None),
            "reports": [r.to_dict() for r in reports],
        }
        if disjoint is not None:
            payload["tool_disjoint"] = disjoint.to_dict()
        args.output.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        print(f"Wrote {args.output}", file=sys.stderr)
    return 0


def _run_tool_disjoint(args: argparse.Namespace, dataset: Any, overrides: Overrides) -> Any:
    """``qta eval --tool-disjoint DRAWS``: fit per draw, print fitted against dense."""
    from qta_integrations.evaluation import (
        evaluate_tool_disjoint,
        load_mtrb,
        tool_disjoint_draws,
    )

    if args.tool_disjoint < 1:
        msg = f"--tool-disjoint takes a number of draws >= 1, got {args.tool_disjoint}."
        raise CLIError(msg)
    if not (args.dataset or "").startswith("mtrb-"):
        msg = (
            "--tool-disjoint needs --dataset mtrb-*: the labels are drawn from the subset's "
            "training and test queries."
        )
        raise CLIError(msg)
    train = load_mtrb(args.dataset.removeprefix("mtrb-"), "train", args.data_dir)
    draws = tool_disjoint_draws(dataset, train, draws=args.tool_disjoint)
    report = evaluate_tool_disjoint(
        draws, embeddings=overrides.embeddings, ks=args.k, label_fit=args.label_fit
    )
    sizes = [len(d.evaluation) for d in draws]
    print(
        f"\nTool-disjoint protocol, {len(draws)} draws of {len(draws[0].labels)} labels "
        f"(label_fit={args.label_fit!r}; {min(sizes)}-{max(sizes)} evaluation queries a draw):"
    )
    for k in args.k:
        metric = f"S@{k}"
        summary = report.summary(metric)
        print(
            f"  {metric}: fitted {summary['fitted_mean']:.2f} +/- {summary['fitted_std']:.2f}"
            f"  base {summary['base_mean']:.2f} +/- {summary['base_std']:.2f}"
            f"  dense {summary['dense_mean']:.2f}"
            f"  fitted - base {summary['diff_mean']:+.2f} (worst draw {summary['diff_min']:+.2f})"
        )
    return report


# -- demo -------------------------------------------------------------------------------

_DEMO_TOOL_ROWS: list[tuple[str, str, str]] = [
    (
        "weather",
        "get_weather",
        "Current weather and a 7-day forecast for a city: temperature, rain, wind.",
    ),
    (
        "stock_quote",
        "get_stock_quote",
        "Latest price and daily change of a stock by ticker symbol.",
    ),
    (
        "currency",
        "convert_currency",
        "Convert an amount of money between two currencies at today's exchange rate.",
    ),
    (
        "route",
        "plan_route",
        "Driving, walking or transit directions and travel time between two places.",
    ),
    (
        "flights",
        "search_flights",
        "Search flights between two airports on a date, with prices and airlines.",
    ),
    (
        "hotels",
        "search_hotels",
        "Find hotels in a city for given dates, with price per night and rating.",
    ),
    ("translate", "translate_text", "Translate text from one language into another."),
    ("calendar", "create_event", "Create a calendar event with a title, date, time and attendees."),
    ("email", "send_email", "Send an email with a subject and body to one or more recipients."),
    (
        "movie_search",
        "search_movie",
        "Search movies by title and get their ids, release dates and ratings.",
    ),
    (
        "movie_credits",
        "get_movie_credits",
        "Cast and crew (director, writers, actors) of a movie, by movie id.",
    ),
    (
        "recipes",
        "find_recipes",
        "Find cooking recipes by ingredients or dish name, with steps and cooking time.",
    ),
    ("news", "get_news", "Latest news headlines on a topic or from a country."),
    (
        "calculator",
        "calculate",
        "Evaluate a mathematical expression, e.g. percentages, square roots, unit sums.",
    ),
    ("wikipedia", "search_wikipedia", "Look up an encyclopedia article and return its summary."),
]
DEMO_TOOLS: list[dict[str, str]] = [
    {"id": i, "name": n, "description": d} for i, n, d in _DEMO_TOOL_ROWS
]
"""The demo's built-in catalogue (15 tools)."""

DEMO_EXAMPLES: list[dict[str, Any]] = [
    {"query": "Let Anna know the meeting moved to 3pm", "tools": ["email"]},
    {"query": "Message the team that the release is delayed", "tools": ["email"]},
    {"query": "Who invented the telephone?", "tools": ["wikipedia"]},
    {"query": "What is the tallest mountain in Africa?", "tools": ["wikipedia"]},
    {"query": "Any cheap flights from Madrid to Lisbon on Tuesday?", "tools": ["flights"]},
    {"query": "Which airline flies Oslo to London tomorrow morning?", "tools": ["flights"]},
    {"query": "Who starred in Inception?", "tools": ["movie_search", "movie_credits"]},
    {"query": "What is 100 dollars in pounds?", "tools": ["currency"]},
]
"""Labelled queries the demo teaches the retriever before running the queries."""

DEMO_QUERIES: list[str] = [
    "Cheapest way to get from Paris to Berlin on Monday",
    "Do I need an umbrella in Lisbon tomorrow?",
    "Who directed the movie Parasite?",
    "How many yen do I get for 250 euros?",
    "Book me somewhere to sleep in Rome next weekend.",
]
"""Queries the demo runs when none are given."""


def add_demo_parser(subparsers: Any) -> None:
    """Register ``qta demo``."""
    parser = subparsers.add_parser(
        "demo",
        help="Index 15 built-in tools, teach 8 labelled queries, show the top tools.",
        description=(
            "Index a small built-in tool list with all-MiniLM-L6-v2, attach 8 labelled queries "
            "to their tools and fit the fusion on them (or load --adapter DIR), then print the "
            "fitted weights and the top tools of a few queries. "
            "Example: qta demo --query 'Who directed Parasite?'"
        ),
    )
    parser.add_argument(
        "--query", action="append", help="A query to run (repeatable; default: 4 examples)."
    )
    parser.add_argument("--k", type=int, default=3, help="Tools shown per query (default 3).")
    parser.add_argument("--adapter", type=Path, help="A trained adapter directory.")
    parser.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """``qta demo``: index 15 tools, learn from 8 labelled queries, retrieve."""
    from qta_integrations.pipeline import QTAPipeline
    from qta_integrations.validation import validate_query

    overrides: Overrides = getattr(args, "overrides", None) or Overrides()
    if args.adapter is not None and not args.adapter.exists():
        msg = f"No adapter directory at {str(args.adapter)!r}."
        raise CLIError(msg)
    if args.k < 1:
        msg = f"--k must be >= 1, got {args.k}."
        raise CLIError(msg)
    for query in args.query or ():
        validate_query(query, name="--query")  # before any model is loaded
    print(f"Indexing {len(DEMO_TOOLS)} tools...", file=sys.stderr)
    if args.adapter is not None:  # its rewriter, fitted weights and labelled examples
        from qta_integrations import persist

        pipeline = persist.load(
            args.adapter, tools=DEMO_TOOLS, embeddings=overrides.embeddings, k=args.k
        )
    else:
        pipeline = QTAPipeline.from_tools(
            DEMO_TOOLS,
            embeddings=overrides.embeddings,
            rewriter=overrides.rewriter or "default",
            k=args.k,
        )
    if args.adapter is None:
        print(f"Learning from {len(DEMO_EXAMPLES)} labelled queries...", file=sys.stderr)
        pipeline.add_examples(DEMO_EXAMPLES)
    weights = ", ".join(f"{n}={pipeline.fusion.weight(n):g}" for n in pipeline.fusion.active())
    print(f"Fused weights: {weights} ({len(pipeline.memory)} labelled queries in memory)")
    queries = args.query or DEMO_QUERIES
    for result in pipeline.retrieve_batch(queries):
        print(f"\nQuery:   {result.query}")
        if result.rewrites:
            print(f"Rewrite: {result.rewrites[0]}")
        for item in result.tools:
            print(f"  {item.rank}. {item.tool.id:<14} {item.score:6.3f}  {item.tool.description}")
    return 0


# -- entry point ------------------------------------------------------------------------


def _registrars() -> list[Callable[[Any], None]]:
    registrars = []
    for module_name, function_name in SUBCOMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            missing = err.name or ""
            if module_name == missing or module_name.startswith(missing + "."):
                logger.debug("Subcommand module %s is not available; skipped.", module_name)
                continue
            raise
        registrars.append(getattr(module, function_name))
    return registrars


def build_parser() -> argparse.ArgumentParser:
    """The ``qta`` argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="qta",
        description="Query-tool alignment (QTA) for tool retrieval: evaluate, demo, train.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Log at INFO level.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _registrars():
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None, *, overrides: Overrides | None = None) -> int:
    """Run ``qta`` with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Args:
        argv: The arguments, without the program name.
        overrides: Components to use instead of the default models (tests, notebooks).

    Example:
        .. code-block:: python

            from qta_integrations.cli import main

            main(["eval", "--dataset", "mtrb-restbench", "--method", "dense", "bm25"])
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # The one-time conversion of the default rewriter (path, size, time) is worth a line.
    logging.getLogger("qta_integrations.models").setLevel(logging.INFO)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    args.overrides = overrides or Overrides()
    args.argv = ["qta", *argv]
    try:
        return int(handler(args) or 0)
    except (CLIError, OSError, ValueError) as err:
        # Bad input (flags, files, values): one line, no traceback; -v shows the traceback.
        if args.verbose:
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"qta: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
