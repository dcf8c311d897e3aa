"""Vector index choice and approximate recall (qa.store.vectors), and the faster BM25 build
(qa.store.lexical).

No timings here: speed is measured by ``python -m bench.run`` (see bench/README.md).
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import faiss
import numpy as np
import pytest

from qa.errors import IndexCorruptError
from qa.store import vectors
from qa.store.lexical import BM25_PARAMS, LexicalIndex, corpus_token_ids, query_term_ids, tokenize


def clustered(n: int, dim: int = 64, topics: int = 40, seed: int = 0) -> np.ndarray:
    """Gaussian clusters around random centres, normalised (random unit vectors have no
    near neighbours, so approximate search on them would measure nothing)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((topics, dim)).astype(np.float32)
    x = centres[rng.integers(topics, size=n)] + 0.8 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_index_up_to_the_threshold_hnsw_above() -> None:
    x = clustered(300)
    assert isinstance(vectors.build_vector_index(x, hnsw_threshold=300), faiss.IndexFlatIP)
    assert vectors.index_kind(vectors.build_vector_index(x, hnsw_threshold=300)) == "flat"
    hnsw = vectors.build_vector_index(x, hnsw_threshold=299)
    assert isinstance(hnsw, faiss.IndexHNSWFlat)
    assert vectors.index_kind(hnsw) == "hnsw"
    assert hnsw.hnsw.efSearch == vectors.HNSW_EF_SEARCH
    assert hnsw.hnsw.efConstruction == vectors.HNSW_EF_CONSTRUCTION
    assert hnsw.ntotal == 300


def test_empty_corpus_gives_an_empty_exact_index() -> None:
    index = vectors.build_vector_index(np.zeros((0, 8), dtype=np.float32), hnsw_threshold=10)
    assert index.ntotal == 0
    scores, ids = vectors.search(index, np.ones(8, dtype=np.float32), 5)
    assert len(scores) == len(ids) == 0


def test_hnsw_recall_at_10_against_exact_search() -> None:
    corpus, queries = clustered(4000, seed=1), clustered(100, seed=2)
    exact = vectors.build_vector_index(corpus, hnsw_threshold=len(corpus))
    approx = vectors.build_vector_index(corpus, hnsw_threshold=1000)
    assert vectors.index_kind(approx) == "hnsw"
    recall = []
    for q in queries:
        truth = set(vectors.search(exact, q, 10)[1].tolist())
        found = set(vectors.search(approx, q, 10)[1].tolist())
        recall.append(len(truth & found) / 10)
    assert np.mean(recall) >= 0.9


def test_search_returns_cosines_best_first_and_caps_k() -> None:
    x = clustered(50)
    index = vectors.build_vector_index(x, hnsw_threshold=1000)
    scores, ids = vectors.search(index, x[7], 100)
    assert len(ids) == 50 and ids[0] == 7
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    assert np.all(np.diff(scores) <= 1e-6)


def test_single_query_search_runs_on_one_thread_and_restores_the_setting() -> None:
    before = faiss.omp_get_max_threads()
    seen = []
    with vectors.one_thread():
        seen.append(faiss.omp_get_max_threads())
    assert seen == [1]
    assert faiss.omp_get_max_threads() == before
    # The setting is per calling thread: another thread's limit is untouched.
    other = []
    with vectors.one_thread():
        t = threading.Thread(target=lambda: other.append(faiss.omp_get_max_threads()))
        t.start()
        t.join()
    assert other == [before]


@pytest.mark.parametrize("threshold", [1000, 10])
def test_written_index_reads_back_memory_mapped_with_the_same_results(tmp_path: Path, threshold: int) -> None:
    x = clustered(200)
    index = vectors.build_vector_index(x, hnsw_threshold=threshold)
    path = tmp_path / "vectors.faiss"
    vectors.write_vector_index(index, path)
    loaded = vectors.read_vector_index(path)
    assert vectors.index_kind(loaded) == vectors.index_kind(index)
    for q in x[:5]:
        a, b = vectors.search(index, q, 10), vectors.search(loaded, q, 10)
        assert np.array_equal(a[1], b[1]) and np.allclose(a[0], b[0])
    # index.py reuses stored vectors on rebuilds, and retrieval reads cosines from them.
    assert np.array_equal(loaded.reconstruct(5), x[5])
    assert np.array_equal(loaded.reconstruct_n(0, 200), x)


