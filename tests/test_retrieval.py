"""Fusion of dense and BM25 candidates (qa.answer.retrieval.fuse) on hand-made scores."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from qa.answer.retrieval import Ranked, fuse, retrieve, sentence_overlap, sentence_words
from qa.config import Settings
from qa.errors import ConfigError
from qa.store.index import IndexData
from qa.store.lexical import LexicalIndex, tokenize
from qa.store.vectors import build_vector_index
from qa.types import Chunk


def data_with(vectors: np.ndarray) -> IndexData:
    chunks = [Chunk(f"d{i}.txt#0", f"d{i}.txt", f"D{i}", 0, 4, "text") for i in range(len(vectors))]
    return IndexData(Path("."), {}, {}, chunks, build_vector_index(vectors, 1000), None)  # type: ignore[arg-type]


def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


# Query along the x axis; row i's cosine with it is its first coordinate.
QUERY = unit(1, 0, 0)
VECS = np.stack([unit(0.9, 0.436, 0), unit(0.6, 0.8, 0), unit(0.3, 0.954, 0), unit(0.0, 1, 0)])
COS = [float(v @ QUERY) for v in VECS]


def test_weighted_sum_of_cosine_and_bm25_over_the_best_bm25() -> None:
    data = data_with(VECS)
    ranked = Ranked(
        dense={0: (1, COS[0]), 1: (2, COS[1])},
        lexical={2: (1, 8.0), 1: (2, 4.0)},  # row 2 found by BM25 only
    )
    hits = fuse(data, ranked, QUERY, 10, dense_weight=0.5)
    expected = {
        0: 0.5 * COS[0],  # not in BM25's list: 0 for BM25
        1: 0.5 * COS[1] + 0.5 * 4.0 / 8.0,
        2: 0.5 * COS[2] + 0.5 * 1.0,
    }
    assert [h.chunk.doc_id for h in hits] == ["d2.txt", "d1.txt", "d0.txt"]
    for h in hits:
        row = int(h.chunk.doc_id[1])
        assert h.score == pytest.approx(expected[row], abs=1e-6)
        assert h.dense_score == pytest.approx(COS[row], abs=1e-6)  # BM25-only hit gets its cosine
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].lexical_score == 8.0 and hits[2].lexical_score is None


def test_weight_one_or_zero_is_one_retriever_alone() -> None:
    data = data_with(VECS)
    ranked = Ranked(dense={r: (r + 1, COS[r]) for r in range(4)}, lexical={3: (1, 5.0), 2: (2, 1.0)})
    dense_only = [h.chunk.doc_id for h in fuse(data, ranked, QUERY, 4, dense_weight=1.0)]
    assert dense_only == ["d0.txt", "d1.txt", "d2.txt", "d3.txt"]
    bm25_first = [h.chunk.doc_id for h in fuse(data, ranked, QUERY, 2, dense_weight=0.0)]
    assert bm25_first == ["d3.txt", "d2.txt"]


def test_ties_break_on_bm25_then_row_order() -> None:
    same = np.stack([unit(0.5, 0.866, 0)] * 3)
    data = data_with(same)
    c = float(same[0] @ QUERY)
    # Equal fused scores: rows 0 and 1 have no BM25 score; row 2 trades cosine for BM25.
    ranked = Ranked(dense={0: (1, c), 1: (2, c)}, lexical={})
    assert [h.chunk.doc_id for h in fuse(data, ranked, QUERY, 3, 1.0)] == ["d0.txt", "d1.txt"]
    ranked = Ranked(dense={0: (1, c), 1: (2, c), 2: (3, c)}, lexical={1: (1, 3.0), 2: (2, 3.0)})
    order = [h.chunk.doc_id for h in fuse(data, ranked, QUERY, 3, 0.5)]
    assert order == ["d1.txt", "d2.txt", "d0.txt"]


def test_no_candidates_give_no_hits() -> None:
    assert fuse(data_with(VECS), Ranked({}, {}), QUERY, 5) == []


@pytest.mark.parametrize("weight", [-0.1, 1.5])
def test_dense_weight_must_be_between_0_and_1(weight: float) -> None:
    with pytest.raises(ConfigError, match="dense_weight"):
        Settings().replace(dense_weight=weight)


@pytest.mark.parametrize("passages", [0, -1, 51])
def test_read_passages_is_bounded(passages: int) -> None:
    with pytest.raises(ConfigError, match="read_passages"):
        Settings().replace(read_passages=passages)
    assert Settings().replace(read_passages=1).read_passages == 1


@pytest.mark.parametrize("gap", ["-0.1", "2.5", "nan", "wide"])
def test_read_gap_is_bounded(gap: str) -> None:
    with pytest.raises(ConfigError, match="read_gap"):
        Settings().replace(read_gap=gap)
    assert Settings().replace(read_gap="0").read_gap == 0.0


def test_the_best_sentence_lifts_a_chunk_whose_one_sentence_matches() -> None:
    # Row 0's own vector is close to the query, but none of its sentences is; row 1's vector
    # is diluted, yet one of its two sentences is the query. Row 2 has no sentence rows.
    chunk_vecs = np.stack([unit(0.8, 0.6, 0), unit(0.6, 0.8, 0), unit(0.5, 0.866, 0)])
    sentences = np.stack([unit(0.5, 0.866, 0), unit(0.2, 0.98, 0), unit(1, 0, 0)]).astype(np.float16)
    data = data_with(chunk_vecs)
    data.sentences, data.sentence_starts = sentences, np.array([0, 1, 3, 3])
    ranked = Ranked(dense={0: (1, 0.8), 1: (2, 0.6), 2: (3, 0.5)}, lexical={})
    plain = fuse(data, ranked, QUERY, 3, dense_weight=1.0, sentence_weight=0.0)
    assert [h.chunk.doc_id for h in plain] == ["d0.txt", "d1.txt", "d2.txt"]
    hits = fuse(data, ranked, QUERY, 3, dense_weight=1.0, sentence_weight=0.75)
    assert [h.chunk.doc_id for h in hits] == ["d1.txt", "d0.txt", "d2.txt"]
    dense = {h.chunk.doc_id: h.dense_score for h in hits}
    assert dense["d1.txt"] == pytest.approx(0.75 * 1.0 + 0.25 * 0.6, abs=1e-3)
    assert dense["d0.txt"] == pytest.approx(0.75 * 0.5 + 0.25 * 0.8, abs=1e-3)
    assert dense["d2.txt"] == pytest.approx(0.5, abs=1e-3)  # no sentences: its cosine
    # and with BM25 beside it, the fused score uses that dense score
    ranked = Ranked(dense={0: (1, 0.8), 1: (2, 0.6)}, lexical={0: (1, 2.0)})
    fused = {h.chunk.doc_id: h.score for h in fuse(data, ranked, QUERY, 2, 0.5, 0.75)}
    assert fused["d0.txt"] == pytest.approx(0.5 * dense["d0.txt"] + 0.5, abs=1e-3)


@pytest.mark.parametrize("weight", ["-0.1", "1.5", "nan"])
def test_sentence_weight_is_bounded(weight: str) -> None:
    with pytest.raises(ConfigError, match="sentence_weight"):
        Settings().replace(sentence_weight=weight)
    assert Settings().replace(sentence_weight="0").sentence_weight == 0.0


# Row 0 holds both query words in one sentence, row 1 holds them in two; rows 2 and 3 neither.
OVERLAP_TEXTS = [
    "Paris hosts the Louvre. Rome has the Colosseum.",
    "Paris is large. The Louvre is old.",
    "Berlin has museums.",
    "Madrid has the Prado.",
]


def data_with_texts(vectors: np.ndarray, texts: list[str]) -> IndexData:
    chunks = [Chunk(f"d{i}.txt#0", f"d{i}.txt", "", 0, len(t), t) for i, t in enumerate(texts)]
    lexical = LexicalIndex.build(texts)
    return IndexData(Path("."), {}, {}, chunks, build_vector_index(vectors, 1000), lexical)


def test_sentence_overlap_counts_the_idf_of_the_query_words_one_sentence_holds() -> None:
    data = data_with_texts(VECS, OVERLAP_TEXTS)
    words = frozenset(tokenize("Where is the Louvre in Paris?"))
    idf = math.log(1 + (4 - 2 + 0.5) / (2 + 0.5))  # Lucene's idf: each word is in 2 of 4 chunks
    assert data.lexical.idf(words) == pytest.approx({"pari": idf, "louvr": idf})
    assert data.lexical.idf(["tokyo", "pari"]) == pytest.approx({"pari": idf})  # not in the corpus: left out
    got = sentence_overlap(data, [0, 1, 2, 3], words)
    assert got == pytest.approx({0: 2 * idf, 1: idf, 2: 0.0, 3: 0.0})  # row 1: one word a sentence
    assert sentence_overlap(data_with(VECS), [0, 1], words) == {0: 0.0, 1: 0.0}  # no BM25 index
    assert retrieve(data, QUERY, "Where is the Louvre in Paris?", 4).words == words


def test_the_overlap_weight_adds_the_share_of_the_best_overlap() -> None:
    vecs = np.stack([unit(0.3, 0.954, 0), unit(0.6, 0.8, 0), unit(0.1, 0.995, 0), unit(0.0, 1, 0)])
    data = data_with_texts(vecs, OVERLAP_TEXTS)
    words = frozenset(tokenize("Louvre Paris"))
    ranked = Ranked(dense={0: (2, 0.3), 1: (1, 0.6), 2: (3, 0.1)}, lexical={}, words=words)
    plain = fuse(data, ranked, QUERY, 3, dense_weight=1.0)
    assert [h.chunk.doc_id for h in plain] == ["d1.txt", "d0.txt", "d2.txt"]
    hits = fuse(data, ranked, QUERY, 3, dense_weight=1.0, overlap_weight=1.0)
    assert [h.chunk.doc_id for h in hits] == ["d0.txt", "d1.txt", "d2.txt"]
    fused = {h.chunk.doc_id: h.score for h in hits}
    assert fused == pytest.approx({"d0.txt": 0.3 + 1.0, "d1.txt": 0.6 + 0.5, "d2.txt": 0.1}, abs=1e-3)
    assert {h.chunk.doc_id: h.dense_score for h in hits}["d0.txt"] == pytest.approx(0.3, abs=1e-3)
    # a query none of whose words the candidates hold adds nothing
    none = Ranked(ranked.dense, {}, frozenset(tokenize("Tokyo")))
    assert [h.score for h in fuse(data, none, QUERY, 3, 1.0, 0.0, 1.0)] == pytest.approx(
        [0.6, 0.3, 0.1], abs=1e-3
    )


@pytest.mark.parametrize("weight", ["-0.1", "1.5", "nan"])
def test_overlap_weight_is_bounded(weight: str) -> None:
    with pytest.raises(ConfigError, match="overlap_weight"):
        Settings().replace(overlap_weight=weight)
    assert Settings().replace(overlap_weight="0").overlap_weight == 0.0


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("k", [1, 3, 10, 60])
def test_overlap_fusion_reads_few_chunks_yet_ranks_as_reading_them_all(k: int, ties: bool) -> None:
    # With ``ties``: 6 words and 3 distinct vectors, so many candidates share their scores.
    rng = np.random.default_rng(k + 100 * ties)
    vocab = [f"w{i}" for i in range(6 if ties else 40)]
    texts = [
        " ".join(". ".join(" ".join(rng.choice(vocab, rng.integers(2, 9))) for _ in range(3)).split()) + "."
        for _ in range(50)
    ]
    vecs = rng.normal(size=(3 if ties else 50, 3))
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    data = data_with_texts(vecs[rng.integers(0, 3, 50)] if ties else vecs, texts)
    read = candidates = 0
    for trial in range(20):
        query = " ".join(rng.choice(vocab, 4))
        qvec = unit(*rng.normal(size=3))
        ranked = retrieve(data, qvec, query, 25)
        rows = sorted(set(ranked.dense) | set(ranked.lexical))
        sentence_words.cache_clear()
        hits = fuse(data, ranked, qvec, k, 0.7, 0.0, 0.4)
        read, candidates = read + sentence_words.cache_info().misses, candidates + len(rows)
        # Reading every candidate, scored and ordered as ``fuse`` does:
        base = {h.chunk.doc_id: h.score for h in fuse(data, ranked, qvec, 100, 0.7, 0.0, 0.0)}
        overlap = sentence_overlap(data, rows, ranked.words)
        most = max(overlap.values())
        full = {r: base[f"d{r}.txt"] + (0.4 * (overlap[r] / most) if most else 0.0) for r in rows}
        order = sorted(full, key=lambda r: (-full[r], -ranked.lexical.get(r, (0, 0.0))[1], r))[:k]
        assert [(h.chunk.doc_id, h.score) for h in hits] == [(f"d{r}.txt", full[r]) for r in order], trial
    assert read <= candidates
    if k <= 3 and not ties:  # (with 6 words, every chunk holds them all: no bound prunes)
        assert read < candidates / 2  # few chunks' texts were read


def test_bm25s_is_imported_with_jax_kept_off_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # bm25s runs a JAX top-k on import where JAX is installed; on a GPU machine that reserved
    # most of the GPU for the process. Unless the user chose a platform, JAX stays on the CPU.
    import logging
    import os

    from qa.store.lexical import import_bm25s

    monkeypatch.setenv("JAX_PLATFORMS", "")  # so that teardown restores the variable as it was
    monkeypatch.delenv("JAX_PLATFORMS")
    assert import_bm25s().BM25 is not None
    assert os.environ["JAX_PLATFORMS"] == "cpu"
    assert logging.getLogger("bm25s").level == logging.WARNING
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    import_bm25s()
    assert os.environ["JAX_PLATFORMS"] == "cuda"
