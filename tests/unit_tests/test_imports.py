from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import qta_integrations

EXPECTED_ALL = [
    "BM25ToolIndex",
    "ExactToolIndex",
    "ExampleMemory",
    "FusionWeights",
    "HuggingFaceRewriter",
    "IndexEntry",
    "IndexHit",
    "LlamaIndexToolIndex",
    "QTALlamaIndexRetriever",
    "QTAPipeline",
    "QTARetriever",
    "QTAToolRetriever",
    "QTAToolSelector",
    "QTATrainer",
    "QTATrainingConfig",
    "QueryRewriter",
    "RankingFunction",
    "RetrievalResult",
    "RetrievalSettings",
    "RetrievedTool",
    "RewriteExample",
    "RewritePrompt",
    "RewriteRequest",
    "RunnableRewriter",
    "Signal",
    "SignalScores",
    "SufficiencyNDCG",
    "Tool",
    "ToolCatalog",
    "ToolHit",
    "ToolIndex",
    "ToolSelection",
    "VectorStoreToolIndex",
    "__version__",
    "chroma_tool_index",
    "create_qta_agent",
    "default_embeddings",
    "fuse_hits",
]

HEAVY = ("torch", "transformers", "trl", "peft", "sentence_transformers")


def test_all_is_pinned_and_sorted() -> None:
    assert qta_integrations.__all__ == EXPECTED_ALL
    assert sorted(qta_integrations.__all__) == qta_integrations.__all__
    assert dir(qta_integrations) == EXPECTED_ALL


@pytest.mark.parametrize("name", [n for n in EXPECTED_ALL if n != "__version__"])
def test_every_exported_name_resolves(name: str) -> None:
    value = getattr(qta_integrations, name)
    assert getattr(value, "__name__", name) == name


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        _ = qta_integrations.Nope  # type: ignore[attr-defined]


def _loaded_after(code: str, prefixes: tuple[str, ...] = HEAVY) -> list[str]:
    """The modules under ``prefixes`` that ``code`` imports, in a fresh interpreter."""
    probe = (
        f"import sys\n{code}\nprint(','.join(sorted({{m for m in sys.modules for p in "
        f"{prefixes!r} if m == p or m.startswith(p + '.')}})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],  # the repository root, so the package imports
    )
    return [m for m in out.stdout.strip().split(",") if m]


@pytest.mark.parametrize(
    "code",
    [
        "import qta_integrations",
        "from qta_integrations import QTARetriever, QTALlamaIndexRetriever, QTAToolRetriever",
    ],
)
def test_import_does_not_load_heavy_dependencies(code: str) -> None:
    assert _loaded_after(code) == []


def test_importing_the_langchain_face_does_not_import_llama_index() -> None:
    code = "from qta_integrations import QTARetriever\nimport qta_integrations.retrievers.langchain"
    faces = ("llama_index", "qta_integrations.retrievers.llama_index")
    assert _loaded_after(code, faces) == []
    assert _loaded_after("from qta_integrations import QTAToolRetriever", faces) != []  # a probe


def test_mcp_packages_are_imported_only_when_servers_are_listed() -> None:
    code = (
        "import sys\nimport qta_integrations.sources.mcp\n"
        "from qta_integrations import QTARetriever, QTAToolRetriever\n"
        "print(','.join(m for m in ('mcp', 'langchain_mcp_adapters') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == ""
