"""Saving and loading a whole retriever (`qta_integrations.persist`)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import VectorStoreIndex

from qta_integrations import QTALlamaIndexRetriever, QTAPipeline, QTARetriever, persist
from qta_integrations.adapter import LEGACY_RETRIEVER_CONFIG
from qta_integrations.embeddings import to_llama_index_embeddings
from qta_integrations.persist import CONFIG_NAME, PersistError
from qta_integrations.rewriter import HuggingFaceRewriter
from qta_integrations.testing import FakeRewriter, KeywordEmbeddings, tiny_hf_rewriter
from tests.conftest import CountingEmbeddings

REWRITES = {
    "will I need an umbrella in Paris": "current weather forecast for a city",
    "how much is AAPL": "latest price of a stock ticker symbol",
}
QUERIES = [*REWRITES, "driving directions to the airport"]


def _retriever(tools: list[dict[str, str]], **kwargs: Any) -> QTARetriever:
    return QTARetriever(pipeline=QTAPipeline.from_tools(tools, **kwargs))


@pytest.fixture
def retriever(tool_dicts: list[dict[str, str]]) -> Iterator[QTARetriever]:
    built = _retriever(
        tool_dicts,
        embeddings=KeywordEmbeddings(),
        rewriter=FakeRewriter(REWRITES),
        k=2,
        fetch_k=6,
        num_context_tools=1,
    )
    try:
        yield built
    finally:
        built.pipeline.index.vectorstore.delete_collection()  # type: ignore[attr-defined]


def _scored(pairs: list[tuple[str | None, float]]) -> tuple[int, list[tuple[float, str | None]]]:
    """How many tools, and the ids with their scores; tools that match nothing (score 0) tie,
    and which of them fill the last places depends on the store's order, so they are left out."""
    kept = sorted((round(score, 6), tool_id) for tool_id, score in pairs if round(score, 6) > 0)
    return len(pairs), kept


def _results(retriever: QTARetriever) -> list[tuple[int, list[tuple[float, str | None]]]]:
    return [_scored([(d.id, d.metadata["score"]) for d in retriever.invoke(q)]) for q in QUERIES]


def _li_results(
    retriever: QTALlamaIndexRetriever,
) -> list[tuple[int, list[tuple[float, str | None]]]]:
    return [_scored([(n.node.id_, n.score or 0.0) for n in retriever.retrieve(q)]) for q in QUERIES]


def _state(pipeline: Any) -> dict[str, Any]:
    return dict(pipeline.state_dict())


# -- round trips -------------------------------------------------------------------------------


def test_in_memory_chroma_round_trip(retriever: QTARetriever, tmp_path: Path) -> None:
    retriever.pipeline.add_examples([{"query": "rain in oslo?", "tools": ["weather"]}], fit=False)
    expected = _results(retriever)
    assert all(kept for _, kept in expected)  # every query finds tools that match it
    state = _state(retriever.pipeline)
    retriever.persist(tmp_path)
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert (config["format"], config["format_version"]) == ("qta-adapter", 3)
    assert config["package_version"]
    assert config["retriever"]["index"]["backend"] == "chroma" and (tmp_path / "chroma").is_dir()
    assert config["retriever"]["embeddings"] == "KeywordEmbeddings"
    assert config["retriever"]["rewriter"] == {"source": None, "type": "FakeRewriter"}
    assert config["retriever"]["catalog"]["count"] == 6
    assert config["retrieval"] == json.loads(json.dumps(state))

    embeddings = CountingEmbeddings()
    reloaded = QTARetriever.from_persist_dir(
        tmp_path, embeddings=embeddings, rewriter=FakeRewriter(REWRITES)
    )
    assert _results(reloaded) == expected
    assert embeddings.documents_embedded == 0  # nothing embedded again
    assert _state(reloaded.pipeline) == state
    assert state["examples"] and "settings" in state  # the labelled example came back
    assert (reloaded.k, reloaded.pipeline.catalog.ids) == (2, retriever.pipeline.catalog.ids)
    assert QTARetriever.from_persist_dir(tmp_path, embeddings=embeddings, rewriter=None, k=4).k == 4


def test_a_retriever_saved_before_format_3_still_loads(
    retriever: QTARetriever, tmp_path: Path
) -> None:
    retriever.pipeline.add_examples([{"query": "rain in oslo?", "tools": ["weather"]}], fit=False)
    expected, state = _results(retriever), _state(retriever.pipeline)
    retriever.persist(tmp_path)
    manifest = json.loads((tmp_path / CONFIG_NAME).read_text())
    legacy = {  # qta_retriever.json, as version 2 of this module wrote it
        "format": "qta-retriever",
        "format_version": 2,
        "package_version": "0.1.0",
        **manifest["retriever"],
        "state": manifest["retrieval"],
    }
    (tmp_path / CONFIG_NAME).unlink()
    (tmp_path / LEGACY_RETRIEVER_CONFIG).write_text(json.dumps(legacy))
    assert persist.read_config(tmp_path)["retriever"] == manifest["retriever"]
    reloaded = QTARetriever.from_persist_dir(
        tmp_path, embeddings=KeywordEmbeddings(), rewriter=FakeRewriter(REWRITES)
    )
    assert _results(reloaded) == expected and _state(reloaded.pipeline) == state
    reloaded.persist(tmp_path)  # saved again: in the one format, the old file replaced
    assert sorted(p.name for p in tmp_path.glob("qta_*.json")) == [CONFIG_NAME]
    legacy["format_version"] = 9
    (tmp_path / CONFIG_NAME).unlink()
    (tmp_path / LEGACY_RETRIEVER_CONFIG).write_text(json.dumps(legacy))
    with pytest.raises(PersistError, match="saved retriever format version 9 is not supported"):
        persist.load(tmp_path, embeddings=KeywordEmbeddings(), rewriter=None)


