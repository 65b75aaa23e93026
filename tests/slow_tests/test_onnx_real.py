"""The default encoder on ONNX Runtime against the sentence-transformers model (real MiniLM)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from qta_integrations import QTAPipeline
from qta_integrations.embeddings import default_embeddings
from qta_integrations.encoders import OnnxEmbeddings
from qta_integrations.evaluation import load_mtrb
from qta_integrations.stores import ExactToolIndex
from tests.slow_tests.test_real_models import TOOLS

pytestmark = pytest.mark.slow

QUERIES = [
    "what's the weather like in Lisbon tomorrow",
    "price of MSFT shares",
    "how do I drive from Berlin to Hamburg",
    "say 'good morning' in Japanese",
    "book a meeting with Ana on Friday at 3pm",
    "mail the report to my manager",
    "cheapest flight from JFK to LAX next week",
    "something to cook with eggs and spinach",
    "100 euros in dollars",
    "top stories about electric cars",
]


def _texts() -> list[str]:
    return [f"{t['name']}: {t['description']}" for t in TOOLS] + QUERIES


def test_the_default_is_onnx_fp32() -> None:
    embeddings = default_embeddings()
    assert isinstance(embeddings, OnnxEmbeddings)
    assert embeddings.encoder_identity == {
        "model": "all-MiniLM-L6-v2",
        "backend": "onnxruntime",
        "precision": "fp32",
    }
    vector = np.asarray(embeddings.embed_query("weather in Paris"))
    assert vector.shape == (384,)
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


@pytest.mark.parametrize(
    ("precision", "least", "mean"), [("fp32", 0.9999, 0.9999), ("int8", 0.98, 0.99)]
)
def test_onnx_vectors_agree_with_torch(precision: str, least: float, mean: float) -> None:
    texts = _texts()
    torch_vectors = np.asarray(default_embeddings(backend="torch").embed_documents(texts))
    onnx = default_embeddings(backend="onnx", precision=precision)
    onnx_vectors = np.asarray(onnx.embed_documents(texts))
    cosines = (torch_vectors * onnx_vectors).sum(axis=1)
    assert cosines.min() >= least, cosines.min()
    assert cosines.mean() >= mean, cosines.mean()
    # Queries are embedded one at a time exactly as in a batch (fp32), or nearly (int8).
    alone = np.asarray([onnx.embed_query(q) for q in QUERIES])
    assert (alone * onnx_vectors[len(TOOLS) :]).sum(axis=1).min() >= least


def _top5(embeddings: object, catalog: object, queries: list[str]) -> list[list[str]]:
    pipeline = QTAPipeline(catalog, ExactToolIndex(embeddings), None)  # type: ignore[arg-type]
    return [r.tool_ids for r in pipeline.retrieve_batch(queries, k=5)]


def test_same_top5_as_torch_on_the_fixture_catalogue() -> None:
    from qta_integrations.tools import ToolCatalog

    catalog = ToolCatalog.from_dicts(TOOLS)
    torch_top = _top5(default_embeddings(backend="torch"), catalog, QUERIES)
    assert _top5(default_embeddings(), catalog, QUERIES) == torch_top


def test_same_top5_as_torch_on_mtrb_restbench(mtrb_dir: Path) -> None:
    data = load_mtrb("restbench", data_dir=mtrb_dir)
    queries = [q.query for q in data.queries]
    torch_top = _top5(default_embeddings(backend="torch"), data.catalog, queries)
    assert _top5(default_embeddings(), data.catalog, queries) == torch_top


def test_a_torch_index_reopened_with_onnx_is_re_embedded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torch_model = default_embeddings(backend="torch")
    directory = tmp_path / "index"
    built = QTAPipeline.from_tools(
        TOOLS, embeddings=torch_model, persist_directory=directory, rewriter=None
    )
    built.add_examples([{"query": "will it rain in Oslo", "tools": ["weather"]}], fit=False)
    built.index.close()
    with caplog.at_level(logging.WARNING, logger="qta_integrations.stores.chroma"):
        reopened = QTAPipeline.from_tools(TOOLS, persist_directory=directory, rewriter=None)
    lines = [r.getMessage() for r in caplog.records if "re-embedded" in r.getMessage()]
    assert len(lines) == 1
    assert f"re-embedded its {len(TOOLS)} tools and 1 labelled examples" in lines[0]
    assert '"backend": "sentence-transformers"' in lines[0] and "onnxruntime" in lines[0]
    got = reopened.index.chroma_collection().get(include=["embeddings", "documents"])
    expected = np.asarray(default_embeddings().embed_documents(list(got["documents"])))
    assert np.abs(np.asarray(got["embeddings"]) - expected).max() < 1e-5
    top = reopened.retrieve("what's the weather like in Lisbon tomorrow", k=1)
    assert top.tool_ids[0] == "weather"
