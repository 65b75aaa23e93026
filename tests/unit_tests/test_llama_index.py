from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableLambda
from llama_index.core import VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent, ReActAgent
from llama_index.core.llms import MockLLM
from llama_index.core.objects import ObjectRetriever
from llama_index.core.postprocessor import SimilarityPostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.core.tools import FunctionTool

from qta_integrations import QTALlamaIndexRetriever, QTARetriever, QTAToolRetriever
from qta_integrations.embeddings import to_llama_index_embeddings
from qta_integrations.fusion import FusionWeights
from qta_integrations.persist import CONFIG_NAME as CONFIG_FILE
from qta_integrations.settings import RetrievalSettings
from qta_integrations.testing import FakeRewriter, KeywordEmbeddings, tiny_hf_rewriter
from tests.conftest import CountingEmbeddings

UMBRELLA = "will I need an umbrella in Paris"
REWRITES = {
    UMBRELLA: "current weather forecast for a city",
    "how much is AAPL": "latest price of a stock ticker symbol",
}
REWRITING = RetrievalSettings(fusion=FusionWeights.paper())
"""The paper's fusion: the rewrite is weighed, so the rewriter runs (the default never calls it)."""


def get_weather(city: str) -> str:
    """Current weather and forecast for a city."""
    return f"Sunny in {city}"


def get_stock_quote(ticker: str) -> str:
    """Latest price of a stock ticker symbol."""
    return f"{ticker}: 123.4"


def send_email(to: str, body: str) -> str:
    """Send an email message to a recipient."""
    return f"sent to {to}"


def _close(retriever: QTALlamaIndexRetriever) -> None:
    store = getattr(retriever.pipeline.index, "vectorstore", None)
    if store is not None:
        store.delete_collection()


@pytest.fixture
def function_tools() -> list[FunctionTool]:
    return [FunctionTool.from_defaults(fn) for fn in (get_weather, get_stock_quote, send_email)]


@pytest.fixture
def retriever(tool_dicts: list[dict[str, str]]) -> Iterator[QTALlamaIndexRetriever]:
    built = QTALlamaIndexRetriever.from_defaults(
        tool_dicts,
        embed_model=KeywordEmbeddings(),
        rewriter=FakeRewriter(REWRITES),
        k=2,
        settings=REWRITING,
    )
    try:
        yield built
    finally:
        _close(built)


@pytest.fixture
def tool_retriever(function_tools: list[FunctionTool]) -> Iterator[QTAToolRetriever]:
    built = QTAToolRetriever.from_defaults(
        function_tools,
        embed_model=KeywordEmbeddings(),
        rewriter=FakeRewriter(REWRITES),
        k=1,
        settings=REWRITING,
    )
    try:
        yield built
    finally:
        _close(built.retriever)


def _ids(nodes: list[NodeWithScore]) -> list[str]:
    return [n.node.node_id for n in nodes]


# -- QTALlamaIndexRetriever ---------------------------------------------------------------------


def test_retrieve_returns_one_node_per_tool(
    retriever: QTALlamaIndexRetriever, tool_dicts: list[dict[str, str]]
) -> None:
    nodes = retriever.retrieve(UMBRELLA)
    assert len(nodes) == 2
    top = nodes[0]
    assert isinstance(top, NodeWithScore) and isinstance(top.node, TextNode)
    assert top.node.id_ == "weather"
    assert top.node.text == f"get_weather: {tool_dicts[0]['description']}"
    metadata = dict(top.node.metadata)
    signals = metadata.pop("signals")
    assert metadata == {
        "tool_id": "weather",
        "tool_name": "get_weather",
        "rank": 1,
        "query": UMBRELLA,
        "rewritten_query": REWRITES[UMBRELLA],
        "always_included": False,
    }
    # The paper's fusion: 0.5 * dense + 0.5 * rewrite, each signal's score is kept.
    assert set(signals) == {"dense", "rewrite"}
    assert top.score == pytest.approx(0.5 * signals["dense"] + 0.5 * signals["rewrite"], abs=1e-5)
    assert top.score is not None and top.score >= (nodes[1].score or 0.0)
    # The per-request fields are not shown to an LLM reading the node.
    assert "rewritten_query" not in top.node.get_content(metadata_mode="llm")  # type: ignore[arg-type]
    assert retriever.retrieve(QueryBundle(UMBRELLA)) == nodes


