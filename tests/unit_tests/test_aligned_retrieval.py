"""Aligned retrieval: example memory on every backend, leave-one-out fitting, fusion, training.

Everything runs on `KeywordEmbeddings` (bag of words: shared words mean higher similarity) and
the six tools of ``tests/conftest.py``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.vectorstores import InMemoryVectorStore
from llama_index.core import VectorStoreIndex

import qta_integrations.fusion as fusion_module
from qta_integrations import QTARetriever
from qta_integrations.adapter import MANIFEST_NAME
from qta_integrations.embeddings import to_llama_index_embeddings
from qta_integrations.fusion import (
    DEFAULT_GRID,
    FusionWeights,
    fit_weights,
    fuse,
    objective,
)
from qta_integrations.memory import ExampleMemory, MemoryExample
from qta_integrations.pipeline import QTAPipeline
from qta_integrations.signals import (
    MemorySignal,
    PriorSignal,
    Signal,
    SignalContext,
    SignalScores,
)
from qta_integrations.stores import ExactToolIndex, IndexHit, LlamaIndexToolIndex
from qta_integrations.testing import FakeRewriter, KeywordEmbeddings
from qta_integrations.tools import ToolCatalog
from qta_integrations.training import QTATrainer, QTATrainingConfig
from tests.conftest import TOOLS, CountingRewriter

# The plain query shares "need an umbrella on my route" with plan_route's neighbourhood, not
# with the weather tool: dense ranks "route" first. A labelled example worded like it, pointing
# at the weather tool, lets the memory signal put "weather" first.
QUERY = "will I need an umbrella on my route tomorrow"
EXAMPLES: list[dict[str, Any]] = [
    {"query": "do I need an umbrella on my route today", "tools": ["weather"]},
    {"query": "what does ACME trade at", "tools": ["stock_quote"]},
]
MEMORY_ONLY = FusionWeights(memory=5.0)

BACKENDS = ["chroma", "in_memory_vectorstore", "llama_index", "exact"]


def _tool_dicts() -> list[dict[str, str]]:
    return [dict(t) for t in TOOLS]


@pytest.fixture(autouse=True)
def no_shrinkage(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about what the held-out views let a fit see, on three to six examples;
    how strongly a fit holds to its base is tested on its own (test_lexical_base.py)."""
    monkeypatch.setattr(fusion_module, "FREE_SHRINKAGE", 0.0)
    monkeypatch.setattr(fusion_module, "LABEL_SHRINKAGE", 0.0)


@pytest.fixture
def build() -> Iterator[Callable[..., QTAPipeline]]:
    """Builds a pipeline (no rewriter) on a fresh store of the given backend; closes them all."""
    built: list[QTAPipeline] = []

    def make(backend: str, **kwargs: Any) -> QTAPipeline:
        embeddings = KeywordEmbeddings()
        pipeline: QTAPipeline
        if backend == "chroma":
            pipeline = QTAPipeline.from_tools(
                _tool_dicts(), embeddings=embeddings, rewriter=None, **kwargs
            )
        elif backend == "in_memory_vectorstore":
            pipeline = QTAPipeline.from_tools(
                _tool_dicts(), vectorstore=InMemoryVectorStore(embeddings), rewriter=None, **kwargs
            )
        elif backend == "llama_index":
            index = VectorStoreIndex(nodes=[], embed_model=to_llama_index_embeddings(embeddings))
            pipeline = QTAPipeline.from_tools(
                _tool_dicts(), llama_index=index, rewriter=None, **kwargs
            )
            assert isinstance(pipeline.index, LlamaIndexToolIndex)
        else:
            catalog = ToolCatalog.from_dicts(_tool_dicts())
            pipeline = QTAPipeline(catalog, ExactToolIndex(embeddings), None, **kwargs)
        built.append(pipeline)
        return pipeline

    yield make
    for pipeline in built:
        pipeline.index.close()