def test_labelled_examples_in_the_state_are_restored(
    retriever: QTARetriever, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    examples = [{"query": "rain in oslo?", "tools": ["weather"]}]
    original: Any = QTAPipeline.__dict__["state_dict"]
    monkeypatch.setattr(
        QTAPipeline, "state_dict", lambda self: {**original(self), "examples": examples}
    )
    loaded: list[dict[str, Any]] = []
    monkeypatch.setattr(QTAPipeline, "load_state_dict", lambda self, state: loaded.append(state))
    persist.save(retriever, tmp_path)
    persist.load(tmp_path, embeddings=KeywordEmbeddings(), rewriter=None)
    assert loaded[0]["examples"] == examples
    assert loaded[0]["settings"] == original(retriever.pipeline)["settings"]


def test_on_disk_chroma_round_trip(tool_dicts: list[dict[str, str]], tmp_path: Path) -> None:
    saved = tmp_path / "saved"
    built = _retriever(
        tool_dicts,
        embeddings=KeywordEmbeddings(),
        persist_directory=saved / "chroma",
        rewriter=None,
        k=3,
    )
    expected = _results(built)
    built.persist(saved)
    config = json.loads((saved / CONFIG_NAME).read_text())
    assert (
        config["retriever"]["index"]["path"] == "chroma"
    )  # the live index is referenced, not copied
    assert config["retriever"]["rewriter"] == {"source": None, "type": None}
    embeddings = CountingEmbeddings()
    reloaded = QTARetriever.from_persist_dir(saved, embeddings=embeddings)
    assert _results(reloaded) == expected
    assert embeddings.documents_embedded == 0


def test_llama_index_round_trip(tool_dicts: list[dict[str, str]], tmp_path: Path) -> None:
    index = VectorStoreIndex(nodes=[], embed_model=to_llama_index_embeddings(KeywordEmbeddings()))
    built = QTALlamaIndexRetriever(
        QTAPipeline.from_tools(tool_dicts, llama_index=index, rewriter=FakeRewriter(REWRITES), k=3)
    )
    expected = _li_results(built)
    built.persist(tmp_path)
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert config["retriever"]["index"]["backend"] == "llama_index"
    with pytest.raises(ValueError, match="pass the same model as embeddings="):
        persist.load(tmp_path, rewriter=None)  # the index hides its embeddings: must be given
    embeddings = CountingEmbeddings()
    reloaded = QTALlamaIndexRetriever.from_persist_dir(
        tmp_path, embed_model=embeddings, rewriter=FakeRewriter(REWRITES)
    )
    assert _li_results(reloaded) == expected
    assert embeddings.documents_embedded == 0
    assert _state(reloaded.pipeline) == _state(built.pipeline)
    pipeline = persist.load(tmp_path, embeddings=KeywordEmbeddings(), rewriter=None)
    assert isinstance(pipeline, QTAPipeline) and pipeline.k == 3


def test_a_rewriter_directory_inside_the_saved_directory_is_relative(
    tool_dicts: list[dict[str, str]], tmp_path: Path
) -> None:
    model_dir = tmp_path / "rewriter"
    tiny = tiny_hf_rewriter()
    tiny.model.save_pretrained(model_dir)
    tiny.tokenizer.save_pretrained(model_dir)
    built = _retriever(
        tool_dicts,
        embeddings=KeywordEmbeddings(),
        rewriter=HuggingFaceRewriter.from_pretrained(model_dir),
    )
    try:
        built.persist(tmp_path)
    finally:
        built.pipeline.index.vectorstore.delete_collection()  # type: ignore[attr-defined]
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert config["retriever"]["rewriter"] == {"source": "rewriter", "type": "HuggingFaceRewriter"}
    reloaded = persist.load(tmp_path, embeddings=KeywordEmbeddings())
    assert isinstance(reloaded.rewriter, HuggingFaceRewriter)
    assert reloaded.rewriter.source == str(model_dir.resolve())


# -- errors ------------------------------------------------------------------------------------


def _saved(retriever: QTARetriever, directory: Path) -> Path:
    retriever.persist(directory)
    return directory / CONFIG_NAME


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda text: text[: len(text) // 2], "is not valid JSON"),
        (lambda text: "[]", "holds a list, not a JSON object"),
        (lambda text: text.replace('"qta-adapter"', '"other"'), "'format' is 'other'"),
        (lambda text: text.replace('"format_version": 3', '"format_version": 7'), "version 7"),
        (lambda text: text.replace('"embeddings"', '"embedding_model"'), r"lacks \['embeddings'\]"),
        (
            lambda text: text.replace('"retrieval": {', '"retrieval": 3, "config": {'),
            "'retrieval' must",
        ),
    ],
)
def test_a_corrupted_config_names_the_file_and_the_fix(
    retriever: QTARetriever, tmp_path: Path, edit: Callable[[str], str], pattern: str
) -> None:
    config = _saved(retriever, tmp_path)
    config.write_text(edit(config.read_text()))
    with pytest.raises(PersistError, match=pattern) as info:
        QTARetriever.from_persist_dir(tmp_path, embeddings=KeywordEmbeddings(), rewriter=None)
    assert str(config) in str(info.value)
    assert "again" in str(info.value)


