"""BM25 over chunks (bm25s), with a tokenizer shared by indexing and queries."""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from qa.errors import IndexCorruptError

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_INVISIBLE = dict.fromkeys(
    [0x00AD, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
)
# A short English stop list: BM25's idf already discounts common words, this only
# keeps question words ("what", "which") from matching everything.
STOPWORDS = frozenset(
    """
    a about an and are as at be been but by can could describe did do does explain for
    from give had has have he her his how i if in into is it its know may me might my no
    not of on or our please she should so such tell than that the their them then there
    these they this those to us was we were what when where which while who whom whose why
    will with would you your
    """.split()  # noqa: SIM905
)


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    try:
        import Stemmer  # PyStemmer: optional, improves recall of inflected forms
    except ImportError:
        return None
    return Stemmer.Stemmer("english")


def tokenize(text: str) -> list[str]:
    """Lower-cased words without stop words, stemmed when PyStemmer is installed."""
    # Invisible format characters (zero-width space/joiners, bidi controls) would split
    # or disguise words: "ATA\u200bCMS" must still match "ATACMS".
    words = [w for w in _WORD.findall(_visible(text).lower()) if w not in STOPWORDS]
    stemmer = _stemmer()
    return stemmer.stemWords(words) if stemmer else words


_INVISIBLE_RE = re.compile("[" + "".join(map(chr, _INVISIBLE)) + "]")


def _visible(text: str) -> str:
    """``text.translate(_INVISIBLE)``, faster: translate() does a dict lookup per character;
    isascii() is a flag lookup and the regex scan runs in C."""
    return text if text.isascii() else _INVISIBLE_RE.sub("", text)


def corpus_token_ids(texts: list[str], buckets: int | None = None) -> tuple[list[list[int]], dict[str, int]]:
    """Each text as BM25 term ids, and the id of each term: ``tokenize``'s words, then one
    bigram term per pair of adjacent words (``query_term_ids`` makes the same for a query).

    A corpus repeats its words many times and PyStemmer's own cache (10,000 words) is too small
    for a corpus vocabulary, so each distinct word is stemmed once here, and bm25s gets ids, not
    strings to number again: the BM25 build runs 1.2-1.3x faster (bench/README.md). Ids follow
    the sorted distinct words, then the sorted bigram buckets, so one corpus always gives the
    same files (bm25s numbers tokens in a set's hash-randomised order). ``buckets``: how many
    bigram buckets (default ``BIGRAM_BUCKETS``; 0: words only), for benchmarks.
    """
    words = [_WORD.findall(_visible(t).lower()) for t in texts]
    distinct = sorted(set().union(*words) - STOPWORDS)
    stemmer = _stemmer()
    stems = stemmer.stemWords(distinct) if stemmer else distinct
    vocab: dict[str, int] = {}
    word_id = {w: vocab.setdefault(st, len(vocab)) for w, st in zip(distinct, stems, strict=True)}
    ids = [[i for i in map(word_id.get, ws) if i is not None] for ws in words]
    _add_bigrams(ids, vocab, BIGRAM_BUCKETS if buckets is None else buckets)
    for row in ids:
        if not row:  # bm25s rejects empty documents
            row.append(vocab.setdefault("\u2205", len(vocab)))
    return ids, vocab


#: Adjacent words (once stop words are dropped) also count as one BM25 term, as DrQA's
#: retriever does: "Super Bowl" then outranks a chunk with "super" and "bowl" far apart.
#: Pairs are hashed into this many buckets, so the vocabulary stays bounded for any corpus; the
#: count hardly matters (docs/experiments.md#bm25-word-pairs-and-parameters).
BIGRAM_BUCKETS = 1 << 18
_BUCKET = "\u00a7"  # a bucket's term is "§<bucket>": never a word (words are letters and digits)


def _pair_buckets(left: np.ndarray, right: np.ndarray, buckets: int) -> np.ndarray:
    """The bucket of each (left, right) pair of word ids: a multiplicative hash, order-sensitive."""
    with np.errstate(over="ignore"):
        h = left.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ right.astype(np.uint64)
        h *= np.uint64(0xBF58476D1CE4E5B9)
    return ((h >> np.uint64(20)) % np.uint64(buckets)).astype(np.int64)


def _add_bigrams(ids: list[list[int]], vocab: dict[str, int], buckets: int) -> None:
    """Append each row's bigram term ids (new buckets numbered in sorted order) in place."""
    lengths = np.fromiter((len(r) for r in ids), dtype=np.int64, count=len(ids))
    if buckets <= 0 or not lengths.size or lengths.max() < 2:
        return
    flat = np.fromiter((i for r in ids for i in r), dtype=np.int64, count=int(lengths.sum()))
    ends = np.cumsum(lengths)
    pair_ok = np.ones(max(0, flat.size - 1), dtype=bool)
    cuts = ends[:-1]
    pair_ok[cuts[(cuts > 0) & (cuts < flat.size)] - 1] = False  # no pair across two texts
    pair = _pair_buckets(flat[:-1], flat[1:], buckets)
    used = np.unique(pair[pair_ok])
    first = len(vocab)
    vocab.update((f"{_BUCKET}{b}", first + n) for n, b in enumerate(used.tolist()))
    term = first + np.searchsorted(used, pair)  # (pairs across texts get ids never used)
    for row, start in zip(ids, (ends - lengths).tolist(), strict=True):
        if len(row) > 1:
            row.extend(term[start : start + len(row) - 1].tolist())


def query_term_ids(terms: list[str], vocab: dict[str, int], buckets: int | None = None) -> list[int]:
    """A query's BM25 term ids in ``vocab``: its words, then its adjacent pairs' buckets (a pair
    whose words are not both in the corpus cannot occur in it)."""
    words = [vocab.get(t) for t in terms]
    ids = [i for i in words if i is not None]
    pairs = [(a, b) for a, b in itertools.pairwise(words) if a is not None and b is not None]
    buckets = BIGRAM_BUCKETS if buckets is None else buckets
    if pairs and buckets > 0:
        left, right = np.array(pairs, dtype=np.int64).T
        for b in _pair_buckets(left, right, buckets):
            i = vocab.get(f"{_BUCKET}{b}")
            if i is not None:
                ids.append(i)
    return ids


#: BM25's parameters. A low k1 saturates term frequency early, so a chunk that repeats one
#: question word does not outrank one holding more of them (tuned through ``retrieval.fuse``:
#: docs/experiments.md#bm25-word-pairs-and-parameters).
#: The index manifest records them: an index built with others is rebuilt (no re-embedding).
BM25_PARAMS = {"method": "lucene", "k1": 0.6, "b": 0.5}
#: What the index manifest records of BM25: a change rebuilds BM25 (no re-embedding).
LEXICAL_PARAMS = {"bm25": BM25_PARAMS, "bigram_buckets": BIGRAM_BUCKETS}


def import_bm25s() -> Any:
    """bm25s, with its logger at WARNING (it sets its own to DEBUG, which printed "Building
    index from IDs" under every ``qa build``) and unable to take a GPU: where JAX is installed,
    importing bm25s runs a JAX top-k, and on a GPU machine JAX then reserves most of the GPU's
    memory for this process (a second training process there failed to start). So JAX stays on
    the CPU unless ``JAX_PLATFORMS`` already says otherwise."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


class LexicalIndex:
    """A BM25 index; read-only after build or load."""

    def __init__(self, retriever: Any, size: int) -> None:
        self._bm25 = retriever
        self.size = size

    @classmethod
    def build(cls, texts: list[str]) -> LexicalIndex:
        bm25s = import_bm25s()
        retriever = bm25s.BM25(**BM25_PARAMS)
        if texts:
            retriever.index(corpus_token_ids(texts), show_progress=False)
        return cls(retriever, len(texts))

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        if self.size:
            self._bm25.save(str(path), show_progress=False, allow_pickle=False)

    @classmethod
    def load(cls, path: Path, size: int) -> LexicalIndex:
        bm25s = import_bm25s()
        if size == 0:
            return cls(bm25s.BM25(), 0)
        try:
            # Memory-mapped: start-up does not read the score arrays, a query pages in only
            # the postings of its terms, and processes serving one index share the pages.
            retriever = bm25s.BM25.load(str(path), allow_pickle=False, show_progress=False, mmap=True)
        except Exception as exc:  # bm25s raises many types for damaged files
            raise IndexCorruptError(
                f"BM25 files in {path} are damaged ({type(exc).__name__}): run `qa build`"
            ) from None
        scores = getattr(retriever, "scores", None)
        if isinstance(scores, dict):
            # Plain views of the maps: slicing an np.memmap costs a Python-level hook per slice.
            retriever.scores = {
                k: np.asarray(v) if isinstance(v, np.memmap) else v for k, v in scores.items()
            }
        return cls(retriever, size)

    def idf(self, words: Iterable[str]) -> dict[str, float]:
        """BM25's (Lucene's) idf, ``log(1 + (N - df + 0.5) / (df + 0.5))``, of each of ``words``
        (``tokenize``'s) that some chunk holds; df is the length of the word's posting list."""
        if not self.size:
            return {}
        vocab, indptr = self._bm25.vocab_dict, self._bm25.scores["indptr"]
        out = {}
        for word in words:
            i = vocab.get(word)
            # (bm25s numbers one more token, "", than its postings hold: never a query word)
            df = int(indptr[i + 1] - indptr[i]) if i is not None and i + 1 < len(indptr) else 0
            if df:
                out[word] = math.log(1.0 + (self.size - df + 0.5) / (df + 0.5))
        return out

    def chunk_overlap(self, idf: dict[str, float], rows: np.ndarray) -> np.ndarray:
        """Per row of ``rows``, the sum of ``idf`` over the words (keys of ``idf``, all in the
        corpus) that the row's chunk holds anywhere, read from BM25's posting lists; added in
        ``idf``'s order (``retrieval`` relies on it: a subset summed in the same order never
        rounds above it)."""
        vocab, sc = self._bm25.vocab_dict, self._bm25.scores
        indptr, indices = sc["indptr"], sc["indices"]
        out = np.zeros(len(rows), dtype=np.float64)
        for word, weight in idf.items():
            i = vocab[word]
            postings = indices[indptr[i] : indptr[i + 1]]
            if postings.size > 1 and not bool(np.all(postings[:-1] < postings[1:])):
                found = np.isin(rows, postings)  # (bm25s writes them sorted; never seen otherwise)
            else:
                at = np.minimum(np.searchsorted(postings, rows), max(postings.size - 1, 0))
                found = postings[at] == rows if postings.size else np.zeros(len(rows), dtype=bool)
            out[found] += weight
        return out

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (scores, ids) with a positive score."""
        return self.search_words(tokenize(query), k)

    def search_words(self, words: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """``search`` for a query already split into ``tokenize``'s words (in order)."""
        terms = query_term_ids(words, self._bm25.vocab_dict) if self.size else []
        if not terms:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        scores = self._bm25.get_scores(terms)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        top = top[scores[top] > 0]
        return scores[top].astype(np.float32), top.astype(np.int64)