def test_from_defaults_without_settings_is_dense_and_never_rewrites(
    tool_dicts: list[dict[str, str]],
) -> None:
    rewriter = FakeRewriter(REWRITES)
    retriever = QTALlamaIndexRetriever.from_defaults(
        tool_dicts, embed_model=KeywordEmbeddings(), rewriter=rewriter, k=2
    )
    try:
        assert retriever.pipeline.settings == RetrievalSettings(k=2)
        nodes = retriever.retrieve(UMBRELLA)
        assert _ids(nodes)[0] != "weather"  # the plain query misses it without the rewrite
        assert nodes[0].node.metadata["rewritten_query"] is None
        assert rewriter.calls == []
    finally:
        _close(retriever)


async def test_aretrieve_equals_retrieve(retriever: QTALlamaIndexRetriever) -> None:
    for query in [*REWRITES, "send an email"]:
        nodes = await retriever.aretrieve(query)
        expected = retriever.retrieve(query)
        assert _ids(nodes) == _ids(expected)
        assert [n.score for n in nodes] == pytest.approx([n.score for n in expected])


async def test_aretrieve_uses_the_async_path(tool_dicts: list[dict[str, str]]) -> None:
    calls: list[str] = []

    def sync(messages: list[BaseMessage]) -> AIMessage:
        calls.append("sync")
        return AIMessage("current weather forecast for a city")

    async def async_(messages: list[BaseMessage]) -> AIMessage:
        calls.append("async")
        await asyncio.sleep(0)
        return AIMessage("current weather forecast for a city")

    retriever = QTALlamaIndexRetriever.from_defaults(
        tool_dicts,
        embed_model=KeywordEmbeddings(),
        rewriter=RunnableLambda(sync, afunc=async_),
        settings=REWRITING,
    )
    try:
        nodes = await retriever.aretrieve(UMBRELLA)
        assert nodes[0].node.node_id == "weather"
        assert calls == ["async"]
    finally:
        _close(retriever)


def test_k_and_similarity_top_k(retriever: QTALlamaIndexRetriever) -> None:
    pipeline = retriever.pipeline
    assert QTALlamaIndexRetriever(pipeline).k == pipeline.k == 2
    three = QTALlamaIndexRetriever(pipeline, similarity_top_k=3)
    assert (three.k, three.similarity_top_k) == (3, 3)
    assert len(three.retrieve(UMBRELLA)) == 3
    assert len(QTALlamaIndexRetriever(pipeline, k=1).retrieve(UMBRELLA)) == 1
    with pytest.raises(ValueError, match="Got k=1 and similarity_top_k=3"):
        QTALlamaIndexRetriever(pipeline, k=1, similarity_top_k=3)
    with pytest.raises(TypeError, match="pipeline must be a QTAPipeline, got dict"):
        QTALlamaIndexRetriever({})  # type: ignore[arg-type]


def test_from_defaults_with_a_llama_index_embedding_model(
    tool_dicts: list[dict[str, str]],
) -> None:
    embed_model = to_llama_index_embeddings(KeywordEmbeddings())
    retriever = QTALlamaIndexRetriever.from_defaults(
        tool_dicts,
        embed_model=embed_model,
        rewriter=FakeRewriter(REWRITES),
        k=1,
        settings=REWRITING,
    )
    try:
        assert _ids(retriever.retrieve("how much is AAPL")) == ["stock_quote"]
    finally:
        _close(retriever)


def test_from_defaults_with_a_vector_store_index(tool_dicts: list[dict[str, str]]) -> None:
    embed_model = to_llama_index_embeddings(KeywordEmbeddings())
    index = VectorStoreIndex(nodes=[], embed_model=embed_model)
    retriever = QTALlamaIndexRetriever.from_defaults(
        tool_dicts, index=index, rewriter=FakeRewriter(REWRITES), k=2, settings=REWRITING
    )
    assert sorted(index.index_struct.nodes_dict) == sorted(t["id"] for t in tool_dicts)
    assert _ids(retriever.retrieve(UMBRELLA))[0] == "weather"
    with pytest.raises(ValueError, match="Got both index= and embed_model="):
        QTALlamaIndexRetriever.from_defaults(tool_dicts, index=index, embed_model=embed_model)
    with pytest.raises(ValueError, match="Got both index= and persist_dir="):
        QTALlamaIndexRetriever.from_defaults(tool_dicts, index=index, persist_dir="unused")


