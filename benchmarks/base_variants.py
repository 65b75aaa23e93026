"""Zero-label base retriever variants on the development suite (S@5 / S@10, test queries).

Five catalogues: the MTRB subsets RestBench, MetaTool and ToolBench (rebuilt), loaded with
`load_mtrb` (the package's indexed text, ``Tool.text``: the description alone), and the
devsuite catalogues restbench_spotify and toolalpaca, loaded with `load_retrieval_dataset`
(``Tool.text`` = ``"name: description"``). Every variant is scored in numpy from one set of
cached MiniLM embeddings (``default_embeddings()``, L2-normalised):

1. dense cosine;
2. BM25 (``bm25s``, lucene, k1=1.5, b=0.75) with several tokenisers (see `TOKENISERS`);
3. field weighting: the split tool name and the parameter names repeated in the BM25 text;
4. fusion ``z(dense) + w * z(BM25)`` (dense standardised over its top 100 like the package's
   dense signal, or over all tools; BM25 over all tools), and RRF (k=60) for reference;
5. extra dense views (split name, each sentence, the whole text; a tool's score is the mean of
   its whole-text score and its best view), for all tools or long texts only;
6. label-free adaptive BM25 weights (per query, or per catalogue).

Usage::

    QTA_MTRB_DIR=path/to/mtrb .venv/bin/python benchmarks/base_variants.py \
        --output benchmarks/results/base_variants.json

The devsuite directory defaults to ``$QTA_DEVSUITE_DIR``, else the ``devsuite`` folder beside
the MTRB directory. Embeddings are cached in ``--cache`` (default: the system temp folder).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import _setup  # noqa: F401  (environment and import path; before the package)
import numpy as np

from qta_integrations.evaluation import load_mtrb, load_retrieval_dataset

CATALOGUES = ("restbench", "metatool", "toolbench", "spotify", "toolalpaca")
DEVSUITE = {"spotify": "restbench_spotify", "toolalpaca": "toolalpaca"}
KS = (5, 10)
DENSE_DEPTH = 100
FUSION_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)

# -- tokenisers ----------------------------------------------------------------------------

WORD = re.compile(r"[A-Za-z0-9_]+")
"""A raw word: letters, digits and underscores. Everything else (space, ``/``, ``.``, ``{``,
``}``, ``-``, ``:``, quotes) separates words, so URL paths, dotted names and ``{param}``
segments fall apart into their words here."""
CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
"""camelCase and acronym boundaries: ``getUserID`` -> get|User|ID, ``HTTPServer`` -> HTTP|Server."""
DIGITS = re.compile(r"(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])")
"""Letter/digit boundaries: ``v2beta`` -> v|2|beta, ``top10`` -> top|10."""
MIN_LEN = 2  # bm25s's default token pattern keeps words of two or more characters


def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


def split_identifier(word: str) -> list[str]:
    """The lower-cased parts of one raw word (snake_case, camelCase, letter/digit runs)."""
    parts = []
    for piece in word.split("_"):
        for sub in CAMEL.split(piece):
            parts.extend(p for p in DIGITS.split(sub) if p)
    return [p.lower() for p in parts]


def make_tokeniser(*, split: bool, keep_original: bool, stem: bool) -> Callable[[str], list[str]]:
    """A tokeniser: raw words (`WORD`), optionally split (`split_identifier`) with the whole
    lower-cased word kept beside its parts, stopwords dropped, words shorter than 2 dropped,
    optionally Snowball-stemmed (PyStemmer English)."""
    stop = _stopwords()
    stemmer = _stemmer() if stem else None

    def tokenise(text: str) -> list[str]:
        out: list[str] = []
        for word in WORD.findall(text):
            whole = word.lower()
            if split:
                parts = split_identifier(word)
                if keep_original and len(parts) > 1:
                    parts.append(whole)
            else:
                parts = [whole]
            out.extend(p for p in parts if len(p) >= MIN_LEN and p not in stop)
        return stemmer.stemWords(out) if stemmer is not None and out else out

    return tokenise


def bm25s_default(stem: bool) -> Callable[[str], list[str]]:
    """``bm25s.tokenize`` itself (lower-case, ``\\b\\w\\w+\\b``, English stopwords)."""
    import bm25s

    stemmer = _stemmer() if stem else None

    def tokenise(text: str) -> list[str]:
        tokens = bm25s.tokenize(
            [text], stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False
        )
        return list(tokens[0])

    return tokenise


TOKENISERS: dict[str, Callable[[], Callable[[str], list[str]]]] = {
    "default": lambda: bm25s_default(stem=False),
    "stem": lambda: bm25s_default(stem=True),
    "split": lambda: make_tokeniser(split=True, keep_original=False, stem=False),
    "split+orig": lambda: make_tokeniser(split=True, keep_original=True, stem=False),
    "split+stem": lambda: make_tokeniser(split=True, keep_original=False, stem=True),
    "split+orig+stem": lambda: make_tokeniser(split=True, keep_original=True, stem=True),
}

# -- fields ---------------------------------------------------------------------------------

SPOTIFY_PARAMS = re.compile(r"Parameters: ([^.]*)\.\s*$")
JSON_KEY = re.compile(r'"([A-Za-z_][\w.\-]*)"\s*:')
TOOLBENCH_APIS = re.compile(r"APIs: (.*)$", re.S)


def parameter_names(catalogue: str, description: str) -> list[str]:
    """Parameter names written in the description (Spotify, ToolAlpaca); ToolBench's API
    names; none for RestBench and MetaTool, whose texts carry no parameters."""
    if catalogue == "spotify":
        m = SPOTIFY_PARAMS.search(description)
        return [p.strip() for p in m.group(1).split(",")] if m else []
    if catalogue == "toolalpaca":
        _, sep, rest = description.partition("Parameters: ")
        return JSON_KEY.findall(rest) if sep else []
    if catalogue == "toolbench":
        m = TOOLBENCH_APIS.search(description)
        if not m:
            return []
        return [seg.split(": ", 1)[0].strip().rstrip(".") for seg in m.group(1).split("; ")]
    return []


SENTENCE = re.compile(r"(?<=[.!?])\s+")
SENTENCE_SEMI = re.compile(r"(?<=[.!?;])\s+")


def sentences(text: str, pattern: re.Pattern[str]) -> list[str]:
    return [s.strip() for s in pattern.split(text) if len(s.strip()) > 1]


def split_name(name: str) -> str:
    return " ".join(p for w in WORD.findall(name) for p in split_identifier(w))


# -- data -----------------------------------------------------------------------------------


def load_catalogue(name: str, mtrb_dir: str | None, devsuite_dir: Path) -> dict[str, Any]:
    if name in DEVSUITE:
        folder = devsuite_dir / DEVSUITE[name]
        data = load_retrieval_dataset(folder / "tools.json", folder / "test.json", name=name)
    else:
        data = load_mtrb(name, "test", mtrb_dir)
    tools = list(data.catalog)
    ids = [t.id for t in tools]
    pos = {t: i for i, t in enumerate(ids)}
    return {
        "name": name,
        "ids": ids,
        "names": [t.name for t in tools],
        "descriptions": [t.description for t in tools],
        "texts": [t.text for t in tools],
        "queries": [q.query for q in data.queries],
        "gold": [[pos[t] for t in q.tool_ids] for q in data.queries],
    }


class EmbeddingCache:
    """Text -> normalised MiniLM vector, kept in one ``.npz`` file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.vectors: dict[str, np.ndarray] = {}
        if path.is_file():
            with np.load(path, allow_pickle=False) as f:
                self.vectors = dict(zip(f["keys"].tolist(), f["vectors"], strict=True))
        self._model: Any = None

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = sorted({t for t in texts if self.key(t) not in self.vectors})
        if missing:
            if self._model is None:
                from qta_integrations.embeddings import default_embeddings

                self._model = default_embeddings()
            start = time.perf_counter()
            vectors = np.asarray(self._model.embed_documents(missing), dtype=np.float32)
            print(f"  embedded {len(missing)} texts in {time.perf_counter() - start:.1f} s")
            for t, v in zip(missing, vectors, strict=True):
                self.vectors[self.key(t)] = v
            self.save()
        out = np.stack([self.vectors[self.key(t)] for t in texts])
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def save(self) -> None:
        keys = np.asarray(list(self.vectors))
        np.savez(self.path, keys=keys, vectors=np.stack(list(self.vectors.values())))


