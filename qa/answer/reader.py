"""Extractive answers: the trained span reader over the top passages, sentence selection as fallback.

Both readers return a ``Reading``: the chosen span as exact offsets into its source
document, the passages re-ordered best first, and a confidence in [0, 1] that the
pipeline compares with ``Settings.min_confidence`` to decide ``found``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from qa.answer.calibration import Calibration
from qa.ingest.sentences import enclosing, sentence_spans
from qa.store.embedding import Embedder
from qa.store.lexical import tokenize
from qa.types import Citation, Document, Hit

# How far around a chunk to look for the sentence that holds the answer.
_SENTENCE_MARGIN = 400
# How far either side of a quote to look when finishing it on the document's whole words.
_WORD_MARGIN = 256
log = logging.getLogger("qa")


@dataclass(frozen=True)
class Candidate:
    """The best span of one read passage and the signals that rank it against the others."""

    hit: Hit
    start: int  # character offsets into hit.chunk.text
    end: int
    features: dict[str, float]  # the names in qa.answer.calibration.SELECTION_FEATURES and more

    @property
    def text(self) -> str:
        return self.hit.chunk.text[self.start : self.end]


def question_overlap(question_terms: set[str], text: str) -> float:
    """The share of the question's (stemmed, non-stop) words that ``text`` contains."""
    if not question_terms:
        return 0.0
    return len(question_terms & set(tokenize(text))) / len(question_terms)


@dataclass(frozen=True)
class Reading:
    """What a reader found: a citation (None when nothing was readable), re-ranked hits, confidence."""

    citation: Citation | None
    hits: list[Hit]
    confidence: float
    features: dict[str, float] = field(default_factory=dict)  # the signals behind the confidence
    candidates: tuple[Candidate, ...] = ()  # what the span reader chose among (calibration fits on them)


class Reader(Protocol):
    name: str

    def read(
        self,
        question: str,
        hits: Sequence[Hit],
        documents: dict[str, Document],
        query_vector: np.ndarray,
        keep: Callable[[str], bool] | None = None,
    ) -> Reading: ...


def document_span(text: str, start: int, end: int) -> tuple[int, int]:
    """``text[start:end]``, a span a reader finished on whole words of its chunk, finished on
    whole words of the document ``text``: a chunk can be cut inside a word, a number or a code,
    so a span at the chunk's edge can start or end inside one ("OL-2024" of "HR-POL-2024").
    ``text[s:e]`` is the quote: offsets stay exact."""
    from qa.answer.span_reader import finish_span

    # A window around the span, not the whole document: finishing scans it for e-mail
    # addresses and URLs, and a token longer than the margin is not a word anyone quotes.
    lo, hi = max(0, start - _WORD_MARGIN), min(len(text), end + _WORD_MARGIN)
    s, e = finish_span(text[lo:hi], start - lo, end - lo)
    return lo + s, lo + e


def make_citation(doc: Document, hit: Hit, start: int, end: int, score: float) -> Citation:
    """A citation of doc.text[start:end] with its sentence and passage."""
    lo = max(0, hit.chunk.start - _SENTENCE_MARGIN)
    hi = min(len(doc.text), hit.chunk.end + _SENTENCE_MARGIN)
    spans = [(s + lo, e + lo) for s, e in sentence_spans(doc.text[lo:hi])]
    s_start, s_end = enclosing(spans, start, end)
    # A quote finished on the document's whole words can run past a chunk cut inside a word:
    # the passage then grows to hold it, so the passage view can still mark it.
    p_start, p_end = min(hit.chunk.start, start), max(hit.chunk.end, end)
    grown = (p_start, p_end) != (hit.chunk.start, hit.chunk.end)
    return Citation(
        doc_id=doc.doc_id,
        title=doc.title,
        chunk_id=hit.chunk.chunk_id,
        start=start,
        end=end,
        quote=doc.text[start:end],
        sentence=doc.text[s_start:s_end],
        sentence_start=s_start,
        sentence_end=s_end,
        passage=doc.text[p_start:p_end] if grown else hit.chunk.text,
        passage_start=p_start,
        passage_end=p_end,
        score=round(score, 4),
        location=doc.location_at(start),
        doc_sha256=doc.sha256,
    )


