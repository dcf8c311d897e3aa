from __future__ import annotations

import os
from pathlib import Path

import pytest

from qa.errors import SourceError
from qa.ingest.sources import read_folder


def test_reads_txt_md_html_recursively(sample_seeds: Path) -> None:
    result = read_folder(sample_seeds)
    docs = {d.doc_id: d for d in result.documents}
    assert sorted(docs) == ["page.html", "rivers/nile.txt", "solar.md"]
    assert docs["solar.md"].title == "The Solar System"
    assert docs["rivers/nile.txt"].title == "The Nile"
    assert docs["page.html"].title == "Bread baking"
    html = docs["page.html"].text
    assert "Yeast makes the dough rise." in html
    assert "alert" not in html and "color:red" not in html  # only visible text
    assert all(len(d.sha256) == 64 for d in docs.values())
    assert result.warnings == []


def test_seed_article_is_in_seeds() -> None:
    from tests.conftest import SEEDS

    result = read_folder(SEEDS)
    assert len(result.documents) >= 1
    doc = result.documents[0]
    assert doc.title.startswith("Biden Agrees To Let Ukraine")
    assert "ATACMs" in doc.text


def test_bad_files_are_skipped_with_a_warning_naming_them(sample_seeds: Path, tmp_path: Path) -> None:
    (sample_seeds / "binary.txt").write_bytes(b"abc\x00\x01\x02")
    (sample_seeds / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (sample_seeds / "empty.md").write_text("   \n")
    (sample_seeds / "image.png").write_bytes(b"\x89PNG")
    (sample_seeds / "broken.pdf").write_bytes(b"%PDF-1.4 nonsense")
    outside = tmp_path / "secret.txt"
    outside.write_text("secret outside the seeds")
    os.symlink(outside, sample_seeds / "escape.txt")
    result = read_folder(sample_seeds)
    assert sorted(d.doc_id for d in result.documents) == ["page.html", "rivers/nile.txt", "solar.md"]
    text = "\n".join(result.warnings)
    for name in ("binary.txt", "latin1.txt", "empty.md", "image.png", "broken.pdf", "escape.txt"):
        assert name in text
    assert "UTF-8" in text and "outside the seeds folder" in text


def test_oversized_file_is_skipped(sample_seeds: Path) -> None:
    (sample_seeds / "big.txt").write_text("word " * 1000)
    result = read_folder(sample_seeds, max_file_bytes=1000)
    assert "big.txt" not in {d.doc_id for d in result.documents}
    assert any("big.txt" in w and "limit" in w for w in result.warnings)


def test_pdf_text_layer(tmp_path: Path) -> None:
    from tests.pdf_util import write_text_pdf

    seeds = tmp_path / "s"
    seeds.mkdir()
    write_text_pdf(seeds / "doc.pdf", "Aspirin was first synthesised in 1897.")
    result = read_folder(seeds)
    assert [d.doc_id for d in result.documents] == ["doc.pdf"]
    assert "Aspirin was first synthesised in 1897." in result.documents[0].text


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        read_folder(tmp_path / "nope")


def test_a_file_named_as_the_seeds_folder_is_a_clear_error(sample_seeds: Path) -> None:
    with pytest.raises(SourceError, match="is a file, not a folder"):
        read_folder(sample_seeds / "solar.md")


def test_an_index_inside_the_seeds_folder_is_refused(sample_seeds: Path) -> None:
    for index in (sample_seeds, sample_seeds / "index"):
        with pytest.raises(SourceError, match="inside the seeds folder"):
            read_folder(sample_seeds, index_dir=index)
    assert len(read_folder(sample_seeds, index_dir=sample_seeds.parent / "index").documents) == 3
    # a hidden folder is never read as documents: an index there is left alone
    assert len(read_folder(sample_seeds, index_dir=sample_seeds / ".index").documents) == 3


def test_unreadable_folders_are_named(sample_seeds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # CI runs as root, whom permissions never stop: refuse the listing as the OS would.
    real = os.scandir
    refused = {sample_seeds.resolve() / "rivers"}

    def scandir(path: object = ".") -> object:
        if Path(str(path)).resolve() in refused:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)
    result = read_folder(sample_seeds)
    assert sorted(d.doc_id for d in result.documents) == ["page.html", "solar.md"]
    assert result.warnings == ["skipped the folder rivers/: cannot read it (Permission denied)"]
    refused.add(sample_seeds.resolve())
    with pytest.raises(SourceError, match=r"cannot read the seeds folder .*Permission denied"):
        read_folder(sample_seeds)
    monkeypatch.setattr(
        Path, "exists", lambda self: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
    )
    with pytest.raises(SourceError, match=r"cannot read the seeds folder .*Permission denied"):
        read_folder(sample_seeds)  # a parent folder this user may not search


def test_utf16_files_are_read_and_the_size_limit_is_in_readable_units(sample_seeds: Path) -> None:
    (sample_seeds / "wide.txt").write_bytes("Le café ouvre à 8 heures.".encode("utf-16"))
    (sample_seeds / "wider.txt").write_bytes("Das Café öffnet um 8 Uhr.".encode("utf-32"))
    (sample_seeds / "big.txt").write_text("word " * 200)
    result = read_folder(sample_seeds, max_file_bytes=600)
    docs = {d.doc_id: d.text for d in result.documents}
    assert (
        docs["wide.txt"] == "Le café ouvre à 8 heures." and docs["wider.txt"] == "Das Café öffnet um 8 Uhr."
    )
    assert result.warnings == ["skipped big.txt: larger than the 600 bytes limit (max_file_bytes)"]