def _example_ids(pipeline: QTAPipeline) -> set[str]:
    listed = pipeline.index.list_entries("example")
    assert listed is not None, f"{type(pipeline.index).__name__} cannot list its entries"
    return set(listed)


# -- example memory on every backend ----------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_add_examples_stores_one_entry_per_example(
    build: Callable[..., QTAPipeline], backend: str
) -> None:
    pipeline = build(backend)
    assert _example_ids(pipeline) == set()
    added = pipeline.add_examples(EXAMPLES, fit=False)
    assert [(e.query, e.tool_ids) for e in added] == [
        (e["query"], tuple(e["tools"])) for e in EXAMPLES
    ]
    assert _example_ids(pipeline) == {e.entry_id for e in pipeline.memory}
    assert len(_example_ids(pipeline)) == len(EXAMPLES)
    assert set(pipeline.index.list_entries("tool") or ()) == {t["id"] for t in TOOLS}
    # Adding the same examples again adds nothing, in memory or in the store.
    assert pipeline.add_examples(EXAMPLES, fit=False) == []
    assert len(_example_ids(pipeline)) == len(pipeline.memory) == len(EXAMPLES)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_query_close_to_an_example_gets_its_tools_through_memory(
    build: Callable[..., QTAPipeline], backend: str
) -> None:
    pipeline = build(backend, fusion=MEMORY_ONLY)
    assert pipeline.retrieve(QUERY).tool_ids[0] == "route"  # no examples yet: dense decides
    pipeline.add_examples(EXAMPLES, fit=False)
    result = pipeline.retrieve(QUERY, k=3)
    assert result.tool_ids[0] == "weather"
    # Examples are not tools: they never appear in the results.
    assert all(t in pipeline.catalog for t in result.tool_ids)
    assert len(result.tools) == 3
    # The default (dense only) fusion on the same store ignores the memory.
    pipeline.settings = pipeline.settings.replace(fusion=FusionWeights())
    assert pipeline.retrieve(QUERY).tool_ids[0] == "route"


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_dict_round_trip(build: Callable[..., QTAPipeline], backend: str) -> None:
    original = build(backend, k=3)
    original.add_examples(EXAMPLES, fit=False)
    original.settings = original.settings.replace(fusion=MEMORY_ONLY)
    state = json.loads(json.dumps(original.state_dict()))  # JSON-serialisable
    assert state["examples"] == [{"query": e["query"], "tools": e["tools"]} for e in EXAMPLES]

    restored = build(backend)
    assert _example_ids(restored) == set()
    restored.load_state_dict(state)
    assert restored.settings == original.settings
    assert restored.fusion == MEMORY_ONLY and restored.k == 3
    assert restored.memory.to_list() == original.memory.to_list()
    assert _example_ids(restored) == _example_ids(original)
    assert restored.retrieve(QUERY).tool_ids == original.retrieve(QUERY).tool_ids
    assert restored.retrieve(QUERY).tool_ids[0] == "weather"


@pytest.mark.parametrize("backend", BACKENDS)
def test_remove_examples_deletes_their_entries(
    build: Callable[..., QTAPipeline], backend: str
) -> None:
    pipeline = build(backend, fusion=MEMORY_ONLY)
    pipeline.add_examples(EXAMPLES, fit=False)
    removed = pipeline.remove_examples([EXAMPLES[1]["query"]], fit=False)
    assert [e.query for e in removed] == [EXAMPLES[1]["query"]]
    assert [e.query for e in pipeline.memory] == [EXAMPLES[0]["query"]]
    assert _example_ids(pipeline) == {pipeline.memory[0].entry_id}
    assert pipeline.retrieve(QUERY).tool_ids[0] == "weather"

    pipeline.remove_examples(EXAMPLES[0]["query"])  # and refit: nothing left, back to dense
    assert len(pipeline.memory) == 0
    assert _example_ids(pipeline) == set()
    assert pipeline.fusion == FusionWeights()
    assert pipeline.retrieve(QUERY).tool_ids[0] == "route"
    assert pipeline.remove_examples(["never added"], fit=False) == []


