from __future__ import annotations

from qta_integrations import QTARetriever
from qta_integrations.fusion import FusionWeights
from qta_integrations.settings import RetrievalSettings
from qta_integrations.testing import FakeRewriter, KeywordEmbeddings


def test_rewrite_changes_ranking(tool_dicts: list[dict[str, str]]) -> None:
    rewriter = FakeRewriter({"will I need an umbrella?": "current weather forecast for a city"})
    retriever = QTARetriever(
        tools=tool_dicts,
        embeddings=KeywordEmbeddings(),
        rewriter=rewriter,
        k=2,
        settings=RetrievalSettings(fusion=FusionWeights.paper(0.7)),
    )
    docs = retriever.invoke("will I need an umbrella?")
    assert docs[0].id == "weather"
    assert docs[0].metadata["rewritten_query"] == "current weather forecast for a city"
    assert len(retriever.invoke("will I need an umbrella?", k=1)) == 1
    assert rewriter.calls == ["will I need an umbrella?"]  # the second call hit the cache
