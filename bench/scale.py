"""Section 4: synthetic corpora of 100k and 1M chunks through the real index code.

Each chunk is a made-up text (Zipf-distributed pronounceable words, for BM25) with a clustered
synthetic vector (``bench.corpus.clustered_vectors``; random unit vectors would make approximate
search meaningless). A "replay" embedder hands out the precomputed vectors, so ``qa.store.index.build``
runs for real (chunking, FAISS, BM25, JSONL, manifest and checksums) without spending hours in
the model. A fresh subprocess then loads the index with ``QA.load`` and measures load time,
resident memory and retrieval latency (the query's forward pass, ~the floor of section 1, is not
included here).

Worker mode (used internally): ``python -m bench.scale worker INDEX_DIR QUERIES.npz TOPICS MODE``
(MODE ``mmap``: the product; ``read``: index files read into memory, as before this work).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT, dir_bytes, load_line, median, ms, percentile, rss, say, table
from bench.corpus import clustered_vectors, synthetic_queries, synthetic_texts
from qa.store.embedding import Pooled, ProgressFn, Spans
from qa.types import Document

MODEL = "synthetic-384"
N_QUERIES = 200
CANDIDATES = 50  # what the pipeline asks each retriever for
OLD_BM25_UP_TO = 200_000  # sizes at which the old BM25 build is timed too (it is slow)


class ReplayEmbedder:
    """Hands out synthetic vectors: corpus texts in order, queries by their text. Each sentence
    of a chunk gets the chunk's vector (``embed_pooled``): what the sentence rows cost to store
    and search is measured here, not what they find."""

    pools_spans = True

    def __init__(self, topics: int, queries: dict[str, np.ndarray] | None = None) -> None:
        self.topics = topics
        self.queries = queries or {}
        self.served = 0

    @property
    def name(self) -> str:
        return MODEL

    @property
    def dim(self) -> int:
        return 384

    def embed_pooled(
        self, texts: Sequence[str], spans: Spans, batch_size: int = 32, progress: ProgressFn | None = None
    ) -> Pooled:
        vectors = self.embed(texts, batch_size, progress)
        return vectors, [np.repeat(v[None, :], len(s), axis=0) for v, s in zip(vectors, spans, strict=True)]

    def embed(
        self, texts: Sequence[str], batch_size: int = 32, progress: ProgressFn | None = None
    ) -> np.ndarray:
        if len(texts) == 1 and texts[0] in self.queries:
            return self.queries[texts[0]][None, :]
        out = clustered_vectors(len(texts), seed=self.served + 7, topics=self.topics)
        self.served += len(texts)
        if progress:
            progress(len(texts))
        return out


def run(n: int, workdir: Path) -> tuple[dict[str, Any], list[str]]:
    import faiss

    from qa.config import Settings
    from qa.store import files as store
    from qa.store import index as index_mod
    from qa.store import vectors
    from qa.store.lexical import LexicalIndex

    settings = Settings(index_dir=workdir / "index", model=MODEL, reader="none")
    topics = max(1, n // 64)
    say(f"  scale {n:,}: generating texts ({load_line()})")
    t0 = time.perf_counter()
    texts = synthetic_texts(n)
    docs = [
        Document(f"syn/{i:07d}.txt", "", t, hashlib.sha256(t.encode()).hexdigest())
        for i, t in enumerate(texts)
    ]
    query_texts = synthetic_queries(texts, N_QUERIES)
    query_vecs = clustered_vectors(N_QUERIES, seed=10**6, topics=topics)
    gen_s = time.perf_counter() - t0

    say(f"  scale {n:,}: qa.store.index.build ({load_line()})")
    parts: dict[str, float] = {}
    with (
        _timing(index_mod, ["chunk_document", "build_vector_index", "write_vector_index"], parts),
        _timing(LexicalIndex, ["build", "save"], parts, prefix="bm25."),
        _timing(store, ["write_jsonl", "sha256_file"], parts),
    ):
        report = index_mod.build(docs, settings.index_dir, ReplayEmbedder(topics), settings)
    del docs
    gen = store.current_generation(settings.index_dir)
    manifest = json.loads((gen / "manifest.json").read_text())
    kind = manifest["vector_index"]["type"]
    chunks = report.chunks
    sizes = {f.name: dir_bytes(f) if f.is_dir() else f.stat().st_size for f in gen.iterdir()}

    # Vector index on its own: recall@10 against exact search, single-query latency.
    say(f"  scale {n:,}: vector search, recall against exact ({load_line()})")
    index = vectors.read_vector_index(gen / "vectors.faiss")
    xb = index.reconstruct_n(0, index.ntotal)
    exact = faiss.IndexFlatIP(xb.shape[1])
    exact.add(xb)
    _, truth = exact.search(query_vecs, 10)
    rows = [
        _vector_row(
            f"{kind} (chosen: {n:,} vs threshold {settings.hnsw_threshold:,})", index, query_vecs, truth, None
        )
    ]
    if kind == "flat":
        t0 = time.perf_counter()
        ann = vectors.build_vector_index(xb, 0)
        rows.append(
            _vector_row("hnsw (forced, threshold 0)", ann, query_vecs, truth, time.perf_counter() - t0)
        )
        del ann
    else:
        rows.append(_vector_row("flat (exact, for comparison)", exact, query_vecs[:20], truth[:20], None))
    del exact, xb, index

    # BM25 build before this work (bm25s from token strings, stemming word by word), on the
    # same texts, against the product's build timed inside qa.store.index.build above.
    old_bm25_s = words_bm25_s = None
    if n <= OLD_BM25_UP_TO:
        say(f"  scale {n:,}: BM25 build the old way and without word pairs, for comparison ({load_line()})")
        old_bm25_s = _old_bm25_build(texts)
        words_bm25_s = _words_only_bm25_build(texts)
    del texts

    say(f"  scale {n:,}: QA.load + search in a fresh process ({load_line()})")
    np.savez(workdir / "queries.npz", vecs=query_vecs, texts=np.array(query_texts))
    worker = _worker(settings.index_dir, workdir / "queries.npz", topics)
    before = _worker(settings.index_dir, workdir / "queries.npz", topics, mode="read")
    per_m = 1e6 / chunks
    result = {
        "chunks": chunks,
        "generate_seconds": gen_s,
        "build_seconds": report.seconds,
        "build_parts_seconds": parts,
        "vector_index": kind,
        "disk_bytes": sizes,
        "vectors": [
            dict(zip(["index", "build_s", "recall_at_10", "median_ms", "p95_ms"], r, strict=True))
            for r in rows
        ],
        "bm25_build_seconds_before": old_bm25_s,
        "bm25_build_seconds_words_only": words_bm25_s,
        "qa": worker,
        "qa_without_mmap": before,
        "load": load_line(),
    }
    total_disk = sum(sizes.values())
    md = [
        table(
            f"Scale: {chunks:,} synthetic chunks, build and disk ({load_line()})",
            ["what", "value"],
            [
                ["full qa.store.index.build, s", report.seconds],
                ["  BM25 build before this work (same texts), s", old_bm25_s if old_bm25_s else "-"],
                ["  BM25 build without word pairs (same texts), s", words_bm25_s if words_bm25_s else "-"],
                *[[f"  of which {k}, s", v] for k, v in sorted(parts.items(), key=lambda kv: -kv[1])],
                ["vector index chosen", kind],
                ["index on disk, MB (all files)", total_disk / 1e6],
                *[[f"  {k}, MB", v / 1e6] for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])],
            ],
        ),
        table(
            f"Scale: {chunks:,} chunks, vector search (k={CANDIDATES} as the pipeline asks; "
            f"recall@10 vs exact, {N_QUERIES} clustered queries)",
            ["index", "build s", "recall@10", "median ms", "p95 ms"],
            rows,
        ),
        table(
            f"Scale: {chunks:,} chunks, retrieval in a fresh process (QA.load, then QA.search k=5; "
            "query embedding excluded)",
            ["what", "value"],
            [
                [
                    "QA.load, s (files read, not mapped: before)",
                    f"{worker['load_seconds']:.2f} ({before['load_seconds']:.2f})",
                ],
                [
                    "resident memory after load, MB (anon + file-backed)",
                    f"{worker['rss_load']['VmRSS']:.0f} ({worker['rss_load']['RssAnon']:.0f} + "
                    f"{worker['rss_load']['RssFile']:.0f})",
                ],
                [
                    "resident memory after the queries, MB (anon + file-backed)",
                    f"{worker['rss_end']['VmRSS']:.0f} ({worker['rss_end']['RssAnon']:.0f} + "
                    f"{worker['rss_end']['RssFile']:.0f})",
                ],
                [
                    "  the same, files read instead of mapped (before)",
                    f"{before['rss_end']['VmRSS']:.0f} ({before['rss_end']['RssAnon']:.0f} + "
                    f"{before['rss_end']['RssFile']:.0f})",
                ],
                [
                    "  per million chunks, MB (after queries, minus the bare process)",
                    (worker["rss_end"]["VmRSS"] - worker["rss_base"]["VmRSS"]) * per_m,
                ],
                [
                    "search median / p95 ms",
                    f"{worker['search_ms']['median']:.2f} / {worker['search_ms']['p95']:.2f}",
                ],
                ["  vector search median ms", worker["stages_ms"]["dense"]],
                ["  BM25 median ms", worker["stages_ms"]["lexical"]],
                ["  fusion median ms", worker["stages_ms"]["fusion"]],
            ],
        ),
    ]
    return result, md


def _vector_row(
    name: str, index: Any, queries: np.ndarray, truth: np.ndarray, build_s: float | None
) -> list[Any]:
    from qa.store import vectors

    found = np.stack([_pad(vectors.search(index, q, 10)[1], 10) for q in queries])
    recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)]))
    lat = []
    for q in queries:
        t0 = time.perf_counter()
        vectors.search(index, q, CANDIDATES)
        lat.append(time.perf_counter() - t0)
    return [
        name,
        build_s if build_s is not None else "",
        f"{recall:.3f}",
        ms(median(lat)),
        ms(percentile(lat, 0.95)),
    ]


def _pad(ids: np.ndarray, k: int) -> np.ndarray:
    return np.concatenate([ids, -np.ones(k - len(ids), dtype=ids.dtype)]) if len(ids) < k else ids[:k]


def _old_bm25_build(texts: list[str]) -> float:
    """Seconds to build BM25 as before this work: bm25s from token strings, stemming each word."""
    import bm25s

    from qa.store.lexical import tokenize

    t0 = time.perf_counter()
    tokens = [tokenize(t) or ["\u2205"] for t in texts]
    bm25s.BM25().index(tokens, show_progress=False)
    return time.perf_counter() - t0


def _words_only_bm25_build(texts: list[str]) -> float:
    """Seconds to build the product's BM25 without its word-pair terms (words only)."""
    import bm25s

    from qa.store.lexical import BM25_PARAMS, corpus_token_ids

    t0 = time.perf_counter()
    bm25s.BM25(**BM25_PARAMS).index(corpus_token_ids(texts, 0), show_progress=False)
    return time.perf_counter() - t0