# -- leave-one-out: an example never sees itself ---------------------------------------------

# Each query shares words only with a *wrong* tool, and with no other example: the one piece of
# evidence for its gold tool is its own memory entry (and its own share of the prior).
SELF_ONLY: list[dict[str, Any]] = [
    {"query": "email me about oslo", "tools": ["weather"]},
    {"query": "translate apple", "tools": ["stock_quote"]},
    {"query": "calendar for bob", "tools": ["email"]},
]
# The same, each with a reworded twin: now every example has evidence from another one.
WITH_TWINS: list[dict[str, Any]] = [
    *SELF_ONLY,
    {"query": "email me about oslo today", "tools": ["weather"]},
    {"query": "translate apple please", "tools": ["stock_quote"]},
    {"query": "calendar for bob now", "tools": ["email"]},
]


class SpySignal(Signal):
    """Wraps a signal, records the contexts it scores; optionally hides the exclusions."""

    def __init__(self, inner: Signal, *, ignore_exclude: bool = False) -> None:
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]
        self.ignore_exclude = ignore_exclude
        self.contexts: list[SignalContext] = []

    def scores(self, context: SignalContext) -> list[SignalScores]:
        self.contexts.append(context)
        if self.ignore_exclude:
            context = dataclasses.replace(context, exclude=())
        return self.inner.scores(context)


def _exact_pipeline(**kwargs: Any) -> QTAPipeline:
    # A dense base: these tests are about what the labels add to it.
    kwargs.setdefault("fusion", FusionWeights())
    catalog = ToolCatalog.from_dicts(_tool_dicts())
    return QTAPipeline(catalog, ExactToolIndex(KeywordEmbeddings()), None, **kwargs)


def test_an_example_whose_only_evidence_is_itself_keeps_the_default_weights() -> None:
    pipeline = _exact_pipeline()
    spy = SpySignal(pipeline.signals["memory"])
    pipeline.signals["memory"] = spy
    pipeline.add_examples(SELF_ONLY)
    fit = pipeline.last_fit
    assert fit is not None and fit.num_examples == 3
    assert pipeline.fusion == FusionWeights()
    assert fit.score == fit.default_score
    # Every example was scored twice: without its own entry (covered), and without every
    # example sharing a tool with it (uncovered); here no two examples share a tool.
    (context,) = spy.contexts
    queries = [e["query"] for e in SELF_ONLY]
    assert list(context.queries) == queries + queries
    own = [frozenset({e.entry_id}) for e in pipeline.memory]
    assert list(context.exclude) == own + own
    # Once fitted, retrieval excludes nothing.
    pipeline.settings = pipeline.settings.replace(fusion=MEMORY_ONLY)
    pipeline.retrieve("email me about oslo")
    assert spy.contexts[-1].excluded(0) == frozenset()


def test_the_exclusion_is_what_keeps_the_default() -> None:
    # Control: the same fit with each example allowed to see itself learns to trust memory
    # (ungated, as label_fit="labelled" may: the gate reads the exclusions too).
    pipeline = _exact_pipeline(label_fit="labelled")
    pipeline.signals["memory"] = SpySignal(pipeline.signals["memory"], ignore_exclude=True)
    pipeline.add_examples(SELF_ONLY)
    assert pipeline.fusion.memory > 0
    assert pipeline.last_fit is not None
    assert pipeline.last_fit.score > pipeline.last_fit.default_score


def test_the_uncovered_view_sees_each_examples_tools_as_unlabelled() -> None:
    pipeline = _exact_pipeline()
    spy = SpySignal(pipeline.signals["prior"])
    pipeline.signals["prior"] = spy
    pipeline.add_examples(WITH_TWINS)
    (context,) = spy.contexts
    n = len(WITH_TWINS)
    for position, example in enumerate(pipeline.memory):
        own = frozenset({example.entry_id})
        assert context.excluded(position) == own and context.unlabelled(position) == frozenset()
        assert context.excluded(n + position) == own
        assert context.unlabelled(n + position) == frozenset(example.tool_ids)


