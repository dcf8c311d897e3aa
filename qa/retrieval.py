"""Dense (FAISS) and lexical (BM25) retrieval, fused by a weighted sum of normalised scores."""

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


def fuse(
    data: IndexData,
    ranked: Ranked,
    query_vector: np.ndarray,
    k: int,
    dense_weight: float = 0.65,
    sentence_weight: float = 0.0,
) -> list[Hit]:
    """Score every candidate of either retriever by
    ``dense_weight * dense + (1 - dense_weight) * bm25 / (the query's best bm25)``, where
    ``dense = sentence_weight * (its best sentence's cosine) + (1 - sentence_weight) * cosine``.

    The cosine is taken for every candidate (BM25's too); a candidate outside BM25's list
    gets 0 for BM25. Measured on the same candidate lists (``python -m bench.fusion``; weight
    tuned on SQuAD v1.1 dev-a, confirmed on v2.0 dev-a), this beat reciprocal rank fusion
    (k=60) by 0.07 Recall@1 and 0.02 Recall@5 on v1.1, 0.06 and 0.01 on v2.0: rank fusion
    throws away how far apart the scores are, and dividing by the best BM25 score puts
    BM25 on the cosine's 0-1 scale for each query. A question usually matches one sentence of
    its passage, which the chunk's single vector dilutes: the best sentence's cosine
    (``python -m bench.sentence_dense``, weights tuned on the training articles) re-scores the
    candidates the two retrievers found. An index without sentence vectors uses the cosine.
    """
    cosines = {row: s for row, (_, s) in ranked.dense.items()}
    for row in ranked.lexical:
        if row not in cosines:
            cosines[row] = _cosine(data, row, query_vector)
    if sentence_weight > 0 and data.sentences is not None and data.sentence_starts is not None:
        best_sentence = _best_sentences(data.sentences, data.sentence_starts, list(cosines), query_vector)
        cosines = {
            row: sentence_weight * best_sentence.get(row, cos) + (1.0 - sentence_weight) * cos
            for row, cos in cosines.items()
        }
    best = max((s for _, s in ranked.lexical.values()), default=0.0)
    fused = {}
    for row, cos in cosines.items():
        lexical = ranked.lexical.get(row)
        bm25 = lexical[1] / best if lexical and best > 0 else 0.0
        fused[row] = dense_weight * cos + (1.0 - dense_weight) * bm25
    # Ties break on BM25 (the stronger retriever alone on SQuAD), then row order.
    order = sorted(fused, key=lambda r: (-fused[r], -ranked.lexical.get(r, (0, 0.0))[1], r))[:k]
    return [
        Hit(
            chunk=data.chunks[row],
            score=fused[row],
            rank=rank,
            dense_score=cosines[row],  # every hit gets its dense score: abstention weighs it
            lexical_score=ranked.lexical[row][1] if row in ranked.lexical else None,
        )
        for rank, row in enumerate(order, 1)
    ]


def _best_sentences(
    sentences: np.ndarray, starts: np.ndarray, rows: list[int], query_vector: np.ndarray
) -> dict[int, float]:
    """Per row, the highest cosine between the query and one of its sentences' vectors."""
    spans = [(row, int(starts[row]), int(starts[row + 1])) for row in rows]
    spans = [(row, a, b) for row, a, b in spans if b > a]
    if not spans:
        return {}
    picked = np.concatenate([np.arange(a, b) for _, a, b in spans])
    scores = np.asarray(sentences[picked], dtype=np.float32) @ query_vector.reshape(-1).astype(np.float32)
    out, at = {}, 0
    for row, a, b in spans:
        out[row] = float(scores[at : at + b - a].max())
        at += b - a
    return out


def _cosine(data: IndexData, row: int, query_vector: np.ndarray) -> float:
    return float(np.dot(data.vectors.reconstruct(row), query_vector.reshape(-1)))