def test_a_missing_or_changed_catalogue_is_refused(retriever: QTARetriever, tmp_path: Path) -> None:
    config = json.loads(_saved(retriever, tmp_path).read_text())
    catalogue = tmp_path / config["retriever"]["catalog"]["file"]
    catalogue.write_text(catalogue.read_text().replace("weather", "whether"))
    with pytest.raises(PersistError, match="does not match the SHA-256"):
        persist.load(tmp_path, embeddings=KeywordEmbeddings(), rewriter=None)
    catalogue.unlink()
    with pytest.raises(PersistError, match=r"tools-.*\.json, the catalogue named in .* missing"):
        persist.load(tmp_path, embeddings=KeywordEmbeddings(), rewriter=None)


def test_bad_directories_and_arguments(retriever: QTARetriever, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        persist.load(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=f"no {CONFIG_NAME}"):
        persist.load(tmp_path)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(PersistError, match="is a file"):
        persist.load(a_file)
    with pytest.raises(ValueError, match=r"names an existing file|is a file"):
        persist.save(retriever, a_file)
    with pytest.raises(TypeError, match="Cannot save a object"):
        persist.save(object(), tmp_path / "x")
    _saved(retriever, tmp_path / "ok")
    with pytest.raises(ValueError, match="used a FakeRewriter that cannot be reloaded"):
        persist.load(tmp_path / "ok", embeddings=KeywordEmbeddings())
    with pytest.raises(ValueError, match="saved with KeywordEmbeddings embeddings"):
        persist.load(tmp_path / "ok", rewriter=None)
    with pytest.raises(TypeError, match=r"Unknown settings \['colour'\]"):
        persist.load(tmp_path / "ok", embeddings=KeywordEmbeddings(), rewriter=None, colour=1)
    with pytest.raises(ValueError, match=r"missing \['calendar'"):
        persist.load(
            tmp_path / "ok",
            tools=[{"id": t, "description": t} for t in ("weather", "stock_quote", "route")],
            embeddings=KeywordEmbeddings(),
            rewriter=None,
        )


def test_user_store_must_be_passed_again(tool_dicts: list[dict[str, str]], tmp_path: Path) -> None:
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore(KeywordEmbeddings())
    built = _retriever(tool_dicts, vectorstore=store, rewriter=None, k=2)
    built.persist(tmp_path)
    with pytest.raises(ValueError, match="pass the same store again as vectorstore="):
        QTARetriever.from_persist_dir(tmp_path, embeddings=KeywordEmbeddings())
    reloaded = QTARetriever.from_persist_dir(tmp_path, vectorstore=store)
    assert _results(reloaded) == _results(built)


# -- atomic writes -----------------------------------------------------------------------------


def test_a_crash_while_saving_leaves_the_previous_save_intact(
    retriever: QTARetriever, tool_dicts: list[dict[str, str]], tmp_path: Path
) -> None:
    config = _saved(retriever, tmp_path)
    before = config.read_text()
    real_replace = os.replace

    def crash(src: Any, dst: Any) -> None:
        if Path(dst).name == CONFIG_NAME:
            raise OSError("killed")
        real_replace(src, dst)

    bigger = _retriever(
        [*tool_dicts, {"id": "news", "description": "Latest news headlines."}],
        embeddings=KeywordEmbeddings(),
        rewriter=None,
        k=3,
    )
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(os, "replace", crash)
            with pytest.raises(OSError, match="killed"):
                bigger.persist(tmp_path)
    finally:
        bigger.pipeline.index.vectorstore.delete_collection()  # type: ignore[attr-defined]
    assert config.read_text() == before  # the commit never happened
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".qta-tmp")]
    reloaded = persist.load(tmp_path, embeddings=KeywordEmbeddings(), rewriter=None)
    assert reloaded.catalog.ids == retriever.pipeline.catalog.ids  # the previous catalogue
    # A complete save then replaces it and removes the catalogue file it no longer names.
    retriever.persist(tmp_path)
    catalogues = sorted(p.name for p in tmp_path.glob("tools-*.json"))
    assert catalogues == [json.loads(config.read_text())["retriever"]["catalog"]["file"]]
