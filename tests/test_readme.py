"""The README works as printed: its Python example answers with a citation, its commands,
``make`` targets, settings and links exist, and the docs it links to stay in step with the code."""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest

from qa.cli import parser
from qa.config import Settings
from tests.conftest import ROOT, SEEDS

README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
#: ``[text](target)`` and ``![alt](target)``; the text may wrap over lines.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def fenced(text: str, language: str) -> list[str]:
    """The bodies of the fenced code blocks in ``language``."""
    return [body for lang, body in FENCE.findall(text) if lang == language]


def slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    """Every heading anchor of a Markdown file (code blocks left out)."""
    text = FENCE.sub("", doc.read_text(encoding="utf-8"))
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)}


@pytest.mark.model
def test_python_example_answers_with_a_citation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (example,) = fenced(README.read_text(encoding="utf-8"), "python")
    shutil.copytree(SEEDS, tmp_path / "seeds")
    monkeypatch.chdir(tmp_path)  # the example names "seeds" and "index" relative to here
    for name in [n for n in os.environ if n.startswith("QA_")]:
        monkeypatch.delenv(name)  # the defaults, as a new user has them
    scope: dict[str, object] = {}
    exec(compile(example, "README.md", "exec"), scope)
    printed = capsys.readouterr().out

    qa: Any = scope["qa"]
    answer: Any = scope["answer"]
    cite: Any = scope["cite"]
    assert (tmp_path / "index" / "CURRENT").exists()  # it built the index where it said
    assert answer.found and answer.text
    assert "Missile System" in answer.text
    document = qa.document(cite.doc_id)
    assert document.text[cite.start : cite.end] == cite.quote
    assert cite.quote in cite.sentence
    lines = printed.splitlines()
    assert lines[0].startswith(answer.text + " True ")
    assert f"{cite.title} ({cite.doc_id}, characters {cite.start}-{cite.end})" in lines[1]
    assert cite.sentence in printed
    ranks = [line.split()[0] for line in lines[-3:]]
    assert ranks == ["1", "2", "3"]


def test_make_targets_named_in_the_docs_exist() -> None:
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    named = set()
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        code = [body for _, body in FENCE.findall(text)] + re.findall(r"`([^`\n]+)`", FENCE.sub("", text))
        named |= {target for span in code for target in re.findall(r"\bmake ([a-z][\w-]*)", span)}
    assert {"run", "test"} <= named
    assert named - targets == set(), "the docs name make targets the Makefile lacks"


def test_links_in_the_docs_resolve() -> None:
    checked = 0
    for doc in DOCS:
        for target in LINK.findall(doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not files
            path, _, fragment = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            assert dest.exists(), f"{doc.name} links to {target}, which does not exist"
            assert dest.is_relative_to(ROOT), f"{doc.name} links outside the repository: {target}"
            if fragment and dest.suffix == ".md":
                assert fragment in anchors(dest), f"{doc.name} links to #{fragment}, not a heading of {path}"
            checked += 1
    assert checked >= 10


def test_code_points_at_sections_that_exist() -> None:
    sections = anchors(ROOT / "docs" / "experiments.md")
    named = {
        (py.relative_to(ROOT), anchor)
        for py in (ROOT / "qa").rglob("*.py")
        for anchor in re.findall(r"docs/experiments\.md#([\w-]+)", py.read_text(encoding="utf-8"))
    }
    assert named, "no docstring or comment names a section of docs/experiments.md"
    missing = sorted(f"{path}: #{anchor}" for path, anchor in named if anchor not in sections)
    assert missing == []


def test_architecture_maps_every_module() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    modules = [
        str(py.relative_to(ROOT))
        for py in sorted((ROOT / "qa").rglob("*.py"))
        if not (py.name == "__init__.py" and py.parent != ROOT / "qa")  # a subpackage's marker
    ]
    assert len(modules) > 20
    unmapped = [m for m in modules if f"`{m}`" not in page]
    assert unmapped == [], f"add a row to the module map in docs/architecture.md for {unmapped}"


def test_readme_commands_and_settings_parse() -> None:
    text = README.read_text(encoding="utf-8")
    commands = [
        shlex.split(line, comments=True)
        for block in fenced(text, "bash")
        for line in block.splitlines()
        if line.startswith(".venv/bin/qa ")
    ]
    assert len(commands) >= 4
    for argv in commands:
        parser().parse_args(argv[1:])  # exits (a failure here) on an unknown flag or command
    fields = {f.name for f in dataclasses.fields(Settings)}
    named = set(re.findall(r"\bQA_([A-Z][A-Z_]*[A-Z])\b", text))
    assert named and {n.lower() for n in named} - fields == set()


def test_readme_stays_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, "the README is for users: measurements go to docs/experiments.md"