def test_shares_the_langchain_retrievers_pipeline(tool_dicts: list[dict[str, str]]) -> None:
    lc = QTARetriever(
        tools=tool_dicts,
        embeddings=KeywordEmbeddings(),
        rewriter=FakeRewriter(REWRITES),
        k=2,
        settings=REWRITING,
    )
    try:
        li = lc.as_llama_index_retriever()
        assert isinstance(li, QTALlamaIndexRetriever)
        assert li.pipeline is lc.pipeline and li.k == 2
        assert _ids(li.retrieve(UMBRELLA)) == [d.id for d in lc.invoke(UMBRELLA)]
        assert lc.as_llama_index_retriever(similarity_top_k=4).k == 4
        with pytest.raises(TypeError, match="Tool 'weather' has no tool object"):
            lc.as_tool_retriever()
    finally:
        lc.pipeline.index.vectorstore.delete_collection()  # type: ignore[attr-defined]


# -- persistence -------------------------------------------------------------------------------


def test_persist_and_reload_without_re_embedding(
    retriever: QTALlamaIndexRetriever, tmp_path: Path
) -> None:
    expected = retriever.retrieve(UMBRELLA)
    retriever.persist(tmp_path)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert config["retriever"]["index"]["backend"] == "chroma"
    assert config["retriever"]["embeddings"] == "KeywordEmbeddings"
    settings = config["retrieval"]["settings"]
    assert (settings["k"], settings["fetch_k"], settings["num_context_tools"]) == (2, None, 3)
    assert config["retriever"]["rewriter"] == {"source": None, "type": "FakeRewriter"}
    saved_tools = json.loads((tmp_path / config["retriever"]["catalog"]["file"]).read_text())
    assert [t["id"] for t in saved_tools] == retriever.pipeline.catalog.ids

    embeddings = CountingEmbeddings()
    reloaded = QTALlamaIndexRetriever.from_persist_dir(
        tmp_path, embed_model=embeddings, rewriter=FakeRewriter(REWRITES)
    )
    nodes = reloaded.retrieve(UMBRELLA)
    assert embeddings.documents_embedded == 0
    assert _ids(nodes) == _ids(expected)
    assert [n.score for n in nodes] == pytest.approx([n.score for n in expected], abs=1e-6)
    assert reloaded.k == 2
    again = QTALlamaIndexRetriever.from_persist_dir(
        tmp_path, embed_model=embeddings, rewriter=None, k=4
    )
    assert again.pipeline.k == 4


def test_reload_errors_name_the_fix(retriever: QTALlamaIndexRetriever, tmp_path: Path) -> None:
    retriever.persist(tmp_path)
    with pytest.raises(ValueError, match="saved with KeywordEmbeddings embeddings; pass"):
        QTALlamaIndexRetriever.from_persist_dir(tmp_path, rewriter=None)
    with pytest.raises(ValueError, match="used a FakeRewriter that cannot be reloaded"):
        QTALlamaIndexRetriever.from_persist_dir(tmp_path, embed_model=KeywordEmbeddings())
    with pytest.raises(ValueError, match=r"missing \['calendar'.*not saved \[\]"):
        QTALlamaIndexRetriever.from_persist_dir(
            tmp_path,
            tools=[{"id": "weather", "description": "Weather."}],
            embed_model=KeywordEmbeddings(),
            rewriter=None,
        )
    with pytest.raises(FileNotFoundError, match="No saved QTA retriever"):
        QTALlamaIndexRetriever.from_persist_dir(tmp_path / "nothing")


def test_from_defaults_with_persist_dir_and_tool_objects(
    function_tools: list[FunctionTool], tmp_path: Path
) -> None:
    built = QTAToolRetriever.from_defaults(
        function_tools,
        embed_model=KeywordEmbeddings(),
        rewriter=None,
        k=1,
        persist_dir=tmp_path,
    )
    assert (tmp_path / "chroma").is_dir() and (tmp_path / CONFIG_FILE).exists()
    assert built.retrieve("send an email message") == [function_tools[2]]
    embeddings = CountingEmbeddings()
    reloaded = QTAToolRetriever.from_persist_dir(
        tmp_path, tools=function_tools, embed_model=embeddings
    )
    assert reloaded.retrieve("send an email message") == [function_tools[2]]
    assert embeddings.documents_embedded == 0
    # Rebuilding a smaller catalogue in the same directory drops the removed tool's vectors.
    QTALlamaIndexRetriever.from_defaults(
        function_tools[:2], embed_model=KeywordEmbeddings(), rewriter=None, persist_dir=tmp_path
    )
    again = QTALlamaIndexRetriever.from_persist_dir(tmp_path, embed_model=KeywordEmbeddings())
    store = again.pipeline.index.vectorstore  # type: ignore[attr-defined]
    assert sorted(store.get()["ids"]) == ["get_stock_quote", "get_weather"]
    assert sorted(_ids(again.retrieve("send an email message"))) == [
        "get_stock_quote",
        "get_weather",
    ]