# -- scoring --------------------------------------------------------------------------------


def success(scores: np.ndarray, gold: Sequence[Sequence[int]]) -> dict[str, float]:
    """S@k in %: all gold tools in the top k (ties keep catalogue order)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    out = {}
    for k in KS:
        top = order[:, :k]
        hits = [set(g) <= set(row.tolist()) for g, row in zip(gold, top, strict=True)]
        out[f"S@{k}"] = round(100.0 * float(np.mean(hits)), 2)
    return out


def z_all(scores: np.ndarray) -> np.ndarray:
    mu = scores.mean(axis=1, keepdims=True)
    sd = scores.std(axis=1, keepdims=True)
    return (scores - mu) / np.where(sd > 1e-9, sd, 1.0)


def z_top(scores: np.ndarray, depth: int = DENSE_DEPTH) -> np.ndarray:
    """The package's dense signal: z over the top ``depth``; the rest get the lowest z."""
    if scores.shape[1] <= depth:
        return z_all(scores)
    out = np.empty_like(scores)
    for i, row in enumerate(scores):
        top = np.argsort(-row, kind="stable")[:depth]
        vals = row[top]
        sd = vals.std()
        z = (vals - vals.mean()) / (sd if sd > 1e-9 else 1.0)
        out[i] = z.min()
        out[i, top] = z
    return out


