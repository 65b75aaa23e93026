"""`QTARetriever.batch` / `abatch`: one pipeline pass for the batch, LangChain's contract kept."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda

from qta_integrations import QTARetriever
from qta_integrations.pipeline import QTAPipeline
from qta_integrations.testing import KeywordEmbeddings

QUERIES = [
    "current weather forecast for Paris",
    "latest price of the ACME stock ticker",
    "send an email message to Bob",
]
EXPECTED = ["weather", "stock_quote", "email"]


class CountingEmbeddings(KeywordEmbeddings):
    """Counts embedding calls and records the thread each ran on."""

    def __init__(self) -> None:
        super().__init__()
        self.document_calls: list[int] = []
        self.query_calls = 0
        self.threads: set[int] = set()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.document_calls.append(len(texts))
        self.threads.add(threading.get_ident())
        return super().embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        self.query_calls += 1
        self.threads.add(threading.get_ident())
        return super().embed_query(text)


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.names: list[str] = []
        self.tags: list[list[str]] = []

    def on_retriever_start(
        self, serialized: dict[str, Any], query: str, *, run_id: UUID, **kwargs: Any
    ) -> None:
        self.events.append(("start", query))
        self.names.append(kwargs.get("name", ""))
        self.tags.append(list(kwargs.get("tags") or []))

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.events.append(("end", [d.id for d in documents]))

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.events.append(("error", type(error).__name__))


@pytest.fixture
def embeddings() -> CountingEmbeddings:
    return CountingEmbeddings()


@pytest.fixture
def retriever(
    tool_dicts: list[dict[str, str]], embeddings: CountingEmbeddings
) -> Iterator[QTARetriever]:
    built = QTARetriever(tools=tool_dicts, embeddings=embeddings, rewriter=None, k=2)
    try:
        yield built
    finally:
        built.pipeline.index.vectorstore.delete_collection()  # type: ignore[attr-defined]


@pytest.fixture
def pipeline_calls(
    retriever: QTARetriever, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, int]]:
    """Every retrieve / retrieve_batch call on the retriever's pipeline: (method, queries)."""
    calls: list[tuple[str, int]] = []
    core = retriever.pipeline
    batch = core.retrieve_batch
    single = core.retrieve

    def retrieve_batch(queries: Any, **kwargs: Any) -> Any:
        calls.append(("retrieve_batch", len(queries)))
        return batch(queries, **kwargs)

    def retrieve(query: Any, **kwargs: Any) -> Any:
        calls.append(("retrieve", 1))
        return single(query, **kwargs)

    monkeypatch.setattr(core, "retrieve_batch", retrieve_batch)
    monkeypatch.setattr(core, "retrieve", retrieve)
    return calls


def run_batch(retriever: QTARetriever, mode: str, inputs: list[Any], **kwargs: Any) -> Any:
    """``batch`` or ``abatch`` (in a fresh event loop)."""
    if mode == "sync":
        return retriever.batch(inputs, **kwargs)
    return asyncio.run(retriever.abatch(inputs, **kwargs))


MODES = ["sync", "async"]


@pytest.mark.parametrize("mode", MODES)
def test_a_batch_is_one_pipeline_call_and_one_embedding_pass(
    retriever: QTARetriever,
    embeddings: CountingEmbeddings,
    pipeline_calls: list[tuple[str, int]],
    mode: str,
) -> None:
    embeddings.document_calls.clear()
    embeddings.query_calls = 0
    results = run_batch(retriever, mode, QUERIES)
    assert [docs[0].id for docs in results] == EXPECTED
    assert pipeline_calls == [("retrieve_batch", len(QUERIES))]
    assert embeddings.document_calls == [len(QUERIES)]  # the queries, in one pass
    assert embeddings.query_calls == 0


@pytest.mark.parametrize("mode", MODES)
def test_batch_results_equal_invoke(retriever: QTARetriever, mode: str) -> None:
    results = run_batch(retriever, mode, QUERIES)
    for query, docs in zip(QUERIES, results, strict=True):
        single = retriever.invoke(query)
        assert [d.id for d in docs] == [d.id for d in single]
        assert [d.metadata["score"] for d in docs] == pytest.approx(
            [d.metadata["score"] for d in single], abs=1e-6
        )


@pytest.mark.parametrize("mode", MODES)
def test_k_and_history_apply_to_every_input(retriever: QTARetriever, mode: str) -> None:
    results = run_batch(retriever, mode, QUERIES, k=3, history=["hello"])
    assert [len(docs) for docs in results] == [3, 3, 3]
    assert [len(docs) for docs in run_batch(retriever, mode, QUERIES, k=None)] == [2, 2, 2]


@pytest.mark.parametrize("mode", MODES)
def test_a_bad_input_gets_its_exception_and_the_others_succeed(
    retriever: QTARetriever, pipeline_calls: list[tuple[str, int]], mode: str
) -> None:
    inputs: list[Any] = [QUERIES[0], "  ", 42, QUERIES[2]]
    handler = Recorder()
    results = run_batch(
        retriever, mode, inputs, config={"callbacks": [handler]}, return_exceptions=True
    )
    assert isinstance(results[0], list) and results[0][0].id == "weather"
    assert isinstance(results[1], ValueError) and "empty or whitespace" in str(results[1])
    assert isinstance(results[2], TypeError) and "query must be a str" in str(results[2])
    assert isinstance(results[3], list) and results[3][0].id == "email"
    assert pipeline_calls == [("retrieve_batch", 2)]  # the good inputs, together
    assert sorted(str(q) for kind, q in handler.events if kind == "start") == sorted(
        map(str, inputs)
    )
    assert sorted(ids[0] for kind, ids in handler.events if kind == "end") == ["email", "weather"]
    errors = sorted(name for kind, name in handler.events if kind == "error")
    assert errors == ["TypeError", "ValueError"]