def test_the_label_signals_see_unlabelled_tools_as_such() -> None:
    memory = ExampleMemory()
    memory.add([("umbrella in oslo", ("weather",)), ("price of acme", ("stock_quote",))])
    own, other = memory
    hits = [
        IndexHit(own.entry_id, 0.9, "example", own.tool_ids),
        IndexHit(other.entry_id, 0.4, "example", other.tool_ids),
    ]
    context = SignalContext(
        queries=["umbrella in bergen"],
        entry_hits=[hits],
        rewrite_hits=[None],
        exclude_tools=[frozenset({"weather"})],
    )
    (scores,) = MemorySignal().scores(context)
    assert scores.scores == {"stock_quote": pytest.approx(0.4)}
    (prior,) = PriorSignal(lambda: memory).scores(context)
    assert prior.scores == {"stock_quote": 0.5}


@pytest.mark.parametrize("label_fit", ["safe", "labelled"])
def test_evidence_from_other_examples_is_learned(label_fit: str) -> None:
    pipeline = _exact_pipeline(label_fit=label_fit)
    pipeline.add_examples(WITH_TWINS)
    assert pipeline.fusion.memory > 0
    assert pipeline.last_fit is not None
    assert pipeline.last_fit.score > pipeline.last_fit.default_score
    assert pipeline.retrieve("email me about oslo tomorrow").tool_ids[0] == "weather"


def test_the_memory_and_prior_signals_honour_the_exclusions() -> None:
    memory = ExampleMemory()
    memory.add([("umbrella in oslo", ("weather",)), ("price of acme", ("stock_quote",))])
    own, other = memory
    hits = [
        IndexHit(own.entry_id, 0.9, "example", own.tool_ids),
        IndexHit(other.entry_id, 0.4, "example", other.tool_ids),
        IndexHit("route", 0.3, "tool", ("route",)),
    ]
    context = SignalContext(
        queries=[own.query, own.query],
        entry_hits=[hits, hits],
        rewrite_hits=[None, None],
        exclude=[frozenset({own.entry_id}), frozenset()],
    )
    held_out, full = MemorySignal().scores(context)
    assert held_out.scores == {"stock_quote": pytest.approx(0.4)}
    assert full.scores == {"weather": pytest.approx(0.9), "stock_quote": pytest.approx(0.4)}
    assert memory.prior(exclude=[own.entry_id]) == {"stock_quote": 1.0}
    assert memory.expansions(exclude=[own.entry_id]) == {"stock_quote": ["price of acme"]}


# -- the rewriter is called only when its weight is not zero --------------------------------


async def test_no_generation_at_zero_rewrite_weight() -> None:
    rewriter = CountingRewriter({QUERY: "current weather forecast for a city"})
    catalog = ToolCatalog.from_dicts(_tool_dicts())
    pipeline = QTAPipeline(catalog, ExactToolIndex(KeywordEmbeddings()), rewriter)
    assert pipeline.fusion == FusionWeights.base() and not pipeline.fusion.uses_rewrite
    pipeline.retrieve(QUERY)
    pipeline.retrieve_batch([QUERY, "send an email"])
    await pipeline.aretrieve(QUERY)
    await pipeline.aretrieve_batch([QUERY])
    pipeline.add_examples(EXAMPLES)  # fitting without rewrite=True does not generate either
    # Other signals weighted, the rewrite not: still no generation.
    pipeline.settings = pipeline.settings.replace(fusion=FusionWeights(lexical=0.5, memory=1.0))
    assert pipeline.retrieve(QUERY).rewrites == ()
    assert rewriter.generate_calls == 0
    assert rewriter.calls == []

    pipeline.settings = pipeline.settings.replace(fusion=FusionWeights(rewrite=0.5))
    result = pipeline.retrieve(QUERY, k=len(catalog))
    assert result.rewrites == ("current weather forecast for a city",)
    # Every tool's score is now dense + 0.5 x rewrite, and the rewrite favours the weather tool.
    for item in result.tools:
        assert set(item.signals) == {"dense", "rewrite"}
        expected = item.signals["dense"] + 0.5 * item.signals["rewrite"]
        assert item.score == pytest.approx(expected, abs=1e-5)
    assert max(result.tools, key=lambda t: t.signals["rewrite"]).tool.id == "weather"
    assert rewriter.calls == [QUERY]
    assert rewriter.generate_calls == 1
    assert (await pipeline.aretrieve("send an email")).rewrites == ()  # unchanged: no rewrite
    assert rewriter.calls == [QUERY, "send an email"]