def rrf(*score_rows: np.ndarray, k: int = 60) -> np.ndarray:
    total = np.zeros_like(score_rows[0])
    for s in score_rows:
        ranks = np.empty_like(s)
        order = np.argsort(-s, axis=1, kind="stable")
        rows = np.arange(s.shape[0])[:, None]
        ranks[rows, order] = np.arange(1, s.shape[1] + 1)
        total += 1.0 / (k + ranks)
    return total


class BM25Channel:
    """BM25 (bm25s lucene) over token lists, plus the per-query statistics of the index."""

    def __init__(self, docs: list[list[str]], k1: float = 1.5, b: float = 0.75) -> None:
        import bm25s

        logger = __import__("logging").getLogger("bm25s")
        logger.setLevel("WARNING")
        self.model = bm25s.BM25(k1=k1, b=b, method="lucene")
        self.model.index(docs, show_progress=False)
        self.n = len(docs)
        self.doc_sets = [set(d) for d in docs]
        df: dict[str, int] = {}
        for d in self.doc_sets:
            for t in d:
                df[t] = df.get(t, 0) + 1
        self.df = df

    def idf(self, token: str) -> float:
        df = self.df.get(token, 0)
        return float(np.log(1.0 + (self.n - df + 0.5) / (df + 0.5)))

    def scores(self, queries: list[list[str]]) -> np.ndarray:
        return np.stack(
            [
                np.asarray(self.model.get_scores(q), dtype=np.float64) if q else np.zeros(self.n)
                for q in queries
            ]
        )

    def coverage(self, queries: list[list[str]]) -> np.ndarray:
        """Per query: the largest share of the query's idf mass that one tool matches."""
        out = np.zeros(len(queries))
        for i, q in enumerate(queries):
            terms = set(q)
            if not terms:
                continue
            weights = {t: self.idf(t) for t in terms}
            total = sum(weights.values())
            best = max(sum(w for t, w in weights.items() if t in d) for d in self.doc_sets)
            out[i] = best / total
        return out


def mean_row(per: dict[str, dict[str, float]], base: dict[str, dict[str, float]]) -> dict:
    out: dict[str, Any] = {}
    for k in KS:
        key = f"S@{k}"
        out[f"mean {key}"] = round(float(np.mean([per[c][key] for c in per])), 2)
        deltas = [per[c][key] - base[c][key] for c in per]
        out[f"worst delta {key}"] = round(float(min(deltas)), 2)
        out[f"mean delta {key}"] = round(float(np.mean(deltas)), 2)
    return out


# -- the experiment -------------------------------------------------------------------------