def test_damaged_index_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "vectors.faiss"
    vectors.write_vector_index(vectors.build_vector_index(clustered(100), hnsw_threshold=1000), path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(IndexCorruptError, match="qa build"):
        vectors.read_vector_index(path)
    with pytest.raises(IndexCorruptError, match="missing"):
        vectors.read_vector_index(tmp_path / "none.faiss")


# -- BM25 built from token ids (stemmed once per word) scores exactly like bm25s's own path --
TEXTS = [
    "The Nile is a major river in northeastern Africa, flowing north into the sea.",
    "Rivers flow; the river flows. Flowing rivers carry silt to the delta.",
    "Jupiter is the largest planet of the Solar System.",
    "",
    "the and of",  # only stop words
    "Bread is baked from a dough of flour and water; yeast makes the dough rise.",
    "ATA\u200bCMS missiles: the Army Tactical Missile System.",
] * 3


def _words_and_pairs(text: str) -> list[str]:
    """The terms BM25 should see: the words, then each adjacent pair, unhashed."""
    words = tokenize(text)
    return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]


def test_corpus_token_ids_are_the_tokenizer_tokens_then_their_pairs() -> None:
    ids, vocab = corpus_token_ids(TEXTS)
    names = {i: w for w, i in vocab.items()}
    for text, row in zip(TEXTS, ids, strict=True):
        words = tokenize(text)
        if not words:
            assert row == [vocab["\u2205"]]  # bm25s rejects empty documents
            continue
        assert [names[i] for i in row[: len(words)]] == words
        pairs = [names[i] for i in row[len(words) :]]
        assert len(pairs) == len(words) - 1 and all(p.startswith("\u00a7") for p in pairs)
    # a pair's term depends on its words and their order, not on the text it came from
    assert ids[0] == ids[7] and ids[1] == ids[8]  # TEXTS repeats
    assert corpus_token_ids(TEXTS) == (ids, vocab)  # deterministic numbering
    pair_ids = {i for row in ids for i in row if names[i].startswith("\u00a7")}
    assert len(pair_ids) == len({p for t in TEXTS for p in _words_and_pairs(t) if " " in p})


def test_query_pairs_need_adjacent_known_words() -> None:
    _, vocab = corpus_token_ids(["alpha beta gamma"])
    assert len(query_term_ids(["alpha", "beta"], vocab)) == 3  # two words and their pair
    assert len(query_term_ids(["beta", "alpha"], vocab)) == 2  # reversed: no such pair
    assert len(query_term_ids(["alpha", "zeta", "beta"], vocab)) == 2  # no pair bridged over "zeta"
    assert query_term_ids(["zeta"], vocab) == []


@pytest.mark.parametrize(
    "query", ["river flowing north", "largest planet", "dough rise yeast", "ATACMS", "the", "zebra", "rivers"]
)
def test_bm25_built_from_token_ids_scores_like_bm25s_from_tokens(tmp_path: Path, query: str) -> None:
    import bm25s

    reference = bm25s.BM25(**BM25_PARAMS)  # the shipped parameters survive save and load
    # bm25s's own path over the words and their exact pairs: hashed pairs score the same
    reference.index([_words_and_pairs(t) or ["\u2205"] for t in TEXTS], show_progress=False)
    built = LexicalIndex.build(TEXTS)
    built.save(tmp_path / "bm25")
    loaded = LexicalIndex.load(tmp_path / "bm25", len(TEXTS))
    terms = [t for t in _words_and_pairs(query) if t in reference.vocab_dict]
    expected = reference.get_scores(terms) if terms else np.zeros(len(TEXTS))
    for index in (built, loaded):
        scores, ids = index.search(query, 5)
        assert np.array_equal(scores, expected[ids].astype(np.float32))
        assert np.all(scores > 0) and np.all(np.diff(scores) <= 0)
        assert len(ids) == min(5, int(np.sum(expected > 0)))
        left_out = np.setdiff1d(np.flatnonzero(expected > 0), ids)
        assert all(expected[r] <= scores[-1] for r in left_out)


# -- the embedding model without sentence-transformers gives its vectors -------------------
def _st_folder(root: Path, pooling: dict[str, bool], modules: list[str], st: dict[str, object]) -> Path:
    import json

    root.mkdir()
    (root / "1_Pooling").mkdir()
    (root / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": i,
                    "name": str(i),
                    "path": "" if i == 0 else f"{i}_{k}",
                    "type": f"sentence_transformers.models.{k}",
                }
                for i, k in enumerate(modules)
            ]
        )
    )
    (root / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 8, **pooling}))
    (root / "sentence_bert_config.json").write_text(json.dumps(st))
    (root / "config_sentence_transformers.json").write_text("{}")
    return root


