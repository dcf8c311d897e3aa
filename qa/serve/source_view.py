"""The cited source opened at the span: ``GET /source`` shows a whole document, the quote marked.

A citation links here (:func:`qa.serve.render.source_href`) with the document, the quote's
offsets and hashes of the document version and of the quote as they were when the answer was
given. The page always shows the live index's text: when that version differs, it says so, and
it highlights the offsets only if they still hold the same quote (never other characters). The
page is script-free: the link's ``#quote`` fragment scrolls to the ``<mark id="quote">``, and
document text is escaped.

The token is checked by the server's guard like on every route; this module adds the widget's
origin allowlist (:func:`foreign_origin`) and a Content-Security-Policy stricter than the app's.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from qa.serve.render import SOURCE_ANCHOR, SOURCE_PATH, quote_hash
from qa.types import Document

PATH = SOURCE_PATH
MAX_DOC_ID_CHARS = 4096
MAX_OFFSET = 2**40

_HEX = re.compile(r"^[0-9a-f]{1,64}$")

#: The page runs no script and loads only the app's own stylesheet.
CSP_DIRECTIVES = (
    "default-src 'none'",
    "style-src 'self'",
    "img-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
)


@dataclass(frozen=True)
class Link:
    """A parsed ``/source`` query: the document and, when given, the quote as cited."""

    doc_id: str
    start: int | None = None
    end: int | None = None
    version: str = ""  # the document's sha256 when cited
    quote: str = ""  # quote_hash of the cited quote


class BadLink(ValueError):
    """A query that is not a link to a source (the message says which parameter)."""


def parse(query: Mapping[str, str]) -> Link:
    """Check a ``/source`` query's parameters; raises BadLink naming the bad one."""
    doc_id = query.get("doc", "")
    if not doc_id or len(doc_id) > MAX_DOC_ID_CHARS:
        raise BadLink(f"'doc' must name a document (1 to {MAX_DOC_ID_CHARS} characters)")
    offsets: list[int | None] = []
    for name in ("start", "end"):
        value = query.get(name)
        if value is None or value == "":
            offsets.append(None)
        elif value.isascii() and value.isdigit() and int(value) <= MAX_OFFSET:
            offsets.append(int(value))
        else:
            raise BadLink(f"'{name}' must be a character offset (a whole number from 0)")
    start, end = offsets
    if (start is None) != (end is None) or (start is not None and end is not None and start > end):
        raise BadLink("'start' and 'end' come together, with start <= end")
    hashes = []
    for name in ("v", "q"):
        value = query.get(name, "").lower()
        if value and not _HEX.match(value):
            raise BadLink(f"'{name}' must be a hexadecimal hash")
        hashes.append(value)
    return Link(doc_id, start, end, hashes[0], hashes[1])


@dataclass(frozen=True)
class View:
    """What the page shows: the span to mark (None: none) and a notice when the text changed."""

    start: int | None
    end: int | None
    notice: str = ""


#: How far from its cited place a quote is looked for in a changed document (characters),
#: and how many characters the search may hash in all: the offsets come from the link, so a
#: crafted one must not buy more than a few tens of milliseconds of CPU.
MOVED_SEARCH_CHARS = 20_000
MOVED_SEARCH_BUDGET = 2_000_000


