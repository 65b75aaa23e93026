"""Scale: 1,000 to 100,000 tools with the real MiniLM, in embedded Chroma on disk and on a server.

The catalogue is the three MTRB tool corpora concatenated (ToolBench rebuilt, 811 tools;
RestBench, 54; MetaTool, 199: 1,064 tools), then varied: past the 1,064 originals each tool comes
again with a vendor name, an API version and one to three typed parameters appended to its
description (``"... Acme API v2; parameters: city (string), limit (int)."``), so that every text
is distinct and the text lengths stay MTRB's (about 60 word pieces on average). A size-``n``
catalogue is the first ``n`` tools; even the 1,000-tool one holds the 811 ToolBench tools that the
labelled queries (MTRB-ToolBench's 10 training queries) need. Timed queries cycle through the
MTRB test queries of the three subsets.

For each size, every stage runs in a process of its own, so that one size's memory never counts
in another's and a stage's peak RSS is its own:

* ``encode``: raw all-MiniLM-L6-v2, ``embed_documents`` of the catalogue's texts alone, in the
  chunks the index writes (`qta_integrations.stores.sync.DEFAULT_BATCH_SIZE`), with the model's
  own batch size: the yardstick of indexing.
* ``index``: ``QTAPipeline.from_tools(tools, persist_directory=...)`` (sync into an embedded
  on-disk Chroma), with the time of every ``embed_documents`` call inside it added up, so the
  ratio of the two is measured in one run; peak RSS after it; then ``add_examples`` of the 10
  labelled queries (the fit) and ``persist.save``; the saved directory's size.
* ``bm25``: the lexical index over the catalogue (`BM25ToolIndex`): build time and memory, and
  the copy expanded with the labelled queries that the lexical signal builds.
* ``serve``: ``QTARetriever.from_persist_dir`` in a fresh process (reload time), the first dense
  and fitted queries (the fitted one builds BM25), then ``invoke`` timed query by query,
  alternating dense and fitted (query embedding included); peak RSS of the serving process.
* ``resync``: 1% of the tools get a new description; ``index_catalog()`` must update exactly
  those (its `SyncResult` is asserted) and is timed against ``embed_documents`` of the same
  texts, timed just before and just after it; then the catalogue is changed back (timed too).

With ``--server-sizes``, a Chroma server (``chroma run --path DIR --host 127.0.0.1 --port
FREE``) is started by the script and stopped at the end, and the same catalogue goes there:

* ``server_index``: the catalogue synced into the server through the package, with MiniLM's
  vectors read back from the embedded store instead of encoding the texts a second time (the
  encoding is ``encode``'s; what is timed is everything else: sync, batches, writes, the
  server's index), then the fit and ``persist.save`` (which saves a reference to the server);
* ``server_query``: one process holds the embedded and the server retrievers and times them
  query by query in rotation (embedded dense, server dense, embedded fitted, server fitted);
* ``server_resync``: the 1% change through a fresh client (whose record is empty);
* ``server_clients``: two client processes query at once; their rankings must agree;
* ``server_restart``: a restarted client with the same catalogue (``persist.load`` of the saved
  reference) embeds nothing, finds its labelled examples on the server and rebuilds BM25.

Command (from the repository root; the 100,000-tool stages take hours on two cores, so run it
niced; the stores go to ``--work-dir``, by default ``qta-scale`` in the temporary directory)::

    nice python benchmarks/scale.py --data-dir path/to/mtrb \
        --sizes 1000 10000 100000 --server-sizes 1000 10000 100000 --encode-sample 10000 \
        --output benchmarks/results/scale.json --plot docs/img/scale.png

It is resumable: every stage writes ``WORK_DIR/<size>/<stage>.json`` and is skipped when that
file exists (``--fresh`` starts a size over), and ``--sizes`` picks the sizes to run; results
already in ``--output`` are kept. ``--plot`` draws the figure from all of them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import _setup  # noqa: F401  (sets the offline environment; import before the package)
from langchain_core.embeddings import Embeddings

SCRIPT = Path(__file__).resolve()
HOST = "127.0.0.1"
SEEDS = ("toolbench", "restbench", "metatool")  # ToolBench first: the labels point there
VENDORS = (
    "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Wonka", "Tyrell",
    "Cyberdyne", "Soylent", "Aperture", "Massive", "Vandelay", "Gringotts", "Oscorp", "Monarch",
    "Nakatomi", "Virtucon", "Zorg", "Dunder", "Pied Piper", "Prestige", "Sirius",
)  # fmt: skip
VERSIONS = 4
PARAMETERS = (
    ("city", "string"), ("date", "ISO date"), ("limit", "int"), ("page", "int"),
    ("language", "ISO code"), ("currency", "ISO code"), ("user_id", "string"),
    ("query", "string"), ("region", "string"), ("format", "json or csv"),
    ("start", "datetime"), ("end", "datetime"), ("sort", "asc or desc"), ("lat", "float"),
    ("lon", "float"), ("category", "string"),
)  # fmt: skip
CHANGED_FRACTION = 0.01
STAGES = ("encode", "index", "bm25", "serve", "resync")
TARGETS = {
    "invoke_p50_dense_ms": 30.0,
    "invoke_p50_fitted_ms": 45.0,
    "index_over_encode": 1.1,
    "resync_over_encode": 1.1,
    "serve_peak_rss_mib": round(2e9 / 2**20),  # 2 GB
    "reload_s": 10.0,
    "server_over_embedded_p50": 2.0,
}
"""The figures the 100,000-tool run is held to (`targets` in the JSON)."""


# -- the catalogue ----------------------------------------------------------------------------


def data_dir() -> Path | None:
    """The local MTRB directory (``--data-dir``, passed on to the stages as ``$QTA_MTRB_DIR``)."""
    found = os.environ.get("QTA_MTRB_DIR")
    return Path(found) if found else None


def catalogue(n: int) -> list[dict[str, Any]]:
    """The first ``n`` tools: MTRB's 1,064, then varied copies (see the module docstring)."""
    from qta_integrations.evaluation import load_mtrb

    seeds = [t for s in SEEDS for t in load_mtrb(s, data_dir=data_dir()).catalog.to_dicts()]
    if n > len(seeds) * (1 + len(VENDORS) * VERSIONS):
        msg = f"At most {len(seeds) * (1 + len(VENDORS) * VERSIONS)} tools can be made, not {n}."
        raise ValueError(msg)
    tools = seeds[:n]
    rng = random.Random(0)
    copy = 0
    while len(tools) < n:
        vendor, version = VENDORS[copy // VERSIONS], copy % VERSIONS + 1
        for seed in seeds[: n - len(tools)]:
            params = ", ".join(f"{p} ({t})" for p, t in rng.sample(PARAMETERS, rng.randint(1, 3)))
            tools.append(
                {
                    **seed,
                    "id": f"{seed['id']}~{vendor.lower().replace(' ', '')}-v{version}",
                    "description": f"{seed['description']} {vendor} API v{version}; "
                    f"parameters: {params}.",
                }
            )
        copy += 1
    return tools


def changed_catalogue(tools: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[int]]:
    """The catalogue with 1% of the descriptions changed, and the positions changed."""
    count = max(1, int(len(tools) * CHANGED_FRACTION))
    positions = sorted(random.Random(1).sample(range(len(tools)), count))
    changed = list(tools)
    for i in positions:
        changed[i] = {**tools[i], "description": f"{tools[i]['description']} Revised."}
    return changed, positions


def labelled_and_queries() -> tuple[Any, list[str]]:
    """The 10 labelled ToolBench training queries, and the test queries of the 3 subsets."""
    from qta_integrations.evaluation import load_mtrb

    train = load_mtrb("toolbench", "train", data_dir=data_dir())
    test = [[q.query for q in load_mtrb(s, data_dir=data_dir()).queries] for s in SEEDS]
    queries = [q for row in zip(*test, strict=True) for q in row]  # interleaved subsets
    return train, queries


# -- measuring --------------------------------------------------------------------------------


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss / 2**20)