@pytest.mark.parametrize(
    "pooling, modules, st",
    [
        ({"pooling_mode_cls_token": True}, ["Transformer", "Pooling", "Normalize"], {"max_seq_length": 8}),
        ({"pooling_mode_mean_tokens": True}, ["Transformer", "Pooling", "Dense"], {"max_seq_length": 8}),
        (
            {"pooling_mode_mean_tokens": True},
            ["Transformer", "Pooling"],
            {"max_seq_length": 8, "do_lower_case": True},
        ),
    ],
)
def test_other_model_layouts_are_left_to_sentence_transformers(
    tmp_path: Path, pooling: dict[str, bool], modules: list[str], st: dict[str, object]
) -> None:
    from qa.store.embedding import MeanPoolingModel, SentenceTransformerEmbedder

    folder = _st_folder(tmp_path / "m", pooling, modules, st)
    assert MeanPoolingModel.open(str(folder)) is None
    assert MeanPoolingModel.open(str(tmp_path / "missing")) is None
    # so their sentences are embedded apart; answered without loading anything
    for name in (folder, tmp_path / "missing"):
        embedder = SentenceTransformerEmbedder(str(name))
        assert not embedder.pools_spans and embedder._model is None


def test_the_bundled_model_pools_spans_without_being_loaded_to_say_so() -> None:
    from qa.store.embedding import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    assert embedder.pools_spans and embedder._model is None


@pytest.mark.model
def test_bundled_model_vectors_match_sentence_transformers() -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    from qa.store.embedding import MeanPoolingModel, SentenceTransformerEmbedder, resolve_model

    embedder = SentenceTransformerEmbedder()
    assert isinstance(embedder.model, MeanPoolingModel)
    assert next(embedder.model.auto_model.parameters()).dtype == torch.float32
    reference = SentenceTransformer(resolve_model(embedder.name), device="cpu")
    texts = [
        "Which missile system did Biden authorize?",
        "",
        "ATA\u200bCMS — Army Tactical Missile System, Zelensky’s request (2024).",
        "long " * 400,  # beyond the model's 256 word pieces: truncated alike
    ] + [f"Sentence number {i} about rivers, planets and bread." * (1 + i % 5) for i in range(40)]
    expected = reference.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    assert np.abs(embedder.embed(texts) - expected).max() < 1e-5  # batched, sorted by length
    for text in texts[:4]:
        assert np.abs(embedder.embed([text])[0] - expected[texts.index(text)]).max() < 1e-5


@pytest.mark.model
def test_bundled_model_pools_each_sentence_from_its_chunks_own_pass() -> None:
    from qa.store.embedding import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    assert embedder.pools_spans
    sentences = [
        "Paris is the capital of France.",
        "The Nile flows north into the Mediterranean.",
        "Bread rises because yeast makes carbon dioxide.",
    ]
    text = "Notes\n" + " ".join(sentences)
    spans, at = [], len("Notes\n")
    for sentence in sentences:
        spans.append((at, at + len(sentence)))
        at += len(sentence) + 1
    texts = [text, "long " * 400, "no spans here"] + [
        f"Filler {i} about rivers." * (1 + i % 3) for i in range(40)
    ]
    all_spans = [spans, [(0, 4), (1500, 1990)], []] + [[(0, 6)]] * 40
    vectors, pooled = embedder.embed_pooled(texts, all_spans, batch_size=16)
    assert np.abs(vectors - embedder.embed(texts, batch_size=16)).max() < 1e-5  # what ``embed`` gives
    assert [len(p) for p in pooled] == [len(s) for s in all_spans]
    assert all(np.allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5) for p in pooled if len(p))
    # each pooled sentence is closest to the same sentence embedded alone
    alone = embedder.embed(sentences)
    assert list((pooled[0] @ alone.T).argmax(axis=1)) == [0, 1, 2]
    # a span the 256-word-piece limit cut off gets its text's vector
    assert np.abs(pooled[1][1] - vectors[1]).max() < 1e-5
    assert np.abs(pooled[1][0] - vectors[1]).max() > 1e-3