def _find_moved(text: str, start: int, end: int, quote: str) -> int | None:
    """Where the quote whose hash is ``quote`` now starts, the nearest to ``start`` within
    MOVED_SEARCH_CHARS (an edit above it shifted it; a long quote is looked for nearer);
    None when it is not there."""
    n = end - start
    if n <= 0 or n > len(text):
        return None
    last = len(text) - n
    radius = min(MOVED_SEARCH_CHARS, MOVED_SEARCH_BUDGET // (2 * n))
    for d in range(radius + 1):
        for p in (start - d, start + d) if d else (start,):
            if 0 <= p <= last and quote_hash(text[p : p + n]) == quote:
                return p
    return None


def resolve(link: Link, doc: Document) -> View:
    """Where to mark the quote in the live ``doc``: the cited offsets when they hold the quote
    the link names (its ``q`` hash; a link without one marks nothing); else no mark and a
    notice saying why, so other characters are never highlighted."""
    start, end = link.start, link.end
    if start is None or end is None:
        return View(None, None)
    fits = end <= len(doc.text)
    quote_holds = fits and bool(link.quote) and quote_hash(doc.text[start:end]) == link.quote
    if link.version and link.version == doc.sha256:
        if quote_holds:
            return View(start, end)
        if not link.quote:
            # The version alone says nothing about the offsets: a hand-edited link could
            # mark any characters of the document as the quoted answer.
            return View(
                None,
                None,
                "This link names no quote (its q= is missing), so nothing is highlighted.",
            )
        return View(
            None,
            None,
            "This link's character offsets do not hold the quote it names, so nothing is highlighted.",
        )
    if quote_holds:
        # Without a version the link cannot tell whether the document changed: nothing to say.
        notice = (
            "This document has changed since the answer was given; the quoted text is still at the "
            "same place and is highlighted."
        )
        return View(start, end, notice if link.version else "")
    moved = _find_moved(doc.text, start, end, link.quote) if link.version and link.quote else None
    if moved is not None:
        return View(
            moved,
            moved + end - start,
            "This document has changed since the answer was given; the quoted text moved to "
            f"characters {moved}–{moved + end - start} and is highlighted there.",
        )
    if link.version:
        return View(
            None,
            None,
            "This document has changed since the answer was given: the quoted text "
            f"is no longer at characters {start}–{end}, so nothing is highlighted. Ask again "
            "for a current answer; the current text is shown below.",
        )
    return View(
        None,
        None,
        f"The quoted text is not at characters {start}–{end} of the current "
        "document, so nothing is highlighted.",
    )


def foreign_origin(headers: Mapping[str, str], own: str, allowed: tuple[str, ...]) -> str | None:
    """The origin of the page a request came from when it is neither this app nor on
    ``allowed``, else None.

    A fetch names its origin (``Origin``). A navigation says whether it crossed sites
    (``Sec-Fetch-Site``), and then the ``Referer`` names the page; one that crossed sites
    without naming its page is refused too. A request that says neither (a typed address,
    curl) comes from no page.
    """
    origin = headers.get("origin")
    if origin is None:
        if headers.get("sec-fetch-site") not in ("cross-site", "same-site"):
            return None
        parts = urlsplit(headers.get("referer", ""))
        origin = (
            f"{parts.scheme}://{parts.netloc}"
            if parts.scheme and parts.netloc
            else "an unnamed page on another site"
        )
    origin = origin.rstrip("/").lower()
    return None if origin == own.lower() or origin in allowed else origin


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="same-origin">'
        f"<title>{_esc(title)} · qa</title>"
        '<link rel="stylesheet" href="qa-static/source.css"></head>'
        f'<body class="qa-doc-page">{body}</body></html>'
    )


def message_page(title: str, detail: str) -> str:
    """A page that says why no document is shown."""
    return _page(title, f'<main class="qa-doc-message"><h1>{_esc(title)}</h1><p>{_esc(detail)}</p></main>')


def document_page(doc: Document, view: View) -> str:
    """The whole document, escaped, with the quote marked ``<mark id="quote">`` when ``view`` has one."""
    text = doc.text
    meta = [doc.doc_id]
    if view.start is not None and view.end is not None:
        where = doc.location_at(view.start)
        meta += [where] if where else []
        meta.append(f"characters {view.start}–{view.end}")
        body = (
            f"{_esc(text[: view.start])}"
            f'<mark id="{SOURCE_ANCHOR}" class="qa-span">{_esc(text[view.start : view.end])}</mark>'
            f"{_esc(text[view.end :])}"
        )
    else:
        body = _esc(text)
    notice = f'<p class="qa-doc-notice" role="status">{_esc(view.notice)}</p>' if view.notice else ""
    return _page(
        doc.title,
        f'<header class="qa-doc-head"><h1>{_esc(doc.title)}</h1>'
        f'<p class="qa-doc-meta">{_esc(" · ".join(meta))}</p>{notice}</header>'
        f'<main class="qa-doc-text">{body}</main>',
    )


def create_router(document: Callable[[str], Document], allowed_origins: tuple[str, ...]) -> APIRouter:
    """``GET /source`` over ``document(doc_id)`` (the live index's; KeyError when absent)."""
    router = APIRouter()

    @router.get(PATH, include_in_schema=False, response_class=HTMLResponse)
    def source(request: Request) -> HTMLResponse:
        own = f"{request.url.scheme}://{request.url.netloc}"
        foreign = foreign_origin(request.headers, own, allowed_origins)
        if foreign is not None:
            return HTMLResponse(
                message_page(
                    "Not allowed from this page",
                    f"Documents may not be opened from {foreign}: it is not on the app's allowed "
                    "origins (QA_ALLOWED_ORIGINS).",
                ),
                status_code=403,
            )
        try:
            link = parse(request.query_params)
        except BadLink as exc:
            return HTMLResponse(message_page("Not a link to a source", str(exc)), status_code=400)
        try:
            doc = document(link.doc_id)
        except KeyError:
            return HTMLResponse(
                message_page(
                    "Document not found",
                    f"{link.doc_id} is not in the index any more: it was deleted or renamed since the "
                    "answer was given. Ask again for a current answer.",
                ),
                status_code=404,
            )
        return HTMLResponse(document_page(doc, resolve(link, doc)), headers={"cache-control": "no-store"})

    return router
