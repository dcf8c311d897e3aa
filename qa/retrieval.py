"""Dense (FAISS) and lexical (BM25) retrieval, fused by reciprocal rank fusion."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from qa import vectors
from qa.index import IndexData
from qa.types import Hit


@dataclass(frozen=True)
class Ranked:
    """Raw per-retriever results for one query, before fusion."""

    dense: dict[int, tuple[int, float]]  # row -> (rank, cosine)
    lexical: dict[int, tuple[int, float]]  # row -> (rank, bm25)


def retrieve(
    data: IndexData,
    query_vector: np.ndarray,
    query_text: str,
    candidates: int,
    timings: dict[str, float] | None = None,
) -> Ranked:
    """Run both retrievers, each returning up to ``candidates`` rows."""
    t0 = time.perf_counter()
    d_scores, d_ids = vectors.search(data.vectors, query_vector, candidates)
    t1 = time.perf_counter()
    l_scores, l_ids = data.lexical.search(query_text, candidates)
    t2 = time.perf_counter()
    if timings is not None:
        timings["dense"] = t1 - t0
        timings["lexical"] = t2 - t1
    dense = {int(i): (r, float(s)) for r, (i, s) in enumerate(zip(d_ids, d_scores, strict=True), 1)}
    lexical = {int(i): (r, float(s)) for r, (i, s) in enumerate(zip(l_ids, l_scores, strict=True), 1)}
    return Ranked(dense, lexical)


def fuse(data: IndexData, ranked: Ranked, query_vector: np.ndarray, k: int, rrf_k: int = 60) -> list[Hit]:
    """Reciprocal rank fusion: score = sum over retrievers of 1 / (rrf_k + rank).

    RRF needs no score calibration between cosine and BM25, which live on different
    scales, and is robust when one retriever misses a passage entirely.
    """
    fused: dict[int, float] = {}
    for results in (ranked.dense, ranked.lexical):
        for row, (rank, _) in results.items():
            fused[row] = fused.get(row, 0.0) + 1.0 / (rrf_k + rank)
    # Ties (common with two retrievers) break on the dense score, then row order.
    order = sorted(fused, key=lambda r: (-fused[r], -(ranked.dense.get(r, (0, -1.0))[1]), r))[:k]
    hits = []
    for rank, row in enumerate(order, 1):
        dense = ranked.dense.get(row)
        lexical = ranked.lexical.get(row)
        hits.append(
            Hit(
                chunk=data.chunks[row],
                score=fused[row],
                rank=rank,
                # Every hit gets its cosine: abstention weighs it even when BM25 found the hit.
                dense_score=dense[1] if dense else _cosine(data, row, query_vector),
                lexical_score=lexical[1] if lexical else None,
            )
        )
    return hits


def _cosine(data: IndexData, row: int, query_vector: np.ndarray) -> float:
    return float(np.dot(data.vectors.reconstruct(row), query_vector.reshape(-1)))
