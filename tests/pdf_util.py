"""Write minimal PDFs with a text layer (no PDF library needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def write_text_pdf(path: Path, text: str) -> None:
    """A one-page PDF whose text layer is ``text``."""
    write_pdf(path, [text])


def write_pdf(path: Path, pages: Sequence[str]) -> None:
    """A PDF with one page per item; an empty item is a page without a text layer (a line
    drawing, as a scanned page's image would be)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]  # the page tree is filled in below
    kids = []
    for text in pages:
        if text:
            safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            stream = f"BT /F1 12 Tf 72 720 Td ({safe}) Tj ET".encode()
        else:
            stream = b"72 720 m 300 500 l S"
        page_no = len(objects) + 1
        kids.append(f"{page_no} 0 R")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {page_no + 1} 0 R "
            "/Resources << /Font << /F1 FONT 0 R >> >> >>".encode()
        )
        objects.append(
            b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream"
        )
    font = len(objects) + 1
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    objects = [o.replace(b"FONT", str(font).encode()) for o in objects]
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>".encode()
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))