def test_a_rewriter_given_by_name_is_not_loaded_at_zero_rewrite_weight() -> None:
    catalog = ToolCatalog.from_dicts(_tool_dicts())
    loads: list[str] = []

    def factory() -> FakeRewriter:
        loads.append("loaded")
        return FakeRewriter()

    pipeline = QTAPipeline(catalog, ExactToolIndex(KeywordEmbeddings()), factory)
    assert pipeline.has_rewriter
    pipeline.retrieve(QUERY)
    pipeline.add_examples(EXAMPLES)
    assert loads == []
    pipeline.settings = pipeline.settings.replace(fusion=FusionWeights.paper())
    pipeline.retrieve(QUERY)
    assert loads == ["loaded"]


# -- training without DPO ---------------------------------------------------------------------


def test_fit_without_dpo_from_one_example_is_fast_and_writes_a_retrieval_only_adapter(
    tmp_path: Path,
) -> None:
    trainer = QTATrainer(
        tools=_tool_dicts(),
        rewriter=None,
        embeddings=KeywordEmbeddings(),
        config=QTATrainingConfig(dpo=False),
    )
    out = tmp_path / "adapter"
    example = [{"query": "do I need an umbrella on my route today", "tools": ["weather"]}]
    started = time.perf_counter()
    fitted = trainer.fit(example, output_dir=out)
    assert time.perf_counter() - started < 1.0
    assert fitted is trainer.pipeline
    assert [e.to_dict() for e in fitted.memory] == example
    assert _example_ids(fitted) == {fitted.memory[0].entry_id}
    assert trainer.pairs == [] and trainer.metrics["rounds"] == []

    files = {p.name for p in out.iterdir()}
    assert MANIFEST_NAME in files
    assert "adapter_model.safetensors" not in files  # retrieval-only: no LoRA weights
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["base_model"] is None
    assert manifest["retrieval"]["examples"] == example

    reloaded = QTARetriever.from_persist_dir(
        out, tools=_tool_dicts(), embeddings=KeywordEmbeddings()
    )
    try:
        assert reloaded.pipeline.fusion == fitted.fusion
        assert reloaded.pipeline.memory.to_list() == fitted.memory.to_list()
        assert _example_ids(reloaded.pipeline) == _example_ids(fitted)
        assert reloaded.invoke(QUERY)  # no rewrite weight: the rewriter is not loaded
    finally:
        reloaded.pipeline.index.close()


def test_a_reloaded_adapter_keeps_learned_weights(tmp_path: Path) -> None:
    trainer = QTATrainer(
        tools=_tool_dicts(),
        rewriter=None,
        embeddings=KeywordEmbeddings(),
        config=QTATrainingConfig(dpo=False),
    )
    fitted = trainer.fit(WITH_TWINS, output_dir=tmp_path / "adapter")
    assert fitted.fusion != FusionWeights()
    assert trainer.metrics["fusion"]["weights"] == fitted.fusion.to_dict()
    reloaded = QTARetriever.from_persist_dir(
        tmp_path / "adapter", tools=_tool_dicts(), embeddings=KeywordEmbeddings(), k=2
    )
    try:
        assert reloaded.pipeline.fusion == fitted.fusion
        assert reloaded.pipeline.k == 2  # an explicit k wins over the saved one
        assert reloaded.pipeline.memory.to_list() == fitted.memory.to_list()
        query = "email me about oslo tomorrow"
        assert fitted.retrieve(query).tool_ids[0] == "weather"
        assert reloaded.invoke(query)[0].id == "weather"
    finally:
        reloaded.pipeline.index.close()


