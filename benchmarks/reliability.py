"""Reliability figures: concurrent readers, kill -9 during a write, two writers, freed indexes.

Four measurements, each printed and written to ``--output`` as JSON:

1. ``concurrent_readers`` (real all-MiniLM-L6-v2, embedded Chroma in memory, the MTRB
   RestBench catalogue when ``QTA_MTRB_DIR`` or ``../shared/data/mtrb`` holds it, else a
   synthetic one):
   ``--queries`` concurrent ``ainvoke`` calls and the same number of ``invoke`` calls from 16
   threads on one ``QTARetriever(rewriter=None)`` must return exactly the sequential results
   (ids and scores). The model matters here: it is the shared object under concurrent use.
2. ``kill_during_upsert`` (fake embeddings: only the storage matters): a writer process syncs a
   new catalogue of ``--tools`` tools over an older one in an on-disk Chroma and is killed
   with SIGKILL at a random moment of the write, ``--trials`` times. Each time the directory is
   reopened: is it readable, and does a re-sync restore it to equal the catalogue, with every
   tool found by its own text?
3. ``two_writers`` (fake embeddings): two processes sync different catalogues into one
   directory at the same moment, with the write lock and with it switched off.
4. ``freed_indexes`` (fake embeddings): RSS after creating and dropping ``--indexes`` in-memory
   indexes of ``--tools`` tools each, against Chroma's shared in-memory client with its
   collections deleted.

Command (from the repository root, about two minutes on two cores)::

    python benchmarks/reliability.py --output benchmarks/results/reliability.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import _setup  # sets the offline environment; import before the package

FAKE_SIZE = 64


def _tools(prefix: str, n: int) -> list[dict[str, str]]:
    return [
        {"id": f"{prefix}{i}", "name": f"{prefix}_tool_{i}", "description": f"{prefix}word{i}"}
        for i in range(n)
    ]


def _fake() -> Any:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    return DeterministicFakeEmbedding(size=FAKE_SIZE)


# -- 1. concurrent readers ----------------------------------------------------------------------


def _catalogue_and_queries(n_queries: int) -> tuple[list[dict[str, Any]], list[str], str]:
    from qta_integrations.evaluation import load_mtrb

    data_dir = Path(os.environ.get("QTA_MTRB_DIR", _setup.ROOT.parent / "shared/data/mtrb"))
    if data_dir.exists():
        data = load_mtrb("restbench", data_dir=data_dir)
        queries = [q.query for q in data.queries]
        source = f"MTRB RestBench ({len(data.catalog)} tools, {len(queries)} test queries)"
        tools = data.catalog.to_dicts()
    else:
        tools = _tools("t", 500)
        queries = [f"t_tool_{i} tword{i}" for i in range(200)]
        source = "synthetic (500 tools)"
    return tools, [queries[i % len(queries)] for i in range(n_queries)], source


def concurrent_readers(n_queries: int) -> dict[str, Any]:
    from qta_integrations import QTARetriever, default_embeddings

    tools, queries, source = _catalogue_and_queries(n_queries)
    retriever = QTARetriever(tools=tools, embeddings=default_embeddings(), rewriter=None, k=5)

    def run(query: str) -> list[tuple[str, float]]:
        return [(str(d.id), round(d.metadata["score"], 6)) for d in retriever.invoke(query)]

    # The queries cycle through the test set: each distinct query is run once sequentially.
    start = time.perf_counter()
    once = {q: run(q) for q in dict.fromkeys(queries)}
    sequential_s = time.perf_counter() - start
    sequential = [once[q] for q in queries]

    async def gather() -> list[list[tuple[str, float]]]:
        docs = await asyncio.gather(*(retriever.ainvoke(q) for q in queries))
        return [[(str(d.id), round(d.metadata["score"], 6)) for d in row] for row in docs]

    start = time.perf_counter()
    concurrent = asyncio.run(gather())
    async_s = time.perf_counter() - start
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as pool:
        threaded = list(pool.map(run, queries))
    threads_s = time.perf_counter() - start
    return {
        "embeddings": "all-MiniLM-L6-v2 (real)",
        "catalogue": source,
        "queries": n_queries,
        "ainvoke_identical": sum(a == s for a, s in zip(concurrent, sequential, strict=True)),
        "threads16_identical": sum(t == s for t, s in zip(threaded, sequential, strict=True)),
        "distinct_queries": len(once),
        "sequential_distinct_s": round(sequential_s, 2),
        "ainvoke_gather_s": round(async_s, 2),
        "threads16_s": round(threads_s, 2),
    }


# -- 2. kill -9 during an upsert ---------------------------------------------------------------


def _child(*args: Any) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", *map(str, args)]


def child_write(path: str, prefix: str, n: int) -> None:
    """In a child process: sync catalogue ``prefix`` into ``path``."""
    from qta_integrations import QTAPipeline, ToolCatalog, chroma_tool_index

    index = chroma_tool_index(_fake(), persist_directory=path)
    print("writing", flush=True)
    QTAPipeline(ToolCatalog.from_dicts(_tools(prefix, n)), index, None)
    print("done", flush=True)


def child_check(path: str, prefix: str, n: int) -> None:
    """In a fresh process (no cached client): readable? Does a re-sync restore the catalogue?"""
    from qta_integrations import QTAPipeline, ToolCatalog, chroma_tool_index
    from qta_integrations.stores import IndexEntry

    out: dict[str, Any] = {}
    index = chroma_tool_index(_fake(), persist_directory=path)
    try:
        out["entries_after_kill"] = len(index.list_entries("tool") or {})
        index.search(f"{prefix}word1", k=3)
        out["readable"] = True
    except Exception as err:
        out.update(readable=False, error=f"{type(err).__name__}: {err}")
    catalog = ToolCatalog.from_dicts(_tools(prefix, n))
    result = QTAPipeline(catalog, index, None, index_tools=False).index_catalog()
    out["resync"] = [result.num_added, result.num_updated, result.num_skipped, result.num_deleted]
    expected = {e.id: e.content_hash for e in map(IndexEntry.for_tool, catalog)}
    out["equal"] = index.list_entries("tool") == expected
    hits = index.search_many([t.text for t in catalog], k=1)
    out["found"] = sum(h[0].tool_id == t.id for h, t in zip(hits, catalog, strict=True))
    print(json.dumps(out))


def child_final(path: str, n: int) -> None:
    """In a fresh process: which catalogues does the store hold, and is each entry found?"""
    from qta_integrations import ToolCatalog, chroma_tool_index

    index = chroma_tool_index(_fake(), persist_directory=path)
    listed = sorted(index.list_entries("tool") or {})
    texts = {t.id: t.text for p in "ab" for t in ToolCatalog.from_dicts(_tools(p, n))}
    hits = index.search_many([texts[i] for i in listed], k=1)
    found = sum(h[0].tool_id == i for h, i in zip(hits, listed, strict=True))
    catalogues = sorted({i[0] for i in listed})
    print(json.dumps({"entries": len(listed), "catalogues_in_store": catalogues, "found": found}))


def _run_child(*args: Any) -> dict[str, Any]:
    done = subprocess.run(_child(*args), capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        return {"readable": False, "error": done.stderr.strip().splitlines()[-1:]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def kill_during_upsert(trials: int, n: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    runs = []
    for trial in range(trials):
        with tempfile.TemporaryDirectory(prefix="qta_kill_") as tmp:
            path = Path(tmp) / "db"
            began = time.perf_counter()
            subprocess.run(_child("write", path, "a", n), capture_output=True, check=True)
            # The first write (process start included) bounds the moment of the kill.
            write_s = time.perf_counter() - began
            writer = subprocess.Popen(
                _child("write", path, "b", n), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
            assert writer.stdout is not None
            writer.stdout.readline()  # "writing": the client is open, the sync starts
            delay = rng.uniform(0.05, 0.8 * write_s)
            time.sleep(delay)
            finished = writer.poll() is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(writer.pid, signal.SIGKILL)
            writer.communicate(timeout=60)
            check = _run_child("check", path, "b", n)
            runs.append({"trial": trial, "kill_s": round(delay, 2), "finished": finished, **check})
    restored = sum(bool(r.get("equal")) and r.get("found") == n for r in runs)
    return {
        "embeddings": f"DeterministicFakeEmbedding({FAKE_SIZE}) (the model does not matter)",
        "tools": n,
        "trials": trials,
        "killed_mid_write": sum(not r["finished"] for r in runs),
        "first_read_ok": sum(bool(r.get("readable")) for r in runs),
        "restored_by_resync": restored,
        "runs": runs,
    }


# -- 3. two writers -------------------------------------------------------------------------------


def _two_writer_worker(path: str, prefix: str, n: int, lock: bool, start: Any, out: Any) -> None:
    from qta_integrations import QTAPipeline, ToolCatalog, chroma_tool_index

    try:
        index = chroma_tool_index(_fake(), persist_directory=path)
        if not lock:
            index.write_lock = contextlib.nullcontext  # type: ignore[method-assign]
        start.wait()
        began = time.perf_counter()
        QTAPipeline(ToolCatalog.from_dicts(_tools(prefix, n)), index, None)
        out.put((prefix, "ok", round(time.perf_counter() - began, 2)))
    except Exception as err:
        out.put((prefix, f"{type(err).__name__}: {err}", None))


def two_writers(n: int, runs: int) -> dict[str, Any]:
    from qta_integrations import chroma_tool_index

    context = multiprocessing.get_context("spawn")
    results: dict[str, Any] = {
        "embeddings": f"DeterministicFakeEmbedding({FAKE_SIZE})",
        "tools_per_writer": n,
    }
    for lock in (True, False):
        rows = []
        for _ in range(runs):
            with tempfile.TemporaryDirectory(prefix="qta_two_") as tmp:
                path = str(Path(tmp) / "db")
                chroma_tool_index(_fake(), persist_directory=path).close()  # created once
                start, out = context.Barrier(2), context.Queue()
                procs = [
                    context.Process(target=_two_writer_worker, args=(path, p, n, lock, start, out))
                    for p in ("a", "b")
                ]
                for proc in procs:
                    proc.start()
                for proc in procs:
                    proc.join(timeout=300)
                outcomes = sorted(out.get(timeout=5) for _ in procs)
                rows.append({"writers": outcomes, **_run_child("final", path, n)})
        results["with_lock" if lock else "without_lock"] = rows
    return results


# -- 4. freed indexes ---------------------------------------------------------------------------


def freed_indexes(count: int, n: int) -> dict[str, Any]:
    import chromadb
    import psutil
    from chromadb.config import Settings

    from qta_integrations.stores import IndexEntry, chroma_tool_index
    from qta_integrations.tools import Tool

    entries = [IndexEntry.for_tool(Tool.from_dict(t)) for t in _tools("a", n)]
    process = psutil.Process()
    rss = lambda: round(process.memory_info().rss / 2**20)  # noqa: E731
    gc.collect()
    start = rss()
    for _ in range(count):
        index = chroma_tool_index(_fake())
        index.upsert(entries)
        del index
    gc.collect()
    after_scratch = rss()
    client = chromadb.EphemeralClient(settings=Settings(anonymized_telemetry=False))
    for i in range(count):
        shared = chroma_tool_index(_fake(), client=client, collection_name=f"qta_shared_{i}")
        shared.upsert(entries)
        client.delete_collection(f"qta_shared_{i}")
        del shared
    gc.collect()
    return {
        "embeddings": f"DeterministicFakeEmbedding({FAKE_SIZE})",
        "indexes": count,
        "tools_each": n,
        "rss_start_mib": start,
        "rss_after_private_indexes_mib": after_scratch,
        "rss_after_shared_in_memory_client_mib": rss(),
        "shared_client_collections_left": client.count_collections(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--tools", type=int, default=2000)
    parser.add_argument("--indexes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "write":
            child_write(rest[0], rest[1], int(rest[2]))
        elif kind == "check":
            child_check(rest[0], rest[1], int(rest[2]))
        else:
            child_final(rest[0], int(rest[1]))
        return

    report: dict[str, Any] = {}
    for name, run in (
        ("concurrent_readers", lambda: concurrent_readers(args.queries)),
        ("kill_during_upsert", lambda: kill_during_upsert(args.trials, args.tools, args.seed)),
        ("two_writers", lambda: two_writers(args.tools // 2, runs=2)),
        ("freed_indexes", lambda: freed_indexes(args.indexes, args.tools)),
    ):
        start = time.perf_counter()
        report[name] = run()
        report[name]["seconds"] = round(time.perf_counter() - start, 1)
        print(name, json.dumps(report[name], indent=2), flush=True)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