class _timing:
    """Add up the seconds spent in some functions of a module or class while the block runs."""

    def __init__(self, owner: Any, names: list[str], into: dict[str, float], prefix: str = "") -> None:
        self.owner, self.names, self.into, self.prefix = owner, names, into, prefix
        self.saved: dict[str, Any] = {}

    def __enter__(self) -> None:
        for name in self.names:
            original = self.owner.__dict__[name]
            self.saved[name] = original
            setattr(self.owner, name, self._wrap(name, original))

    def __exit__(self, *exc: object) -> None:
        for name, original in self.saved.items():
            setattr(self.owner, name, original)

    def _wrap(self, name: str, original: Any) -> Any:
        key = self.prefix + name
        into = self.into
        is_classmethod = isinstance(original, classmethod)
        fn: Callable[..., Any] = original.__func__ if is_classmethod else original

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                into[key] = into.get(key, 0.0) + time.perf_counter() - t0

        return classmethod(timed) if is_classmethod else timed


def _worker(index_dir: Path, queries: Path, topics: int, mode: str = "mmap") -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scale", "worker", str(index_dir), str(queries), str(topics), mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"scale worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worker_main(index_dir: str, queries: str, topics: str, mode: str) -> None:
    base = rss()
    import bm25s  # imported here in both modes, so QA.load times the same work
    import faiss

    if mode == "read":  # before this work: FAISS and BM25 arrays read into memory, not mapped
        faiss.IO_FLAG_MMAP_IFC = 0
        load = bm25s.BM25.load.__func__  # type: ignore[attr-defined]
        bm25s.BM25.load = classmethod(lambda cls, *a, **k: load(cls, *a, **{**k, "mmap": False}))  # type: ignore[method-assign]
    from qa.answer.retrieval import fuse, retrieve
    from qa.config import Settings
    from qa.pipeline import QA

    data = np.load(queries)
    texts = [str(t) for t in data["texts"]]
    embedder = ReplayEmbedder(int(topics), dict(zip(texts, data["vecs"], strict=True)))
    settings = Settings(index_dir=Path(index_dir), model=MODEL, reader="none")
    after_imports = rss()
    t0 = time.perf_counter()
    qa = QA.load(settings=settings, embedder=embedder)
    load_s = time.perf_counter() - t0
    rss_load = rss()
    lat: list[float] = []
    stages: dict[str, list[float]] = {"dense": [], "lexical": [], "fusion": []}
    for q in texts:
        t0 = time.perf_counter()
        qa.search(q, k=5)
        lat.append(time.perf_counter() - t0)
    for q, v in zip(texts, data["vecs"], strict=True):
        timings: dict[str, float] = {}
        ranked = retrieve(qa.data, v, q, CANDIDATES, timings)
        t0 = time.perf_counter()
        fuse(qa.data, ranked, v, 5, settings.dense_weight, settings.sentence_weight, settings.overlap_weight)
        timings["fusion"] = time.perf_counter() - t0
        for s in stages:
            stages[s].append(timings[s])
    print(
        json.dumps(
            {
                "load_seconds": load_s,
                "rss_base": after_imports,
                "rss_bare": base,
                "rss_load": rss_load,
                "rss_end": rss(),
                "search_ms": {"median": ms(median(lat)), "p95": ms(percentile(lat, 0.95))},
                "stages_ms": {s: ms(median(v)) for s, v in stages.items()},
            }
        )
    )


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "worker":
        worker_main(*sys.argv[2:])
        return
    n = int(float(sys.argv[1])) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory(prefix="qa-bench-scale-") as tmp:
        run(n, Path(tmp))


if __name__ == "__main__":
    main()
