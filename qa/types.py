"""Frozen dataclasses that cross module boundaries.

Everything here is plain data: JSON-serialisable through :func:`to_dict`, and
never carrying behaviour that needs a model or an index.
"""

from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Document:
    """One source document read from the seeds folder."""

    doc_id: str  # path relative to the seeds folder, with forward slashes
    title: str
    text: str
    sha256: str  # of `text` encoded as UTF-8
    # Where each page (PDF) or slide (pptx) starts in ``text``, in order: (offset, "page 3").
    # Empty for formats without pages.
    locations: tuple[tuple[int, str], ...] = ()

    def location_at(self, offset: int) -> str | None:
        """The label of the page or slide that holds character ``offset`` (None without pages)."""
        at = bisect.bisect_right(self.locations, offset, key=lambda loc: loc[0])
        return self.locations[at - 1][1] if at else None


@dataclass(frozen=True)
class Chunk:
    """A token window of a document; ``document.text[start:end] == text`` always."""

    chunk_id: str  # "<doc_id>#<n>"
    doc_id: str
    title: str
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Hit:
    """A ranked passage returned by retrieval (and possibly re-ranked by the reader)."""

    chunk: Chunk
    score: float  # the fused score that ordered the hits
    rank: int  # 1-based
    # cosine similarity (with ``sentence_weight`` > 0, mixed with the best sentence's cosine)
    dense_score: float | None = None
    lexical_score: float | None = None  # BM25 score, when the lexical search saw it


@dataclass(frozen=True)
class Citation:
    """Where an answer comes from: exact character offsets into the source document.

    ``source_text[start:end] == quote`` and ``source_text[sentence_start:sentence_end]
    == sentence`` hold for the document ``doc_id``.
    """

    doc_id: str
    title: str
    chunk_id: str
    start: int
    end: int
    quote: str
    sentence: str  # the sentence around the quote, shown with the quote highlighted
    sentence_start: int
    sentence_end: int
    passage: str  # the whole retrieved chunk the quote sits in
    passage_start: int
    passage_end: int
    score: float
    location: str | None = None  # the page or slide the quote starts on ("page 3", "slide 2")
    doc_sha256: str = ""  # the cited version of the document (Document.sha256), to detect a change


@dataclass(frozen=True)
class Answer:
    """The result of :meth:`qa.QA.ask`."""

    question: str
    text: str  # the extracted span, verbatim from the source (or a "not found" message)
    found: bool
    score: float  # calibrated confidence in [0, 1]
    citations: list[Citation] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)  # passages read, best first
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def to_dict(obj: Any) -> dict[str, Any]:
    """Return a JSON-serialisable dict of any dataclass in this module."""
    return dataclasses.asdict(obj)