class Timer:
    """Wall and CPU seconds (user + system, all threads) of a block."""

    def __enter__(self) -> Timer:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu

    def as_dict(self) -> dict[str, float]:
        return {"wall_s": round(self.wall, 3), "cpu_s": round(self.cpu, 3)}


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    import numpy as np

    return {
        "p50_ms": round(1000 * statistics.median(seconds), 2),
        "p95_ms": round(1000 * float(np.percentile(seconds, 95)), 2),
        "mean_ms": round(1000 * statistics.fmean(seconds), 2),
        "n": len(seconds),
    }


def directory_mib(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 1)


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def embed_in_chunks(embeddings: Any, texts: list[str], *, desc: str) -> None:
    """``embed_documents`` in the chunks `sync_index` writes (the model batches inside)."""
    from tqdm.auto import tqdm

    from qta_integrations.stores.sync import DEFAULT_BATCH_SIZE

    with tqdm(total=len(texts), desc=desc, unit="text") as progress:
        for start in range(0, len(texts), DEFAULT_BATCH_SIZE):
            chunk = texts[start : start + DEFAULT_BATCH_SIZE]
            embeddings.embed_documents(chunk)
            progress.update(len(chunk))


def warm_model() -> Any:
    """The default MiniLM, loaded and run once (loading is not what is measured)."""
    from qta_integrations.embeddings import default_embeddings

    embeddings = default_embeddings()
    embeddings.embed_documents(["warm up the model"] * 4)
    embeddings.embed_query("warm up")
    return embeddings


class TimedEmbeddings(Embeddings):
    """Wraps an embedding model and adds up the time its ``embed_documents`` calls take.

    Indexing through it gives, in the same run and under the same load, the index time and
    the encoding it contains: their ratio is the package's whole overhead.
    """

    def __init__(self, inner: Embeddings) -> None:
        self.inner = inner
        self.wall = self.cpu = 0.0
        self.texts = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        with Timer() as timer:
            vectors = self.inner.embed_documents(texts)
        self.wall += timer.wall
        self.cpu += timer.cpu
        self.texts += len(texts)
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)

    @property
    def encoder_identity(self) -> dict[str, str]:
        """The wrapped model's: an index written through this wrapper is that model's."""
        from qta_integrations.encoders import encoder_identity

        return encoder_identity(self.inner)


class CountingEmbeddings(Embeddings):
    """Wraps an embedding model and counts the documents it embeds."""

    def __init__(self, inner: Embeddings) -> None:
        self.inner = inner
        self.documents = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.documents += len(texts)
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)

    @property
    def encoder_identity(self) -> dict[str, str]:
        """The wrapped model's: an index written through this wrapper is that model's."""
        from qta_integrations.encoders import encoder_identity

        return encoder_identity(self.inner)


