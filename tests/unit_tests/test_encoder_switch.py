"""An on-disk index never mixes two encoders' vectors: opened with another, it is re-embedded."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from qta_integrations import QTAPipeline, persist
from qta_integrations.encoders import encoder_identity
from qta_integrations.stores import chroma_tool_index
from qta_integrations.stores.records import RECORD_FILE, RecordManager
from qta_integrations.testing import KeywordEmbeddings


class Counting(KeywordEmbeddings):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.documents_embedded = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.documents_embedded += len(texts)
        return super().embed_documents(texts)


EXAMPLES = [{"query": "is it raining in Oslo", "tools": ["weather"]}]


def _reembedded(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "re-embedded" in r.getMessage()]


def _stored(pipeline: QTAPipeline) -> tuple[list[str], np.ndarray, list[str]]:
    got = pipeline.index.chroma_collection().get(include=["embeddings", "documents"])  # type: ignore[attr-defined]
    return list(got["ids"]), np.asarray(got["embeddings"]), list(got["documents"])


def test_reopening_with_another_encoder_re_embeds_tools_and_examples(
    tmp_path: Path, tool_dicts: list[dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "index"
    first = QTAPipeline.from_tools(
        tool_dicts, embeddings=Counting(64), persist_directory=directory, rewriter=None
    )
    first.add_examples(EXAMPLES)
    first.index.close()

    other = Counting(128)
    with caplog.at_level(logging.INFO, logger="qta_integrations.stores.chroma"):
        second = QTAPipeline.from_tools(
            tool_dicts, embeddings=other, persist_directory=directory, rewriter=None
        )
    lines = _reembedded(caplog)
    assert len(lines) == 1
    assert f"re-embedded its {len(tool_dicts)} tools and 1 labelled examples" in lines[0]
    assert "keyword-64" in lines[0] and "keyword-128" in lines[0]
    # Embedded once each, in place (a sync, never an append): no duplicate, no stale vector.
    assert other.documents_embedded == len(tool_dicts) + 1
    ids, vectors, documents = _stored(second)
    assert len(ids) == len(set(ids)) == len(tool_dicts) + 1
    np.testing.assert_allclose(vectors, other.embed_documents(documents), atol=1e-6)
    assert second.retrieve("weather in Paris", k=1).tool_ids == ["weather"]

    # The identity is recorded: the same encoder again embeds nothing.
    second.index.close()
    again = Counting(128)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="qta_integrations.stores.chroma"):
        third = QTAPipeline.from_tools(
            tool_dicts, embeddings=again, persist_directory=directory, rewriter=None
        )
    assert not _reembedded(caplog)
    assert again.documents_embedded == 0
    records = RecordManager(directory / RECORD_FILE)
    assert records.get_meta("encoder") is not None
    assert "keyword-128" in str(records.get_meta("encoder"))
    third.index.close()


def test_a_store_without_an_encoder_record_is_re_embedded(
    tmp_path: Path, tool_dicts: list[dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "index"
    QTAPipeline.from_tools(
        tool_dicts, embeddings=Counting(64), persist_directory=directory, rewriter=None
    ).index.close()
    with sqlite3.connect(directory / RECORD_FILE) as db:  # as an older version left it
        db.execute("DELETE FROM meta")
    same = Counting(64)
    with caplog.at_level(logging.INFO, logger="qta_integrations.stores.chroma"):
        index = chroma_tool_index(same, persist_directory=directory)
    assert same.documents_embedded == len(tool_dicts)
    (line,) = _reembedded(caplog)
    assert "no recorded encoder" in line
    index.close()


def test_a_new_directory_records_its_encoder_and_embeds_nothing_on_open(tmp_path: Path) -> None:
    model = Counting(64)
    index = chroma_tool_index(model, persist_directory=tmp_path / "fresh")
    assert model.documents_embedded == 0
    assert index.check_encoder() == 0
    stored = RecordManager(tmp_path / "fresh" / RECORD_FILE).get_meta("encoder")
    assert stored is not None and "keyword-64" in stored
    index.close()


def test_a_saved_retriever_loaded_with_another_encoder_is_re_embedded(
    tmp_path: Path, tool_dicts: list[dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    # In memory first: saving copies the collection, and the copy records its encoder.
    pipeline = QTAPipeline.from_tools(tool_dicts, embeddings=Counting(64), rewriter=None)
    pipeline.add_examples(EXAMPLES)
    persist.save(pipeline, tmp_path / "saved")
    same = Counting(64)
    persist.load(tmp_path / "saved", embeddings=same, rewriter=None)
    assert same.documents_embedded == 0  # loading embeds nothing
    other = Counting(32)
    with caplog.at_level(logging.INFO, logger="qta_integrations.stores.chroma"):
        loaded = persist.load(tmp_path / "saved", embeddings=other, rewriter=None)
    assert other.documents_embedded == len(tool_dicts) + 1
    assert len(_reembedded(caplog)) == 1
    assert loaded.retrieve("weather in Paris", k=1).tool_ids == ["weather"]


def test_a_subclass_that_embeds_alike_keeps_the_identity() -> None:
    assert encoder_identity(Counting(64)) == encoder_identity(KeywordEmbeddings(64))
    assert encoder_identity(Counting(64)) != encoder_identity(Counting(32))
