"""Answer -> HTML, Markdown and plain text, with ``[n]`` citation markers.

Shared by the UI, the widget (which is the UI in an iframe), the API docs and the CLI,
so every shell shows the same answer the same way. Document text is untrusted: every
piece of it goes through :func:`html.escape` before it reaches HTML, and nothing here
ever emits a tag built from document content.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Sequence
from urllib.parse import urlencode

from qa.types import Answer, Citation, Hit

NOT_FOUND_TITLE = "Not found in the sources"

_WS = re.compile(r"\s+")


def confidence_label(score: float) -> str:
    """Return "high", "medium" or "low" for a calibrated confidence in [0, 1]."""
    if score >= 0.75:
        return "high"
    if score >= 0.5:
        return "medium"
    return "low"


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _flat(text: str) -> str:
    # Chat messages go through a Markdown renderer: a blank line inside an HTML block
    # would end the block and let Markdown reinterpret the rest, so collapse whitespace.
    return _WS.sub(" ", text).strip()


def _ws(text: str) -> str:
    return _WS.sub(" ", text)


def _split(text: str, text_start: int, start: int, end: int, quote: str) -> tuple[str, str, str]:
    """Split ``text`` (which starts at document offset ``text_start``) around the quote.

    Uses the exact offsets when they agree with the quote, else the first occurrence of
    the quote, else no highlight at all (never a wrong one).
    """
    lo, hi = start - text_start, end - text_start
    if 0 <= lo <= hi <= len(text) and text[lo:hi] == quote:
        return text[:lo], text[lo:hi], text[hi:]
    at = text.find(quote) if quote else -1
    if at >= 0:
        return text[:at], quote, text[at + len(quote) :]
    return text, "", ""


def highlight_html(text: str, text_start: int, start: int, end: int, quote: str) -> str:
    """Escape ``text`` and wrap the answer span in ``<mark>``."""
    before, span, after = _split(text, text_start, start, end, quote)
    marked = f'<mark class="qa-span">{_esc(span)}</mark>' if span else ""
    return f"{_esc(before)}{marked}{_esc(after)}"


#: The page that shows a cited document (``qa.serve.source_view``), and the id of its quote.
SOURCE_PATH = "/source"
SOURCE_ANCHOR = "quote"
#: Hex digits of the quote's sha256 that a source link carries.
QUOTE_HASH_CHARS = 16


def quote_hash(quote: str) -> str:
    """The short hash of a quote that a source link carries, to check it against the current text."""
    return hashlib.sha256(quote.encode("utf-8")).hexdigest()[:QUOTE_HASH_CHARS]


def source_href(c: Citation) -> str:
    """The link that opens a citation's whole document scrolled to the quote, relative to the
    app's root page: the document, the quote's offsets, the document version (its sha256) and
    the quote's hash, so the page can tell when the document changed since."""
    params: dict[str, str | int] = {"doc": c.doc_id, "start": c.start, "end": c.end}
    if c.doc_sha256:
        params["v"] = c.doc_sha256
    params["q"] = quote_hash(c.quote)
    return f"{SOURCE_PATH.lstrip('/')}?{urlencode(params)}#{SOURCE_ANCHOR}"


def _source_link(c: Citation, label: str, cls: str) -> str:
    # A new tab keeps the conversation (and, in the widget, the host page) where it was.
    return (
        f'<a class="{cls}" href="{_esc(source_href(c))}" target="_blank" rel="noopener" '
        f'title="Open {_esc(c.title)} at the quote">{label}</a>'
    )


def _where(c: Citation) -> str:
    """The quote's page or slide, when the document has them, and its characters."""
    return (f"{c.location} · " if c.location else "") + f"characters {c.start}–{c.end}"


def _markers(citations: Sequence[Citation]) -> str:
    return "".join(
        f'<sup class="qa-cite" title="{_esc(c.title)}">{_source_link(c, f"[{n}]", "qa-cite-link")}</sup>'
        for n, c in enumerate(citations, 1)
    )


def _confidence_html(score: float) -> str:
    label = confidence_label(score)
    pct = round(max(0.0, min(1.0, score)) * 100)
    return (
        f'<span class="qa-conf qa-conf-{label}" title="calibrated confidence {pct}%">'
        f'<span class="qa-conf-bar"><span style="width:{pct}%"></span></span>'
        f"{label.capitalize()} confidence · {pct}%</span>"
    )