def test_torch_threads_go_back_to_the_process_default_even_in_threads_started_meanwhile() -> None:
    import torch

    from qa.store.embedding import torch_threads

    with torch_threads(None):
        default = torch.get_num_threads()
    seen: dict[str, int] = {}

    def started_inside() -> None:  # inherits the 1 set by the block below ...
        seen["inherited"] = torch.get_num_threads()
        with torch_threads(None):  # ... but a batch runs on the default
            seen["batch"] = torch.get_num_threads()
        with torch_threads(1):
            seen["query"] = torch.get_num_threads()
        seen["after"] = torch.get_num_threads()  # and it ends on the default, not on 1

    with torch_threads(1):
        assert torch.get_num_threads() == 1
        t = threading.Thread(target=started_inside)
        t.start()
        t.join()
    assert torch.get_num_threads() == default
    assert seen["batch"] == seen["after"] == default and seen["query"] == 1


@pytest.mark.model
def test_embedding_from_many_threads_at_once_gives_the_sequential_vectors() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from qa.store.embedding import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    batch = [f"Passage {i} about rivers and planets." * (1 + i % 4) for i in range(40)]
    queries = [f"question number {i}?" for i in range(12)]
    expected_batch = embedder.embed(batch)  # sorted by length, padded: the tokenizer's other settings
    expected_queries = [embedder.embed([q])[0] for q in queries]
    with ThreadPoolExecutor(6) as pool:
        batches = [pool.submit(embedder.embed, batch) for _ in range(3)]
        singles = [pool.submit(embedder.embed, [q]) for q in queries * 3]
        for f in batches:
            assert np.abs(f.result() - expected_batch).max() < 1e-5
        for i, f in enumerate(singles):
            assert np.abs(f.result()[0] - expected_queries[i % len(queries)]).max() < 1e-5


def test_bm25s_debug_messages_do_not_reach_the_user(tmp_path: Path) -> None:
    import logging

    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep()
    logging.getLogger().addHandler(handler)  # as the CLI's basicConfig handler would see them
    try:
        LexicalIndex.build(TEXTS).save(tmp_path / "bm25")
        LexicalIndex.load(tmp_path / "bm25", len(TEXTS)).search("river", 3)
    finally:
        logging.getLogger().removeHandler(handler)
    assert not [r for r in seen if r.name.startswith("bm25s") and r.levelno < logging.WARNING]


@pytest.mark.parametrize("threshold", [10_000, 1000])
def test_sq8_keeps_a_byte_a_dimension_and_most_of_the_recall(tmp_path: Path, threshold: int) -> None:
    corpus, queries = clustered(4000, seed=1), clustered(100, seed=2)
    exact = vectors.build_vector_index(corpus, hnsw_threshold=len(corpus))
    small = vectors.build_vector_index(corpus, hnsw_threshold=threshold, compression="sq8")
    kind = vectors.kind_for(len(corpus), threshold, "sq8")
    assert vectors.index_kind(small) == kind == ("flat-sq8" if threshold >= len(corpus) else "hnsw-sq8")
    full = vectors.build_vector_index(corpus, hnsw_threshold=threshold)
    vectors.write_vector_index(full, tmp_path / "full.faiss")
    vectors.write_vector_index(small, tmp_path / "sq8.faiss")
    loaded = vectors.read_vector_index(tmp_path / "sq8.faiss")
    assert vectors.index_kind(loaded) == kind
    codes = 4000 * 64  # the float32 vectors' 4 bytes a dimension become 1
    saved = (tmp_path / "full.faiss").stat().st_size - (tmp_path / "sq8.faiss").stat().st_size
    assert saved == pytest.approx(3 * codes, rel=0.01)
    recall = []
    for q in queries:
        truth = set(vectors.search(exact, q, 10)[1].tolist())
        recall.append(len(truth & set(vectors.search(loaded, q, 10)[1].tolist())) / 10)
    assert np.mean(recall) >= 0.9
    # each value is kept within half a code's width of its range
    step = (corpus.max(axis=0) - corpus.min(axis=0)) / 254
    assert np.all(np.abs(loaded.reconstruct_n(0, 4000) - corpus) <= step / 2 + 1e-6)


def test_sq8_rebuilt_from_its_own_vectors_keeps_its_codes() -> None:
    """A rebuild reuses the stored (decoded) vectors: quantising them again changes nothing, so
    vectors do not drift build after build."""
    first = vectors.build_vector_index(clustered(500), hnsw_threshold=1000, compression="sq8")
    decoded = first.reconstruct_n(0, 500)
    again = vectors.build_vector_index(decoded, hnsw_threshold=1000, compression="sq8")
    assert np.array_equal(faiss.vector_to_array(first.codes), faiss.vector_to_array(again.codes))
    assert np.allclose(again.reconstruct_n(0, 500), decoded, atol=1e-6)