def prepare(cat: dict[str, Any], cache: EmbeddingCache) -> None:
    """Embeddings of tool texts, queries and views; BM25 inputs."""
    cat["T"] = cache.embed(cat["texts"])
    cat["Q"] = cache.embed(cat["queries"])
    cat["params"] = [parameter_names(cat["name"], d) for d in cat["descriptions"]]
    cat["split_names"] = [split_name(n) for n in cat["names"]]
    views: dict[str, list[list[str]]] = {}
    for rule, pattern in (("sent", SENTENCE), ("sent+semi", SENTENCE_SEMI)):
        per_tool = []
        for text, desc, sname in zip(
            cat["texts"], cat["descriptions"], cat["split_names"], strict=True
        ):
            v = [sname] if sname else []
            v += sentences(desc, pattern)
            per_tool.append([x for x in dict.fromkeys(v) if x != text])
        views[rule] = per_tool
    cat["views"] = views
    flat = sorted({v for per_tool in views.values() for vs in per_tool for v in vs})
    vecs = cache.embed(flat) if flat else np.zeros((0, cat["T"].shape[1]), dtype=np.float32)
    cat["view_vec"] = dict(zip(flat, vecs, strict=True))


def dense_views(cat: dict[str, Any], rule: str, eligible: Sequence[bool]) -> tuple[np.ndarray, int]:
    """Cosine of the views rule: mean(whole, max(whole, best view)); extra vectors used."""
    whole = cat["Q"] @ cat["T"].T
    out = whole.copy()
    extra = 0
    for j, (vs, ok) in enumerate(zip(cat["views"][rule], eligible, strict=True)):
        if not ok or not vs:
            continue
        extra += len(vs)
        best = (cat["Q"] @ np.stack([cat["view_vec"][v] for v in vs]).T).max(axis=1)
        out[:, j] = 0.5 * (whole[:, j] + np.maximum(whole[:, j], best))
    return out, extra


def bm25_docs(
    cat: dict[str, Any],
    tok: Callable[[str], list[str]],
    w_name: int,
    w_param: int,
    mtrb_names: bool,
) -> list[list[str]]:
    docs = []
    for i, text in enumerate(cat["texts"]):
        name = cat["names"][i] or (cat["ids"][i] if mtrb_names else "")
        if mtrb_names and not cat["names"][i]:
            text = f"{name}: {text}"
        tokens = tok(text)
        if w_name > 1 and name:
            tokens = tokens + (w_name - 1) * tok(split_name(name) + " " + name)
        if w_param > 1 and cat["params"][i]:
            tokens = tokens + (w_param - 1) * tok(" ".join(cat["params"][i]))
        docs.append(tokens)
    return docs


