"""Token-window chunks snapped to sentence ends, keeping exact offsets into the source.

Invariant (property-tested): ``document.text[chunk.start:chunk.end] == chunk.text``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from qa.ingest.sentences import sentence_spans
from qa.ingest.tokens import token_offsets
from qa.types import Chunk, Document


def chunk_document(
    doc: Document, chunk_tokens: int = 192, overlap: int = 32, encoding: str = "cl100k_base"
) -> list[Chunk]:
    """Split ``doc`` into windows of at most ``chunk_tokens`` tokens.

    A window ends at the last sentence end inside it when that keeps at least half
    the window; the next window starts ``overlap`` tokens earlier, moved forward to a
    sentence start when one lies in the overlap, so chunks rarely begin mid-sentence.
    """
    text = doc.text
    bounds = _char_bounds(token_offsets(text, encoding), len(text))
    n_tokens = len(bounds) - 1
    spans = sentence_spans(text)
    ends = sorted({e for _, e in spans})
    starts = sorted({s for s, _ in spans})
    chunks: list[Chunk] = []
    tok = 0
    while tok < n_tokens:
        limit = min(tok + chunk_tokens, n_tokens)
        end_tok = limit
        if limit < n_tokens:
            end_tok = _snap_end(bounds, ends, tok, limit, chunk_tokens)
        start_char, end_char = _trim(text, bounds[tok], bounds[end_tok])
        if end_char > start_char:
            chunks.append(
                Chunk(
                    chunk_id=f"{doc.doc_id}#{len(chunks)}",
                    doc_id=doc.doc_id,
                    title=doc.title,
                    start=start_char,
                    end=end_char,
                    text=text[start_char:end_char],
                )
            )
        if end_tok >= n_tokens:
            break
        tok = _next_start(bounds, starts, tok, end_tok, overlap)
    return chunks


def _char_bounds(offsets: list[int], length: int) -> list[int]:
    """Character offset of each token boundary; tokens inside one character are merged."""
    bounds: list[int] = []
    for off in offsets:
        if not bounds or off > bounds[-1]:
            bounds.append(off)
    if not bounds:
        bounds.append(0)
    bounds.append(length)
    return bounds


def _snap_end(bounds: list[int], ends: list[int], tok: int, limit: int, size: int) -> int:
    """The token index of the last sentence end in (tok + size/2, limit], else limit."""
    lo_char, hi_char = bounds[tok + max(1, size // 2)], bounds[limit]
    i = bisect_right(ends, hi_char) - 1
    if i >= 0 and ends[i] > lo_char:
        # The token boundary at or after the sentence end (the gap is whitespace).
        return min(bisect_left(bounds, ends[i]), limit)
    return limit


def _next_start(bounds: list[int], starts: list[int], tok: int, end_tok: int, overlap: int) -> int:
    """Where the next window starts: ``overlap`` tokens back, snapped to a sentence start."""
    back = max(tok + 1, end_tok - overlap)
    if back >= end_tok:
        return end_tok
    i = bisect_left(starts, bounds[back])
    if i < len(starts) and starts[i] < bounds[end_tok]:
        snapped = bisect_right(bounds, starts[i]) - 1
        if tok < snapped < end_tok:
            return snapped
    return back


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end
