from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qa.ingest.chunking import chunk_document
from qa.ingest.sentences import sentence_spans
from qa.ingest.sources import make_document
from qa.ingest.tokens import count_tokens, token_offsets

ARTICLE = (
    "President Joe Biden has authorized the use of U.S.-supplied long-range missiles. "
    "The Army Tactical Missile System (ATACMs) will be involved. Mr. Smith said so at 3 p.m. "
    "yesterday. It cost $56.2 billion!\n\nA new paragraph starts here. "
) * 30

text_strategy = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), max_codepoint=0x1FFFF), max_size=600
) | st.lists(
    st.sampled_from(["word", "Sentence.", "end!", "\n", "\n\n", " ", "é", "日本語", "😀", "U.S.", "  "]),
    max_size=300,
).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=text_strategy, size=st.integers(16, 80), overlap=st.integers(0, 8))
def test_chunk_offsets_slice_the_source_exactly(text: str, size: int, overlap: int) -> None:
    doc = make_document("d.txt", text)
    chunks = chunk_document(doc, chunk_tokens=size, overlap=overlap)
    for ch in chunks:
        assert text[ch.start : ch.end] == ch.text
        assert ch.text.strip() == ch.text and ch.text
    # Every non-space character is covered by some chunk.
    covered = [False] * len(text)
    for ch in chunks:
        for i in range(ch.start, ch.end):
            covered[i] = True
    assert all(covered[i] or text[i].isspace() for i in range(len(text)))
    # Chunks advance.
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)


def test_chunks_respect_token_budget_and_end_on_sentences() -> None:
    doc = make_document("a.txt", ARTICLE)
    chunks = chunk_document(doc, chunk_tokens=64, overlap=8)
    assert len(chunks) > 5
    for ch in chunks:
        assert count_tokens(ch.text) <= 64
    ends_on_sentence = sum(ch.text.endswith((".", "!", "?")) for ch in chunks[:-1])
    assert ends_on_sentence >= 0.8 * (len(chunks) - 1)
    # Overlap: consecutive chunks share text.
    assert any(b.start < a.end for a, b in itertools.pairwise(chunks))


def test_chunk_ids_are_stable_and_ordered() -> None:
    doc = make_document("x/y.md", ARTICLE)
    a = chunk_document(doc, 64, 8)
    b = chunk_document(doc, 64, 8)
    assert a == b
    assert [c.chunk_id for c in a] == [f"x/y.md#{i}" for i in range(len(a))]


def test_token_offsets_are_monotonic_character_offsets() -> None:
    text = "Héllo wörld 😀 日本語 test."
    offs = token_offsets(text)
    assert offs[0] == 0 and offs == sorted(offs) and offs[-1] < len(text)


def test_sentence_splitter_keeps_abbreviations_and_numbers() -> None:
    text = "Mr. Smith paid $56.2 billion to the U.S. government. Then he left! Did he?"
    spans = [text[s:e] for s, e in sentence_spans(text)]
    assert spans == [
        "Mr. Smith paid $56.2 billion to the U.S. government.",
        "Then he left!",
        "Did he?",
    ]
