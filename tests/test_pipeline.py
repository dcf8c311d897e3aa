from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from qa import QA, Answer
from qa.errors import InputError


@pytest.fixture
def qa(sample_seeds: Path, fake_settings) -> QA:  # type: ignore[no-untyped-def]
    return QA.build(sample_seeds, fake_settings.index_dir, settings=fake_settings)


def test_ask_quotes_the_source_exactly_with_citation(qa: QA) -> None:
    answer = qa.ask("Which planet is closest to the Sun?")
    assert isinstance(answer, Answer) and answer.found
    assert "Mercury" in answer.text
    cite = answer.citations[0]
    doc = qa.document(cite.doc_id)
    assert cite.doc_id == "solar.md" and cite.title == "The Solar System"
    assert doc.text[cite.start : cite.end] == cite.quote == answer.text
    assert doc.text[cite.sentence_start : cite.sentence_end] == cite.sentence
    assert doc.text[cite.passage_start : cite.passage_end] == cite.passage
    assert cite.sentence_start <= cite.start < cite.end <= cite.sentence_end
    assert answer.hits[0].chunk.chunk_id == cite.chunk_id
    json.dumps(answer.to_dict())  # JSON-serialisable


def test_search_ranks_the_relevant_passage_first(qa: QA) -> None:
    hits = qa.search("How long is the Nile river?", k=3)
    assert hits[0].chunk.doc_id == "rivers/nile.txt"
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert hits == sorted(hits, key=lambda h: -h.score)


def test_search_adds_the_sentence_overlap_with_the_settings_weight(  # type: ignore[no-untyped-def]
    sample_seeds: Path, fake_settings
) -> None:
    plain = QA.build(sample_seeds, settings=fake_settings.replace(overlap_weight=0.0))
    weighted = QA.build(sample_seeds, settings=fake_settings.replace(overlap_weight=0.5))
    question = "How long is the Nile river?"
    before = {h.chunk.chunk_id: h.score for h in plain.search(question, k=10)}
    after = {h.chunk.chunk_id: h.score for h in weighted.search(question, k=10)}
    assert before.keys() == after.keys()
    gains = {c: after[c] - before[c] for c in before}
    # the chunk whose one sentence holds the most of the question's words gains the whole weight
    assert max(gains.values()) == pytest.approx(0.5, abs=1e-6)
    assert all(-1e-6 <= g <= 0.5 + 1e-6 for g in gains.values())
    assert max(gains, key=gains.__getitem__).startswith("rivers/nile.txt")


def test_unrelated_question_is_not_found(sample_seeds: Path, fake_settings) -> None:  # type: ignore[no-untyped-def]
    qa = QA.build(sample_seeds, settings=fake_settings.replace(min_confidence=0.5))
    answer = qa.ask("zebra quantum cryptocurrency tariffs")
    assert not answer.found and answer.citations == []
    assert "could not find" in answer.text


def test_follow_up_uses_the_previous_question(qa: QA) -> None:
    alone = qa.search("And its moons?", k=1)
    followed = qa.search("And its moons?", k=1, history=["Tell me about Mars"])
    assert "Phobos" in followed[0].chunk.text
    answer = qa.ask("How many moons?", history=[{"role": "user", "content": "What about Mars?"},
                                               {"role": "assistant", "content": "..."}])  # fmt: skip
    assert "Phobos" in answer.text
    assert alone is not None


@pytest.mark.parametrize(
    "question, message",
    [("", "empty"), ("   \n\t", "empty"), ("\x00\x01", "empty"), ("x" * 5000, "too long"), (42, "string")],
)
def test_bad_questions_raise_input_error(qa: QA, question: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        qa.ask(question)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "history, message",
    [("not a list", "list"), ([1, 2], "string or"), (["q"] * 500, "too long"), (["x" * 30000], "too long")],
)
def test_bad_history_raises_input_error(qa: QA, history: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        qa.ask("What is the Sun?", history=history)  # type: ignore[arg-type]


def test_search_k_is_bounded(qa: QA) -> None:
    for k in (0, -1, 101, 2.5):
        with pytest.raises(InputError):
            qa.search("Sun", k=k)  # type: ignore[arg-type]


def test_concurrent_asks_agree(qa: QA) -> None:
    questions = ["Which planet is largest?", "How long is the Nile?", "What makes dough rise?"] * 10
    expected = {q: qa.ask(q).text for q in set(questions)}
    errors: list[BaseException] = []
    results: list[tuple[str, str]] = []

    def worker(q: str) -> None:
        try:
            results.append((q, qa.ask(q).text))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(q,)) for q in questions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(text == expected[q] for q, text in results) and len(results) == len(questions)


def test_lone_surrogates_and_control_characters_are_neutralised(qa: QA) -> None:
    answer = qa.ask("Which planet\ud800 is closest\x00 to the Sun?", history=["about the \udfff Sun"])
    assert answer.found and "Mercury" in answer.text
    with pytest.raises(InputError, match="empty"):
        qa.ask("\ud800\udc00\x07")


def test_the_sentence_reader_quotes_the_text_under_a_heading(tmp_path: Path, fake_settings) -> None:  # type: ignore[no-untyped-def]
    from qa.answer.reader import is_heading

    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "policy.md").write_text(
        "# Remote work policy\n\n## Equipment allowance\n\nEach employee may claim €1,200 a year "
        "for equipment.\n\n## Hours\n\nCore hours are 10:00 to 15:00.\n",
        encoding="utf-8",
    )
    answer = QA.build(seeds, settings=fake_settings).ask("What is the equipment allowance?")
    assert answer.citations[0].quote == "Each employee may claim €1,200 a year for equipment."
    for heading in ("## Hours", "Equipment allowance", "Remote Work Policy"):
        assert is_heading(heading)
    for text in (
        "- laptop and screen",
        "Team | Hires",
        "Version 3.2",
        "It rained.",
        "Was it?",
        "Its motto was “Never again.”",
        "He waited and waited…",
        "*Approved.*",
        "これは何ですか？",
    ):
        assert not is_heading(text)
    # a short line that answers the line before it is no title
    assert not is_heading("Jane Smith", "Contact:\n") and not is_heading("The head", "Who approves?\n")
