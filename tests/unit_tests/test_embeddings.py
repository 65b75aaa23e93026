from __future__ import annotations

import numpy as np
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.embeddings import MockEmbedding

from qta_integrations import embeddings as embeddings_module
from qta_integrations.embeddings import (
    LlamaIndexEmbeddingsAdapter,
    resolve_embeddings,
    to_llama_index_embeddings,
)
from qta_integrations.testing import KeywordEmbeddings

TEXTS = ["weather in Paris", "stock price of AAPL"]


def test_none_resolves_to_the_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    sentinel = DeterministicFakeEmbedding(size=4)
    monkeypatch.setattr(embeddings_module, "default_embeddings", lambda: sentinel)
    assert resolve_embeddings(None) is sentinel


def test_langchain_embeddings_pass_through() -> None:
    model = KeywordEmbeddings()
    assert resolve_embeddings(model) is model


def test_llama_index_embeddings_are_adapted() -> None:
    model = MockEmbedding(embed_dim=8)
    adapted = resolve_embeddings(model)
    assert isinstance(adapted, LlamaIndexEmbeddingsAdapter)
    assert adapted.embed_model is model
    assert adapted.embed_query("q") == model.get_query_embedding("q")
    assert adapted.embed_documents(TEXTS) == model.get_text_embedding_batch(TEXTS)


@pytest.mark.parametrize("bad", ["all-MiniLM-L6-v2", 3, object()])
def test_bad_type_names_the_type(bad: object) -> None:
    with pytest.raises(TypeError, match=f"Unsupported embeddings {type(bad).__name__}"):
        resolve_embeddings(bad)


async def test_adapter_round_trip_keeps_vectors() -> None:
    base = KeywordEmbeddings(size=32)
    as_llama = to_llama_index_embeddings(base)
    assert isinstance(as_llama, BaseEmbedding)
    assert as_llama.get_query_embedding(TEXTS[0]) == pytest.approx(base.embed_query(TEXTS[0]))
    back = resolve_embeddings(as_llama)
    assert isinstance(back, Embeddings)
    np.testing.assert_allclose(back.embed_documents(TEXTS), base.embed_documents(TEXTS))
    assert await back.aembed_query(TEXTS[1]) == pytest.approx(base.embed_query(TEXTS[1]))
    docs = await back.aembed_documents(TEXTS)
    np.testing.assert_allclose(docs, base.embed_documents(TEXTS))
    # Unwrapping returns the original LlamaIndex model rather than wrapping twice.
    assert to_llama_index_embeddings(back) is as_llama
    assert to_llama_index_embeddings(as_llama) is as_llama


class RecordingEmbeddings(KeywordEmbeddings):
    """Records the texts of every embed_documents call."""

    def __init__(self, *, pads: bool) -> None:
        super().__init__()
        self.pads_batches = pads
        self.calls: list[list[str]] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return super().embed_documents(texts)


QUERIES = [f"query {'word ' * (i % 7)}number {i}" for i in range(20)]


@pytest.mark.parametrize(
    ("pads", "sizes"), [(True, [8, 8, 4]), (False, [20])], ids=["padding", "not padding"]
)
def test_embed_queries_batches_and_keeps_each_vector(pads: bool, sizes: list[int]) -> None:
    from qta_integrations.embeddings import embed_queries

    model = RecordingEmbeddings(pads=pads)
    vectors = embed_queries(model, QUERIES)
    assert vectors == [model.embed_query(q) for q in QUERIES]  # in the queries' order
    assert [len(c) for c in model.calls] == sizes
    if pads:  # length-sorted passes, so each pads to texts of about its own length
        lengths = [len(t) for call in model.calls for t in call]
        assert lengths == sorted(lengths)
    assert embed_queries(model, QUERIES[:1]) == [model.embed_query(QUERIES[0])]
