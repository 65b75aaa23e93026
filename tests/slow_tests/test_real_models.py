"""Tests on the real embedded models: all-MiniLM-L6-v2 and SmolLM2-135M-Instruct (offline).

The GGUF -> safetensors conversion runs once per session into a temporary cache (about 40 s);
the other tests use the user's cache when it already holds the converted model, and otherwise
the session's conversion, so the model is never converted twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from qta_integrations import HuggingFaceRewriter, QTARetriever, models
from qta_integrations.embeddings import default_embeddings
from qta_integrations.fusion import FusionWeights
from qta_integrations.settings import RetrievalSettings
from tests.conftest import TOOLS as BASE_TOOLS

pytestmark = pytest.mark.slow

TOOLS = [
    *BASE_TOOLS,
    {
        "id": "flights",
        "name": "search_flights",
        "description": "Search flights between two airports on a date.",
    },
    {
        "id": "recipes",
        "name": "find_recipes",
        "description": "Find cooking recipes that use given ingredients.",
    },
    {
        "id": "currency",
        "name": "convert_currency",
        "description": "Convert an amount of money between currencies.",
    },
    {"id": "news", "name": "get_headlines", "description": "Latest news headlines on a topic."},
]


@pytest.fixture(scope="session")
def converted_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.default_rewriter_path(cache=tmp_path_factory.mktemp("qta-cache"))


@pytest.fixture(scope="session")
def rewriter_path(converted_in_tmp: Path) -> Path:
    user_cache = models.cache_dir() / converted_in_tmp.name
    if (user_cache / "config.json").exists() and (user_cache / "model.safetensors").exists():
        return user_cache
    return converted_in_tmp


def test_default_embeddings_are_384_dim_and_normalised() -> None:
    embeddings = default_embeddings()
    query = np.asarray(embeddings.embed_query("weather in Paris"))
    docs = np.asarray(embeddings.embed_documents(["Current weather for a city.", "Stock price."]))
    assert query.shape == (384,)
    assert docs.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-4)
    assert float(np.linalg.norm(query)) == pytest.approx(1.0, abs=1e-4)
    assert float(docs[0] @ query) > float(docs[1] @ query)
    assert default_embeddings() is embeddings  # cached: loaded once


def test_gguf_conversion_gives_a_loadable_unquantized_model(converted_in_tmp: Path) -> None:
    from transformers import AutoModelForCausalLM

    assert {"config.json", "model.safetensors"} <= {p.name for p in converted_in_tmp.iterdir()}
    assert not [p for p in converted_in_tmp.parent.iterdir() if p.name.startswith(".")]
    model = AutoModelForCausalLM.from_pretrained(converted_in_tmp)
    assert getattr(model, "is_quantized", False) is False
    assert getattr(model, "hf_quantizer", None) is None
    assert "quantization_config" not in model.config.to_dict()
    assert sum(p.numel() for p in model.parameters()) > 100_000_000  # 135M parameters
    # A second call finds the checkpoint and converts nothing.
    assert models.default_rewriter_path(cache=converted_in_tmp.parent) == converted_in_tmp


@pytest.fixture(scope="module")
def retriever(rewriter_path: Path) -> Iterator[QTARetriever]:
    rewriter = HuggingFaceRewriter.from_pretrained(rewriter_path)
    # The paper's fusion (0.5 query + 0.5 rewrite, raw cosine): the rewriter runs on every query.
    settings = RetrievalSettings(fusion=FusionWeights.paper())
    built = QTARetriever(tools=TOOLS, rewriter=rewriter, k=3, settings=settings)
    try:
        yield built
    finally:
        built.pipeline.index.vectorstore.delete_collection()  # type: ignore[attr-defined]


QUERIES = {
    "What will the weather be like in Paris tomorrow?": "weather",
    "How much is one euro in yen?": "currency",
    "Find me a flight from Boston to Denver on May 3": "flights",
}


def test_real_retriever_finds_the_obvious_tools(retriever: QTARetriever) -> None:
    # One batched generation for all queries (the costly part on a CPU).
    results = retriever.batch(list(QUERIES))
    for docs, expected in zip(results, QUERIES.values(), strict=True):
        assert len(docs) == 3
        assert docs[0].id == expected
        rewrite = docs[0].metadata["rewritten_query"]
        assert isinstance(rewrite, str) and rewrite.strip()
        assert set(docs[0].metadata["signals"]) == {"dense", "rewrite"}
    # The rewrites are cached, so a single query now costs no generation and agrees.
    first = next(iter(QUERIES))
    assert [d.id for d in retriever.invoke(first)] == [d.id for d in results[0]]


def test_real_retriever_learns_from_a_few_labelled_queries_without_a_rewriter() -> None:
    # From dense alone, and with the labels trusted (no shrinkage toward the start): four labels
    # are then enough. By default the fit holds to its start unless the labels gain more than
    # moving costs (here they only move NDCG on the held-out examples).
    retriever = QTARetriever(
        tools=TOOLS,
        rewriter=None,
        k=3,
        settings=RetrievalSettings(fusion=FusionWeights(), label_shrinkage=0.0),
    )
    try:
        paraphrase = "How do I get to the airport by car?"
        # Measured with MiniLM: the word "airport" pulls the flight search above the route
        # planner, so plain dense retrieval gets this query wrong.
        assert [d.id for d in retriever.invoke(paraphrase)][:2] == ["flights", "route"]
        assert retriever.pipeline.fusion.dense_only

        retriever.add_examples(
            [
                {"query": "Driving directions to the airport from my hotel", "tools": ["route"]},
                {"query": "Fastest way to drive to JFK airport", "tools": ["route"]},
                {
                    "query": "How long is the car ride from the airport to downtown?",
                    "tools": ["route"],
                },
                {"query": "Cheapest flight to Rome next Friday", "tools": ["flights"]},
            ]
        )
        fit = retriever.pipeline.last_fit
        assert fit is not None and fit.num_examples == 4
        assert fit.score > fit.default_score  # better than dense on the held-out examples
        assert not retriever.pipeline.fusion.dense_only
        assert not retriever.pipeline.fusion.uses_rewrite

        docs = retriever.invoke(paraphrase)
        assert docs[0].id == "route"
        assert docs[0].metadata["rewritten_query"] is None  # no rewriter, never a rewrite
        assert set(docs[0].metadata["signals"]) == set(retriever.pipeline.fusion.active())
        # Queries unlike the examples keep their tool.
        assert retriever.invoke("Book me on a plane to Chicago Friday")[0].id == "flights"
        for query, expected in QUERIES.items():
            assert retriever.invoke(query)[0].id == expected
        assert retriever.pipeline.rewriter is None
    finally:
        retriever.pipeline.index.vectorstore.delete_collection()  # type: ignore[attr-defined]
