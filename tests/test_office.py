"""Word and PowerPoint files, and PDF pages: read in reading order, cited with their page or slide.

The files are real ones, written with python-docx and python-pptx (and tests/pdf_util.py).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import docx
import pptx
import pytest
from pptx.util import Inches

from qa import QA
from qa.ingest import sources
from qa.ingest.sources import make_document, read_folder
from qa.serve import render
from qa.store import index as index_mod
from qa.store.embedding import make_embedder
from qa.types import to_dict
from tests.pdf_util import write_pdf

LEAVE_TEXT = (
    "Leave policy\n\n"
    "Every employee gets twenty five days of annual leave.\n\n"
    "Grade | Days | Notes\n"
    "Manager | 30 | Carry over up to five\n"
    "Wide merged cell | 12\n\n"
    "Unused leave expires at the end of March."
)


def write_leave_docx(path: Path) -> None:
    """A Word file: a heading, a paragraph, a table (one merged cell), another paragraph."""
    document = docx.Document()
    document.add_heading("Leave policy", level=1)
    document.add_paragraph("Every employee gets twenty five days of annual leave.")
    table = document.add_table(rows=3, cols=3)
    for r, row in enumerate([("Grade", "Days", "Notes"), ("Manager", "30", "Carry over up to five")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    merged = table.cell(2, 0).merge(table.cell(2, 1))
    merged.text = "Wide merged cell"
    table.cell(2, 2).text = "12"
    document.add_paragraph("")  # an empty paragraph is left out
    document.add_paragraph("Unused leave expires at the end of March.")
    document.save(str(path))


def write_deck(path: Path) -> None:
    """A deck: slide 1 title, body and notes; slide 2 a text box and a table; slide 3 empty;
    slide 4 a title only."""
    deck = pptx.Presentation()
    one = deck.slides.add_slide(deck.slide_layouts[1])
    one.shapes.title.text = "Quarterly results"
    one.placeholders[1].text = "Revenue rose twelve percent."
    one.notes_slide.notes_text_frame.text = "Mention the new office in Oslo opening in May."
    two = deck.slides.add_slide(deck.slide_layouts[6])  # blank layout
    box = two.shapes.add_textbox(Inches(1), Inches(1), Inches(6), Inches(1))
    box.text_frame.text = "Hiring plan"
    rows = two.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(6), Inches(1)).table
    for r, row in enumerate([("Team", "Hires"), ("Support", "4")]):
        for c, value in enumerate(row):
            rows.cell(r, c).text = value
    deck.slides.add_slide(deck.slide_layouts[6])
    four = deck.slides.add_slide(deck.slide_layouts[5])  # title only
    four.shapes.title.text = "Questions"
    deck.save(str(path))


DECK_TEXT = (
    "Quarterly results\nRevenue rose twelve percent."
    "\n\nMention the new office in Oslo opening in May."
    "\n\nHiring plan\nTeam | Hires\nSupport | 4"
    "\n\nQuestions"
)


def test_docx_paragraphs_headings_and_tables_in_reading_order(tmp_path: Path) -> None:
    write_leave_docx(tmp_path / "leave.docx")
    result = read_folder(tmp_path)
    assert result.warnings == []
    (doc,) = result.documents
    assert doc.text == LEAVE_TEXT
    assert doc.title == "Leave policy"
    assert doc.locations == ()  # Word has no fixed pages to name


def test_pptx_slides_then_notes_with_where_each_starts(tmp_path: Path) -> None:
    write_deck(tmp_path / "deck.pptx")
    (doc,) = read_folder(tmp_path).documents
    assert doc.text == DECK_TEXT
    assert doc.title == "Quarterly results"
    firsts = {"slide 1": "Quarterly", "slide 1 notes": "Mention", "slide 2": "Hiring", "slide 4": "Questions"}
    starts = {label: doc.text.index(first) for label, first in firsts.items()}
    assert doc.locations == tuple((at, label) for label, at in starts.items())
    for label, at in starts.items():  # every character of a part maps to its slide
        assert doc.location_at(at) == label
        end = next((s for s, _ in doc.locations if s > at), len(doc.text))
        assert doc.location_at(end - 1) == label


def test_pdf_pages_are_located_and_a_scanned_page_is_reported(tmp_path: Path) -> None:
    write_pdf(tmp_path / "report.pdf", ["Budget overview for the year.", "", "Travel costs fell by a third."])
    result = read_folder(tmp_path)
    (doc,) = result.documents
    assert doc.text == "Budget overview for the year.\n\nTravel costs fell by a third."
    assert doc.locations == ((0, "page 1"), (31, "page 3"))
    (warning,) = result.warnings
    assert warning.startswith("report.pdf: ") and "page 2 of 3" in warning and "OCR" in warning


def test_a_scanned_pdf_is_skipped_with_a_warning_naming_it(tmp_path: Path) -> None:
    write_pdf(tmp_path / "scan.pdf", ["", ""])
    (tmp_path / "ok.txt").write_text("A text file that still indexes.", encoding="utf-8")
    result = read_folder(tmp_path)
    assert [d.doc_id for d in result.documents] == ["ok.txt"]
    (warning,) = result.warnings
    assert warning.startswith("skipped scan.pdf: a scanned PDF")
    assert "2 pages" in warning and "OCR" in warning


def _ole(*streams: str) -> bytes:
    """The start of an OLE compound file (as Office writes an encrypted package into one) with
    ``streams`` named in its directory (UTF-16, as OLE spells them)."""
    names = b"".join(name.encode("utf-16-le") + b"\x00\x00" for name in streams)
    return sources.OLE_MAGIC + b"\x00" * 504 + names + b"\x00" * 512


def test_broken_and_protected_office_files_are_skipped_and_the_rest_goes_on(
    tmp_path: Path, fake_settings: Any
) -> None:
    seeds = fake_settings.seeds_dir
    seeds.mkdir()
    write_leave_docx(seeds / "good.docx")
    (seeds / "garbage.docx").write_bytes(b"this is not a zip package at all")
    whole = (seeds / "good.docx").read_bytes()
    (seeds / "truncated.docx").write_bytes(whole[: len(whole) // 2])
    with zipfile.ZipFile(seeds / "no_body.docx", "w") as z:  # a zip, but not a Word package
        z.writestr("[Content_Types].xml", "<Types/>")
    # the parts are there, one's XML is cut short
    with zipfile.ZipFile(seeds / "bad_xml.pptx", "w") as z, zipfile.ZipFile(_deck_bytes(tmp_path)) as deck:
        for name in deck.namelist():
            z.writestr(name, b"<p:sld" if name == "ppt/slides/slide1.xml" else deck.read(name))
    (seeds / "locked.docx").write_bytes(_ole("EncryptionInfo", "EncryptedPackage"))
    (seeds / "old.pptx").write_bytes(_ole("PowerPoint Document"))

    engine = QA.build(settings=fake_settings)

    warnings = engine.last_build.warnings
    by_file = {w.split(":")[0].removeprefix("skipped "): w for w in warnings}
    assert set(by_file) == {"garbage.docx", "truncated.docx", "no_body.docx", "bad_xml.pptx", "locked.docx",
                            "old.pptx"}  # fmt: skip
    assert "password-protected" in by_file["locked.docx"] and "without the password" in by_file["locked.docx"]
    assert "password" in by_file["old.pptx"] and "save it as .pptx" in by_file["old.pptx"]
    assert "damaged" in by_file["garbage.docx"] and "re-save" in by_file["truncated.docx"]
    assert "not a readable .docx file" in by_file["no_body.docx"]
    assert "not a readable .pptx file" in by_file["bad_xml.pptx"]
    assert [d["doc_id"] for d in engine.info()["documents"]] == ["good.docx"]
    assert engine.document("good.docx").text == LEAVE_TEXT


def _deck_bytes(tmp_path: Path) -> Path:
    path = tmp_path / "source_deck.pptx"
    write_deck(path)
    return path


def test_an_office_file_unpacking_past_the_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_leave_docx(tmp_path / "big.docx")
    monkeypatch.setattr(sources, "MAX_UNPACKED_BYTES", 1000)
    result = read_folder(tmp_path)
    assert result.documents == []
    assert "MB limit" in result.warnings[0] and "big.docx" in result.warnings[0]


@pytest.fixture
def office_engine(fake_settings: Any) -> QA:
    seeds = fake_settings.seeds_dir
    seeds.mkdir()
    write_deck(seeds / "deck.pptx")
    write_leave_docx(seeds / "leave.docx")
    write_pdf(seeds / "report.pdf", ["Budget overview for the year.", "", "Travel costs fell by a third."])
    return QA.build(settings=fake_settings)


@pytest.mark.parametrize(
    ("question", "quote_part", "location"),
    [
        ("Where does the new office open in May?", "Oslo", "slide 1 notes"),
        ("What is the hiring plan for each team?", "Hir", "slide 2"),
        ("Did travel costs fall?", "Travel costs", "page 3"),
        ("When does unused leave expire?", "March", None),
    ],
)
def test_citations_name_the_page_or_slide_with_exact_offsets(
    office_engine: QA, question: str, quote_part: str, location: str | None
) -> None:
    answer = office_engine.ask(question)
    (cite,) = answer.citations
    doc = office_engine.document(cite.doc_id)
    assert doc.text[cite.start : cite.end] == cite.quote
    assert quote_part in cite.quote
    assert cite.location == location
    assert cite.doc_sha256 == doc.sha256
    data = to_dict(answer)["citations"][0]
    assert data["location"] == location and json.loads(json.dumps(data)) == data
    text = render.render_text(answer)
    assert (f"({cite.doc_id}, {location}, chars" if location else f"({cite.doc_id}, chars") in text
    if location:
        assert f"{location} · characters {cite.start}–{cite.end}" in render.sources_html(answer)
        assert f"({cite.doc_id}, {location})" in render.render_markdown(answer)


def test_an_index_without_locations_loads_and_gets_them_on_the_next_build(fake_settings: Any) -> None:
    embedder = make_embedder("hash-64")
    text = "Slide one text.\n\nSlide two text."
    old = make_document("deck.pptx", text, "Deck")  # as indexes from before locations held it
    index_mod.build([old], fake_settings.index_dir, embedder, fake_settings)
    data = index_mod.load(fake_settings.index_dir)
    (row,) = (json.loads(line) for line in (data.path / "documents.jsonl").read_text().splitlines())
    assert "locations" not in row  # a document without pages is stored exactly as before
    assert data.documents["deck.pptx"].locations == ()

    new = make_document("deck.pptx", text, "Deck", ((0, "slide 1"), (17, "slide 2")))
    report = index_mod.build([new], fake_settings.index_dir, embedder, fake_settings)
    assert not report.up_to_date and report.embedded == 0  # rewritten, nothing re-embedded
    data = index_mod.load(fake_settings.index_dir)
    assert data.documents["deck.pptx"].locations == ((0, "slide 1"), (17, "slide 2"))
    assert index_mod.build([new], fake_settings.index_dir, embedder, fake_settings).up_to_date


def _w(xml: str) -> Any:
    """A WordprocessingML element parsed from ``xml`` (the w: namespace declared)."""
    from docx.oxml import parse_xml
    from docx.oxml.ns import nsdecls

    name = xml[1:].split(">", 1)[0].split(" ", 1)[0].rstrip("/")
    return parse_xml(f"<{name} {nsdecls('w')}" + xml[1 + len(name) :])


def test_docx_text_in_content_controls_and_tracked_changes_is_read_in_order(tmp_path: Path) -> None:
    """Text inside block and inline content controls, a control around a table and tracked
    insertions is read where it stands; tracked deletions are not."""
    document = docx.Document()
    document.add_paragraph("Opening line.")
    body = document.element.body
    anchor = document.add_paragraph("Closing line.")._p
    anchor.addprevious(
        _w(
            "<w:sdt><w:sdtPr/><w:sdtContent><w:p><w:r><w:t>Text in a block control.</w:t></w:r></w:p>"
            "<w:sdt><w:sdtContent><w:p><w:r><w:t>Nested control.</w:t></w:r></w:p></w:sdtContent></w:sdt>"
            "</w:sdtContent></w:sdt>"
        )
    )
    anchor.addprevious(
        _w(
            '<w:p><w:r><w:t xml:space="preserve">Before </w:t></w:r>'
            '<w:ins w:id="1" w:author="a"><w:r><w:t>tracked insertion</w:t></w:r></w:ins>'
            '<w:del w:id="2" w:author="a"><w:r><w:delText> deleted words</w:delText></w:r></w:del>'
            '<w:sdt><w:sdtContent><w:r><w:t xml:space="preserve"> and an inline control</w:t></w:r>'
            "</w:sdtContent></w:sdt><w:r><w:tab/><w:t>after a tab.</w:t></w:r></w:p>"
        )
    )
    table = document.add_table(rows=1, cols=2)
    table.cell(0, 0).text = "Cell one"
    table.cell(0, 1)._tc.append(
        _w("<w:sdt><w:sdtContent><w:p><w:r><w:t>Cell two</w:t></w:r></w:p></w:sdtContent></w:sdt>")
    )
    wrapper = _w("<w:sdt><w:sdtContent/></w:sdt>")
    table._tbl.addprevious(wrapper)
    wrapper[0].append(table._tbl)  # the table inside a content control
    assert body is document.element.body
    document.save(str(tmp_path / "controls.docx"))
    (doc,) = read_folder(tmp_path).documents
    assert doc.text == (
        "Opening line.\n\nText in a block control.\n\nNested control.\n\n"
        "Before tracked insertion and an inline control\tafter a tab.\n\nClosing line.\n\n"
        "Cell one | Cell two"
    )


def test_docx_title_is_looked_for_only_in_the_first_paragraphs(tmp_path: Path) -> None:
    """A heading far down is a section, not the title: the file's title property is used."""
    for at, expected in ((sources.TITLE_PARAGRAPHS - 1, "Heading"), (sources.TITLE_PARAGRAPHS + 10, "Core")):
        document = docx.Document()
        document.core_properties.title = "Core"
        for i in range(at):
            document.add_paragraph(f"Paragraph {i}.")
        document.add_heading("Heading", level=1)
        path = tmp_path / f"t{at}.docx"
        document.save(str(path))
        assert sources.read_file(path, path.name).title == expected


