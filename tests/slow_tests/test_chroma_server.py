"""The index guarantees against a real Chroma server (``chroma run``), on loopback only.

Slow (about 15 s): it starts the server twice and two client processes.
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

from qta_integrations.pipeline import QTAPipeline
from qta_integrations.stores import IndexEntry, VectorStoreToolIndex, chroma_tool_index, load_index
from qta_integrations.testing import KeywordEmbeddings
from qta_integrations.tools import Tool, ToolCatalog
from tests.conftest import TOOLS, CountingEmbeddings

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
