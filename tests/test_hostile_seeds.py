"""Hostile seed documents are indexed as inert text or refused with a warning, never executed."""

from __future__ import annotations

import os
from pathlib import Path

from qa import QA
from qa.ingest.sources import read_folder


def test_script_and_html_in_a_text_seed_stay_plain_text(sample_seeds: Path, fake_settings) -> None:  # type: ignore[no-untyped-def]
    payload = (
        'Cookies\n\nThe <script>alert("pwned")</script> cookie jar <img src=x onerror=alert(1)> is blue.\n'
    )
    (sample_seeds / "evil.txt").write_text(payload)
    qa = QA.build(sample_seeds, settings=fake_settings)
    answer = qa.ask("What colour is the cookie jar?")
    cite = answer.citations[0]
    assert cite.doc_id == "evil.txt"
    assert payload[cite.start : cite.end] == cite.quote  # offsets into the raw text, nothing stripped


def test_zero_width_and_bidi_characters_do_not_hide_words(sample_seeds: Path, fake_settings) -> None:  # type: ignore[no-untyped-def]
    (sample_seeds / "zw.txt").write_text("Missiles\n\nThe ATA\u200bCMS system is \u202elong-range\u202c.\n")
    qa = QA.build(sample_seeds, settings=fake_settings)
    hit = qa.search("ATACMS", k=1)[0]
    assert hit.chunk.doc_id == "zw.txt" and hit.lexical_score
    doc = qa.document("zw.txt")
    assert doc.text[hit.chunk.start : hit.chunk.end] == hit.chunk.text


def test_huge_files_and_escaping_links_are_refused(sample_seeds: Path, tmp_path: Path) -> None:
    big = sample_seeds / "huge.txt"
    with open(big, "wb") as fh:  # 50 MB, sparse: cheap to create
        fh.truncate(50 * 1024 * 1024)
    secret_dir = tmp_path / "private"
    secret_dir.mkdir()
    (secret_dir / "passwords.txt").write_text("root password hunter2")
    os.symlink(secret_dir, sample_seeds / "linked_dir")
    os.symlink("../../private/passwords.txt", sample_seeds / "rivers" / "up.txt")
    result = read_folder(sample_seeds, max_file_bytes=32 * 1024 * 1024)
    ids = {d.doc_id for d in result.documents}
    assert ids == {"page.html", "rivers/nile.txt", "solar.md"}
    assert all("hunter2" not in d.text for d in result.documents)
    warnings = "\n".join(result.warnings)
    assert "huge.txt" in warnings and "limit" in warnings
    assert "rivers/up.txt" in warnings and "outside the seeds folder" in warnings


def test_odd_file_names_become_safe_relative_ids(sample_seeds: Path) -> None:
    (sample_seeds / "na me '\"<b>.txt").write_text("Odd\n\nA file with an odd name.\n")
    result = read_folder(sample_seeds)
    odd = [d for d in result.documents if d.doc_id.startswith("na me")]
    assert len(odd) == 1 and "/" not in odd[0].doc_id and ".." not in odd[0].doc_id
