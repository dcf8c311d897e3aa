"""Read seed files (txt, md, html, pdf) into ``Document``s with a content hash.

A file that cannot be used (binary, not UTF-8, empty, too large, a link out of the
seeds folder) is skipped with a warning naming it; the other files still index.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from qa.errors import SourceError
from qa.types import Document

log = logging.getLogger(__name__)

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".text"}
HTML_SUFFIXES = {".html", ".htm"}
PDF_SUFFIXES = {".pdf"}
SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES
MAX_TITLE_CHARS = 200


@dataclass
class ReadResult:
    """Documents read from a folder, plus one warning per file that was skipped."""

    documents: list[Document] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_document(doc_id: str, text: str, title: str | None = None) -> Document:
    """Build a Document from text already in memory (used by ``qa eval`` and tests)."""
    return Document(
        doc_id=doc_id,
        title=title or guess_title(text, doc_id),
        text=text,
        sha256=sha256_text(text),
    )


def read_folder(seeds_dir: Path, max_file_bytes: int = 64 * 1024 * 1024) -> ReadResult:
    """Read every supported file under ``seeds_dir`` (recursively), sorted by path."""
    root = Path(seeds_dir)
    if not root.is_dir():
        raise SourceError(
            f"seeds folder {root} does not exist: create it and put .txt/.md/.html/.pdf files in it"
        )
    root = root.resolve()
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
            raise _Skip(f"larger than the {max_file_bytes // (1024 * 1024)} MB limit")
        doc = read_file(path, doc_id)
    except _Skip as why:
        return None, [f"skipped {doc_id}: {why}"]
    except OSError as exc:
        return None, [f"skipped {doc_id}: cannot read it ({exc.strerror or exc})"]
    return doc, []


def walk(root: Path, warnings: list[str]) -> Iterable[Path]:
    """Yield supported files under root (sorted by path), refusing links that lead outside it;
    a file left out gets a warning in ``warnings``."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
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
                    warnings.append(f"skipped {rel}: no file extension (use .txt, .md, .html or .pdf)")
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


def read_file(path: Path, doc_id: str) -> Document:
    """Read one file into a Document; raises _Skip with the reason when unusable."""
    suffix = path.suffix.lower()
    raw = path.read_bytes()
    if suffix in PDF_SUFFIXES:
        text, title = _pdf_text(raw)
    else:
        if b"\x00" in raw[:8192]:
            raise _Skip("looks binary (contains NUL bytes)")
        try:
            decoded = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _Skip(f"not valid UTF-8 (byte {exc.start}); re-save it as UTF-8") from None
        if suffix in HTML_SUFFIXES:
            text, title = _html_text(decoded)
        else:
            text, title = decoded, None
            if suffix in {".md", ".markdown"}:
                title = _markdown_title(decoded)
    if not text.strip():
        raise _Skip("empty (no text to index)")
    return make_document(doc_id, text, title)


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


def _pdf_text(raw: bytes) -> tuple[str, str | None]:
    """The text layer of a PDF, pages separated by blank lines."""
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
    text = "\n\n".join(p for p in pages if p)
    if not text.strip():
        raise _Skip("a PDF without a text layer (scanned?); OCR it first")
    return text, _clip(meta_title) if meta_title and meta_title.strip() else None
