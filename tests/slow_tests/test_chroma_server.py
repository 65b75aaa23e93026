"""The index guarantees against a real Chroma server (``chroma run``), on loopback only.

Slow (about a minute): it starts the server for each test, restarts it once, starts client
processes, syncs a few thousand tools and runs the documentation's server blocks.
"""

from __future__ import annotations

import multiprocessing
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from qta_integrations import persist
from qta_integrations.fusion import FusionWeights
from qta_integrations.pipeline import QTAPipeline
from qta_integrations.stores import (
    IndexEntry,
    SyncResult,
    VectorStoreToolIndex,
    chroma_tool_index,
    load_index,
)
from qta_integrations.testing import KeywordEmbeddings
from qta_integrations.tools import Tool, ToolCatalog
from tests.conftest import TOOLS, CountingEmbeddings
from tests.unit_tests.test_docs_snippets import run_page, server_pages

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"
QUERIES = ["weather forecast city", "stock ticker price", "send mail with attachments"]
CHROMA = Path(sys.executable).with_name("chroma")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _client(port: int) -> Any:
    import chromadb
    from chromadb.config import Settings

    return chromadb.HttpClient(host=HOST, port=port, settings=Settings(anonymized_telemetry=False))


def _start(path: Path, port: int) -> subprocess.Popen[bytes]:
    command = [str(CHROMA), "run", "--path", str(path), "--host", HOST, "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"`{' '.join(command)}` exited with {server.returncode}")
        try:
            _client(port).heartbeat()
            return server
        except Exception:  # not answering yet
            time.sleep(0.2)
    server.kill()
    pytest.fail(f"`{' '.join(command)}` did not answer within 60 s")


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[tuple[int, Callable[[], None]]]:
    """A Chroma server on a free loopback port; yields the port and a restart function."""
    port = _free_port()
    servers = [_start(tmp_path / "server", port)]

    def restart() -> None:
        _stop(servers[-1])
        servers.append(_start(tmp_path / "server", port))

    try:
        yield port, restart
    finally:
        _stop(servers[-1])


def _index(port: int, embeddings: Any | None = None) -> VectorStoreToolIndex:
    return chroma_tool_index(embeddings or KeywordEmbeddings(), client=_client(port))


def _changed_catalogue() -> list[Tool]:
    tools = {t.id: t for t in ToolCatalog.from_dicts([dict(t) for t in TOOLS])}
    del tools["route"]
    tools["email"] = Tool(id="email", name="send_email", description="Send mail with attachments.")
    tools["music"] = Tool(id="music", name="play_music", description="Play a song by an artist.")
    return list(tools.values())


def _search(port: int) -> list[tuple[str, list[float]]]:
    # The winner and the scores: tools that tie may come back in any order.
    index = _index(port)
    found = [index.search(q, k=3) for q in QUERIES]
    return [(hits[0].tool_id, [round(h.score, 5) for h in hits]) for hits in found]


def _search_in_process(port: int, results: Any) -> None:
    results.put(_search(port))


def test_the_index_on_a_chroma_server(chroma_server: tuple[int, Callable[[], None]]) -> None:
    port, restart = chroma_server
    first = QTAPipeline(ToolCatalog.from_dicts([dict(t) for t in TOOLS]), _index(port), None)
    first.index.upsert([IndexEntry.for_example("will it rain in Oslo", ["weather"])])

    # Another client (a new process would be the same: no record) re-indexes a changed
    # catalogue: the server's listing is the record, so only new and changed tools are embedded.
    changed = _changed_catalogue()
    embeddings = CountingEmbeddings()
    second = QTAPipeline(ToolCatalog(changed), _index(port, embeddings), None)
    assert embeddings.documents_embedded == 2
    expected = {e.id: e.content_hash for e in map(IndexEntry.for_tool, changed)}
    assert second.index.list_entries("tool") == expected
    assert len(second.index.list_entries("example") or {}) == 1  # examples untouched
    result = second.retrieve("play a song by an artist", k=len(changed))
    assert result.tool_ids[0] == "music"
    assert sorted(result.tool_ids) == sorted(expected)

    # Two client processes query at once and see the same results.
    local = _search(port)
    assert [winner for winner, _ in local] == ["weather", "stock_quote", "email"]
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    readers = [context.Process(target=_search_in_process, args=(port, results)) for _ in range(2)]
    for reader in readers:
        reader.start()
    found = [results.get(timeout=120) for _ in readers]
    for reader in readers:
        reader.join(timeout=60)
    assert [r.exitcode for r in readers] == [0, 0]
    assert found == [local, local]

    # The server restarts: the data is on its disk, nothing needs indexing again.
    restart()
    embeddings = CountingEmbeddings()
    third = QTAPipeline(ToolCatalog(changed), _index(port, embeddings), None)
    assert embeddings.documents_embedded == 0
    assert third.index.list_entries("tool") == expected
    assert _search(port) == local


def test_a_server_index_is_saved_by_reference(
    chroma_server: tuple[int, Callable[[], None]], tmp_path: Path
) -> None:
    port, _ = chroma_server
    index = _index(port)
    index.add_tools(_changed_catalogue())
    reference = index.persist_reference(tmp_path / "saved")
    assert reference == {
        "format": 1,
        "backend": "chroma_server",
        "host": HOST,
        "port": port,
        "ssl": False,
        "collection_name": "qta_tools",
    }
    assert not (tmp_path / "saved" / "chroma").exists()  # nothing copied
    loaded = load_index(reference, tmp_path / "saved", embeddings=KeywordEmbeddings())
    assert loaded.list_entries("tool") == index.list_entries("tool")
    assert loaded.search("play a song", k=1)[0].tool_id == "music"


# -- a few thousand tools ------------------------------------------------------------------------

SIZE = 5_500  # more than a page of listing (5,000) and more than one write batch
TOPICS = ["weather", "stocks", "flights", "hotels", "music", "maps", "news", "sports", "recipes"]
LABELLED = [
    {"query": "weather forecast for Oslo tomorrow", "tools": ["weather_3"]},
    {"query": "weather in Paris this weekend", "tools": ["weather_3"]},
    {"query": "stock price of ACME right now", "tools": ["stocks_5"]},
    {"query": "latest stock quote for Initech", "tools": ["stocks_5"]},
    {"query": "book a flight to Rome", "tools": ["flights_7", "hotels_2"]},
]


def _many_tools(revised: frozenset[int] = frozenset()) -> list[dict[str, str]]:
    tools = []
    for i in range(SIZE):
        topic = TOPICS[i % len(TOPICS)]
        number = i // len(TOPICS)
        extra = " Revised." if i in revised else ""
        tools.append(
            {
                "id": f"{topic}_{number}",
                "name": f"{topic}_api_{number}",
                "description": f"{topic} service number {number} variant{number}.{extra}",
            }
        )
    return tools


def _ranking(pipeline: QTAPipeline, queries: list[str]) -> list[str]:
    # The winners only: hundreds of these tools tie (same words, another number), the server
    # returns tied tools in any order, and the candidates that come back set the normalisation
    # of the fused scores, so places below the first and the scores may differ between clients.
    return [pipeline.retrieve(q, k=5).tool_ids[0] for q in queries]


def _ranking_in_process(saved: str, queries: list[str], results: Any) -> None:
    results.put(_ranking(persist.load(saved, embeddings=KeywordEmbeddings()), queries))


def test_a_few_thousand_tools_on_a_chroma_server(
    chroma_server: tuple[int, Callable[[], None]], tmp_path: Path
) -> None:
    port, _ = chroma_server
    embeddings = CountingEmbeddings()
    pipeline = QTAPipeline(ToolCatalog.from_dicts(_many_tools()), _index(port, embeddings), None)
    assert embeddings.documents_embedded == SIZE
    assert len(pipeline.index.list_entries("tool") or {}) == SIZE
    # Weights set by hand that let the labels decide (the fit has tests of its own; hundreds of
    # these tools tie, so a fit on five labels holds to the base): what is compared below is
    # that every client ranks alike and finds the labelled tools.
    pipeline.add_examples(LABELLED, fit=False)
    labels_decide = FusionWeights(lexical=1.5, labelled_lexical=1.0, memory=2.5, prior=5.0)
    pipeline.settings = pipeline.settings.replace(fusion=labels_decide, fetch_k=100)
    saved = tmp_path / "saved"
    persist.save(pipeline, saved)  # the state and a reference to the server
    queries = [e["query"] for e in LABELLED] + ["music service number 40", "maps variant7"]
    expected = _ranking(pipeline, queries)
    assert expected[:4] == ["weather_3", "weather_3", "stocks_5", "stocks_5"]

    # 1% of the tools change: a fresh client (no record of its own) embeds only those.
    revised = frozenset(range(0, SIZE, 100))
    embeddings = CountingEmbeddings()
    fresh = QTAPipeline(
        ToolCatalog.from_dicts(_many_tools(revised)),
        _index(port, embeddings),
        None,
        index_tools=False,
    )
    changed = fresh.index_catalog()
    assert changed == SyncResult(num_updated=len(revised), num_skipped=SIZE - len(revised))
    assert embeddings.documents_embedded == len(revised)
    back = QTAPipeline(ToolCatalog.from_dicts(_many_tools()), fresh.index, None, index_tools=False)
    assert back.index_catalog().num_updated == len(revised)  # and back
    assert len(fresh.index.list_entries("example") or {}) == len(LABELLED)  # examples untouched

    # Two client processes, restored from the saved reference, query at once.
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    readers = [
        context.Process(target=_ranking_in_process, args=(str(saved), queries, results))
        for _ in range(2)
    ]
    for reader in readers:
        reader.start()
    found = [results.get(timeout=120) for _ in readers]
    for reader in readers:
        reader.join(timeout=60)
    assert [r.exitcode for r in readers] == [0, 0]
    assert found == [expected, expected]

    # A restarted client with the same catalogue: nothing is embedded, its examples are found.
    embeddings = CountingEmbeddings()
    restarted = persist.load(saved, embeddings=embeddings)
    assert restarted.index_catalog() == SyncResult(num_skipped=SIZE)
    assert embeddings.documents_embedded == 0
    assert {e.entry_id for e in restarted.memory} == set(
        restarted.index.list_entries("example") or {}
    )
    assert restarted.fusion == pipeline.fusion
    assert _ranking(restarted, queries) == expected
    result = restarted.retrieve(LABELLED[0]["query"], k=5)
    assert result.tools[0].tool.id == "weather_3"
    if pipeline.fusion.memory:
        assert result.tools[0].signals["memory"] == pytest.approx(1.0, abs=1e-4)

    # Without its saved state a client has no example memory: the server's examples stay
    # there but are not used.
    bare = QTAPipeline(ToolCatalog.from_dicts(_many_tools()), _index(port, embeddings), None)
    assert len(bare.memory) == 0
    assert len(bare.index.list_entries("example") or {}) == len(LABELLED)
    assert embeddings.documents_embedded == 0


@pytest.mark.parametrize("page", server_pages(), ids=lambda p: p.name)
def test_documentation_server_blocks(
    page: Path, chroma_server: tuple[int, Callable[[], None]], tmp_path: Path
) -> None:
    port, _ = chroma_server
    run_page(page, tmp_path, server_port=port)