def run(args: argparse.Namespace) -> dict[str, Any]:
    mtrb_dir = args.data_dir
    devsuite_dir = (
        Path(args.devsuite_dir) if args.devsuite_dir else Path(mtrb_dir).parent / "devsuite"
    )
    cache = EmbeddingCache(Path(args.cache))
    cats = {}
    for name in CATALOGUES:
        print(f"{name}: loading and embedding")
        cat = load_catalogue(name, mtrb_dir, devsuite_dir)
        prepare(cat, cache)
        cats[name] = cat

    results: dict[str, Any] = {"catalogues": {}, "variants": {}}
    for name, cat in cats.items():
        n_words = [len(t.split()) for t in cat["texts"]]
        n_sent = [len(sentences(d, SENTENCE)) for d in cat["descriptions"]]
        results["catalogues"][name] = {
            "tools": len(cat["ids"]),
            "test queries": len(cat["queries"]),
            "mean words per text": round(float(np.mean(n_words)), 1),
            "tools with parameter names": sum(bool(p) for p in cat["params"]),
            "tools with > 2 sentences": sum(s > 2 for s in n_sent),
            "tools with > 40 words": sum(w > 40 for w in n_words),
        }

    def record(variant: str, per: dict[str, dict[str, float]], **extra: Any) -> dict:
        row = {"per catalogue": per, **mean_row(per, dense_res), **extra}
        results["variants"][variant] = row
        return row

    # 1. dense
    dense_raw = {c: cats[c]["Q"] @ cats[c]["T"].T for c in cats}
    dense_res = {c: success(dense_raw[c], cats[c]["gold"]) for c in cats}
    record("dense", dense_res)

    # 5. dense views (alone)
    view_rules: dict[str, dict[str, np.ndarray]] = {"none": dense_raw}
    view_cost: dict[str, dict[str, float]] = {}
    for rule in ("sent", "sent+semi"):
        for limit in ("all", "sent>2", "words>40"):
            label = f"views[{rule},{limit}]"
            view_rules[label] = {}
            view_cost[label] = {}
            for c, cat in cats.items():
                if limit == "all":
                    ok = [True] * len(cat["ids"])
                elif limit == "sent>2":
                    ok = [len(sentences(d, SENTENCE)) > 2 for d in cat["descriptions"]]
                else:
                    ok = [len(t.split()) > 40 for t in cat["texts"]]
                scores, extra = dense_views(cat, rule, ok)
                view_rules[label][c] = scores
                view_cost[label][c] = round(1.0 + extra / len(cat["ids"]), 2)
            per = {c: success(view_rules[label][c], cats[c]["gold"]) for c in cats}
            record(f"dense {label}", per, index_vectors_multiplier=view_cost[label])

    # 2-3. BM25 variants
    tokenisers = {k: f() for k, f in TOKENISERS.items()}
    channels: dict[str, dict[str, BM25Channel]] = {}
    bm25_raw: dict[str, dict[str, np.ndarray]] = {}
    coverage: dict[str, dict[str, np.ndarray]] = {}
    configs = [(t, 1, 1, False) for t in tokenisers]
    for t in ("split", "split+orig", "split+stem", "split+orig+stem"):
        configs += [(t, 2, 1, False), (t, 3, 1, False), (t, 1, 2, False), (t, 2, 2, False)]
        configs += [(t, 1, 1, True), (t, 2, 1, True)]
    for tname, w_name, w_param, mtrb_names in configs:
        label = f"bm25[{tname},name x{w_name},params x{w_param}" + (
            ",mtrb ids as names]" if mtrb_names else "]"
        )
        tok = tokenisers[tname]
        channels[label], bm25_raw[label], coverage[label] = {}, {}, {}
        for c, cat in cats.items():
            ch = BM25Channel(bm25_docs(cat, tok, w_name, w_param, mtrb_names))
            qtok = [tok(q) for q in cat["queries"]]
            channels[label][c] = ch
            bm25_raw[label][c] = ch.scores(qtok)
            coverage[label][c] = ch.coverage(qtok)
        per = {c: success(bm25_raw[label][c], cats[c]["gold"]) for c in cats}
        record(label, per)

    # 4. fusion
    norms = {"z-top100": z_top, "z-all": z_all}
    dense_z = {
        (vr, nn): {c: f(view_rules[vr][c]) for c in cats}
        for vr in view_rules
        for nn, f in norms.items()
    }
    bm25_z = {label: {c: z_all(bm25_raw[label][c]) for c in cats} for label in bm25_raw}
    fusion_rows = []
    for label in bm25_raw:
        for (vr, nn), dz in dense_z.items():
            if vr != "none" and not label.startswith(
                (
                    "bm25[split+stem,name x1,params x1]",
                    "bm25[split,name x1,params x1]",
                    "bm25[split+orig+stem,name x1,params x1]",
                    "bm25[split+orig,name x1,params x1]",
                )
            ):
                continue
            for w in FUSION_WEIGHTS:
                per = {c: success(dz[c] + w * bm25_z[label][c], cats[c]["gold"]) for c in cats}
                name = f"fusion dense({vr},{nn}) + {w} {label}"
                row = record(name, per)
                fusion_rows.append((name, row))
        per = {c: success(rrf(dense_raw[c], bm25_raw[label][c]), cats[c]["gold"]) for c in cats}
        record(f"rrf dense + {label}", per)

    # 6. adaptive weights
    stats = adaptive(
        cats, results, record, dense_z, bm25_z, bm25_raw, coverage, channels, tokenisers
    )
    gated(cats, record, dense_z, bm25_z, coverage, stats)
    # The depth of the dense standardisation, for the recommended gated fusion.
    label = "bm25[split+orig+stem,name x1,params x1]"
    for depth in (50, 150, 200, 300, 500):
        dz = {c: z_top(view_rules["none"][c], depth) for c in cats}
        for w, tau in ((1.0, 0.15), (1.5, 0.25), (2.0, 0.3)):
            per = {}
            for c in cats:
                wq = w * np.minimum(1.0, coverage[label][c] / tau)
                per[c] = success(dz[c] + wq[:, None] * bm25_z[label][c], cats[c]["gold"])
            gate = f"min(1,coverage/{tau})"
            record(f"gated dense(none,z-top{depth}) + {w}*{gate} {label}", per)
    return results