_LIST_ITEM = re.compile(r"(?:[-*+\u2022]|\d+[.)]|[a-z][.)])\s")
#: What may close a line after its last word: quotes, brackets, Markdown emphasis.
_CLOSERS = "\"'\u201d\u2019)]*_ "
#: A line ending in one of these is a sentence (or asks or introduces one), not a title.
_ENDS = (".", "!", "?", ":", ";", ",", "\u2026", "\u3002", "\uff1f", "\uff01", "\uff1a")


def is_heading(text: str, before: str = "") -> bool:
    """A Markdown heading ("## Travel"), or a short line with no digits that ends without
    punctuation and is no list item or table row ("Equipment allowance"): a title, not an
    answer. ``before``: the text before it; a line that follows a question or a colon
    ("Contact:\nJane Smith") answers it, whatever its shape."""
    line = text.strip()
    if line.startswith("#"):
        return True
    if before.rstrip().endswith(("?", ":", "\uff1f", "\uff1a")):
        return False
    return (
        "\n" not in line
        and len(line.split()) <= 6
        and not line.rstrip(_CLOSERS).endswith(_ENDS)
        and not _LIST_ITEM.match(line)
        and not any(c.isdigit() or c == "|" for c in line)
    )


def whole_heading(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is all of its line's words and that line is a heading."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line = text[line_start : len(text) if line_end < 0 else line_end]
    words = text[start:end].strip().lstrip("#").strip()
    return is_heading(line, text[:line_start]) and line.strip().lstrip("#").strip() == words


def _heading_candidate(candidate: tuple[Hit, int, int], text: str, documents: dict[str, Document]) -> bool:
    hit, start, _ = candidate
    doc = documents[hit.chunk.doc_id].text
    return is_heading(text, doc[max(0, start - 200) : start])


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


class SentenceReader:
    """Model-free fallback: the sentence of the top passages that best matches the question.

    A sentence scores by its embedding similarity to the question plus the share of
    the question's (stemmed, non-stop) words it contains, less a little per retrieval
    rank. The answer is the whole sentence, so it is never a fragment out of context.
    """

    name = "sentence"

    def __init__(self, embedder: Embedder, passages: int = 3) -> None:
        self.embedder = embedder
        self.passages = passages

    def read(
        self,
        question: str,
        hits: Sequence[Hit],
        documents: dict[str, Document],
        query_vector: np.ndarray,
        keep: Callable[[str], bool] | None = None,
    ) -> Reading:
        """``keep``: a sentence it refuses is not offered (a follow-up's earlier answers)."""
        q_terms = set(tokenize(question))
        candidates: list[tuple[Hit, int, int]] = []
        for hit in hits[: self.passages]:
            ch = hit.chunk
            for s, e in sentence_spans(ch.text):
                candidates.append((hit, ch.start + s, ch.start + e))
        texts = [documents[h.chunk.doc_id].text[s:e] for h, s, e in candidates]
        kept = [i for i, t in enumerate(texts) if keep is None or keep(t)]
        # A heading shares the question's words but answers nothing: quote the text under it.
        kept = [i for i in kept if not _heading_candidate(candidates[i], texts[i], documents)] or kept
        candidates, texts = [candidates[i] for i in kept], [texts[i] for i in kept]
        if not candidates:
            return Reading(None, list(hits), 0.0)
        sims = self.embedder.embed(texts) @ query_vector.reshape(-1)
        best, best_score, best_parts = 0, -math.inf, (0.0, 0.0)
        for i, ((hit, _, _), text) in enumerate(zip(candidates, texts, strict=True)):
            overlap = question_overlap(q_terms, text)
            score = 0.6 * float(sims[i]) + 0.4 * overlap - 0.02 * (hit.rank - 1)
            if score > best_score:
                best, best_score, best_parts = i, score, (float(sims[i]), overlap)
        hit, start, end = candidates[best]
        # Related sentences score above ~0.3 on the seed article and SQuAD: that maps to 0.5.
        confidence = _sigmoid(8.0 * (0.6 * best_parts[0] + 0.4 * best_parts[1] - 0.3))
        citation = make_citation(documents[hit.chunk.doc_id], hit, start, end, best_score)
        features = {"cosine": best_parts[0], "overlap": best_parts[1]}
        return Reading(citation, _promote(hits, hit), confidence, features)


def _promote(hits: Sequence[Hit], first: Hit) -> list[Hit]:
    """Hits re-ranked with ``first`` on top (ranks renumbered)."""
    order = [first] + [h for h in hits if h is not first]
    return [Hit(h.chunk, h.score, rank, h.dense_score, h.lexical_score) for rank, h in enumerate(order, 1)]


class SpanModelReader:
    """The trained span reader (``qa.answer.span_reader``) over the top passages.

    Each passage offers its best span; a linear score over the span's and the passage's
    signals (``Calibration.selection``: span score, the passage's no-answer score, its
    cosine, fused retrieval score and rank, and how many of the question's words the
    span's sentence holds) picks one. The weights are fitted by ``training/calibrate.py``
    on articles the reader never trained on and read from ``calibration.json`` in the reader's
    folder; without them (a reader of your own not yet calibrated: a warning says so), span
    score minus no-answer score less 0.3 per retrieval rank decides.

    Of the top ``passages`` hits it reads only those whose fused retrieval score is within
    ``read_gap`` of the best hit's: a passage further behind was rarely the one quoted, and the
    reader's time is per passage (docs/experiments.md#read-gap).
    The default here (2.0) reads them all; ``Settings.read_gap`` (0.2) is what the app and the
    shipped calibration use.
    """

    name = "model"

    def __init__(
        self,
        path: str | None = None,
        passages: int = 3,
        max_answer_tokens: int = 30,
        dense_weight: float = 0.5,
        embedding_model: str | None = None,
        read_gap: float = 2.0,
        sentence_weight: float | None = None,
        overlap_weight: float | None = None,
    ) -> None:
        from qa.answer.span_reader import SpanReader

        self._model = SpanReader(path or None, max_answer_tokens=max_answer_tokens, n_best=10)
        self.passages = passages
        self.read_gap = read_gap
        self.dense_weight = dense_weight
        self.sentence_weight = sentence_weight
        self.overlap_weight = overlap_weight
        self.embedding_model = embedding_model
        self.calibration = Calibration.load(self._model.path)
        self._checked = False

    @property
    def info(self) -> dict[str, Any]:
        return dict(self._model.info)

    def load(self) -> None:
        self._model.load()
        if not self._checked:  # warns once if the calibration was fitted for other weights
            self._checked = True
            if self.calibration.source == "default":
                log.warning(
                    "the reader in %s has no calibration.json: its confidence is the uncalibrated "
                    "margin rule, so min_confidence is not a chosen threshold; fit one with "
                    "`python -m training.calibrate --reader-path %s`",
                    self._model.path, self._model.path,
                )  # fmt: skip
            self.calibration.check(
                self._model.info["sha256"], self.dense_weight, self.passages, self.embedding_model,
                self.read_gap, self.sentence_weight, self.overlap_weight,
            )  # fmt: skip

    def candidates(
        self, question: str, hits: Sequence[Hit], keep: Callable[[str], bool] | None = None
    ) -> list[Candidate]:
        """Read the top ``passages`` hits within ``read_gap`` of the best; one candidate per
        passage that offers a span."""
        self.load()
        top = list(hits[: self.passages])
        if not top:
            return []
        best_score = max(h.score for h in top)
        # A gap of 2 (the most Settings allows) reads every passage, whatever the fusion
        # weights make the scores' range; written so that a NaN gap (refused) would too.
        if not self.read_gap >= 2.0:
            top = [h for h in top if not h.score < best_score - self.read_gap]
        readings = self._model.read(question, [h.chunk.text for h in top])
        q_terms = set(tokenize(question))
        out = []
        for hit, reading in zip(top, readings, strict=True):
            text = hit.chunk.text
            # An answer never runs across a line break: in plain text a line break ends a
            # heading, a list item or a paragraph, so such a span joins unrelated pieces.
            spans = [s for s in reading.spans if "\n" not in text[s.start : s.end]]
            # Nor is it a whole heading ("Security Notice"): that names a topic, it answers nothing.
            spans = [s for s in spans if not whole_heading(text, s.start, s.end)]
            if keep is not None:  # a follow-up's earlier answers: the passage's next best span
                spans = [s for s in spans if keep(text[s.start : s.end])]
            if not spans:
                continue
            span = spans[0]
            s_start, s_end = enclosing(sentence_spans(text), span.start, span.end)
            features = {
                "margin": span.score - reading.null_score,
                "span_score": span.score,
                "null_score": reading.null_score,
                "cosine": hit.dense_score if hit.dense_score is not None else 0.0,
                "lexical": 1.0 if hit.lexical_score else 0.0,
                # the retrieval score (``retrieval.fuse``): -dense_weight to 1 + overlap_weight
                "fused": hit.score,
                "rank": float(hit.rank),  # the passage's retrieval rank
                "overlap": question_overlap(q_terms, text[s_start:s_end]),
            }
            out.append(Candidate(hit, span.start, span.end, features))
        return out

    def read(
        self,
        question: str,
        hits: Sequence[Hit],
        documents: dict[str, Document],
        query_vector: np.ndarray,
        keep: Callable[[str], bool] | None = None,
    ) -> Reading:
        """``keep``: a span it refuses is not offered (a follow-up's earlier answers)."""
        candidates = self.candidates(question, hits, keep)
        if not candidates:
            return Reading(None, list(hits), 0.0)
        best = max(candidates, key=lambda c: self.calibration.select(c.features))
        features = dict(best.features)
        features["top_cosine"] = max((h.dense_score or 0.0) for h in hits[: self.passages])
        hit = best.hit
        doc = documents[hit.chunk.doc_id]
        start, end = document_span(doc.text, hit.chunk.start + best.start, hit.chunk.start + best.end)
        citation = make_citation(doc, hit, start, end, features["margin"])
        confidence = self.calibration.confidence(features)
        return Reading(citation, _promote(hits, hit), confidence, features, tuple(candidates))


def make_reader(
    kind: str,
    embedder: Embedder,
    path: str = "",
    passages: int = 3,
    max_answer_tokens: int = 30,
    dense_weight: float = 0.5,
    read_gap: float = 2.0,
    sentence_weight: float | None = None,
    overlap_weight: float | None = None,
) -> Reader:
    """The reader for a ``Settings.reader`` value: "model", "none", or "auto" (model if shipped).

    ``path`` is a reader folder of either format (``qa.answer.span_reader``; empty: the shipped
    reader); one given that holds no reader raises ModelError now, not at the first question."""
    if kind == "none":
        return SentenceReader(embedder, passages)
    try:
        from qa.answer.span_reader import SpanReader, check_folder
    except ImportError:
        if kind == "model" or path:
            raise
        return SentenceReader(embedder, passages)
    if path:
        check_folder(path)  # a reader of the user's own: never silently the sentence fallback
    elif kind == "auto" and not SpanReader.available():
        return SentenceReader(embedder, passages)
    return SpanModelReader(
        path, passages, max_answer_tokens, dense_weight, embedder.name, read_gap, sentence_weight,
        overlap_weight,
    )  # fmt: skip
