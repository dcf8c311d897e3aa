"""The real bundled embedding model (and the shipped reader, when present) on the seed article."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qa import QA, Settings

pytestmark = pytest.mark.model
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def qa(tmp_path_factory: pytest.TempPathFactory) -> QA:
    index = tmp_path_factory.mktemp("index")
    return QA.build(ROOT / "seeds", index, settings=Settings())


@pytest.mark.parametrize(
    "question, fact",
    [
        ("Which missile system did Biden authorize?", "ATACM"),
        ("How much security assistance has the United States provided to Ukraine?", "$56.2 billion"),
        ("Whose troops is Russia reportedly deploying?", "North Korean"),
        ("Which Ukrainian leader encouraged deeper strikes inside Russia?", "Zelensky"),
        (  # a wordy request: the reader reads the question it asks (qa.answer.conversation.focus)
            "I'm preparing a briefing for my team about the war and the latest decisions by the US "
            "administration, and I would like to know, based on the article, which missile system "
            "Ukraine is expected to deploy for these deeper strikes into Russian territory?",
            "Army Tactical Missile System",
        ),
    ],
)
def test_article_questions_are_answered_with_exact_citations(qa: QA, question: str, fact: str) -> None:
    answer = qa.ask(question)
    assert answer.found, answer
    cite = answer.citations[0]
    assert cite.doc_id == "000_c905c3656ea7082f.txt"
    assert cite.title.startswith("Biden Agrees To Let Ukraine")
    source = (ROOT / "seeds" / cite.doc_id).read_text(encoding="utf-8")
    assert source[cite.start : cite.end] == cite.quote
    assert source[cite.sentence_start : cite.sentence_end] == cite.sentence
    assert fact.lower() in cite.sentence.lower()
    assert 0.0 <= answer.score <= 1.0


def test_a_wordy_request_later_in_a_conversation_is_answered(qa: QA) -> None:
    history = [
        "Who encouraged deeper strikes inside Russia?",
        {"role": "assistant", "content": "Western leaders"},
    ]
    question = (
        "I'm preparing a briefing for my team about the war and the latest decisions by the US "
        "administration, and I would like to know, based on the article, which missile system "
        "Ukraine is expected to deploy for these deeper strikes into Russian territory?"
    )
    answer = qa.ask(question, history=history)
    assert answer.found and "Army Tactical Missile System" in answer.text, answer


@pytest.mark.parametrize(
    "question",
    ["What is the capital of France?", "How do I bake sourdough bread?", "Who won the 1998 World Cup?"],
)
def test_questions_the_article_does_not_cover_are_not_found(qa: QA, question: str) -> None:
    answer = qa.ask(question)
    assert not answer.found, answer.text
    assert answer.citations == []


def test_a_list_number_is_never_the_answer(qa: QA) -> None:
    from qa.answer.span_reader import is_list_marker

    # the article gives no date; its numbered list of sources once made the reader quote "2"
    answer = qa.ask("When did Biden authorize the missiles?")
    for cite in answer.citations:
        source = (ROOT / "seeds" / cite.doc_id).read_text(encoding="utf-8")
        assert not is_list_marker(source, cite.start, cite.end), cite.quote


def test_embeddings_are_normalised_float32(qa: QA) -> None:
    import numpy as np

    vecs = qa.embedder.embed(["hello world", "missiles"])
    assert vecs.dtype == np.float32 and vecs.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_cli_build_ask_search_info(tmp_path: Path) -> None:
    index = tmp_path / "index"
    qa_cmd = [sys.executable, "-m", "qa"]
    run = lambda *a: subprocess.run(qa_cmd + list(a), capture_output=True, text=True, timeout=300)  # noqa: E731
    built = run("build", "--seeds", str(ROOT / "seeds"), "--index", str(index))
    assert built.returncode == 0, built.stderr
    assert "1 documents" in built.stdout
    again = run("build", "--seeds", str(ROOT / "seeds"), "--index", str(index))
    assert "up to date" in again.stdout
    asked = run("ask", "How much security assistance has the US provided?", "--index", str(index), "--json")
    assert asked.returncode == 0, asked.stderr
    data = json.loads(asked.stdout)
    assert data["found"] and "56.2" in data["citations"][0]["sentence"]
    assert set(data) >= {"text", "found", "score", "citations"}
    text = run("ask", "How much security assistance has the US provided?", "--index", str(index))
    assert "56.2" in text.stdout and "000_c905c3656ea7082f.txt" in text.stdout
    searched = run("search", "North Korean troops", "--index", str(index), "-k", "2")
    assert searched.returncode == 0 and searched.stdout.startswith("1. ")
    info = run("info", "--index", str(index))
    assert json.loads(info.stdout)["model"]["dim"] == 384
    empty = run("ask", "  ", "--index", str(index))
    assert empty.returncode == 2 and "empty" in empty.stderr and "Traceback" not in empty.stderr
    missing = run("ask", "hi", "--index", str(tmp_path / "none"))
    assert missing.returncode == 4 and "qa build" in missing.stderr and "Traceback" not in missing.stderr