def test_persist_where_the_chroma_index_already_lives(
    tool_dicts: list[dict[str, str]], tmp_path: Path
) -> None:
    lc = QTARetriever(
        tools=tool_dicts,
        embeddings=KeywordEmbeddings(),
        persist_directory=tmp_path / "chroma",
        rewriter=None,
        k=2,
    )
    li = lc.as_llama_index_retriever()
    expected = _ids(li.retrieve("latest stock ticker price"))
    li.persist(tmp_path)
    # The live index was saved in place, not deleted and copied under itself.
    assert _ids(li.retrieve("latest stock ticker price")) == expected
    assert [d.id for d in lc.invoke("latest stock ticker price")] == expected
    reloaded = QTALlamaIndexRetriever.from_persist_dir(tmp_path, embed_model=KeywordEmbeddings())
    assert _ids(reloaded.retrieve("latest stock ticker price")) == expected


def test_persist_a_vector_store_index(tool_dicts: list[dict[str, str]], tmp_path: Path) -> None:
    index = VectorStoreIndex(nodes=[], embed_model=to_llama_index_embeddings(KeywordEmbeddings()))
    retriever = QTALlamaIndexRetriever.from_defaults(tool_dicts, index=index, rewriter=None, k=3)
    expected = retriever.retrieve("latest stock ticker price")
    retriever.persist(tmp_path)
    assert (
        json.loads((tmp_path / CONFIG_FILE).read_text())["retriever"]["index"]["backend"]
        == "llama_index"
    )
    embeddings = CountingEmbeddings()
    reloaded = QTALlamaIndexRetriever.from_persist_dir(tmp_path, embed_model=embeddings)
    nodes = reloaded.retrieve("latest stock ticker price")
    assert embeddings.documents_embedded == 0
    assert _ids(nodes) == _ids(expected)


def test_persist_records_a_rewriter_directory(
    tool_dicts: list[dict[str, str]], tmp_path: Path
) -> None:
    from qta_integrations.rewriter import HuggingFaceRewriter

    model_dir = tmp_path / "rewriter"
    tiny = tiny_hf_rewriter()
    tiny.model.save_pretrained(model_dir)
    tiny.tokenizer.save_pretrained(model_dir)
    retriever = QTALlamaIndexRetriever.from_defaults(
        tool_dicts,
        embed_model=KeywordEmbeddings(),
        rewriter=HuggingFaceRewriter.from_pretrained(model_dir),
        persist_dir=tmp_path / "saved",
    )
    config = json.loads((tmp_path / "saved" / CONFIG_FILE).read_text())
    assert config["retriever"]["rewriter"]["source"] == str(model_dir.resolve())
    reloaded = QTALlamaIndexRetriever.from_persist_dir(
        tmp_path / "saved", embed_model=KeywordEmbeddings()
    )
    assert isinstance(reloaded.pipeline.rewriter, HuggingFaceRewriter)
    assert reloaded.pipeline.rewriter.source == str(model_dir.resolve())
    assert _ids(reloaded.retrieve("latest stock price")) == _ids(
        retriever.retrieve("latest stock price")
    )


def test_persist_your_own_vector_store_needs_it_again_to_load(
    tool_dicts: list[dict[str, str]], tmp_path: Path
) -> None:
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore(KeywordEmbeddings())
    lc = QTARetriever(tools=tool_dicts, vectorstore=store, rewriter=None, k=2)
    li = lc.as_llama_index_retriever()
    li.persist(tmp_path)
    with pytest.raises(ValueError, match=r"InMemoryVectorStore vector store .* pass the same"):
        QTALlamaIndexRetriever.from_persist_dir(tmp_path, embed_model=KeywordEmbeddings())
    reloaded = QTALlamaIndexRetriever.from_persist_dir(tmp_path, vectorstore=store)
    assert _ids(reloaded.retrieve("latest stock ticker price")) == _ids(
        li.retrieve("latest stock ticker price")
    )


# -- QTAToolRetriever --------------------------------------------------------------------------


def test_tool_retriever_returns_the_tool_objects(
    tool_retriever: QTAToolRetriever, function_tools: list[FunctionTool]
) -> None:
    assert isinstance(tool_retriever, ObjectRetriever)
    assert tool_retriever.retrieve(UMBRELLA) == [function_tools[0]]
    assert tool_retriever.retrieve(QueryBundle("how much is AAPL")) == [function_tools[1]]


