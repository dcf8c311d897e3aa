"""Quoted spans end on whole words: never inside a word, e-mail address, URL, number, amount or
code, without trailing punctuation (``qa.answer.span_reader.finish_span``), offsets exact."""

from __future__ import annotations

import random

import numpy as np
import pytest

from qa.answer.calibration import Calibration
from qa.answer.reader import SpanModelReader, document_span
from qa.answer.span_reader import (
    PassageReading,
    Span,
    asked_unit,
    atomic_tokens,
    finish_span,
    inside_token,
    whole_words,
    with_unit,
)
from qa.types import Chunk, Document, Hit

POLICY = (
    "Travel policy v3.2 (certified to ISO-27001).\n"
    "Questions go to name@company.example, or call +1 555-0100.\n"
    "The yearly allowance is €1,200. It rose 3.5% in 2024.\n"
    "The full text is at https://intranet.example/policy.\n"
    "Jupiter's moons, the U.S. office and a Paris-based team stay as they are."
)


def finish(text: str, raw: str, nth: int = 0) -> str:
    """The quote ``finish_span`` makes of the ``nth`` occurrence of ``raw`` in ``text``."""
    start = -1
    for _ in range(nth + 1):
        start = text.index(raw, start + 1)
    s, e = finish_span(text, start, start + len(raw))
    assert 0 <= s < e <= len(text)
    return text[s:e]


@pytest.mark.parametrize(
    ("raw", "whole"),
    [
        # an e-mail address: stopped at the domain's dot, started inside, or with the sentence's comma
        ("name@company", "name@company.example"),
        ("company.example", "name@company.example"),
        ("name@company.example,", "name@company.example"),
        ("name", "name@company.example"),
        # a version and a standard's code
        ("v3", "v3.2"),
        ("3.2", "v3.2"),
        ("ISO", "ISO-27001"),
        ("27001).", "ISO-27001"),
        # amounts and numbers
        ("1,2", "€1,200"),
        ("1,200.", "€1,200"),
        ("€1", "€1,200"),
        ("3.5", "3.5%"),
        ("5%", "3.5%"),
        ("202", "2024"),
        # a URL, at the end of a sentence
        ("https://intranet", "https://intranet.example/policy"),
        ("intranet.example", "https://intranet.example/policy"),
        ("policy.", "https://intranet.example/policy"),
        # a phone number with a country code
        ("555", "+1 555-0100"),
        ("+1", "+1 555-0100"),
        ("0100.", "+1 555-0100"),
        # words: a cut inside one grows to the whole word, a sentence's last dot goes
        ("Jupi", "Jupiter"),
        ("piter", "Jupiter"),
        ("are.", "are"),
    ],
)
def test_a_span_cut_inside_a_token_grows_to_the_whole_token(raw: str, whole: str) -> None:
    assert finish(POLICY, raw) == whole


def test_what_is_already_whole_stays() -> None:
    assert finish(POLICY, "Jupiter") == "Jupiter"  # a possessive "'s" may be left out
    assert finish(POLICY, "U.S.") == "U.S."  # an abbreviation keeps its dot
    assert finish(POLICY, "Paris") == "Paris"  # "Paris-based": lower-case compounds may be cut
    assert finish(POLICY, "Travel policy v3.2") == "Travel policy v3.2"
    assert finish(POLICY, "the U.S. office") == "the U.S. office"


@pytest.mark.parametrize(
    ("text", "raw", "whole"),
    [
        ("Write to name@company.example.", "name@company", "name@company.example"),
        ("Use v3.2.", "v3.2.", "v3.2"),
        ("It costs €1,200, paid monthly.", "€1,200,", "€1,200"),
        ("Rates rose 3.5%.", "3.5%.", "3.5%"),
        (
            "See https://intranet.example/policy, section 2.",
            "https://intranet.example/policy,",
            "https://intranet.example/policy",
        ),
        ("(see https://intranet.example/policy)", "intranet", "https://intranet.example/policy"),
        ("Call +1 555-0100!", "+1 555", "+1 555-0100"),
        ("It cost US$5 million.", "$5", "US$5"),
        ("Open 8:30 to 17:00.", "8", "8:30"),
        ("Ask for the HR-POL form.", "POL", "HR-POL"),
        ("Do not forget it.", "n", "not"),
        ("She wasn't there.", "wasn", "wasn't"),
        ("Café Zoë opens.", "Caf", "Café"),
        ("東京は日本の首都です。", "東京", "東京"),  # no spaces: a character is not glued to the next
    ],
)
def test_finish_span_cases(text: str, raw: str, whole: str) -> None:
    assert finish(text, raw) == whole


LEAVE = (
    "Parents get 16 weeks of leave, of which 1 week is unpaid; claims within 30 days, 16 weekends. "
    "8 of the 16 weeks are paid. The limit is 200 is a typo."
)


@pytest.mark.parametrize(
    "question, raw, nth, quote",
    [
        ("How many weeks of leave do parents get?", "16", 0, "16 weeks"),
        ("How many weeks are unpaid?", "1 ", 0, "1 week"),  # the singular of the asked unit
        ("Within how many DAYS must claims be made?", "30", 0, "30 days"),
        ("How many weeks?", "16", 1, "16"),  # "weekends" is another word
        ("How many days of leave?", "16", 0, "16"),  # the passage states it in another unit
        ("How much leave do parents get?", "16", 0, "16"),  # "leave" does not follow the number
        ("When do parents get leave?", "16", 0, "16"),  # no unit asked
        ("How many weeks of leave?", "leave", 0, "leave"),  # not a number
        ("How many of them are paid?", "8", 0, "8"),  # "of" is no unit
        ("How much is the limit?", "200", 0, "200"),  # nor is "is"
    ],
)
def test_a_number_takes_the_unit_the_question_asks_in(question: str, raw: str, nth: int, quote: str) -> None:
    start = -1
    for _ in range(nth + 1):
        start = LEAVE.index(raw, start + 1)
    end = start + len(raw.strip())
    assert LEAVE[start : with_unit(LEAVE, start, end, asked_unit(question))] == quote