def time_modes(
    modes: dict[str, Callable[[str], Any]], queries: Sequence[str], *, desc: str
) -> tuple[dict[str, dict[str, float]], dict[str, list[list[str]]]]:
    """Time each mode query by query, rotating the order, so load changes hit all alike."""
    from tqdm.auto import tqdm

    names = list(modes)
    times: dict[str, list[float]] = {n: [] for n in names}
    rankings: dict[str, list[list[str]]] = {n: [] for n in names}
    for i, query in enumerate(tqdm(queries, desc=desc, unit="query")):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            start = time.perf_counter()
            docs = modes[name](query)
            times[name].append(time.perf_counter() - start)
            rankings[name].append([str(d.id) for d in docs])
            assert docs, f"{name} returned nothing for {query!r}"
    return {n: percentiles(t) for n, t in times.items()}, rankings


def dense_twin(retriever: Any) -> Any:
    """A dense-only retriever over the same store and catalogue (no labels)."""
    from qta_integrations import QTAPipeline, QTARetriever
    from qta_integrations.fusion import FusionWeights

    core = retriever.pipeline
    settings = core.settings.replace(fusion=FusionWeights())
    return QTARetriever(
        pipeline=QTAPipeline(core.catalog, core.index, None, settings=settings, index_tools=False)
    )


def with_label_signals(retriever: Any) -> dict[str, Any]:
    """Turn on every label signal of a fitted retriever; return the fitted and timed weights.

    What a query costs depends on which signals are on, not on their weights: the weights
    the fit chose (it may keep dense alone) are recorded, and every signal but the rewrite
    (lexical, labelled_lexical, memory, prior: the costliest fitted path) is timed.
    """
    from qta_integrations.fusion import FusionWeights

    core = retriever.pipeline
    fitted = core.fusion.to_dict()
    every = FusionWeights(lexical=1, labelled_lexical=1, memory=1, prior=1)
    core.settings = core.settings.replace(fusion=every)
    return {"fitted": fitted, "timed": core.fusion.to_dict()}


def settings_from(args: argparse.Namespace) -> Any:
    from qta_integrations.settings import RetrievalSettings

    return RetrievalSettings(k=args.k, fetch_k=args.fetch_k)


# -- stages (each in its own process) ---------------------------------------------------------


