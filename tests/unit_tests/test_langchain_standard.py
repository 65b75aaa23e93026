"""The langchain-tests standard retriever suite, run offline against QTARetriever."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.retrievers import BaseRetriever
from langchain_tests.integration_tests import RetrieversIntegrationTests

from qta_integrations import QTARetriever
from qta_integrations.fusion import FusionWeights
from qta_integrations.settings import RetrievalSettings
from qta_integrations.stores import chroma_tool_index
from qta_integrations.testing import FakeRewriter, KeywordEmbeddings
from tests.conftest import TOOLS

QUERY = "will I need an umbrella in Paris"


class TestQTARetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _chroma(self) -> Iterator[None]:
        # One in-memory Chroma collection per test, shared by every retriever the test builds
        # (they upsert the same tools by id) and deleted afterwards.
        self._index = chroma_tool_index(KeywordEmbeddings())
        try:
            yield
        finally:
            self._index.vectorstore.delete_collection()

    @property
    def retriever_constructor(self) -> type[BaseRetriever]:
        return QTARetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {
            "tools": [dict(t) for t in TOOLS],
            "vectorstore": self._index.vectorstore,
            "rewriter": FakeRewriter({QUERY: "current weather forecast for a city"}),
            "k": 2,
            # The paper's fusion weighs the rewrite, so the scripted rewriter is used.
            "settings": RetrievalSettings(fusion=FusionWeights.paper()),
        }

    @property
    def retriever_query_example(self) -> str:
        return QUERY

    def test_the_collection_is_shared(self, retriever: BaseRetriever) -> None:
        assert isinstance(retriever, QTARetriever)
        assert retriever.pipeline.index.vectorstore is self._index.vectorstore  # type: ignore[attr-defined]
        assert retriever.invoke(QUERY)[0].id == "weather"
