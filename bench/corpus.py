"""The benchmark corpora: the seed article, the SQuAD paragraphs, and synthetic scale corpora."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import ROOT, SQUAD
from qa.types import Document

# Questions about the seed article (four of them are the real-model tests' questions).
SEED_QUESTIONS = [
    "Which missile system did Biden authorize?",
    "How much security assistance has the United States provided to Ukraine?",
    "Whose troops is Russia reportedly deploying?",
    "Who is the president of Ukraine?",
    "What did Biden agree to let Ukraine do?",
    "How did Trump's election victory affect US support?",
    "What is the range of the ATACMS missiles?",
    "Who criticized the deployment of North Korean troops?",
]


@dataclass(frozen=True)
class Question:
    text: str
    doc_id: str  # the gold paragraph ("" when there is none)


def seed_documents() -> list[Document]:
    from qa.ingest import sources

    return sources.read_folder(ROOT / "seeds", 64 * 1024 * 1024).documents


def squad(limit_docs: int | None = None) -> tuple[list[Document], list[Question]]:
    """The SQuAD paragraphs as documents and all their questions (optionally the first documents)."""
    from qa.evaluation.evaluate import load_squad

    data = load_squad(SQUAD)
    docs = data.documents[:limit_docs] if limit_docs else data.documents
    keep = {d.doc_id for d in docs}
    return docs, [Question(q.text, q.doc_id) for q in data.questions if q.doc_id in keep]


def sample(questions: list[Question], n: int, seed: int = 0) -> list[Question]:
    """A seeded sample of ``n`` questions, in file order."""
    if n >= len(questions):
        return list(questions)
    rng = np.random.default_rng(seed)
    return [questions[i] for i in sorted(rng.choice(len(questions), n, replace=False))]


def chunk_texts(docs: list[Document]) -> tuple[list[str], list[str]]:
    """What the pipeline embeds for ``docs`` (its chunks' embed texts) and each chunk's doc id."""
    from qa.config import Settings
    from qa.ingest.chunking import chunk_document
    from qa.store.index import embed_text

    s = Settings()
    texts, doc_ids = [], []
    for d in docs:
        for c in chunk_document(d, s.chunk_tokens, s.chunk_overlap, s.encoding):
            texts.append(embed_text(c))
            doc_ids.append(c.doc_id)
    return texts, doc_ids


# -- synthetic scale corpora ------------------------------------------------------------
def clustered_vectors(n: int, dim: int = 384, seed: int = 0, topics: int | None = None) -> np.ndarray:
    """``n`` L2-normalised vectors with the neighbourhood structure of real text embeddings.

    Random unit vectors have no near neighbours (every cosine is ~0), so approximate search on
    them measures nothing. These are Gaussian clusters around random centres, on two levels:
    a topic centre (one per 64 vectors), a sub-topic offset (one per 4 vectors) and the vector's
    own noise, with variances 1 : 0.44 : 0.56. At the size of the SQuAD corpus (1,577 chunks) the
    median cosine to the nearest and to the 10th nearest neighbour (0.74 / 0.54) and the 99th
    percentile cosine of random pairs (0.54) match the real all-MiniLM-L6-v2 chunk vectors
    (0.72 / 0.55 / 0.56).

    The centres depend only on ``topics`` (default ``n // 64``), so queries drawn with another
    ``seed`` and the same ``topics`` come from the corpus's distribution.
    """
    topics = topics or max(1, n // 64)
    per_topic = 16  # sub-topics
    scale = np.float32(1 / np.sqrt(dim))
    centres = np.random.default_rng(topics).standard_normal((topics, dim), dtype=np.float32) * scale
    offsets = np.random.default_rng(topics + 1).standard_normal((topics * per_topic, dim), dtype=np.float32)
    offsets *= np.float32(np.sqrt(0.44)) * scale
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for i in range(0, n, step):
        m = min(step, n - i)
        t = rng.integers(topics, size=m)
        x = centres[t] + offsets[t * per_topic + rng.integers(per_topic, size=m)]
        x += rng.standard_normal((m, dim), dtype=np.float32) * (np.float32(np.sqrt(0.56)) * scale)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[i : i + m] = x
    return out


def synthetic_texts(n: int, words: int = 110, vocab: int = 60_000, seed: int = 0) -> list[str]:
    """``n`` chunk-sized texts (~160 tiktoken tokens, one chunk each) for BM25 at scale.

    Words follow a Zipf law over a vocabulary whose most frequent words are the English stop
    words, as in prose; the rest are pronounceable made-up words, shorter the more frequent.
    """
    rng = np.random.default_rng(seed)
    lexicon = _lexicon(vocab, rng)
    out: list[str] = []
    step = 50_000
    for i in range(0, n, step):
        m = min(step, n - i)
        ids = _zipf_ids(rng, (m, words), vocab)
        out.extend(" ".join(lexicon[ids[r]].tolist()) for r in range(m))
    return out


def synthetic_queries(texts: list[str], n: int, seed: int = 1) -> list[str]:
    """Question-like queries: "what" and 5 of the distinct words of one text (a question's
    words are spread over the vocabulary, and some of them are stop words)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.choice(len(texts), n, replace=False):
        words = sorted(set(texts[i].split()))
        picked = [words[j] for j in rng.choice(len(words), 5, replace=False)]
        out.append("what " + " ".join(picked) + "?")
    return out


def _lexicon(vocab: int, rng: np.random.Generator) -> np.ndarray:
    from qa.store.lexical import STOPWORDS

    onsets = "b c d f g h k l m n p r s t v w st tr br ch sh pl gr cr".split()  # noqa: SIM905
    vowels = "a e i o u ai ea ou".split()  # noqa: SIM905
    codas = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st"]
    syllables = np.array([o + v + c for o in onsets for v in vowels for c in codas])
    stop = sorted(STOPWORDS, key=len)
    n = vocab * 2
    counts = rng.integers(1, 4, size=n)
    picks = syllables[rng.integers(len(syllables), size=(n, 3))]
    made_up = dict.fromkeys("".join(picks[i, : counts[i]]) for i in range(n))
    words = [w for w in made_up if w not in STOPWORDS][: vocab - len(stop)]
    words.sort(key=len)
    return np.array(stop + words)


def _zipf_ids(rng: np.random.Generator, shape: tuple[int, int], vocab: int) -> np.ndarray:
    # Zipf with exponent ~1.1 truncated to the vocabulary, like word frequencies in prose.
    ranks = np.arange(1, vocab + 1, dtype=np.float64)
    p = ranks**-1.1
    cdf = np.cumsum(p / p.sum())
    ids = np.searchsorted(cdf, rng.random(shape))
    return np.minimum(ids, vocab - 1)


def write_documents(folder: Path, docs: list[Document]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for d in docs:
        (folder / d.doc_id.replace("/", "_")).write_text(d.text, encoding="utf-8")