def _fit_retrieval_only(output_dir: Path) -> tuple[QTATrainer, QTAPipeline]:
    trainer = QTATrainer(
        tools=_tool_dicts(),
        rewriter=None,
        embeddings=KeywordEmbeddings(),
        config=QTATrainingConfig(dpo=False),
    )
    return trainer, trainer.fit(WITH_TWINS, output_dir=output_dir)


def test_the_deprecated_rewriter_restore_still_works_and_names_the_new_call(
    tmp_path: Path,
) -> None:
    _, fitted = _fit_retrieval_only(tmp_path / "adapter")
    with pytest.warns(DeprecationWarning, match=r"QTARetriever\.from_persist_dir\(.*tools=tools\)"):
        old = QTARetriever(
            tools=_tool_dicts(), embeddings=KeywordEmbeddings(), rewriter=tmp_path / "adapter"
        )
    new = QTARetriever.from_persist_dir(
        tmp_path / "adapter", tools=_tool_dicts(), embeddings=KeywordEmbeddings()
    )
    try:
        for reloaded in (old, new):  # the same fitted state either way
            assert reloaded.pipeline.fusion == fitted.fusion
            assert reloaded.pipeline.memory.to_list() == fitted.memory.to_list()
        query = "email me about oslo tomorrow"
        assert old.invoke(query)[0].id == new.invoke(query)[0].id == "weather"
    finally:
        old.pipeline.index.close()
        new.pipeline.index.close()


def test_an_adapter_needs_its_tools_and_a_retriever_is_never_overwritten(tmp_path: Path) -> None:
    from qta_integrations import persist

    trainer, _ = _fit_retrieval_only(tmp_path / "adapter")
    with pytest.raises(ValueError, match=r"adapter directory .*Pass the tools it was fitted on"):
        persist.load(tmp_path / "adapter", embeddings=KeywordEmbeddings())
    retriever = QTARetriever(tools=_tool_dicts(), embeddings=KeywordEmbeddings(), rewriter=None)
    try:
        retriever.persist(tmp_path / "saved")
    finally:
        retriever.pipeline.index.close()
    with pytest.raises(ValueError, match="holds a saved retriever"):
        trainer.save(tmp_path / "saved")


# -- fuse and fit_weights on hand-made scores ------------------------------------------------


def _scores(scores: dict[str, float], floor: float = 0.0) -> SignalScores:
    return SignalScores(scores, floor)


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        # dense only: the dense order, missing tools never appear
        (FusionWeights(), [("a", 1.0), ("b", 0.5)]),
        # "c" is missing from dense: it gets dense's floor (0.2); "a", "b" get lexical's (-1)
        (FusionWeights(lexical=1.0), [("c", 2.2), ("a", 0.0), ("b", -0.5)]),
        (FusionWeights(lexical=0.25), [("a", 0.75), ("c", 0.7), ("b", 0.25)]),
        # a signal weighted 0 adds nothing, and its candidates are not candidates
        (FusionWeights(memory=1.0), [("a", 1.0), ("b", 0.5)]),
    ],
    ids=["dense", "lexical-1", "lexical-0.25", "memory-not-scored"],
)
def test_fuse_uses_each_signals_floor_for_missing_candidates(
    weights: FusionWeights, expected: list[tuple[str, float]]
) -> None:
    per_signal = {
        "dense": _scores({"a": 1.0, "b": 0.5}, floor=0.2),
        "lexical": _scores({"c": 2.0}, floor=-1.0),
    }
    fused = fuse(per_signal, weights)
    assert [t for t, _ in fused] == [t for t, _ in expected]
    assert [s for _, s in fused] == pytest.approx([s for _, s in expected])