def answer_html(answer: Answer) -> str:
    """The chat message for an answer: the extracted text with ``[n]`` markers, the
    sentence it comes from with the span highlighted, and the confidence.

    Returns one HTML block without blank lines (safe inside a Markdown renderer).
    """
    if not answer.found:
        return (
            '<div class="qa-answer qa-notfound">'
            f'<div class="qa-notfound-title"><span class="qa-notfound-icon">∅</span>{NOT_FOUND_TITLE}</div>'
            '<div class="qa-notfound-hint">No passage answers this confidently. '
            "Try rephrasing, or ask about something the documents cover. "
            "The closest passages are listed under Sources.</div>"
            "</div>"
        )
    parts = [
        '<div class="qa-answer">',
        f'<div class="qa-answer-text">{_esc(_flat(answer.text))}{_markers(answer.citations)}</div>',
    ]
    if answer.citations:
        c = answer.citations[0]
        if _ws(c.sentence).strip() != _ws(c.quote).strip():
            # The sentence around a shorter answer, so the reader sees it in context.
            context = highlight_html(
                _flat_keep_offsets(c.sentence), c.sentence_start, c.start, c.end, c.quote
            )
            parts.append(f'<blockquote class="qa-context">{context}</blockquote>')
        parts.append(
            f'<div class="qa-meta">{_confidence_html(answer.score)}'
            f'<span class="qa-meta-source">{_esc(_flat(c.title))}</span></div>'
        )
    else:
        parts.append(f'<div class="qa-meta">{_confidence_html(answer.score)}</div>')
    parts.append("</div>")
    return "".join(parts)


def _flat_keep_offsets(text: str) -> str:
    # Replace each whitespace character by a space: no blank lines, same offsets.
    return "".join(" " if ch.isspace() else ch for ch in text)


def sources_html(answer: Answer | None) -> str:
    """The sources panel: each cited passage with its title, confidence and the exact
    answer span highlighted; for "not found", the closest passages, marked as such."""
    if answer is None:
        return (
            '<div class="qa-sources qa-sources-empty">'
            "<p>Sources appear here: each cited passage, with the exact answer highlighted.</p>"
            "</div>"
        )
    if answer.found and answer.citations:
        items = [_citation_card(n, c) for n, c in enumerate(answer.citations, 1)]
        head = (
            f'<div class="qa-sources-head"><span>{len(items)} cited passage{"s" * (len(items) != 1)}'
            f"</span>{_confidence_html(answer.score)}</div>"
        )
        return f'<div class="qa-sources">{head}{"".join(items)}</div>'
    if answer.hits:
        items = [_hit_card(h) for h in answer.hits[:3]]
        head = (
            '<div class="qa-sources-head qa-sources-head-nf">Closest passages '
            "(searched, but none answers the question)</div>"
        )
        return f'<div class="qa-sources qa-sources-nf">{head}{"".join(items)}</div>'
    return '<div class="qa-sources qa-sources-empty"><p>No passages matched.</p></div>'


#: Characters of passage shown on each side of the answer before "Full passage".
CONTEXT_CHARS = 260


def _citation_card(n: int, c: Citation) -> str:
    before, span, after = _split(c.passage, c.passage_start, c.start, c.end, c.quote)
    full = f'{_esc(before)}<mark class="qa-span">{_esc(span)}</mark>{_esc(after)}' if span else _esc(before)
    excerpt = full
    if span and (len(before) > CONTEXT_CHARS or len(after) > CONTEXT_CHARS):
        head = _trim_left(before, CONTEXT_CHARS)
        tail = _trim_right(after, CONTEXT_CHARS)
        excerpt = f'{_esc(head)}<mark class="qa-span">{_esc(span)}</mark>{_esc(tail)}'
    more = ""
    if excerpt != full:
        more = (
            '<details class="qa-full"><summary>Full passage</summary>'
            f'<div class="qa-passage">{full}</div></details>'
        )
    return (
        f'<div class="qa-source" id="qa-source-{n}">'
        f'<div class="qa-source-head"><span class="qa-source-n">[{n}]</span>'
        f'<span class="qa-source-title">{_esc(c.title)}</span></div>'
        f'<div class="qa-source-meta"><span class="qa-source-doc">{_esc(c.doc_id)} · '
        f"{_esc(_where(c))}</span>{_source_link(c, 'Open in document ↗', 'qa-source-open')}</div>"
        f'<div class="qa-passage">{excerpt}</div>{more}'
        "</div>"
    )


