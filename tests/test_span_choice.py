"""How the span reader chooses among passages (qa.answer.reader.SpanModelReader), with a stub model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qa.answer.calibration import Calibration
from qa.answer.reader import SpanModelReader, question_overlap
from qa.answer.span_reader import PassageReading, Span
from qa.types import Chunk, Document, Hit

TEXTS = [
    "The harbour was rebuilt in 1920. Ships from Lisbon still call there.",
    "The cathedral was consecrated in 1310 by the bishop of the city.",
    "Heading line\nanother line",
]


class StubModel:
    """Reads every passage the same way: one fixed span per passage, scores from a table."""

    path = Path("stub")

    def __init__(self, spans: list[tuple[str, float, float]]) -> None:
        self.info = {"sha256": "stub"}
        self.spans = spans  # per passage: (span text, span score, null score)

    def load(self) -> None:
        pass

    def read(self, question: str, passages: list[str]) -> list[PassageReading]:
        out = [PassageReading([], 0.0) for _ in passages]  # a passage without a span: no candidate
        for i, (text, (quote, score, null)) in enumerate(zip(passages, self.spans, strict=False)):
            start = text.index(quote)
            out[i] = PassageReading([Span(start, start + len(quote), score)], null)
        return out


Setup = tuple[SpanModelReader, list[Hit], dict[str, Document]]


def setup(spans: list[tuple[str, float, float]], calibration: Calibration) -> Setup:
    docs: dict[str, Document] = {}
    hits: list[Hit] = []
    for i, text in enumerate(TEXTS):
        doc = Document(f"d{i}.txt", f"Doc {i}", text, "x")
        docs[doc.doc_id] = doc
        chunk = Chunk(f"d{i}.txt#0", doc.doc_id, doc.title, 0, len(text), text)
        hits.append(Hit(chunk, 0.6 - 0.1 * i, i + 1, dense_score=0.5, lexical_score=1.0))
    reader = SpanModelReader(passages=3)
    reader._model = StubModel(spans)  # type: ignore[assignment]
    reader.calibration = calibration
    return reader, hits, docs


def test_default_rule_prefers_the_larger_margin_less_a_rank_penalty() -> None:
    spans = [("1920", 5.0, 1.0), ("1310", 6.0, 1.5), ("line\nanother", 9.0, 0.0)]
    reader, hits, docs = setup(spans, Calibration())
    reading = reader.read("When was the cathedral consecrated?", hits, docs, np.zeros(3))
    # margins 4.0 and 4.5; with 0.3 per rank: 4.0 against 4.2
    assert reading.citation is not None and reading.citation.quote == "1310"
    assert reading.hits[0].chunk.doc_id == "d1.txt" and [h.rank for h in reading.hits] == [1, 2, 3]
    # The third passage's span crosses a line break: it is never a candidate.
    assert [c.hit.chunk.doc_id for c in reading.candidates] == ["d0.txt", "d1.txt"]


def test_fitted_selection_weighs_the_question_words_in_the_sentence() -> None:
    spans = [("1920", 6.0, 1.0), ("1310", 5.0, 1.0)]
    question = "When was the cathedral consecrated?"
    by_margin = setup(spans, Calibration())
    assert by_margin[0].read(question, by_margin[1], by_margin[2], np.zeros(3)).citation.quote == "1920"  # type: ignore[union-attr]
    overlap = Calibration(selection={"span_score": 1.0, "null_score": -1.0, "overlap": 4.0})
    reader, hits, docs = setup(spans, overlap)
    reading = reader.read(question, hits, docs, np.zeros(3))
    assert reading.citation is not None and reading.citation.quote == "1310"
    chosen = reading.candidates[1].features
    assert chosen["overlap"] == 1.0 and reading.features["overlap"] == 1.0  # cathedral, consecr
    assert reading.features["top_cosine"] == 0.5 and reading.features["rank"] == 2.0
    assert reading.features["margin"] == 4.0


def test_question_overlap_counts_stemmed_content_words() -> None:
    terms = {"cathedr", "consecr"}
    assert question_overlap(terms, "The cathedral was consecrated.") == 1.0
    assert question_overlap(terms, "The cathedral burned.") == 0.5
    assert question_overlap(set(), "anything") == 0.0


def test_passages_far_behind_the_best_are_not_read() -> None:
    spans = [("1920", 5.0, 1.0), ("1310", 9.0, 0.0)]
    reader, hits, docs = setup(spans, Calibration())
    # Fused scores 0.6, 0.5, 0.4: with a gap of 0.15 only the first two are read.
    reader.read_gap = 0.15
    seen: list[list[str]] = []
    read = reader._model.read

    def spy(question: str, passages: list[str]) -> list[PassageReading]:
        seen.append(list(passages))
        return read(question, passages)

    reader._model.read = spy  # type: ignore[method-assign]
    reading = reader.read("When was the cathedral consecrated?", hits, docs, np.zeros(3))
    assert seen == [TEXTS[:2]]
    assert reading.citation is not None and reading.citation.quote == "1310"
    # All three hits are still returned, the quoted one first.
    assert [h.chunk.doc_id for h in reading.hits] == ["d1.txt", "d0.txt", "d2.txt"]
    reader.read_gap = 0.05  # only the best passage
    reading = reader.read("When was the cathedral consecrated?", hits, docs, np.zeros(3))
    assert seen[-1] == TEXTS[:1] and reading.citation is not None and reading.citation.quote == "1920"
    # top_cosine still looks at every hit the reader could read, read or not
    assert reading.features["top_cosine"] == 0.5


def test_a_whole_heading_is_never_a_candidate_but_a_part_of_one_may_be() -> None:
    from qa.answer.reader import whole_heading

    # the third passage's span is its whole first line, "Heading line": a title, not an answer
    spans = [("1920", 5.0, 1.0), ("1310", 6.0, 1.5), ("Heading line", 9.0, 0.0)]
    reader, hits, docs = setup(spans, Calibration())
    reading = reader.read("What is the heading?", hits, docs, np.zeros(3))
    assert [c.hit.chunk.doc_id for c in reading.candidates] == ["d0.txt", "d1.txt"]
    text = "# Remote Work Policy v3.2\n## Scope\nIt covers everyone."
    assert whole_heading(text, text.index("Scope"), text.index("Scope") + 5)
    assert not whole_heading(text, text.index("v3.2"), text.index("v3.2") + 4)  # a part of a title
    assert not whole_heading(text, text.index("everyone"), text.index("everyone") + 8)
    assert whole_heading(text, 0, text.index("\n"))  # the hashes quoted too
    faq = "Who approves travel?\nThe department head\n"
    assert not whole_heading(faq, faq.index("The"), len(faq) - 1)  # an answer on its own line