def test_fuse_ties_keep_the_order_of_first_appearance() -> None:
    per_signal = {
        "dense": _scores({"x": 1.0, "y": 1.0, "z": 0.0}),
        "memory": _scores({"z": 1.0}),
    }
    assert [t for t, _ in fuse(per_signal, FusionWeights(memory=1.0))] == ["x", "y", "z"]
    assert fuse({}, FusionWeights()) == []


# One example: dense ranks the gold "g" second (z 0 against 1); memory knows it (1.0).
GOLD_SECOND = {"dense": _scores({"o": 1.0, "g": 0.0}), "memory": _scores({"g": 1.0})}


@pytest.mark.parametrize(
    ("memory_grid", "expected"),
    [
        ((0.0, 0.5, 2.0, 3.0, 10.0), 2.0),  # 0.5 still loses; 2.0 and above all win
        ((10.0, 5.0, 0.0), 5.0),  # the order of the grid does not matter
        ((0.0, 1.0, 1.5, 4.0), 1.5),  # 1.0 only ties "o": the tie keeps "o" first
    ],
)
def test_fit_weights_ties_prefer_the_smallest_weights(
    memory_grid: tuple[float, ...], expected: float
) -> None:
    fit = fit_weights([GOLD_SECOND], [["g"]], grid={"memory": memory_grid})
    assert fit.weights == FusionWeights(memory=expected)
    assert fit.score > fit.default_score
    assert fit.tried == len(memory_grid)
    assert fit.num_examples == 1


@pytest.mark.parametrize(
    "default",
    [FusionWeights(), FusionWeights(memory=1.0), FusionWeights(lexical=0.3, normalize=False)],
    ids=["dense", "memory-1", "raw-lexical"],
)
def test_fit_weights_keeps_the_default_unless_strictly_better(default: FusionWeights) -> None:
    # Dense already ranks the gold first, so nothing can do strictly better.
    per_query = [
        {
            "dense": _scores({"g": 1.0, "o": 0.0}),
            "lexical": _scores({"o": 1.0}),
            "memory": _scores({"o": 1.0}),
        }
    ]
    fit = fit_weights(per_query, [["g"]], default=default)
    assert fit.weights is default
    assert fit.score == fit.default_score == pytest.approx(objective([["g", "o"]], [["g"]]))


@pytest.mark.parametrize(
    ("floor", "expected"),
    [
        (1.0, FusionWeights(lexical=1.0)),  # missing "g" gets 1.0 > o's 0.0: lexical helps
        (0.0, FusionWeights()),  # g 0.9 + 0 still below o 1.0 + 0: no help, default kept
        (-5.0, FusionWeights()),  # the floor pushes the missing gold down: never chosen
    ],
)
def test_fit_weights_gives_missing_candidates_the_signals_floor(
    floor: float, expected: FusionWeights
) -> None:
    # Dense ranks the gold "g" second; lexical scored only "o", so "g" gets lexical's floor.
    per_query = [
        {
            "dense": _scores({"o": 1.0, "g": 0.9}),
            "lexical": _scores({"o": 0.0}, floor=floor),
        }
    ]
    fit = fit_weights(per_query, [["g"]], grid={"lexical": (0.0, 1.0)})
    assert fit.weights == expected
    ranked = fuse(per_query[0], FusionWeights(lexical=1.0))
    assert dict(ranked)["g"] == pytest.approx(0.9 + floor)


def test_fit_weights_ignores_signals_some_examples_lack() -> None:
    with_memory = dict(GOLD_SECOND)
    without_memory = {"dense": _scores({"o": 1.0, "g": 0.0})}
    fit = fit_weights([with_memory, without_memory], [["g"], ["g"]])
    assert fit.weights == FusionWeights()  # memory is not in every example: held at 0
    assert fit.tried == 1