GATE_WEIGHTS = (0.7, 1.0, 1.5, 2.0)
GATE_TAUS = (None, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4)


def gated(cats, record, dense_z, bm25_z, coverage, stats) -> None:
    """The coverage gate: BM25 weight ``w * min(1, coverage / tau)`` per query.

    ``coverage`` is the largest share of the query's idf mass (lucene idf over the catalogue,
    each distinct query token once) that a single tool's tokens contain: a query whose words
    no tool shares gets little lexical weight. ``tau=None`` is the static weight ``w``. Also
    the catalogue gate on the tool-as-query overlap (``w * clip((overlap - 0.3) / 0.1, 0, 1)``).
    """
    labels = [
        f"bm25[{t},name x1,params x1]"
        for t in ("split+orig+stem", "split+stem", "stem", "split", "split+orig", "default")
    ]
    fields = [
        f"bm25[split+orig+stem,{f}]"
        for f in (
            "name x2,params x1",
            "name x3,params x1",
            "name x1,params x2",
            "name x2,params x2",
            "name x1,params x1,mtrb ids as names",
            "name x2,params x1,mtrb ids as names",
        )
    ]
    dense_views = ("none", "views[sent,all]", "views[sent,words>40]")
    for label in labels + fields:
        for vr in dense_views if label in labels else ("none",):
            for nn in ("z-all", "z-top100"):
                dz = dense_z[(vr, nn)]
                for w in GATE_WEIGHTS:
                    for tau in GATE_TAUS:
                        per = {}
                        for c in cats:
                            wq = np.full(len(cats[c]["queries"]), w)
                            if tau is not None:
                                wq = w * np.minimum(1.0, coverage[label][c] / tau)
                            per[c] = success(
                                dz[c] + wq[:, None] * bm25_z[label][c], cats[c]["gold"]
                            )
                        gate = "static" if tau is None else f"min(1,coverage/{tau})"
                        record(f"gated dense({vr},{nn}) + {w}*{gate} {label}", per)
                if label in stats and vr == "none":
                    for w in GATE_WEIGHTS:
                        per = {}
                        for c in cats:
                            ov = stats[label][c]["tool_agree"]
                            wc = w * float(np.clip((ov - 0.3) / 0.1, 0.0, 1.0))
                            per[c] = success(dz[c] + wc * bm25_z[label][c], cats[c]["gold"])
                        record(
                            f"catgate dense({vr},{nn}) + {w}*clip((overlap-0.3)/0.1) {label}", per
                        )