def test_atomic_tokens_find_addresses_links_and_phone_numbers() -> None:
    got = [POLICY[a:b] for a, b in atomic_tokens(POLICY)]
    assert got == ["https://intranet.example/policy", "name@company.example", "+1 555-0100"]


def test_whole_words_only_grows_and_finish_is_stable_with_exact_offsets() -> None:
    """Random spans over a text full of tokens: the finished span is a substring at its offsets,
    starts and ends outside every token, and finishing it again changes nothing."""
    rng = random.Random(7)
    atoms = atomic_tokens(POLICY)
    for _ in range(3000):
        a = rng.randrange(len(POLICY))
        b = rng.randrange(a + 1, min(len(POLICY), a + 60) + 1)
        ws, we = whole_words(POLICY, a, b, atoms)
        assert ws <= a and we >= b
        s, e = finish_span(POLICY, a, b, atoms)
        quote = POLICY[s:e]
        if not any(c.isalnum() for c in quote):
            continue  # punctuation alone: the reader drops such spans
        assert quote == quote.strip()
        # Nothing the model chose is lost: finishing trims only punctuation and space.
        chosen = [i for i in range(a, b) if POLICY[i].isalnum()]
        assert not chosen or (s <= chosen[0] and chosen[-1] < e), (POLICY[a:b], quote)
        assert not inside_token(POLICY, s) and not inside_token(POLICY, e), quote
        assert not any(x < s < y or x < e < y for x, y in atoms), quote
        assert finish_span(POLICY, s, e, atoms) == (s, e)


class _EdgeModel:
    """A stub span model that quotes the first ``n`` and the last ``n`` characters of a passage."""

    path = "stub"

    def __init__(self, n: int, last: bool) -> None:
        self.n, self.last = n, last
        self.info = {"sha256": "stub"}

    def load(self) -> None:
        pass

    def read(self, question: str, passages: list[str]) -> list[PassageReading]:
        out = []
        for text in passages:
            start = len(text) - self.n if self.last else 0
            out.append(PassageReading([Span(start, start + self.n, 5.0)], 0.0))
        return out


@pytest.mark.parametrize(("cut", "n", "last"), [("HR-POL-2024", 7, False), ("ISO-27001", 6, True)])
def test_a_quote_at_a_chunk_cut_inside_a_word_grows_to_the_documents_whole_word(
    cut: str, n: int, last: bool
) -> None:
    """A chunk cut inside a code: the reader's quote is the whole code of the document, at
    exact offsets, not the piece inside the chunk."""
    text = "Rules\n\nThe policy HR-POL-2024 applies to travel certified to ISO-27001 only.\n"
    doc = Document("p.txt", "Rules", text, "x")
    at = text.index(cut) + (len(cut) - n if not last else n)  # the chunk starts or ends inside it
    lo, hi = (at, len(text)) if not last else (0, at)
    chunk = Chunk("p.txt#1", doc.doc_id, doc.title, lo, hi, text[lo:hi])
    reader = SpanModelReader(passages=1)
    reader._model = _EdgeModel(n, last)  # type: ignore[assignment]
    reader.calibration = Calibration()
    hit = Hit(chunk, 0.9, 1, dense_score=0.5, lexical_score=1.0)
    citation = reader.read("Which code?", [hit], {doc.doc_id: doc}, np.zeros(3)).citation
    assert citation is not None
    assert citation.quote == cut == text[citation.start : citation.end]
    # the passage grows to hold the quote, so the passage view can mark it
    assert citation.passage == text[citation.passage_start : citation.passage_end]
    assert citation.passage_start <= citation.start and citation.end <= citation.passage_end


def test_document_span_keeps_a_whole_span_and_widens_a_cut_one() -> None:
    start = POLICY.index("company.example")
    assert POLICY[slice(*document_span(POLICY, start, start + 7))] == "name@company.example"
    start = POLICY.index("allowance")
    assert document_span(POLICY, start, start + 9) == (start, start + 9)


@pytest.mark.model
def test_the_shipped_reader_quotes_a_whole_email_address(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from qa import QA, Settings
    from qa.answer.span_reader import SpanReader
    from qa.types import Document

    if not SpanReader.available():
        pytest.skip("the shipped reader weights are absent")
    text = (
        "Expense policy\n\n"
        "Employees submit expense claims within 30 days of travel. Claims above the daily limit "
        "need the approval of a line manager. Questions about this policy should be sent by "
        "e-mail to name@company.example. The finance team answers within two working days."
    )
    docs = [Document("policy.txt", "Expense policy", text, "x")]
    settings = Settings(index_dir=tmp_path / "index", model="hash-64", reader="model", min_confidence=0.0)
    qa = QA.from_documents(docs, settings=settings)
    for question in (
        "Where should questions about the expense policy be sent?",
        "What is the e-mail address for questions about this policy?",
    ):
        answer = qa.ask(question)
        (c,) = answer.citations
        assert text[c.start : c.end] == c.quote
        assert "name@company.example" in c.quote, c.quote  # whole, not "name@company"
        assert not c.quote.endswith(".")