def _trim_left(text: str, keep: int) -> str:
    """The last ~``keep`` characters of ``text``, starting at a paragraph, sentence or
    word boundary, with "…" when cut."""
    if len(text) <= keep:
        return text
    cut = text[-keep:]
    for sep in ("\n\n", "\n", ". ", " "):
        at = cut.find(sep)
        if 0 <= at < keep // 2:
            return "…" + cut[at + len(sep) :].lstrip() if sep == " " else cut[at + len(sep) :].lstrip()
    return "…" + cut


def _trim_right(text: str, keep: int) -> str:
    """The first ~``keep`` characters of ``text``, ending at a boundary, with "…" when cut."""
    if len(text) <= keep:
        return text
    cut = text[:keep]
    for sep in ("\n\n", "\n", ". "):
        at = cut.rfind(sep)
        if at > keep // 2:
            return cut[: at + 1].rstrip() + " …"
    at = cut.rfind(" ")
    return (cut[:at] if at > keep // 2 else cut) + "…"


def _hit_card(h: Hit) -> str:
    ch = h.chunk
    return (
        '<div class="qa-source qa-source-nf">'
        f'<div class="qa-source-head"><span class="qa-source-n">#{h.rank}</span>'
        f'<span class="qa-source-title">{_esc(ch.title)}</span></div>'
        f'<div class="qa-source-meta"><span class="qa-source-doc">{_esc(ch.doc_id)}</span></div>'
        f'<div class="qa-passage">{_esc(_trim_right(ch.text.strip(), 2 * CONTEXT_CHARS))}</div>'
        "</div>"
    )


def render_markdown(answer: Answer) -> str:
    """Markdown: the answer with ``[n]`` markers, then the numbered sources with quotes.

    Document text is HTML-escaped here too, since Markdown renderers pass HTML through.
    """
    if not answer.found:
        return f"**{NOT_FOUND_TITLE}.**"
    markers = "".join(f"[{n}]" for n in range(1, len(answer.citations) + 1))
    label = confidence_label(answer.score)
    lines = [f"{_esc(_flat(answer.text))} {markers}".rstrip(), ""]
    lines.append(f"*Confidence: {label} ({answer.score:.0%})*")
    if answer.citations:
        lines.append("")
        for n, c in enumerate(answer.citations, 1):
            before, span, after = _split(c.sentence, c.sentence_start, c.start, c.end, c.quote)
            quote = f"{_esc(_ws(before))}**{_esc(_ws(span))}**{_esc(_ws(after))}".strip()
            where = f", {_esc(c.location)}" if c.location else ""
            lines.append(f"{n}. **{_esc(c.title)}** ({_esc(c.doc_id)}{where}): “{quote}”")
    return "\n".join(lines)


def render_text(answer: Answer) -> str:
    """Plain text for a terminal: answer, confidence, numbered sources with the span in »«."""
    if not answer.found:
        lines = [f"{NOT_FOUND_TITLE}."]
        if answer.hits:
            lines += ["", "Closest passages (none answers the question):"]
            for h in answer.hits[:3]:
                lines.append(f"  #{h.rank} {h.chunk.title} ({h.chunk.doc_id})")
        return "\n".join(lines)
    markers = "".join(f"[{n}]" for n in range(1, len(answer.citations) + 1))
    lines = [f"{_flat(answer.text)} {markers}".rstrip()]
    lines.append(f"Confidence: {confidence_label(answer.score)} ({answer.score:.0%})")
    if answer.citations:
        lines += ["", "Sources:"]
        for n, c in enumerate(answer.citations, 1):
            before, span, after = _split(c.sentence, c.sentence_start, c.start, c.end, c.quote)
            where = f"{c.location}, " if c.location else ""
            lines.append(f"  [{n}] {c.title} ({c.doc_id}, {where}chars {c.start}-{c.end})")
            lines.append(f"      “{(_ws(before) + '»' + _ws(span) + '«' + _ws(after)).strip()}”")
    return "\n".join(lines)