def adaptive(cats, results, record, dense_z, bm25_z, bm25_raw, coverage, channels, tokenisers):
    """Label-free BM25 weights: per query (coverage, peakedness, agreement) or per catalogue."""
    stats: dict[str, Any] = {}
    for label in (
        "bm25[split+stem,name x1,params x1]",
        "bm25[split+orig+stem,name x1,params x1]",
        "bm25[split,name x1,params x1]",
        "bm25[stem,name x1,params x1]",
        "bm25[split+orig,name x1,params x1]",
        "bm25[default,name x1,params x1]",
    ):
        bz = bm25_z[label]
        stats[label] = {}
        for c, cat in cats.items():
            cov = coverage[label][c]
            peak = bz[c].max(axis=1)
            srt = np.sort(bm25_raw[label][c], axis=1)[:, ::-1]
            margin = (srt[:, 0] - srt[:, 1]) / np.where(srt[:, 0] > 0, srt[:, 0], 1.0)
            dz = dense_z[("none", "z-top100")][c]
            d_top = np.argsort(-dz, axis=1, kind="stable")[:, :10]
            b_top = np.argsort(-bz[c], axis=1, kind="stable")[:, :10]
            agree = np.array(
                [
                    len(set(a.tolist()) & set(b.tolist())) / 10
                    for a, b in zip(d_top, b_top, strict=True)
                ]
            )
            # tool-as-query: each tool's text retrieves its own neighbours in both channels
            tok = tokenisers[label.split("[")[1].split(",")[0]]
            ch = channels[label][c]
            tool_b = z_all(ch.scores([tok(t) for t in cat["texts"]]))
            tool_d = cat["T"] @ cat["T"].T
            np.fill_diagonal(tool_b, -np.inf)
            np.fill_diagonal(tool_d, -np.inf)
            tb = np.argsort(-tool_b, axis=1, kind="stable")[:, :10]
            td = np.argsort(-tool_d, axis=1, kind="stable")[:, :10]
            tool_agree = float(
                np.mean(
                    [
                        len(set(a.tolist()) & set(b.tolist())) / 10
                        for a, b in zip(tb, td, strict=True)
                    ]
                )
            )
            stats[label][c] = {
                "coverage": cov,
                "peak": peak,
                "margin": margin,
                "agree": agree,
                "tool_agree": tool_agree,
            }
        results.setdefault("adaptive statistics", {})[label] = {
            c: {
                "mean query coverage": round(float(s["coverage"].mean()), 3),
                "mean BM25 top z": round(float(s["peak"].mean()), 3),
                "mean BM25 top-1 margin": round(float(s["margin"].mean()), 3),
                "mean dense/BM25 top-10 overlap": round(float(s["agree"].mean()), 3),
                "tool-as-query top-10 overlap": round(s["tool_agree"], 3),
            }
            for c, s in stats[label].items()
        }
        for nn in ("z-top100", "z-all"):
            dz = dense_z[("none", nn)]
            for w in (0.3, 0.5, 0.7, 1.0):
                for rule, fn in (
                    ("coverage", lambda s: s["coverage"]),
                    ("coverage^2", lambda s: s["coverage"] ** 2),
                    ("agree", lambda s: s["agree"]),
                    ("margin", lambda s: np.clip(2 * s["margin"], 0, 1)),
                    (
                        "tool_agree",
                        lambda s: np.full_like(s["coverage"], min(1.0, 2 * s["tool_agree"])),
                    ),
                ):
                    per = {
                        c: success(
                            dz[c] + w * fn(stats[label][c])[:, None] * bm25_z[label][c],
                            cats[c]["gold"],
                        )
                        for c in cats
                    }
                    record(f"adaptive[{rule}] dense(none,{nn}) + {w}*{rule} {label}", per)
    return stats


def dump(results: dict[str, Any]) -> str:
    """JSON with one line per variant (the file stays readable and diffable)."""
    lines = ["{"]
    rest = {k: v for k, v in results.items() if k != "variants"}
    for key, value in rest.items():
        lines.append(f" {json.dumps(key)}: {json.dumps(value)},")
    lines.append(' "variants": {')
    items = list(results["variants"].items())
    for i, (name, row) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        lines.append(f"  {json.dumps(name)}: {json.dumps(row, separators=(',', ':'))}{comma}")
    lines += [" }", "}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=os.environ.get("QTA_MTRB_DIR"))
    parser.add_argument("--devsuite-dir", default=os.environ.get("QTA_DEVSUITE_DIR"))
    parser.add_argument(
        "--cache", default=str(Path(tempfile.gettempdir()) / "qta_base_variants_embeddings.npz")
    )
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    if not args.data_dir:
        parser.error("pass --data-dir or set $QTA_MTRB_DIR to the local MTRB directory")
    start = time.perf_counter()
    results = run(args)
    results["seconds"] = round(time.perf_counter() - start, 1)
    ranked = sorted(
        results["variants"].items(),
        key=lambda kv: (kv[1]["worst delta S@5"] >= -1.0, kv[1]["mean S@5"]),
        reverse=True,
    )
    print(f"{'variant':110s} " + " ".join(f"{c[:9]:>9s}" for c in CATALOGUES) + "   mean  worst")
    for name, row in [("dense", results["variants"]["dense"]), *ranked[:40]]:
        cells = " ".join(f"{row['per catalogue'][c]['S@5']:9.2f}" for c in CATALOGUES)
        print(f"{name[:110]:110s} {cells} {row['mean S@5']:6.2f} {row['worst delta S@5']:6.2f}")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(dump(results))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
