"""The UI shell without a browser: rendering, escaping, feedback log, building the Blocks."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qa.config import Settings
from qa.errors import InputError
from qa.serve import render
from qa.serve.feedback import FeedbackLog
from qa.types import Answer, Chunk, Citation, Hit

DOC = 'Intro line.\n\nThe badge colour is <b>teal</b> & "orange" <script>x()</script>.\n\nEnd.'


def _answer(doc: str = DOC, quote: str = "<b>teal</b>", found: bool = True, score: float = 0.9) -> Answer:
    start = doc.index(quote)
    end = start + len(quote)
    s_start = doc.index("The badge")
    s_end = doc.index("\n\nEnd")
    chunk = Chunk("memo.txt#0", "memo.txt", "Memo <i>title</i>", 0, len(doc), doc)
    cite = Citation(
        doc_id="memo.txt",
        title="Memo <i>title</i>",
        chunk_id="memo.txt#0",
        start=start,
        end=end,
        quote=quote,
        sentence=doc[s_start:s_end],
        sentence_start=s_start,
        sentence_end=s_end,
        passage=doc,
        passage_start=0,
        passage_end=len(doc),
        score=3.5,
    )
    hit = Hit(chunk=chunk, score=0.5, rank=1)
    if not found:
        return Answer("q", "I could not find an answer.", False, 0.1, [], [hit])
    return Answer("q", quote, True, score, [cite], [hit])


def _tags(fragment: str) -> set[str]:
    return {t.lower() for t in re.findall(r"<\s*([a-zA-Z]+)", fragment)}


ALLOWED_TAGS = {"div", "span", "sup", "mark", "blockquote", "details", "summary", "p", "a"}


def test_answer_html_escapes_and_marks_the_span() -> None:
    out = render.answer_html(_answer())
    assert "&lt;b&gt;teal&lt;/b&gt;" in out and "&lt;script&gt;" in out
    assert _tags(out) <= ALLOWED_TAGS
    assert '<sup class="qa-cite"' in out and "[1]</a></sup>" in out
    assert f'href="{render.source_href(_answer().citations[0]).replace("&", "&amp;")}"' in out
    assert '<mark class="qa-span">&lt;b&gt;teal&lt;/b&gt;</mark>' in out
    assert "qa-conf-high" in out and "90%" in out
    assert "\n\n" not in out  # one HTML block: a Markdown renderer cannot split it


def test_sources_panel_lists_passage_title_and_confidence() -> None:
    out = render.sources_html(_answer())
    assert "Memo &lt;i&gt;title&lt;/i&gt;" in out and "<i>" not in out
    assert out.count('<mark class="qa-span">') == 1
    assert '<mark class="qa-span">&lt;b&gt;teal&lt;/b&gt;</mark>' in out
    assert "[1]" in out and "High confidence" in out and "memo.txt" in out
    assert _tags(out) <= ALLOWED_TAGS


def test_long_passages_show_a_window_and_the_full_text_on_demand() -> None:
    doc = "A" * 900 + " The badge colour is <b>teal</b> & orange. " + "Z" * 900 + "\n\nEnd"
    doc = doc.replace("\n\nEnd", "\n\nEnd")
    quote = "<b>teal</b>"
    start = doc.index(quote)
    cite = Citation("d", "T", "d#0", start, start + len(quote), quote, quote, start, start + len(quote),
                    doc, 0, len(doc), 1.0)  # fmt: skip
    out = render.sources_html(Answer("q", quote, True, 0.8, [cite], []))
    assert "<details" in out and "Full passage" in out
    assert out.count('<mark class="qa-span">') == 2  # the excerpt and the full passage


def test_not_found_is_rendered_differently() -> None:
    nf = _answer(found=False)
    out = render.answer_html(nf)
    assert "qa-notfound" in out and render.NOT_FOUND_TITLE in out
    assert "qa-cite" not in out and "<mark" not in out
    panel = render.sources_html(nf)
    assert "Closest passages" in panel and "&lt;script&gt;" in panel
    assert render.render_text(nf).startswith(render.NOT_FOUND_TITLE)
    assert render.render_markdown(nf).startswith("**" + render.NOT_FOUND_TITLE)


def test_wrong_offsets_never_highlight_the_wrong_text() -> None:
    assert render.highlight_html("abc def", 0, 4, 7, "def") == 'abc <mark class="qa-span">def</mark>'
    assert render.highlight_html("abc def", 0, 0, 3, "def") == 'abc <mark class="qa-span">def</mark>'
    assert render.highlight_html("abc def", 0, 0, 3, "xyz") == "abc def"
    assert render.highlight_html("<x>", 100, 100, 103, "<x>") == '<mark class="qa-span">&lt;x&gt;</mark>'


def test_plain_text_and_markdown() -> None:
    a = _answer()
    text = render.render_text(a)
    assert text.splitlines()[0] == "<b>teal</b> [1]"
    assert "Confidence: high (90%)" in text
    assert "[1] Memo <i>title</i> (memo.txt, chars" in text
    assert "»<b>teal</b>«" in text
    md = render.render_markdown(a)
    assert md.startswith("&lt;b&gt;teal&lt;/b&gt; [1]")
    assert "**&lt;b&gt;teal&lt;/b&gt;**" in md


@pytest.mark.parametrize(("score", "label"), [(0.95, "high"), (0.75, "high"), (0.6, "medium"), (0.2, "low")])
def test_confidence_label(score: float, label: str) -> None:
    assert render.confidence_label(score) == label


@settings(max_examples=200, deadline=None)
@given(
    before=st.text(max_size=60),
    quote=st.text(min_size=1, max_size=30),
    after=st.text(max_size=60),
    title=st.text(max_size=40),
)
def test_no_document_text_ever_becomes_markup(before: str, quote: str, after: str, title: str) -> None:
    doc = before + quote + after
    start = len(before)
    cite = Citation("d<x>", title, "c", start, start + len(quote), quote, doc, 0, len(doc), doc, 0,
                    len(doc), 1.0)  # fmt: skip
    answer = Answer("q", quote, True, 0.7, [cite], [Hit(Chunk("c", "d", title, 0, len(doc), doc), 1.0, 1)])
    for out in (render.answer_html(answer), render.sources_html(answer)):
        assert _tags(out) <= ALLOWED_TAGS
        # Every "<" comes from our own tags; document text only ever appears escaped.
        stripped = re.sub(r"</?(?:" + "|".join(ALLOWED_TAGS) + r")\b[^<>]*>", "", out)
        assert "<" not in stripped and ">" not in stripped


# -- feedback log -----------------------------------------------------------------------


def test_feedback_log_is_append_only_jsonl_and_thread_safe(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path / "var" / "feedback.jsonl")
    answer = _answer()

    def work(n: int) -> None:
        for i in range(25):
            log.record("helpful" if i % 2 else "not_helpful", f"q{n}-{i}", answer, channel="ui")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = (tmp_path / "var" / "feedback.jsonl").read_text().splitlines()
    assert len(lines) == 200
    entries = [json.loads(line) for line in lines]
    assert {e["rating"] for e in entries} == {"helpful", "not_helpful"}
    c = answer.citations[0]
    assert entries[0]["citations"] == [
        {"doc_id": "memo.txt", "chunk_id": "memo.txt#0", "start": c.start, "end": c.end}
    ]
    assert len(log.read()) == 200
    with pytest.raises(InputError):
        log.record("meh", "q")


# -- the Blocks -------------------------------------------------------------------------


class FakeQA:
    """Enough of the engine for building the UI."""

    def __init__(self, seeds_dir: Path) -> None:
        self.settings = Settings(seeds_dir=seeds_dir, feedback_log=seeds_dir / "fb.jsonl")
        self.asked: list[tuple[str, Any]] = []

    def ask(self, question: str, history: Any = None) -> Answer:
        self.asked.append((question, history))
        return _answer()

    def search(self, question: str, k: int = 5) -> list[Hit]:
        return _answer().hits[:k]

    def info(self) -> dict[str, Any]:
        return {"counts": {"documents": 1}, "documents": [{"doc_id": "memo.txt", "title": "The memo"}]}


def test_create_ui_builds_without_a_server(tmp_path: Path) -> None:
    from qa.serve import ui

    blocks = ui.create_ui(FakeQA(tmp_path))
    config = blocks.get_config_file()
    names = {d.get("api_name") for d in config["dependencies"] if d.get("api_visibility") != "private"}
    assert {"ask", "search"} <= names
    assert "Ask the sources" in json.dumps(config, default=str)


def test_examples_come_from_the_seeds(tmp_path: Path) -> None:
    from qa.serve import ui

    qa = FakeQA(tmp_path)
    assert ui.example_questions(qa) == ["What is “The memo” about?"]
    (tmp_path / ".examples.txt").write_text("# comment\nFirst?\n\nSecond?\n", encoding="utf-8")
    assert ui.example_questions(qa) == ["First?", "Second?"]


def test_history_is_bounded_to_the_settings() -> None:
    from qa.serve import ui

    turns = [{"question": f"q{i}", "text": f"a{i}"} for i in range(30)]
    s = Settings(max_history_turns=5, max_history_chars=20_000)
    hist = ui.history_of(turns, s)
    assert len(hist) == 10 and hist[0] == {"role": "user", "content": "q25"}
    assert hist[-1] == {"role": "assistant", "content": "a29"}
    small = Settings(max_history_turns=20, max_history_chars=9)
    assert ui.history_of(turns, small) == [
        {"role": "user", "content": "q29"},
        {"role": "assistant", "content": "a29"},
    ]


def test_user_text_is_shown_literally() -> None:
    from qa.serve import ui

    assert ui._user_html("<img src=x> *bold* [link](x)") == ("&lt;img src=x&gt; \\*bold\\* \\[link\\]\\(x\\)")