async def test_tool_retriever_async(
    tool_retriever: QTAToolRetriever, function_tools: list[FunctionTool]
) -> None:
    assert await tool_retriever.aretrieve(UMBRELLA) == [function_tools[0]]


def test_a_tool_name_returns_that_tool_without_retrieval(
    tool_retriever: QTAToolRetriever, function_tools: list[FunctionTool]
) -> None:
    rewriter = tool_retriever.pipeline.rewriter
    assert isinstance(rewriter, FakeRewriter)
    assert tool_retriever.retrieve("send_email") == [function_tools[2]]
    assert rewriter.calls == []


def test_tool_retriever_applies_node_postprocessors(
    function_tools: list[FunctionTool], tool_retriever: QTAToolRetriever
) -> None:
    strict = QTAToolRetriever(
        retriever=tool_retriever.retriever,
        node_postprocessors=[SimilarityPostprocessor(similarity_cutoff=0.99)],
    )
    assert strict.retrieve(UMBRELLA) == []


def test_tool_retriever_needs_llama_index_tools(tool_dicts: list[dict[str, str]]) -> None:
    with pytest.raises(TypeError, match=r"Tool 'weather' has no tool object.*FunctionTool"):
        QTAToolRetriever.from_defaults(tool_dicts, embed_model=KeywordEmbeddings(), rewriter=None)
    from langchain_core.tools import tool

    @tool
    def lookup(word: str) -> str:
        """Look a word up in the dictionary."""
        return word

    with pytest.raises(TypeError, match="Tool 'lookup' has a StructuredTool"):
        QTAToolRetriever.from_defaults([lookup], embed_model=KeywordEmbeddings(), rewriter=None)


def test_tool_retriever_arguments(tool_retriever: QTAToolRetriever) -> None:
    with pytest.raises(ValueError, match="needs pipeline= or retriever="):
        QTAToolRetriever()
    with pytest.raises(ValueError, match="With retriever=, pass no pipeline"):
        QTAToolRetriever(retriever=tool_retriever.retriever, k=2)
    wider = QTAToolRetriever(tool_retriever.pipeline, k=2)
    assert len(wider.retrieve(UMBRELLA)) == 2


def test_as_tool_retriever_from_the_langchain_retriever(
    function_tools: list[FunctionTool],
) -> None:
    lc = QTARetriever(
        tools=function_tools,
        embeddings=KeywordEmbeddings(),
        rewriter=FakeRewriter(REWRITES),
        k=1,
        settings=REWRITING,
    )
    try:
        tool_retriever = lc.as_tool_retriever()
        assert isinstance(tool_retriever, QTAToolRetriever)
        assert tool_retriever.retrieve(UMBRELLA) == [function_tools[0]]
    finally:
        lc.pipeline.index.vectorstore.delete_collection()  # type: ignore[attr-defined]


# LlamaIndex's agents inspect pydantic models with deprecated attributes; not ours to fix.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("agent_cls", [FunctionAgent, ReActAgent])
async def test_agents_accept_it_as_tool_retriever(
    agent_cls: Any, tool_retriever: QTAToolRetriever, function_tools: list[FunctionTool]
) -> None:
    agent = agent_cls(tool_retriever=tool_retriever, llm=MockLLM())
    tools = await agent.get_tools(UMBRELLA)
    assert [t.metadata.name for t in tools] == ["get_weather"]
    # When the LLM calls a tool, the agent looks it up again by its name.
    called = await agent.get_tools("send_email")
    assert [t.metadata.name for t in called] == ["send_email"]


def test_llama_index_retrievers_learn_from_labelled_queries(
    function_tools: list[FunctionTool],
) -> None:
    tool_retriever = QTAToolRetriever.from_defaults(
        function_tools, embed_model=KeywordEmbeddings(), rewriter=None, k=1
    )
    try:
        node_retriever = tool_retriever.retriever
        examples = [{"query": "ACME share price today", "tools": ["get_stock_quote"]}]
        added = tool_retriever.add_examples(examples)
        assert [e.query for e in added] == ["ACME share price today"]
        assert len(node_retriever.pipeline.memory) == 1
        # The same pipeline learns, whichever adapter it is reached through.
        assert node_retriever.add_examples(examples) == []
        assert node_retriever.remove_examples("ACME share price today")[0].tool_ids == (
            "get_stock_quote",
        )
        assert len(node_retriever.pipeline.memory) == 0
        assert tool_retriever.remove_examples(["not stored"]) == []
    finally:
        _close(tool_retriever.retriever)
