"""Sentence and clause boundaries as character offsets (no model, no copying of text)."""

from __future__ import annotations

import re
from bisect import bisect_right

# Words after which a period does not end a sentence.
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "inc",
    "ltd", "co", "corp", "gen", "col", "lt", "sgt", "capt", "gov", "sen", "rep", "jan",
    "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "no",
    "fig", "approx", "dept", "est", "u.s", "u.k", "u.n", "a.m", "p.m",
}  # fmt: skip
#: Bumped whenever a change here moves sentence boundaries: an index whose sentence vectors were
#: pooled over other boundaries pools them again (``qa.store.index``).
SPLIT_VERSION = 1
_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)|\n")
_LAST_WORD = re.compile(r"([\w.]+)$")
_VISIBLE = re.compile(r"\S")
_CLAUSE = re.compile(r"[,;:—–]\s+|\s[-–—]\s")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Return (start, end) of each sentence, whitespace trimmed, covering all non-space text."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _END.finditer(text):
        end = match.end()
        if match.group() != "\n":
            if not _ends_sentence(text, match.start(), end):
                continue
        else:
            # A line break inside a wrapped paragraph (next line starts lower-case) is no boundary.
            nxt = _next_visible(text, end)
            if nxt is not None and text[nxt].islower() and not _line_is_blank_before(text, end):
                prev = text[start : match.start()].rstrip()
                if prev and prev[-1] not in ".!?:;”\"'":
                    continue
        _add(spans, text, start, end)
        start = end
    _add(spans, text, start, len(text))
    return spans


def _ends_sentence(text: str, dot: int, end: int) -> bool:
    nxt = _next_visible(text, end)
    if nxt is None:
        return True
    if text[dot] == ".":
        word = _LAST_WORD.search(text[max(0, dot - 12) : dot])
        if word:
            w = word.group(1).lower()
            if w in _ABBREVIATIONS or (len(w) == 1 and w.isalpha()):
                return False
        # "the U.S. government": an initialism followed by a lower-case word continues.
        if text[nxt].islower():
            return False
    return True


def _next_visible(text: str, pos: int) -> int | None:
    m = _VISIBLE.search(text, pos)
    return m.start() if m else None


def _line_is_blank_before(text: str, pos: int) -> bool:
    return text[pos : pos + 1] == "\n"


def _add(spans: list[tuple[int, int]], text: str, start: int, end: int) -> None:
    piece = text[start:end]
    stripped = piece.strip()
    if not stripped:
        return
    lead = len(piece) - len(piece.lstrip())
    s = start + lead
    spans.append((s, s + len(stripped)))


def enclosing(spans: list[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    """The union of the sentences that overlap [start, end)."""
    if not spans:
        return start, end
    starts = [s for s, _ in spans]
    i = max(0, bisect_right(starts, start) - 1)
    j = i
    while j + 1 < len(spans) and spans[j + 1][0] < end:
        j += 1
    return min(spans[i][0], start), max(spans[j][1], end)


def clause_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Split the sentence text[start:end] at clause punctuation (, ; : — and dashes)."""
    out: list[tuple[int, int]] = []
    s = start
    for m in _CLAUSE.finditer(text[start:end]):
        e = start + m.start()
        _add(out, text, s, e)
        s = start + m.end()
    _add(out, text, s, end)
    return out
