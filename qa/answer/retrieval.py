"""Dense (FAISS) and lexical (BM25) retrieval, fused by a weighted sum of normalised scores."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from qa.ingest.sentences import sentence_spans
from qa.store import vectors
from qa.store.index import IndexData
from qa.store.lexical import tokenize
from qa.types import Hit


@dataclass(frozen=True)
class Ranked:
    """Raw per-retriever results for one query, before fusion."""

    dense: dict[int, tuple[int, float]]  # row -> (rank, cosine)
    lexical: dict[int, tuple[int, float]]  # row -> (rank, bm25)
    # The query's words as BM25 sees them (``tokenize``); without them ``fuse`` adds no overlap.
    words: frozenset[str] = frozenset()


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
    words = tokenize(query_text)  # once, for BM25 and the sentence overlap
    l_scores, l_ids = data.lexical.search_words(words, candidates)
    t2 = time.perf_counter()
    if timings is not None:
        timings["dense"] = t1 - t0
        timings["lexical"] = t2 - t1
    dense = {int(i): (r, float(s)) for r, (i, s) in enumerate(zip(d_ids, d_scores, strict=True), 1)}
    lexical = {int(i): (r, float(s)) for r, (i, s) in enumerate(zip(l_ids, l_scores, strict=True), 1)}
    return Ranked(dense, lexical, frozenset(words))


def fuse(
    data: IndexData,
    ranked: Ranked,
    query_vector: np.ndarray,
    k: int,
    dense_weight: float = 0.65,
    sentence_weight: float = 0.0,
    overlap_weight: float = 0.0,
) -> list[Hit]:
    """Score every candidate of either retriever by
    ``dense_weight * dense + (1 - dense_weight) * bm25 / (the query's best bm25)
    + overlap_weight * overlap / (the query's best overlap)``, where
    ``dense = sentence_weight * (its best sentence's cosine) + (1 - sentence_weight) * cosine``
    and ``overlap`` is the most a single sentence of the chunk holds of the query's words, each
    counted once and weighed by its BM25 idf (``sentence_overlap``).

    The cosine is taken for every candidate (BM25's too); a candidate outside BM25's list gets 0
    for BM25, and an index without sentence vectors uses the chunk's cosine. Scores are fused,
    not ranks, with BM25 divided by the query's best so both sit on a 0-1 scale; the sentence
    terms are there because a question usually takes its words from one sentence of its passage
    (how the rule and its weights were measured: ``docs/experiments.md#fusion-rule``).
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
    if overlap_weight > 0:
        for row, share in _overlap_shares(data, fused, ranked.words, overlap_weight, k).items():
            fused[row] += overlap_weight * share
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


def _overlap_shares(
    data: IndexData, base: dict[int, float], words: frozenset[str], weight: float, k: int
) -> dict[int, float]:
    """Each candidate's ``sentence_overlap`` over the best among all of ``base``'s candidates,
    for every candidate that can still reach the top ``k`` once ``weight`` x its share is added
    to its ``base`` score; the others are left out (they stay below k candidates either way).

    Splitting and stemming a chunk's sentences costs about 70 us, so rather than all 60-100
    candidates, this reads the few that matter: the words a chunk holds anywhere (BM25's posting
    lists, no text read) bound what one of its sentences holds. First the best overlap: read
    the chunks in order of that bound until the bound falls to the best found. Then only the
    candidates whose base score plus their bound can still reach the k-th best score known.
    The top k, and their scores, are those of reading every candidate (``tests/test_retrieval.py``).
    """
    lexical = data.lexical
    idf = lexical.idf(words) if lexical is not None else {}
    if not idf or not base or lexical is None:
        return {}
    rows = np.fromiter(base, dtype=np.int64, count=len(base))
    bound = dict(zip(rows.tolist(), lexical.chunk_overlap(idf, rows).tolist(), strict=True))
    exact: dict[int, float] = {}
    best = 0.0
    for row in sorted(bound, key=lambda r: -bound[r]):
        if bound[row] <= best:
            break
        exact[row] = _row_overlap(data, row, idf)
        best = max(best, exact[row])
    if best <= 0:
        return {}
    # Rounded as ``fuse`` rounds (weight * (value / best)): each step rounds monotonically, so a
    # bound that is not below a value stays so after it.
    floor = sorted((base[r] + weight * (exact.get(r, 0.0) / best) for r in base), reverse=True)
    kth = floor[k - 1] if len(floor) >= k else -np.inf
    for row in base:
        if row not in exact and bound[row] > 0 and base[row] + weight * (bound[row] / best) >= kth:
            exact[row] = _row_overlap(data, row, idf)
    return {row: value / best for row, value in exact.items()}


def _row_overlap(data: IndexData, row: int, idf: dict[str, float]) -> float:
    """The most idf one sentence of the row's chunk holds. Summed in ``idf``'s order, one
    addition at a time, as ``LexicalIndex.chunk_overlap`` sums the same terms and more: in
    another order the rounding could put a sentence's sum one ulp above its chunk's bound."""
    best = 0.0
    for held in sentence_words(data.chunks[row].text):
        total = 0.0
        for word, value in idf.items():
            if word in held:
                total += value
        best = max(best, total)
    return best


def sentence_overlap(data: IndexData, rows: list[int], words: frozenset[str]) -> dict[int, float]:
    """Per row, the highest sum over one sentence of its chunk's text (``sentence_spans``; the
    title is not a sentence) of the BM25 idf of each query word it holds, each word once; 0 for
    all without a BM25 index."""
    idf = data.lexical.idf(words) if data.lexical is not None else {}
    return {row: _row_overlap(data, row, idf) if idf else 0.0 for row in rows}


@lru_cache(maxsize=2048)
def sentence_words(text: str) -> tuple[frozenset[str], ...]:
    """The words (``tokenize``'s) of each sentence of ``text``. Cached (about 8 KB a chunk on
    SQuAD, so at most about 17 MB): splitting and stemming the candidates' sentences took about
    5 ms a query, and the chunks that match many questions come back often."""
    return tuple(frozenset(tokenize(text[a:b])) for a, b in sentence_spans(text))


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
