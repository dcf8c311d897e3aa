"""Memory per chunk, part by part, and what 8-bit vectors cost in recall:
``python -m bench.memory [--docs N] [--clustered N] [--hnsw N] [--questions N]``.

1. A real index: the first N SQuAD paragraphs built with the bundled model (float32 vectors),
   then the same index rebuilt with ``vector_compression="sq8"`` (no re-embedding). Each part's
   bytes per chunk: vectors (flat float32 and sq8), sentence vectors, BM25, the chunk store's files
   and, once loaded, the Python objects ``index.load`` makes (tracemalloc). The HNSW graph's bytes
   per vector come from an HNSW index over clustered vectors (``--hnsw``), float32 and sq8.
2. Recall@10 of sq8 against exact search: the SQuAD questions' real embeddings against the real
   chunk vectors, and clustered vectors (``bench.corpus.clustered_vectors``, ``--clustered``)
   through the flat and the HNSW index.
3. End to end on the real index, float32 against sq8: the gold paragraph among the first 5 hits
   (``QA.search``), and the answers' token F1 and exact match (``QA.ask``).

Results: stdout and ``bench/results/memory.{md,json}``. Nothing here runs the 1M case unless
asked (``--clustered 1000000 --hnsw 1000000``: tens of minutes and several GB). ``--docs 0``
skips the real index, ``--hnsw 0`` the HNSW index: ``--docs 0 --hnsw 0 --clustered 1000000
--name memory-1m-flat`` measures the flat index at 1M alone (a few minutes, about 3 GB). Each
search asks for the pipeline's 50 candidates, one question at a time on one thread.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import SQUAD, load_line, machine, save, say, table

MIB = 1024 * 1024


def _heap(load: Callable[[], Any]) -> int:
    """Bytes of Python heap that what ``load`` returns holds (tracemalloc, while it is alive)."""
    tracemalloc.start()
    kept = load()
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return held


def _recall(truth: np.ndarray, found: np.ndarray) -> float:
    return float(np.mean([len(set(t) & set(f)) / len(t) for t, f in zip(truth, found, strict=True)]))


def real_index(docs: int, n_questions: int, work: Path) -> dict[str, Any]:
    """Build, measure and query the real index, float32 and sq8."""
    from qa.config import Settings
    from qa.evaluation.evaluate import load_squad
    from qa.evaluation.metrics import exact_match, f1_score
    from qa.pipeline import QA
    from qa.store import files as store
    from qa.store import index as index_mod
    from qa.store.embedding import SentenceTransformerEmbedder
    from qa.store.lexical import LexicalIndex, corpus_token_ids

    data = load_squad(SQUAD)
    corpus = data.documents[:docs]
    keep = {d.doc_id for d in corpus}
    rng = np.random.default_rng(0)
    asked = [q for q in data.questions if q.doc_id in keep and q.answers]
    asked = [asked[i] for i in sorted(rng.choice(len(asked), min(n_questions, len(asked)), replace=False))]
    embedder = SentenceTransformerEmbedder()
    out: dict[str, Any] = {"docs": len(corpus), "questions": len(asked)}
    paths = {}
    for compression in ("none", "sq8"):
        settings = Settings(index_dir=work / compression, vector_compression=compression)
        if compression == "sq8":  # the float32 index's vectors, quantised: nothing is re-embedded
            shutil.copytree(work / "none", work / "sq8")
        t0 = time.perf_counter()
        report = index_mod.build(corpus, settings.index_dir, embedder, settings)
        out[f"build_s_{compression}"] = time.perf_counter() - t0
        gen = store.current_generation(settings.index_dir)
        paths[compression] = (settings, gen)
        out["chunks"] = report.chunks
    settings, gen = paths["none"]
    n = out["chunks"]
    size = {f.relative_to(gen).as_posix(): f.stat().st_size for f in gen.rglob("*") if f.is_file()}
    manifest = index_mod.read_manifest(gen)
    out["sentences"] = int(manifest["counts"]["sentences"])
    out["bytes_per_chunk"] = {
        "vectors (flat, float32)": size["vectors.faiss"] / n,
        "vectors (flat, sq8)": (paths["sq8"][1] / "vectors.faiss").stat().st_size / n,
        "sentence vectors (fp16) + starts": (size["sentences.npy"] + size["sentence_starts.npy"]) / n,
        "BM25 (bm25/)": sum(v for k, v in size.items() if k.startswith("bm25/")) / n,
        "chunk store files (chunks.jsonl + documents.jsonl)": (size["chunks.jsonl"] + size["documents.jsonl"])
        / n,
        "manifest.json": size["manifest.json"] / n,
    }
    heap = _heap(lambda: index_mod.load(settings.index_dir))
    lexical = _heap(lambda: LexicalIndex.load(gen / "bm25", n))
    manifest_heap = _heap(lambda: index_mod.read_manifest(gen))
    per_chunk = out["bytes_per_chunk"]
    per_chunk["BM25 vocabulary and maps, Python objects once loaded"] = lexical / n
    per_chunk["chunk store (documents, chunks), Python objects once loaded"] = (
        heap - lexical - manifest_heap
    ) / n
    per_chunk["manifest, Python objects once loaded"] = manifest_heap / n
    loaded = index_mod.load(settings.index_dir)
    out["bm25_terms"] = len(corpus_token_ids([index_mod.embed_text(c) for c in loaded.chunks])[1])
    # recall@10 of sq8 against exact search, real question embeddings
    qvecs = embedder.embed([q.text for q in asked])
    exact = loaded.vectors.search(qvecs, 10)[1]
    sq8 = index_mod.load(paths["sq8"][0].index_dir).vectors.search(qvecs, 10)[1]
    out["recall10_real"] = _recall(exact, sq8)
    del loaded
    # end to end, float32 against sq8
    for compression, (s, _) in paths.items():
        qa = QA.load(settings=s, embedder=embedder)
        hit5, f1, em, t0 = [], [], [], time.perf_counter()
        for q in asked:
            hits = qa.search(q.text, k=5)
            hit5.append(any(h.chunk.doc_id == q.doc_id for h in hits))
            answer = qa.ask(q.text)
            text = answer.text if answer.found else ""
            f1.append(f1_score(text, q.answers))
            em.append(exact_match(text, q.answers))
        out[f"e2e_{compression}"] = {
            "hit@5": float(np.mean(hit5)), "F1": float(np.mean(f1)), "EM": float(np.mean(em)),
            "seconds": time.perf_counter() - t0,
        }  # fmt: skip
    return out


def vocabulary() -> dict[str, Any]:
    """BM25's vocabulary as the corpus grows (every SQuAD paragraph's chunks, in prefixes): its
    words follow Heaps' law, its word pairs are hashed into ``BIGRAM_BUCKETS``; a fitted
    exponent extrapolates the words to larger corpora."""
    from bench.corpus import chunk_texts, squad
    from qa.store.lexical import BIGRAM_BUCKETS, corpus_token_ids

    texts, _ = chunk_texts(squad()[0])
    rows = []
    for size in (len(texts) // 8, len(texts) // 4, len(texts) // 2, len(texts)):
        _, vocab = corpus_token_ids(texts[:size])
        pairs = sum(1 for term in vocab if term.startswith("\u00a7"))  # lexical._BUCKET's terms
        rows.append({"chunks": size, "terms": len(vocab), "pairs": pairs})
    sizes = np.log([r["chunks"] for r in rows])
    words = np.log([r["terms"] - r["pairs"] for r in rows])
    beta, log_k = np.polyfit(sizes, words, 1)
    return {
        "rows": rows,
        "heaps_beta": float(beta),
        "heaps_k": float(np.exp(log_k)),
        "buckets": BIGRAM_BUCKETS,
    }


def clustered(n: int, n_hnsw: int, work: Path) -> dict[str, Any]:
    """Recall@10 of sq8 against exact search on clustered vectors, and HNSW's bytes per vector."""
    from bench.corpus import clustered_vectors
    from qa.store import vectors as vec

    out: dict[str, Any] = {"n": n, "n_hnsw": n_hnsw}
    both = clustered_vectors(max(n, n_hnsw) + 200, seed=1)
    queries = both[-200:]
    for name, size, threshold in (("flat", n, n), ("hnsw", n_hnsw, 0)):
        if not size:
            continue
        corpus = both[:size]
        truth = vec.build_vector_index(corpus, size).search(queries, 10)[1]
        for compression in ("none", "sq8"):
            say(f"clustered {size:,}: {name} {compression}")
            t0 = time.perf_counter()
            index = vec.build_vector_index(corpus, threshold, compression)
            built = time.perf_counter() - t0
            path = work / f"{name}-{compression}.faiss"
            vec.write_vector_index(index, path)
            loaded = vec.read_vector_index(path)
            loaded.search(queries[:5], 50)  # warm-up: the mapped file's pages
            found, took = [], []
            with vec.one_thread():  # as the app searches: one question at a time, one thread
                for q in queries:
                    t0 = time.perf_counter()
                    found.append(loaded.search(q[None, :], 50)[1][0])  # the pipeline's 50 candidates
                    took.append(time.perf_counter() - t0)
            top50 = np.stack(found)
            out[f"{name}-{compression}"] = {
                "recall10": _recall(truth, top50[:, :10]),
                # the true 10 nearest among the 50 candidates the fusion reads
                "recall10_in50": _recall(truth, top50),
                "bytes_per_vector": path.stat().st_size / size, "build_s": built,
                "search_ms_per_query": 1000 * float(np.median(took)),
            }  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=300, help="SQuAD paragraphs in the real index")
    parser.add_argument("--questions", type=int, default=200, help="questions asked end to end")
    parser.add_argument("--clustered", type=int, default=100_000, help="clustered vectors, flat index")
    parser.add_argument("--hnsw", type=int, default=20_000, help="clustered vectors, HNSW index")
    parser.add_argument("--name", default="memory", help="results file name under bench/results/")
    args = parser.parse_args(argv)
    md = [f"Machine: {machine()['cpu']}, {load_line()} (shared with other work)"]
    print(md[0], flush=True)
    work = Path(tempfile.mkdtemp(prefix="qa-bench-memory-"))
    try:
        real = real_index(args.docs, args.questions, work) if args.docs else None
        synth = clustered(args.clustered, args.hnsw, work)
        vocab = vocabulary() if args.docs else None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if real is not None:
        n = real["chunks"]
        rows = [[part, b, b * 1e6 / MIB] for part, b in real["bytes_per_chunk"].items()]
        if "hnsw-none" in synth and "flat-none" in synth:
            links = synth["hnsw-none"]["bytes_per_vector"] - synth["flat-none"]["bytes_per_vector"]
            rows.append(["HNSW graph (above hnsw_threshold), clustered vectors", links, links * 1e6 / MIB])
        md.append(
            table(
                f"Bytes per chunk by part ({real['docs']} SQuAD paragraphs: {n} chunks, "
                f"{real['sentences'] / n:.2f} sentences a chunk; bundled model)",
                ["part", "bytes per chunk", "MiB per million chunks"],
                rows,
            )
        )
    real_row = []
    if real is not None:
        sq8_bytes = real["bytes_per_chunk"]["vectors (flat, sq8)"]
        name = "SQuAD chunks, real question embeddings"
        real_row = [[name, "flat", sq8_bytes, real["recall10_real"], "-", "-", "-"]]
    md.append(
        table(
            "8-bit vectors (sq8) against float32: recall@10 vs exact search",
            [
                "vectors",
                "index",
                "bytes per vector",
                "recall@10",
                "true 10 in top 50",
                "build s",
                "median ms a query, 1 thread",
            ],
            real_row
            + [
                [
                    f"clustered, {synth['n' if k.startswith('flat') else 'n_hnsw']:,}",
                    k,
                    v["bytes_per_vector"],
                    v["recall10"],
                    v["recall10_in50"],
                    v["build_s"],
                    v["search_ms_per_query"],
                ]
                for k, v in synth.items()
                if isinstance(v, dict)
            ],
        )
    )
    if real is not None and vocab is not None:
        md.append(
            table(
                f"End to end on the real index ({real['questions']} questions with answers)",
                ["vectors", "hit@5", "EM", "F1", "seconds"],
                [
                    [c, *(real[f"e2e_{c}"][k] for k in ("hit@5", "EM", "F1", "seconds"))]
                    for c in ("none", "sq8")
                ],
            )
        )
        md.append(
            table(
                f"BM25 vocabulary as the corpus grows (SQuAD chunks; word pairs hashed into "
                f"{vocab['buckets']:,} buckets; words ~ {vocab['heaps_k']:.1f} x "
                f"chunks^{vocab['heaps_beta']:.2f})",
                ["chunks", "terms", "of which pair buckets"],
                [[r["chunks"], r["terms"], r["pairs"]] for r in vocab["rows"]],
            )
        )
    md.append(f"\nAfter: {load_line()}")
    results = {
        "machine": machine(),
        "args": vars(args),
        "real": real,
        "clustered": synth,
        "vocabulary": vocab,
    }
    say(f"saved {save(results, md, args.name)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