def test_text_past_the_size_limit_is_left_out_with_a_note(tmp_path: Path) -> None:
    write_leave_docx(tmp_path / "leave.docx")
    notes: list[str] = []
    doc = sources.read_file(tmp_path / "leave.docx", "leave.docx", notes, max_chars=40)
    assert doc.text == LEAVE_TEXT[:40]
    assert (
        len(notes) == 1 and f"first 40 characters of text are indexed ({len(LEAVE_TEXT)} in all" in notes[0]
    )


def test_a_shape_python_pptx_cannot_name_does_not_lose_the_deck(tmp_path: Path) -> None:
    """A text shape without geometry or text-box flag (as some generators write it): asking its
    shape_type raises NotImplementedError; its text and the rest of the deck are still read."""
    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[6])
    slide.shapes.add_textbox(Inches(1), Inches(1), Inches(4), Inches(1)).text_frame.text = "Visible text"
    odd = slide.shapes.add_textbox(Inches(1), Inches(3), Inches(4), Inches(1))
    odd.text_frame.text = "A shape without geometry"
    odd._element.nvSpPr.cNvSpPr.attrib.pop("txBox", None)
    for geometry in odd._element.spPr.findall(
        "{http://schemas.openxmlformats.org/drawingml/2006/main}prstGeom"
    ):
        odd._element.spPr.remove(geometry)
    with pytest.raises(NotImplementedError):
        _ = odd.shape_type
    deck.save(str(tmp_path / "odd.pptx"))
    result = read_folder(tmp_path)
    assert result.warnings == []
    assert result.documents[0].text == "Visible text\nA shape without geometry"