@pytest.mark.parametrize("seed", range(5))
def test_the_vectorised_objective_equals_ranking_and_scoring(seed: int) -> None:
    import numpy as np

    from qta_integrations.fusion import _objectives, candidate_matrix, objective

    rng = np.random.default_rng(seed)
    tools = [f"t{i}" for i in range(30)]
    per_query, golds = [], []
    for _ in range(6):
        # Rounded scores, so that ties (kept in candidate order) happen.
        dense = {t: float(v) for t, v in zip(tools, rng.integers(0, 5, 30) / 4, strict=True)}
        memory = {t: float(rng.integers(0, 3)) for t in rng.choice(tools, 5, replace=False)}
        per_query.append({"dense": _scores(dense), "memory": _scores(memory)})
        golds.append([str(t) for t in rng.choice([*tools, "absent"], 3, replace=False)])
    vectors = np.asarray([[1.0, w] for w in (0.0, 0.25, 0.5, 1.0, 3.0)])
    matrices = [candidate_matrix(s, ["dense", "memory"]) for s in per_query]
    fast = _objectives(matrices, golds, vectors)
    for vector, value in zip(vectors, fast, strict=True):
        rankings = [
            [names[i] for i in np.argsort(-(matrix @ vector), kind="stable")]
            for names, matrix in matrices
        ]
        assert value == pytest.approx(objective(rankings, golds))


# One example, "g" its gold tool. Covered: the memory lifts "g" above "o". Uncovered (its
# labels hidden, "g" is unlabelled): dense ranks "g" first, and the memory lifts a labelled
# tool "x" above it. The lexical signal needs no labels: it scores both views alike.
COVERED = {"dense": _scores({"o": 1.0, "g": 0.0}), "memory": _scores({"g": 1.0})}
UNCOVERED = {"dense": _scores({"g": 1.0, "x": 0.5, "o": 0.0}), "memory": _scores({"x": 1.0})}


def test_the_safe_fit_refuses_label_weights_that_cost_an_unlabelled_tool() -> None:
    golds = [["g"]]
    labelled = fit_weights([COVERED], golds, grid={"memory": (0.0, 2.0)})
    assert labelled.weights == FusionWeights(memory=2.0)
    assert labelled.uncovered_score is None
    safe = fit_weights([COVERED], golds, uncovered=[UNCOVERED], grid={"memory": (0.0, 2.0)})
    assert safe.weights == FusionWeights()
    assert safe.uncovered_score == safe.default_uncovered_score


def test_the_safe_fit_keeps_what_transfers() -> None:
    lexical = {"lexical": _scores({"g": 3.0})}
    covered, uncovered = {**COVERED, **lexical}, {**UNCOVERED, **lexical}
    grid = {"lexical": (0.0, 1.0), "memory": (0.0, 2.0)}
    fit = fit_weights([covered], [["g"]], uncovered=[uncovered], grid=grid)
    # The lexical weight puts "g" first in both views; the memory would add nothing.
    assert fit.weights == FusionWeights(lexical=1.0)
    assert fit.score > fit.default_score
    assert fit.uncovered_score == fit.default_uncovered_score


def test_fit_weights_errors() -> None:
    with pytest.raises(ValueError, match="at least one labelled example"):
        fit_weights([], [])
    with pytest.raises(ValueError, match="1 examples but 2 gold lists"):
        fit_weights([GOLD_SECOND], [["g"], ["o"]])
    with pytest.raises(ValueError, match="uncovered signal scores for 2 examples but 1 gold"):
        fit_weights([GOLD_SECOND], [["g"]], uncovered=[GOLD_SECOND, GOLD_SECOND])


def test_default_grid_covers_every_signal_but_dense() -> None:
    assert set(DEFAULT_GRID) == {"lexical", "labelled_lexical", "memory", "prior", "rewrite"}
    assert all(0.0 in values for values in DEFAULT_GRID.values())


def test_memory_example_records_round_trip() -> None:
    memory = ExampleMemory.from_list(EXAMPLES)
    assert memory.to_list() == EXAMPLES
    assert MemoryExample("q", ("weather",)) not in memory
    assert all(isinstance(e, MemoryExample) for e in memory)