def stage_encode(n: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from qta_integrations.tools import ToolCatalog

    texts = [t.text for t in ToolCatalog.from_dicts(catalogue(n))]
    sample = texts
    if args.encode_sample and args.encode_sample < n:
        # A seeded random sample of the same texts, timed and scaled to all of them: the
        # encoding time is linear in the number of texts of one length distribution.
        sample = random.Random(0).sample(texts, args.encode_sample)
    embeddings = warm_model()
    load = load_average()
    with Timer() as timer:
        embed_in_chunks(embeddings, sample, desc=f"encode {n}")
    scale = len(texts) / len(sample)
    timed = timer.as_dict()
    return {
        "wall_s": round(timed["wall_s"] * scale, 3),
        "cpu_s": round(timed["cpu_s"] * scale, 3),
        "texts": len(texts),
        "texts_encoded": len(sample),
        "sample_timer": timed,
        "peak_rss_mib": round(peak_rss_mib()),
        "load_average": [load, load_average()],
    }


def stage_index(n: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from qta_integrations import QTAPipeline, persist

    tools = catalogue(n)
    train, _ = labelled_and_queries()
    timed = TimedEmbeddings(warm_model())
    saved = work / "saved"
    shutil.rmtree(saved, ignore_errors=True)
    before = peak_rss_mib()
    load = load_average()
    with Timer() as index_timer:
        indexed = QTAPipeline.from_tools(
            tools,
            embeddings=timed,
            persist_directory=saved / "store",
            rewriter=None,
            settings=settings_from(args),
            show_progress=True,
        )
    indexing_rss = peak_rss_mib()
    entries = len(indexed.index.list_entries("tool") or {})
    assert entries == n, f"{entries} tools in the store, {n} in the catalogue"
    # The state to save: the default model over the same directory (nothing to index).
    pipeline = QTAPipeline.from_tools(
        tools,
        persist_directory=saved / "store",
        rewriter=None,
        settings=settings_from(args),
        index_tools=False,
    )
    with Timer() as fit_timer:
        pipeline.add_examples(train)
    with Timer() as save_timer:
        persist.save(pipeline, saved)
    return {
        "index": index_timer.as_dict(),
        "encode_inside_index": {
            "wall_s": round(timed.wall, 3),
            "cpu_s": round(timed.cpu, 3),
            "texts": timed.texts,
        },
        "index_over_encode_inside": round(index_timer.wall / timed.wall, 4),
        "peak_rss_mib_before_indexing": round(before),
        "peak_rss_mib_indexing": round(indexing_rss),
        "fit": {
            **fit_timer.as_dict(),
            "weights": pipeline.fusion.to_dict(),
            "examples": len(pipeline.memory),
            "peak_rss_mib": round(peak_rss_mib()),
        },
        "save": save_timer.as_dict(),
        "directory_mib": directory_mib(saved),
        "store_mib": directory_mib(saved / "store"),
        "load_average": [load, load_average()],
    }


def stage_bm25(n: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import gc

    from qta_integrations.memory import ExampleMemory
    from qta_integrations.stores import BM25ToolIndex
    from qta_integrations.tools import ToolCatalog

    tools = list(ToolCatalog.from_dicts(catalogue(n)))
    train, _ = labelled_and_queries()
    memory = ExampleMemory()
    memory.add((q.query, q.tool_ids) for q in train.queries)
    BM25ToolIndex().add_tools(tools[:10])  # imports bm25s
    gc.collect()
    start = rss_mib()
    with Timer() as build:
        index = BM25ToolIndex()
        index.add_tools(tools)
    gc.collect()
    built = rss_mib()
    with Timer() as expand:
        expanded = index.with_expansions(memory.expansions())
    gc.collect()
    with Timer() as score:
        for _ in range(20):
            expanded.scores(["find the weather forecast for a city"])
    return {
        "build": build.as_dict(),
        "rss_mib": round(built - start, 1),
        "expanded_build": expand.as_dict(),
        "expanded_rss_mib": round(rss_mib() - built, 1),
        "score_one_query_ms": round(1000 * score.wall / 20, 2),
    }


def stage_serve(n: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from qta_integrations import QTARetriever

    _, queries = labelled_and_queries()
    with Timer() as model_load:
        warm_model()  # what a fresh process pays before its retriever: not part of the reload
    with Timer() as reload:
        retriever = QTARetriever.from_persist_dir(work / "saved", rewriter=None)
    weights = with_label_signals(retriever)
    dense = dense_twin(retriever)
    with Timer() as first_dense:
        dense.invoke(queries[-1])
    with Timer() as first_fitted:
        retriever.invoke(queries[-1])  # builds BM25 and its expanded copy
    for query in queries[-6:-1]:
        dense.invoke(query)
        retriever.invoke(query)
    load = load_average()
    timed = [queries[i % len(queries)] for i in range(args.queries)]
    invoke, _ = time_modes(
        {"dense": dense.invoke, "fitted": retriever.invoke}, timed, desc=f"serve {n}"
    )
    return {
        "model_load": model_load.as_dict(),
        "reload": reload.as_dict(),
        "first_dense_invoke": first_dense.as_dict(),
        "first_fitted_invoke": first_fitted.as_dict(),
        "invoke": invoke,
        "fitted_over_dense_p50": round(invoke["fitted"]["p50_ms"] / invoke["dense"]["p50_ms"], 3),
        "weights": weights,
        "peak_rss_mib": round(peak_rss_mib()),
        "load_average": [load, load_average()],
    }


def _resync(index: Any, counting: CountingEmbeddings, n: int) -> dict[str, Any]:
    """Change 1% of the tools and back, each sync timed between two encodings of its texts.

    ``index`` embeds through ``counting``: each sync must report, and embed, the changed tools
    alone.
    """
    from qta_integrations import QTAPipeline
    from qta_integrations.stores import SyncResult
    from qta_integrations.tools import ToolCatalog

    tools = catalogue(n)
    changed, positions = changed_catalogue(tools)
    out: dict[str, Any] = {"changed": len(positions)}
    load = load_average()
    for name, target in (("change", changed), ("change_back", tools)):
        pipeline = QTAPipeline(ToolCatalog.from_dicts(target), index, None, index_tools=False)
        texts = [ToolCatalog.from_dicts([target[i]])[0].text for i in positions]
        with Timer() as before:
            counting.inner.embed_documents(texts)
        embedded = counting.documents
        with Timer() as sync:
            result = pipeline.index_catalog()
        embedded = counting.documents - embedded
        with Timer() as after:
            counting.inner.embed_documents(texts)
        expected = SyncResult(num_updated=len(positions), num_skipped=n - len(positions))
        assert result == expected, f"{name}: {result}, expected {expected}"
        assert embedded == len(positions), f"{name}: {embedded} texts embedded"
        encode = (before.wall + after.wall) / 2
        out[name] = {
            "sync": sync.as_dict(),
            "result": result.__dict__,
            "documents_embedded": embedded,
            "encode_before": before.as_dict(),
            "encode_after": after.as_dict(),
            "sync_over_encode": round(sync.wall / encode, 3),
        }
    out["load_average"] = [load, load_average()]
    return out


def stage_resync(n: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from qta_integrations import chroma_tool_index

    counting = CountingEmbeddings(warm_model())
    index = chroma_tool_index(counting, persist_directory=work / "saved" / "store")
    return _resync(index, counting, n)


# -- server stages ------------------------------------------------------------------------------


def server_client(port: int) -> Any:
    import chromadb
    from chromadb.config import Settings

    return chromadb.HttpClient(host=HOST, port=port, settings=Settings(anonymized_telemetry=False))


class StoredVectors(Embeddings):
    """MiniLM's own vectors of the tool texts, read back from the embedded store.

    Filling the server embeds nothing again: the package's sync, batching and writes to the
    server are what is timed, and the encoding (the same on both) comes from ``encode``.
    Queries, and any text the store does not hold, go to the model.
    """

    def __init__(self, store: Path, model: Embeddings) -> None:
        import chromadb
        import numpy as np
        from chromadb.config import Settings

        from qta_integrations.stores.chroma import DEFAULT_COLLECTION_NAME, chroma_rows

        client = chromadb.PersistentClient(
            path=str(store), settings=Settings(anonymized_telemetry=False)
        )
        rows = chroma_rows(
            client.get_collection(DEFAULT_COLLECTION_NAME), include=["documents", "embeddings"]
        )
        texts, vectors = [], []
        for _, row in rows:
            texts.append(row["documents"])
            vectors.append(np.asarray(row["embeddings"], dtype=np.float32))
        self.matrix = np.stack(vectors)  # float32 rows: a fifth of Python lists' memory
        self.rows = {text: i for i, text in enumerate(texts)}
        self.model = model
        self.embedded = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        missing = [t for t in texts if t not in self.rows]
        found = dict(zip(missing, self.model.embed_documents(missing), strict=True))
        self.embedded += len(missing)
        return [found[t] if t in found else self.matrix[self.rows[t]].tolist() for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.model.embed_query(text)


def stage_server_index(n: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from qta_integrations import QTAPipeline, ToolCatalog, chroma_tool_index, persist

    tools = ToolCatalog.from_dicts(catalogue(n))
    train, _ = labelled_and_queries()
    embeddings = warm_model()
    with Timer() as read_timer:
        stored = StoredVectors(work / "saved" / "store", embeddings)
    client = server_client(args.port)
    name = f"scale_{n}"
    with contextlib.suppress(Exception):
        client.delete_collection(name)
    index = chroma_tool_index(stored, client=client, collection_name=name)
    load = load_average()
    with Timer() as index_timer:
        QTAPipeline(tools, index, None, settings=settings_from(args), show_progress=True)
    indexing_rss = peak_rss_mib()
    # The state to save: the real model over the same collection (its examples embedded by it).
    server_index = chroma_tool_index(embeddings, client=client, collection_name=name)
    pipeline = QTAPipeline(
        tools, server_index, None, settings=settings_from(args), index_tools=False
    )
    with Timer() as fit_timer:
        pipeline.add_examples(train)
    saved = work / "server_saved"
    shutil.rmtree(saved, ignore_errors=True)
    persist.save(pipeline, saved)
    return {
        "index_without_encoding": index_timer.as_dict(),
        "texts_encoded_while_indexing": stored.embedded,
        "read_stored_vectors": read_timer.as_dict(),
        "client_peak_rss_mib_indexing": round(indexing_rss),
        "fit": {**fit_timer.as_dict(), "weights": pipeline.fusion.to_dict()},
        "saved_reference_kib": round(directory_mib(saved) * 1024, 1),
        "load_average": [load, load_average()],
    }


def stage_server_query(n: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from qta_integrations import QTARetriever

    _, queries = labelled_and_queries()
    warm_model()
    embedded = QTARetriever.from_persist_dir(work / "saved", rewriter=None)
    with Timer() as reload:
        server = QTARetriever.from_persist_dir(work / "server_saved", rewriter=None)
    weights = {"embedded": with_label_signals(embedded), "server": with_label_signals(server)}
    modes = {
        "embedded_dense": dense_twin(embedded).invoke,
        "server_dense": dense_twin(server).invoke,
        "embedded_fitted": embedded.invoke,
        "server_fitted": server.invoke,
    }
    for query in queries[-6:]:
        for run in modes.values():
            run(query)
    load = load_average()
    timed = [queries[i % len(queries)] for i in range(args.queries)]
    invoke, rankings = time_modes(modes, timed, desc=f"server vs embedded {n}")
    agree = {
        kind: sum(
            a == b
            for a, b in zip(rankings[f"embedded_{kind}"], rankings[f"server_{kind}"], strict=True)
        )
        for kind in ("dense", "fitted")
    }
    p50 = {name: row["p50_ms"] for name, row in invoke.items()}
    return {
        "reload_server_reference": reload.as_dict(),
        "invoke": invoke,
        "server_over_embedded_p50": {
            "dense": round(p50["server_dense"] / p50["embedded_dense"], 3),
            "fitted": round(p50["server_fitted"] / p50["embedded_fitted"], 3),
        },
        "same_top_k": {kind: f"{count}/{len(timed)}" for kind, count in agree.items()},
        "weights": weights,
        "load_average": [load, load_average()],
    }


def stage_server_resync(n: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from qta_integrations import persist

    counting = CountingEmbeddings(warm_model())
    # A fresh client: its record is empty, the hashes come from the server.
    index = persist.load(work / "server_saved", embeddings=counting, rewriter=None).index
    return _resync(index, counting, n)


def stage_server_client(n: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One of two clients started together (see `server_clients`)."""
    from qta_integrations import QTARetriever

    _, queries = labelled_and_queries()
    warm_model()
    retriever = QTARetriever.from_persist_dir(work / "server_saved", rewriter=None)
    with_label_signals(retriever)
    dense = dense_twin(retriever)
    for query in queries[-3:]:
        dense.invoke(query)
        retriever.invoke(query)
    go = work / "server_clients.go"
    (work / f"server_client_{args.client}.ready").touch()
    while not go.exists():
        time.sleep(0.05)
    timed = [queries[i % len(queries)] for i in range(args.queries)]
    with Timer() as wall:
        invoke, rankings = time_modes(
            {"dense": dense.invoke, "fitted": retriever.invoke}, timed, desc=f"client {args.client}"
        )
    return {
        "invoke": invoke,
        "rankings": rankings,
        **wall.as_dict(),
        "peak_rss_mib": round(peak_rss_mib()),
    }


def stage_server_restart(n: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A restarted client: the same catalogue, its saved state; it must embed nothing."""
    from qta_integrations import QTAPipeline, ToolCatalog, chroma_tool_index, persist
    from qta_integrations.embeddings import default_embeddings

    train, _ = labelled_and_queries()
    counting = CountingEmbeddings(warm_model())
    with Timer() as reload:
        pipeline = persist.load(work / "server_saved", embeddings=counting, rewriter=None)
    with Timer() as sync:
        result = pipeline.index_catalog()
    embedded = counting.documents
    examples = {e.entry_id for e in pipeline.memory}
    stored = set(pipeline.index.list_entries("example") or {})
    labelled = train.queries[0]
    with Timer() as first_fitted:
        found = pipeline.retrieve(labelled.query)  # builds BM25 in this process
    memory_scores = [t.signals.get("memory", 0.0) for t in found.tools]
    # Without its saved state, a client with the same catalogue still embeds nothing, but its
    # example memory is empty: the examples on the server are not used (and a sync of its own
    # examples would delete them).
    bare_counting = CountingEmbeddings(default_embeddings())
    bare_index = chroma_tool_index(
        bare_counting, client=server_client(args.port), collection_name=f"scale_{n}"
    )
    with Timer() as bare_timer:
        bare = QTAPipeline(ToolCatalog.from_dicts(catalogue(n)), bare_index, None)
    return {
        "reload": reload.as_dict(),
        "documents_embedded": embedded,
        "index_catalog": {**sync.as_dict(), "result": result.__dict__},
        "examples_in_memory": len(examples),
        "examples_on_server": len(stored),
        "examples_match": examples == stored,
        "first_fitted_invoke": first_fitted.as_dict(),
        "labelled_query_top_k": found.tool_ids,
        "labelled_query_gold": list(labelled.tool_ids),
        "labelled_query_memory_scores": [round(s, 3) for s in memory_scores],
        "client_without_saved_state": {
            "build_and_sync": bare_timer.as_dict(),
            "documents_embedded": bare_counting.documents,
            "examples_in_memory": len(bare.memory),
            "examples_on_server": len(bare.index.list_entries("example") or {}),
        },
        "peak_rss_mib": round(peak_rss_mib()),
    }


STAGE_FUNCTIONS: dict[str, Callable[[int, Path, argparse.Namespace], dict[str, Any]]] = {
    "encode": stage_encode,
    "index": stage_index,
    "bm25": stage_bm25,
    "serve": stage_serve,
    "resync": stage_resync,
    "server_index": stage_server_index,
    "server_query": stage_server_query,
    "server_resync": stage_server_resync,
    "server_client": stage_server_client,
    "server_restart": stage_server_restart,
}


# -- the driver ---------------------------------------------------------------------------------


def child_command(stage: str, n: int, args: argparse.Namespace, **extra: Any) -> list[str]:
    command = [sys.executable, str(SCRIPT), "--stage", stage, "--size", str(n)]
    command += ["--work-dir", str(args.work_dir), "--queries", str(args.queries)]
    command += ["--k", str(args.k)]
    if args.fetch_k is not None:
        command += ["--fetch-k", str(args.fetch_k)]
    if args.encode_sample:
        command += ["--encode-sample", str(args.encode_sample)]
    for key, value in extra.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    return command


def run_stage(stage: str, n: int, args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """Run ``stage`` in a child process unless its result is already on disk."""
    out = args.work_dir / str(n) / f"{stage}.json"
    if out.exists():
        print(f"[{n}] {stage}: done before, {out}", file=sys.stderr)
        result: dict[str, Any] = json.loads(out.read_text())
        return result
    print(f"[{n}] {stage} ...", file=sys.stderr, flush=True)
    began = time.perf_counter()
    subprocess.run(child_command(stage, n, args, **extra), check=True)
    result = json.loads(out.read_text())
    print(f"[{n}] {stage}: {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def chroma_server(path: Path) -> Iterator[tuple[int, Any]]:
    """``chroma run`` on a free loopback port, stopped on exit; yields the port and process."""
    chroma = Path(sys.executable).with_name("chroma")
    port = free_port()
    command = [str(chroma), "run", "--path", str(path), "--host", HOST, "--port", str(port)]
    log = (path.parent / "chroma_server.log").open("ab")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"`{' '.join(command)}` exited with {server.returncode}")
            with contextlib.suppress(Exception):
                server_client(port).heartbeat()
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"`{' '.join(command)}` did not answer within 120 s")
            time.sleep(0.2)
        yield port, server
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def server_rss_mib(server: Any) -> float:
    import psutil

    process = psutil.Process(server.pid)
    return round(sum(p.memory_info().rss for p in [process, *process.children(True)]) / 2**20)


def run_clients(n: int, args: argparse.Namespace, port: int, server: Any) -> dict[str, Any]:
    """Two `stage_server_client` processes, released together once both are warm."""
    work = args.work_dir / str(n)
    done = work / "server_clients.json"
    if done.exists():
        print(f"[{n}] server_clients: done before, {done}", file=sys.stderr)
        result: dict[str, Any] = json.loads(done.read_text())
        return result
    print(f"[{n}] server_clients ...", file=sys.stderr, flush=True)
    clients = (1, 2)
    go = work / "server_clients.go"
    go.unlink(missing_ok=True)
    for c in clients:
        (work / f"server_client_{c}.json").unlink(missing_ok=True)
        (work / f"server_client_{c}.ready").unlink(missing_ok=True)
    procs = [
        subprocess.Popen(child_command("server_client", n, args, port=port, client=c))
        for c in clients
    ]
    while not all((work / f"server_client_{c}.ready").exists() for c in clients):
        if any(p.poll() not in (None, 0) for p in procs):
            raise RuntimeError("a server client failed before it was ready")
        time.sleep(0.1)
    go.touch()
    for proc in procs:
        if proc.wait(timeout=3600) != 0:
            raise RuntimeError(f"a server client exited with {proc.returncode}")
    rows = [json.loads((work / f"server_client_{c}.json").read_text()) for c in clients]
    result = {
        "clients": [
            {key: row[key] for key in ("invoke", "wall_s", "cpu_s", "peak_rss_mib")} for row in rows
        ],
        "same_rankings": {
            kind: rows[0]["rankings"][kind] == rows[1]["rankings"][kind]
            for kind in ("dense", "fitted")
        },
        "server_rss_mib": server_rss_mib(server),
    }
    done.write_text(json.dumps(result, indent=2))
    return result


def run_server(n: int, args: argparse.Namespace, report: dict[str, Any]) -> None:
    with chroma_server(args.work_dir / "server") as (port, server):
        row = report.setdefault("server", {})
        row["server_index"] = run_stage("server_index", n, args, port=port)
        row["server_rss_mib_after_indexing"] = server_rss_mib(server)
        row["server_query"] = run_stage("server_query", n, args, port=port)
        row["server_resync"] = run_stage("server_resync", n, args, port=port)
        row["server_clients"] = run_clients(n, args, port, server)
        row["server_restart"] = run_stage("server_restart", n, args, port=port)


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The figures per size, flat, and the 100,000-tool targets."""
    rows: dict[str, Any] = {}
    for size, stages in report["sizes"].items():
        row: dict[str, Any] = {}
        encode, index = stages.get("encode"), stages.get("index")
        if encode and index:
            row["encode_s"] = encode["wall_s"]
            row["index_s"] = index["index"]["wall_s"]
            # In one run: the index time over the encoding inside it (the target's figure);
            # against the separate encode stage, whose load may have differed, for reference.
            row["index_over_encode"] = index["index_over_encode_inside"]
            row["index_over_separate_encode"] = round(
                index["index"]["wall_s"] / encode["wall_s"], 3
            )
            row["index_over_separate_encode_cpu"] = round(
                index["index"]["cpu_s"] / encode["cpu_s"], 3
            )
            row["indexing_peak_rss_mib"] = index["peak_rss_mib_indexing"]
            row["directory_mib"] = index["directory_mib"]
            row["fit_s"] = index["fit"]["wall_s"]
        if serve := stages.get("serve"):
            row["reload_s"] = serve["reload"]["wall_s"]
            row["invoke_p50_dense_ms"] = serve["invoke"]["dense"]["p50_ms"]
            row["invoke_p95_dense_ms"] = serve["invoke"]["dense"]["p95_ms"]
            row["invoke_p50_fitted_ms"] = serve["invoke"]["fitted"]["p50_ms"]
            row["invoke_p95_fitted_ms"] = serve["invoke"]["fitted"]["p95_ms"]
            row["first_fitted_invoke_s"] = serve["first_fitted_invoke"]["wall_s"]
            row["serve_peak_rss_mib"] = serve["peak_rss_mib"]
        if resync := stages.get("resync"):
            row["resync_changed"] = resync["changed"]
            row["resync_s"] = resync["change"]["sync"]["wall_s"]
            row["resync_over_encode"] = resync["change"]["sync_over_encode"]
            row["resync_back_over_encode"] = resync["change_back"]["sync_over_encode"]
        if bm25 := stages.get("bm25"):
            row["bm25_build_s"] = bm25["build"]["wall_s"]
            row["bm25_mib"] = bm25["rss_mib"]
            row["bm25_expanded_build_s"] = bm25["expanded_build"]["wall_s"]
        server_index = stages.get("server", {}).get("server_index")
        if server_index and encode:
            extra = server_index["index_without_encoding"]["wall_s"]
            row["server_index_without_encoding_s"] = extra
            row["server_index_over_encode"] = round(
                (encode["wall_s"] + extra) / encode["wall_s"], 3
            )
        if server := stages.get("server", {}).get("server_query"):
            row["server_over_embedded_p50"] = server["server_over_embedded_p50"]
            row["server_invoke_p50_ms"] = {
                k: v["p50_ms"] for k, v in server["invoke"].items() if k.startswith("server")
            }
        rows[size] = row
    largest = rows.get("100000", {})
    met = {}
    for key, bound in TARGETS.items():
        value = largest.get(key)
        if isinstance(value, dict):
            value = max(value.values())
        met[key] = (
            None if value is None else {"value": value, "bound": bound, "met": value <= bound}
        )
    return {"per_size": rows, "targets_100000": met}


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary(report)["per_size"]
    sizes = sorted(int(s) for s in rows)

    def series(key: str) -> tuple[list[int], list[float]]:
        got = [(n, rows[str(n)][key]) for n in sizes if key in rows[str(n)]]
        return [n for n, _ in got], [v for _, v in got]

    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    panels = [
        (
            "Indexing (s)",
            [
                ("encode_s", "MiniLM encoding alone"),
                ("index_s", "index (sync)"),
                ("bm25_build_s", "BM25 build"),
                ("fit_s", "fit on 10 labels"),
            ],
            True,
        ),
        (
            "invoke p50, query embedding included (ms)",
            [("invoke_p50_dense_ms", "dense"), ("invoke_p50_fitted_ms", "fitted")],
            False,
        ),
        (
            "MiB",
            [
                ("indexing_peak_rss_mib", "peak RSS, indexing"),
                ("serve_peak_rss_mib", "peak RSS, serving"),
                ("directory_mib", "saved directory on disk"),
            ],
            True,
        ),
        (
            "Seconds",
            [
                ("resync_s", "re-sync, 1% changed"),
                ("reload_s", "reload"),
                ("first_fitted_invoke_s", "first fitted invoke"),
            ],
            True,
        ),
    ]
    for ax, (title, keys, log) in zip(axes.flat, panels, strict=True):
        for key, label in keys:
            xs, ys = series(key)
            if xs:
                ax.plot(xs, ys, marker="o", label=label)
        ax.set_xscale("log")
        if log:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("tools")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    bounds: list[tuple[Any, str, str | None]] = [
        (axes[0, 1], "invoke_p50_dense_ms", "targets at 100,000"),
        (axes[0, 1], "invoke_p50_fitted_ms", None),
        (axes[1, 0], "serve_peak_rss_mib", "2 GB"),
    ]
    for ax, key, legend in bounds:
        ax.axhline(TARGETS[key], color="grey", linestyle="--", linewidth=0.8, label=legend)
    server = [
        (int(s), r["server_invoke_p50_ms"]) for s, r in rows.items() if "server_invoke_p50_ms" in r
    ]
    for mode, color in (("dense", "C0"), ("fitted", "C1")):
        axes[0, 1].scatter(
            [n for n, _ in server],
            [p50[f"server_{mode}"] for _, p50 in server],
            marker="s",
            color=color,
            label=f"Chroma server, {mode}",
        )
    if server:
        axes[0, 1].legend(fontsize=8)
    facts = report["machine"]
    fig.suptitle(
        f"qta-integrations {report['package_version']}: all-MiniLM-L6-v2, embedded Chroma on "
        f"disk, {facts['cpus']} CPUs, no GPU"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}", file=sys.stderr)


def machine_facts() -> dict[str, Any]:
    import chromadb
    import torch

    return {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "chromadb": chromadb.__version__,
    }


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """``--k`` and ``--fetch-k``, with `RetrievalSettings`' own defaults and help."""
    from qta_integrations.settings import RetrievalSettings

    for f in fields(RetrievalSettings):
        if f.name in ("k", "fetch_k"):
            flag = f"--{f.name.replace('_', '-')}"
            parser.add_argument(flag, type=int, default=f.default, help=f.metadata["help"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--server-sizes", type=int, nargs="*", default=[])
    parser.add_argument("--queries", type=int, default=200, help="Queries timed per mode.")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "qta-scale",
        help="Where the stores and per-stage results go (default: the temporary directory).",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="MTRB dir ($QTA_MTRB_DIR).")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None, help="Write the figure here.")
    parser.add_argument("--fresh", action="store_true", help="Redo every stage of --sizes.")
    parser.add_argument(
        "--encode-sample",
        type=int,
        default=None,
        help="Time the raw encoding on this many texts (seeded sample) and scale it to the "
        "catalogue, for sizes above it; the index stage still times its own encoding in-run.",
    )
    add_settings_arguments(parser)
    parser.add_argument("--stage", choices=sorted(STAGE_FUNCTIONS), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.work_dir = args.work_dir.resolve()
    if args.data_dir is not None:
        os.environ["QTA_MTRB_DIR"] = str(args.data_dir.resolve())  # the stages inherit it
    if data_dir() is None:
        print("Pass --data-dir or set QTA_MTRB_DIR to a local MTRB directory.", file=sys.stderr)
        return 2

    if args.stage:  # a child: one stage of one size
        work = args.work_dir / str(args.size)
        work.mkdir(parents=True, exist_ok=True)
        result = STAGE_FUNCTIONS[args.stage](args.size, work, args)
        name = f"server_client_{args.client}" if args.stage == "server_client" else args.stage
        (work / f"{name}.json").write_text(json.dumps(result, indent=2))
        return 0

    from qta_integrations import __version__

    report: dict[str, Any] = {}
    if args.output is not None and args.output.exists():
        report = json.loads(args.output.read_text())
    report.update(
        command=["python", "benchmarks/scale.py", *(argv if argv is not None else sys.argv[1:])],
        package_version=__version__,
        machine=machine_facts(),
        catalogue=(
            "MTRB ToolBench (rebuilt), RestBench and MetaTool tools (1,064), then copies with a "
            "vendor, an API version and typed parameters appended; the first n tools"
        ),
        labelled_queries="MTRB-ToolBench's 10 training queries",
        timed_queries="MTRB test queries of the three subsets, interleaved",
        targets=TARGETS,
    )
    report.setdefault("sizes", {})
    for n in args.sizes:
        work = args.work_dir / str(n)
        if args.fresh:
            shutil.rmtree(work, ignore_errors=True)
        stages = report["sizes"].setdefault(str(n), {})
        for stage in STAGES:
            stages[stage] = run_stage(stage, n, args)
        if n in args.server_sizes:
            run_server(n, args, stages)
        report["summary"] = summary(report)
        if args.output is not None:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(report, indent=2) + "\n")
    report["summary"] = summary(report)
    print(json.dumps(report["summary"], indent=2))
    if args.output is not None:
        args.output.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot is not None:
        plot(report, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
