"""Read seed files (txt, md, html, pdf, docx, pptx) into ``Document``s with a content hash.

One reader per format, picked by the file's suffix (:data:`READERS`). A file that cannot be
used (binary, not UTF-8, empty, too large, a link out of the seeds folder, a damaged or
password-protected Office file, a scanned PDF) is skipped with a warning naming it; the other
files still index. PDF pages and slides are recorded as ``Document.locations``, so a citation
can name the page or slide it quotes.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qa.errors import SourceError
from qa.types import Document

log = logging.getLogger(__name__)

MAX_TITLE_CHARS = 200
#: An Office file unpacking to more than this is refused (a zip bomb would exhaust memory).
MAX_UNPACKED_BYTES = 512 * 1024 * 1024
#: The first bytes of an OLE compound file: a password-protected .docx/.pptx is one (the
#: encrypted package inside it), and so is an old binary .doc/.ppt.
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


@dataclass
class ReadResult:
    """Documents read from a folder, plus one warning per file that was skipped."""

    documents: list[Document] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_document(
    doc_id: str, text: str, title: str | None = None, locations: tuple[tuple[int, str], ...] = ()
) -> Document:
    """Build a Document from text already in memory (used by ``qa eval`` and tests).

    ``locations``: where each page or slide starts in ``text`` (see ``Document.locations``).
    """
    return Document(
        doc_id=doc_id,
        title=title or guess_title(text, doc_id),
        text=text,
        sha256=sha256_text(text),
        locations=locations,
    )


#: What a seeds folder with nothing usable in it should get.
ADD_FILES = "add .txt, .md, .html, .pdf, .docx or .pptx files"


def seeds_root(seeds_dir: Path, index_dir: Path | None = None) -> Path:
    """The seeds folder, resolved; SourceError when it is missing, not a folder, unreadable,
    or holds the index folder (whose files would be read as documents, and a live update
    would rebuild on every build's own writes)."""
    root = Path(seeds_dir)
    try:
        if not root.exists():
            raise SourceError(f"seeds folder {root} does not exist: create it and {ADD_FILES} to it")
        if not root.is_dir():
            raise SourceError(f"seeds folder {root} is a file, not a folder: name the folder that holds it")
        with os.scandir(root):
            pass
        root = root.resolve()
    except OSError as exc:
        raise SourceError(f"cannot read the seeds folder {root} ({exc.strerror or exc})") from None
    inside = _inside(Path(index_dir).resolve(), root) if index_dir is not None else None
    if inside is not None and not any(part.startswith(".") for part in inside.parts):
        # (a hidden folder is never read as documents: an index there is left alone)
        raise SourceError(
            f"the index folder {index_dir} is inside the seeds folder {seeds_dir}: its files would "
            "be read as documents; choose an index folder outside it (--index, QA_INDEX_DIR)"
        )
    return root


def _inside(path: Path, root: Path) -> Path | None:
    """``path`` relative to ``root`` when it is ``root`` or lies under it, else None."""
    return path.relative_to(root) if path.is_relative_to(root) else None


def read_folder(
    seeds_dir: Path, max_file_bytes: int = 64 * 1024 * 1024, index_dir: Path | None = None
) -> ReadResult:
    """Read every supported file under ``seeds_dir`` (recursively), sorted by path. Each
    warning is also logged, once all are read. ``index_dir``: refused when inside the seeds
    folder (unless in a hidden folder there, which is never read)."""
    root = seeds_root(seeds_dir, index_dir)
    result = ReadResult()
    for path in walk(root, result.warnings):
        doc, warnings = read_entry(root, path, max_file_bytes)
        result.warnings.extend(warnings)
        if doc is not None:
            result.documents.append(doc)
    for warning in result.warnings:
        log.warning(warning)
    return result


def read_entry(root: Path, path: Path, max_file_bytes: int) -> tuple[Document | None, list[str]]:
    """One file of the seeds folder ``root``: its Document (None when it is skipped) and the
    warnings it gets, each naming the file. A cluster build's workers read their files with it."""
    doc_id = path.relative_to(root).as_posix()
    try:
        size = path.stat().st_size
        if size > max_file_bytes:
            raise _Skip(f"larger than the {_size(max_file_bytes)} limit (max_file_bytes)")
        notes: list[str] = []
        doc = read_file(path, doc_id, notes, max_chars=max_file_bytes)
    except _Skip as why:
        return None, [f"skipped {doc_id}: {why}"]
    except OSError as exc:
        return None, [f"skipped {doc_id}: cannot read it ({exc.strerror or exc})"]
    return doc, [f"{doc_id}: {note}" for note in notes]


def walk(root: Path, warnings: list[str]) -> Iterable[Path]:
    """Yield supported files under root (sorted by path), refusing links that lead outside it;
    a file left out gets a warning in ``warnings``."""

    def unreadable(exc: OSError) -> None:
        rel = Path(exc.filename).relative_to(root).as_posix() if exc.filename else "?"
        warnings.append(f"skipped the folder {rel}/: cannot read it ({exc.strerror or exc})")

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.suffix.lower() not in SUFFIXES:
                if path.suffix:
                    warnings.append(f"skipped {rel}: unsupported file type {path.suffix!r}")
                else:
                    warnings.append(
                        f"skipped {rel}: no file extension (use .txt, .md, .html, .pdf, .docx or .pptx)"
                    )
                continue
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(root):
                    warnings.append(f"skipped {rel}: a link that points outside the seeds folder")
                    continue
            if not path.is_file():
                continue
            yield path


class _Skip(Exception):
    pass


def _size(n: int) -> str:
    """A byte count as people read it: 600 bytes, 1.5 MB, 64 MB."""
    if n < 1024 * 1024:
        return f"{n:,} bytes"
    mb = n / (1024 * 1024)
    return f"{mb:.0f} MB" if mb == int(mb) else f"{mb:.1f} MB"


@dataclass(frozen=True)
class Extracted:
    """What a format's reader gets out of a file."""

    text: str
    title: str | None = None
    locations: tuple[tuple[int, str], ...] = ()  # (offset, "page 3"): see Document.locations
    notes: tuple[str, ...] = ()  # what was left out of a file that is still indexed, and why


def read_file(
    path: Path, doc_id: str, notes: list[str] | None = None, max_chars: int | None = None
) -> Document:
    """Read one file into a Document with the reader for its suffix; raises _Skip with the
    reason when unusable. ``notes`` collects what was left out of a file still read (e.g.
    scanned pages of a PDF). ``max_chars``: text beyond it is left out, with a note (a
    compressed Office file can unpack to far more text than the file size limit allows)."""
    reader = READERS[path.suffix.lower()]
    found = reader(path.read_bytes())
    if not found.text.strip():
        raise _Skip("empty (no text to index)")
    text, locations = found.text, found.locations
    if max_chars is not None and len(text) > max_chars:
        text = text[:max_chars]
        locations = tuple(loc for loc in locations if loc[0] < max_chars)
        if notes is not None:
            notes.append(
                f"only its first {max_chars} characters of text are indexed ({len(found.text)} in all, "
                "over the max_file_bytes limit); split the file to index the rest"
            )
    if notes is not None:
        notes.extend(found.notes)
    return make_document(doc_id, text, found.title, locations)


def _decode(raw: bytes) -> str:
    if raw.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):  # UTF-32 with its byte order mark
        try:
            return raw.decode("utf-32")
        except UnicodeDecodeError as exc:
            raise _Skip(f"not valid UTF-32 (byte {exc.start}); re-save it as UTF-8") from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with its byte order mark
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise _Skip(f"not valid UTF-16 (byte {exc.start}); re-save it as UTF-8") from None
    if b"\x00" in raw[:8192]:
        raise _Skip("looks binary (contains NUL bytes)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _Skip(f"not valid UTF-8 (byte {exc.start}); re-save it as UTF-8") from None


def _plain(raw: bytes) -> Extracted:
    return Extracted(_decode(raw))


def _markdown(raw: bytes) -> Extracted:
    text = _decode(raw)
    return Extracted(text, _markdown_title(text))


def _html(raw: bytes) -> Extracted:
    return Extracted(*_html_text(_decode(raw)))


def _joined(parts: Iterable[tuple[str, str]]) -> tuple[str, tuple[tuple[int, str], ...]]:
    """Join (label, text) parts with blank lines; empty parts are left out. Returns the text
    and where each kept part starts in it."""
    pieces: list[str] = []
    locations: list[tuple[int, str]] = []
    at = 0
    for label, text in parts:
        if not text:
            continue
        if pieces:
            pieces.append("\n\n")
            at += 2
        locations.append((at, label))
        pieces.append(text)
        at += len(text)
    return "".join(pieces), tuple(locations)


def guess_title(text: str, doc_id: str) -> str:
    """The first non-empty line, or the file name."""
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return _clip(line)
    return Path(doc_id).stem


def _clip(title: str) -> str:
    title = " ".join(title.split())
    return title if len(title) <= MAX_TITLE_CHARS else title[: MAX_TITLE_CHARS - 1] + "…"


def _markdown_title(text: str) -> str | None:
    for line in text.splitlines():
        match = re.match(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", line)
        if match:
            return _clip(match.group(1))
    return None


def _html_text(html: str) -> tuple[str, str | None]:
    """Visible text of an HTML page, and its title."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "head", "svg", "iframe"]):
        if tag.name == "head":
            continue
        tag.decompose()
    title = None
    if soup.title and soup.title.get_text(strip=True):
        title = _clip(soup.title.get_text(strip=True))
    elif soup.find("h1"):
        title = _clip(soup.find("h1").get_text(" ", strip=True))  # type: ignore[union-attr]
    if soup.head:
        soup.head.decompose()
    text = soup.get_text("\n")
    # Collapse runs of blank lines and trailing spaces left by markup.
    lines = [" ".join(line.split()) for line in text.splitlines()]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text, title


def _pdf(raw: bytes) -> Extracted:
    """The text layer of a PDF, pages separated by blank lines, each page's start recorded."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted:
            raise _Skip("an encrypted PDF")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        meta_title = reader.metadata.title if reader.metadata else None
    except _Skip:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise _Skip(f"not a readable PDF ({exc})") from None
    text, locations = _joined((f"page {n}", page) for n, page in enumerate(pages, 1))
    if not text.strip():
        raise _Skip(
            f"a scanned PDF: no text layer on any of its {len(pages)} page{_s(pages)}, so there is "
            "no text to index; run OCR on it (e.g. ocrmypdf) and add it again"
        )
    blank = [n for n, page in enumerate(pages, 1) if not page]
    notes: tuple[str, ...] = ()
    if blank:
        shown = ", ".join(map(str, blank[:10])) + (f" and {len(blank) - 10} more" if len(blank) > 10 else "")
        notes = (
            f"no text layer on page{_s(blank)} {shown} of {len(pages)} (scanned?), so "
            f"{'they are' if len(blank) > 1 else 'it is'} not indexed; run OCR on the file to include "
            f"{'them' if len(blank) > 1 else 'it'}",
        )
    title = _clip(meta_title) if meta_title and meta_title.strip() else None
    return Extracted(text, title, locations, notes)


def _s(items: list[Any]) -> str:
    return "s" if len(items) != 1 else ""


def _office_package(raw: bytes, kind: str, suffix: str) -> io.BytesIO:
    """The bytes of an Office Open XML file, checked to be an unencrypted zip package of a
    bounded unpacked size; raises _Skip naming what is wrong and what to do."""
    if raw.startswith(OLE_MAGIC):
        if "EncryptedPackage".encode("utf-16-le") in raw:
            raise _Skip(
                f"a password-protected {kind} file (it is encrypted); save a copy without the "
                "password to index it"
            )
        raise _Skip(
            f"not a {suffix} file: an old binary Office file or a password-protected one; open it "
            f"in {kind} and save it as {suffix} without a password"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as package:
            unpacked = sum(info.file_size for info in package.infolist())
    except (zipfile.BadZipFile, ValueError, OSError):
        raise _Skip(
            f"not a readable {suffix} file (damaged: not a zip package); re-save it in {kind}"
        ) from None
    if unpacked > MAX_UNPACKED_BYTES:
        raise _Skip(
            f"unpacks to {unpacked // (1024 * 1024)} MB, over the {MAX_UNPACKED_BYTES // (1024 * 1024)} "
            "MB limit for an Office file"
        )
    return io.BytesIO(raw)


def _office(kind: str, suffix: str, parse: Callable[[io.BytesIO], Extracted]) -> Callable[[bytes], Extracted]:
    """A reader that checks the package, then parses it; any parser error becomes a _Skip."""

    def read(raw: bytes) -> Extracted:
        package = _office_package(raw, kind, suffix)
        try:
            return parse(package)
        # The parsers walk untrusted XML and raise whatever its damage provokes (KeyError,
        # lxml's XMLSyntaxError, AttributeError, ...): one bad file must not stop the build.
        except Exception as exc:
            raise _Skip(
                f"not a readable {suffix} file ({type(exc).__name__}: {exc}); open it in {kind} "
                "and re-save it"
            ) from None

    return read


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
#: Body elements whose content is not document text: properties, and deleted or moved-away text.
_DOCX_NOT_TEXT = frozenset(
    _W + name for name in ("sectPr", "sdtPr", "sdtEndPr", "pPr", "rPr", "tblPr", "tcPr", "del", "moveFrom")
)
#: Inline elements left out of a paragraph's text: drawings and embedded objects hold text boxes
#: (each written twice, as a drawing and as its fallback), fields hold their codes.
_DOCX_NOT_INLINE = _DOCX_NOT_TEXT | {
    _W + "drawing",
    _W + "pict",
    _W + "object",
    "{http://schemas.openxmlformats.org/markup-compatibility/2006}AlternateContent",
}
#: Paragraphs looked at for a document's title: it is at the top, and a huge body is not scanned.
TITLE_PARAGRAPHS = 50


def _docx_paragraph_text(element: Any) -> str:
    """A paragraph's text from its ``w:t`` elements at any depth (tracked insertions, content
    controls, hyperlinks, fields' results), tabs and line breaks kept; deleted text is not in it."""
    parts = []
    for child in element.iterchildren():
        tag = child.tag
        if tag == _W + "t":
            parts.append(child.text or "")
        elif tag == _W + "tab":
            parts.append("\t")
        elif tag == _W + "cr" or (
            tag == _W + "br" and child.get(_W + "type", "textWrapping") == "textWrapping"
        ):
            parts.append("\n")
        elif isinstance(tag, str) and tag not in _DOCX_NOT_INLINE:  # comments' tags are not str
            parts.append(_docx_paragraph_text(child))
    return "".join(parts)


def _docx_blocks(element: Any, parent: Any) -> Iterator[str]:
    """The text of each paragraph and table under a body or table cell element, in reading order,
    at any depth of content controls (``w:sdt``) and custom XML; a table is one block, a line per
    row with its cells separated by " | ". ``parent``: the python-docx object that owns it."""
    from docx.table import Table

    for child in element.iterchildren():
        tag = child.tag
        if tag == _W + "p":
            text = _docx_paragraph_text(child).strip()
            if text:
                yield text
        elif tag == _W + "tbl":
            rows = []
            for row in Table(child, parent).rows:
                cells, seen = [], set()
                for cell in row.cells:
                    if id(cell._tc) in seen:  # a merged cell is listed once per grid column it spans
                        continue
                    seen.add(id(cell._tc))
                    cells.append(" ".join(" ".join(_docx_blocks(cell._tc, cell)).split()))
                if any(cells):
                    rows.append(" | ".join(cells))
            if rows:
                yield "\n".join(rows)
        elif isinstance(tag, str) and tag not in _DOCX_NOT_TEXT:
            yield from _docx_blocks(child, parent)


def _docx_title(document: Any) -> str | None:
    """The first Title or Heading 1 paragraph among the first ``TITLE_PARAGRAPHS``, else the
    file's title property."""
    from itertools import islice

    # Style ids are compared: python-docx's paragraph.style looks the id up among all styles.
    wanted = {s.style_id for s in document.styles if s.name in ("Title", "Heading 1")}
    for p in islice(document.element.body.iter(_W + "p"), TITLE_PARAGRAPHS):
        if p.style in wanted:
            text = _docx_paragraph_text(p).strip()
            if text:
                return _clip(text)
    title = document.core_properties.title
    return _clip(title) if title and title.strip() else None


def _parse_docx(package: io.BytesIO) -> Extracted:
    """A Word document's paragraphs, headings and tables in reading order."""
    import docx

    document = docx.Document(package)
    return Extracted("\n\n".join(_docx_blocks(document.element.body, document)), _docx_title(document))


def _pptx_shape_texts(shapes: Any) -> Iterator[str]:
    """The text of each shape in the slide's reading order (PowerPoint's is the shape tree's
    order), group shapes entered, tables a line per row."""
    from pptx.shapes.group import GroupShape

    for shape in shapes:
        # Not shape.shape_type: python-pptx raises NotImplementedError for a shape it cannot
        # name (a text shape without geometry, as some generators write), which lost the deck.
        if isinstance(shape, GroupShape):
            yield from _pptx_shape_texts(shape.shapes)
        elif shape.has_text_frame:
            yield _pptx_text(shape.text_frame.text)
        elif getattr(shape, "has_table", False):
            for row in shape.table.rows:
                yield " | ".join(" ".join(_pptx_text(cell.text).split()) for cell in row.cells)


def _pptx_text(text: str) -> str:
    # python-pptx writes a line break inside a paragraph as a vertical tab.
    return text.replace("\v", "\n").strip()


def _parse_pptx(package: io.BytesIO) -> Extracted:
    """Each slide's text, then its speaker notes, with where each slide and its notes start."""
    from pptx import Presentation

    deck = Presentation(package)
    parts: list[tuple[str, str]] = []
    title = None
    for n, slide in enumerate(deck.slides, 1):
        parts.append((f"slide {n}", "\n".join(t for t in _pptx_shape_texts(slide.shapes) if t)))
        heading = slide.shapes.title
        if title is None and heading is not None and heading.text_frame.text.strip():
            title = _clip(_pptx_text(heading.text_frame.text))
        # has_notes_slide first: reading notes_slide would add an empty one.
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            parts.append((f"slide {n} notes", _pptx_text(slide.notes_slide.notes_text_frame.text)))
    text, locations = _joined(parts)
    core = deck.core_properties.title
    return Extracted(text, title or (_clip(core) if core and core.strip() else None), locations)


#: The reader for each supported suffix.
READERS: dict[str, Callable[[bytes], Extracted]] = {
    **dict.fromkeys((".txt", ".text"), _plain),
    **dict.fromkeys((".md", ".markdown"), _markdown),
    **dict.fromkeys((".html", ".htm"), _html),
    ".pdf": _pdf,
    ".docx": _office("Word", ".docx", _parse_docx),
    ".pptx": _office("PowerPoint", ".pptx", _parse_pptx),
}
SUFFIXES = frozenset(READERS)