@pytest.mark.parametrize("mode", MODES)
def test_without_return_exceptions_the_first_error_is_raised(
    retriever: QTARetriever, mode: str
) -> None:
    handler = Recorder()
    with pytest.raises(TypeError, match="query must be a str, got int: 42"):
        run_batch(retriever, mode, [QUERIES[0], 42, ""], config={"callbacks": [handler]})
    # Every run still ended: the good input normally, the bad ones with their errors.
    assert sorted(kind for kind, _ in handler.events) == ["end", "error", "error"] + ["start"] * 3


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"k": 0}, ValueError, "k must be a positive int"),
        ({"history": "weather"}, TypeError, "history"),
        ({"fetch_k": 3}, TypeError, "unexpected keyword argument.*'fetch_k'"),
    ],
)
def test_a_bad_option_fails_every_input(
    retriever: QTARetriever,
    mode: str,
    kwargs: dict[str, Any],
    error: type[Exception],
    pattern: str,
) -> None:
    results = run_batch(retriever, mode, QUERIES[:2], return_exceptions=True, **kwargs)
    assert all(isinstance(r, error) for r in results)
    with pytest.raises(error, match=pattern):
        run_batch(retriever, mode, QUERIES[:2], **kwargs)
    with pytest.raises(error, match=pattern):  # the same error as invoke
        retriever.invoke(QUERIES[0], **kwargs)


@pytest.mark.parametrize("mode", MODES)
def test_one_config_per_input(retriever: QTARetriever, mode: str) -> None:
    handlers = [Recorder() for _ in QUERIES]
    configs: list[Any] = [
        {"callbacks": [h], "run_name": f"run-{i}", "tags": [f"t{i}"]}
        for i, h in enumerate(handlers)
    ]
    run_batch(retriever, mode, QUERIES, config=configs)
    for i, (handler, query, tool) in enumerate(zip(handlers, QUERIES, EXPECTED, strict=True)):
        assert handler.events[0] == ("start", query)
        assert handler.events[1][0] == "end" and handler.events[1][1][0] == tool
        assert handler.names == [f"run-{i}"]
        assert f"t{i}" in handler.tags[0]
    with pytest.raises(ValueError, match="config must be a list of the same length"):
        run_batch(retriever, mode, QUERIES, config=configs[:2])


@pytest.mark.parametrize("mode", MODES)
def test_an_empty_batch(
    retriever: QTARetriever, pipeline_calls: list[tuple[str, int]], mode: str
) -> None:
    assert run_batch(retriever, mode, []) == []
    assert pipeline_calls == []


@pytest.mark.parametrize("mode", MODES)
def test_a_store_failure_fails_every_good_input(
    retriever: QTARetriever, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        msg = "the store is down"
        raise ConnectionError(msg)

    monkeypatch.setattr(retriever.pipeline, "retrieve_batch", broken)
    handler = Recorder()
    results = run_batch(
        retriever, mode, [QUERIES[0], ""], config={"callbacks": [handler]}, return_exceptions=True
    )
    assert isinstance(results[0], ConnectionError) and isinstance(results[1], ValueError)
    assert sorted(e for e in handler.events if e[0] == "error") == [
        ("error", "ConnectionError"),
        ("error", "ValueError"),
    ]


async def test_abatch_runs_the_pipeline_off_the_event_loop(
    retriever: QTARetriever, embeddings: CountingEmbeddings
) -> None:
    embeddings.threads.clear()
    results = await retriever.abatch(QUERIES)
    assert [docs[0].id for docs in results] == EXPECTED
    assert threading.get_ident() not in embeddings.threads


@pytest.mark.parametrize("mode", MODES)
def test_a_chain_batches_through_the_retriever(
    retriever: QTARetriever, pipeline_calls: list[tuple[str, int]], mode: str
) -> None:
    chain = retriever | RunnableLambda(lambda docs: docs[0].id)
    if mode == "sync":
        assert chain.batch(QUERIES) == EXPECTED
    else:
        assert asyncio.run(chain.abatch(QUERIES)) == EXPECTED
    assert pipeline_calls == [("retrieve_batch", len(QUERIES))]


class Uppercasing(QTARetriever):
    """A subclass with its own retrieval: batch goes through it, input by input."""

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        return [Document(page_content=query.upper())]

    async def _aget_relevant_documents(self, query: str, **kwargs: Any) -> list[Document]:
        return [Document(page_content=query.upper())]


@pytest.mark.parametrize("mode", MODES)
def test_a_subclass_with_its_own_retrieval_keeps_langchains_batch(
    retriever: QTARetriever, mode: str
) -> None:
    pipeline: QTAPipeline = retriever.pipeline
    subclass = Uppercasing(pipeline=pipeline)
    results = run_batch(subclass, mode, ["a", "b"])
    assert [docs[0].page_content for docs in results] == ["A", "B"]
