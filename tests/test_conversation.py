"""Follow-up questions: the conversation model (qa.answer.conversation), the reader's ``keep``,
the Python API, the CLI and the conversation evaluation (qa.evaluation.conversation)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from qa import QA
from qa.answer.calibration import Calibration
from qa.answer.conversation import (
    CONTEXT,
    ELLIPSIS,
    FRAGMENT,
    PRONOUN,
    REPEAT,
    STANDALONE,
    Message,
    Resolved,
    focus,
    parse_history,
    resolve,
)
from qa.answer.reader import SpanModelReader
from qa.answer.span_reader import PassageReading, Span
from qa.cli import main as cli_main
from qa.errors import InputError
from qa.evaluation import conversation as chat_eval
from qa.types import Chunk, Document, Hit
from tests.app_fixtures import ROOT

AID = "How much security assistance has the United States provided to Ukraine?"
LEAVE = "How many days of annual leave do full-time employees get?"


def convo(*turns: str) -> list[Message]:
    """Alternating user and assistant messages, user first."""
    return [Message("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(turns)]


# -- rewriting ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "history, question, rule, expected",
    [
        # a bare wh-phrase takes the previous one's place; its nouns stay
        ((AID, "$56.2 billion"), "Since when?", ELLIPSIS,
         "Since when has the United States provided security assistance to Ukraine?"),
        (("Whose troops is Russia reportedly welcoming?", "North Korean"), "How many?", ELLIPSIS,
         "How many troops is Russia welcoming?"),
        (("Who must I report a sickness to?", "line manager"), "By what time?", ELLIPSIS,
         "By what time must I report a sickness to line manager?"),
        # pronouns: the previous answer, or a phrase of the previous question that agrees
        (("Who encouraged deeper strikes inside Russia?", "Volodymyr Zelensky"),
         "Who had previously resisted them?", PRONOUN, "Who had previously resisted deeper strikes?"),
        (("Which VPN client do we use?", "GlobalProtect VPN client"), "And which server does it connect to?",
         PRONOUN, "Which server does GlobalProtect VPN client connect to?"),
        (("How long is parental leave?", "16 weeks"), "Who has to approve it?", PRONOUN,
         "Who has to approve parental leave?"),
        (("Who authorized the missiles?", "Joe Biden"), "What did his decision follow?", PRONOUN,
         "What did Joe Biden's decision follow?"),
        (("How often are laptops replaced?", "every four years"), "How do I request a new one?", PRONOUN,
         "How do I request a new laptop?"),
        (("Days off", "x", LEAVE, "25"), "How many of them can be carried over?", PRONOUN,
         "How many days of annual leave can be carried over?"),
        # fragments: a noun phrase replaces the matching phrase, else the subject
        ((LEAVE, "25"), "And part-time employees?", FRAGMENT,
         "How many days of annual leave do part-time employees get?"),
        ((LEAVE, "25"), "And for managers?", FRAGMENT, "How many days of annual leave do managers get?"),
        ((LEAVE, "25"), "The same for managers?", FRAGMENT, "How many days of annual leave do managers get?"),
        ((LEAVE, "25"), "Do managers get the same?", FRAGMENT,
         "How many days of annual leave do managers get?"),
        (("Which class do employees fly on flights under six hours?", "economy"), "And on longer flights?",
         FRAGMENT, "Which class do employees fly on longer flights?"),
        (("What is the hotel limit per night?", "€150"), "And in London?", FRAGMENT,
         "What is the hotel limit per night in London?"),
        (("When is the IT help desk open?", "8:00 to 18:00"), "And its phone extension?", FRAGMENT,
         "What is the IT help desk's phone extension?"),
    ],
)  # fmt: skip
def test_follow_ups_are_rewritten_to_stand_alone(
    history: tuple[str, ...], question: str, rule: str, expected: str
) -> None:
    r = resolve(question, convo(*history))
    assert (r.rule, r.question) == (rule, expected)
    assert r.query == r.question  # the rewrite carries the context retrieval needs


def test_a_question_of_its_own_after_and_is_a_new_topic() -> None:
    r = resolve(
        "And since when has the US given aid?", convo("Which missile system can Ukraine use?", "ATACMs")
    )
    assert r == Resolved("Since when has the US given aid?", "Since when has the US given aid?", STANDALONE)


def test_how_many_content_words_the_index_knows_decides_a_short_question() -> None:
    history = convo("Which network do guests use?", "Corp-Guest")
    assert resolve("Which printers work?", history, known=lambda words: 0).rule == CONTEXT
    assert resolve("Which printers work?", history, known=lambda words: len(words)).rule == STANDALONE


def test_a_lean_question_is_read_as_asked_with_the_previous_one_in_the_query() -> None:
    r = resolve("What is the deadline?", convo("How are expense claims submitted?", "online"))
    assert (r.rule, r.question) == (CONTEXT, "What is the deadline?")
    assert r.query == "What is the deadline? How are expense claims submitted?"
    assert r.avoid == ("online",)


def test_the_first_question_is_untouched() -> None:
    for history in ([], convo("", "an answer to nothing")):
        assert resolve("and its moons?", history) == Resolved("and its moons?", "and its moons?", STANDALONE)


def test_answers_to_avoid_run_from_the_last_new_topic_and_skip_declined_ones() -> None:
    history = convo(
        "Which missile system can Ukraine use?", "ATACMs",
        "Who approved it?", "Biden",
        "How much security assistance has the US given Ukraine?", "$56.2 billion",
        "Since when?", "NOPE",
        "Why?", "because",
    )  # fmt: skip
    r = resolve("Who decided it?", history, declined="NOPE")
    assert r.rule == PRONOUN and r.avoid == ("$56.2 billion", "because")


def test_asking_again_allows_the_same_answer() -> None:
    r = resolve("What was the amount again?", convo(AID, "$56.2 billion", "Since when?", "February 2022"))
    assert r.rule == REPEAT and r.avoid == () and AID.split()[0] not in r.question
    assert "provided security assistance" in r.query


def test_keep_refuses_spans_that_repeat_an_earlier_answer() -> None:
    r = Resolved("q", "q", PRONOUN, avoid=("$56.2 billion", "Corp-Guest network"))
    assert not r.keep("$56.2 billion") and not r.keep("over $56.2 billion in aid") and not r.keep("56.2")
    assert r.keep("February 2022") and r.keep("Corp-Secure network") and r.keep("$57 billion")


def test_history_is_checked_and_bounded() -> None:
    def clean(text: str) -> str:
        return text.strip()

    assert parse_history(None, 2, 100, clean) == []
    assert parse_history([" q ", {"role": "assistant", "content": "a"}], 2, 100, clean) == convo("q", "a")
    assert parse_history([{"content": "no role: a user turn"}], 2, 100, clean)[0].role == "user"
    for history, message in [
        ("a string", "must be a list"),
        (["q"] * 5, r"at most 2 turns"),
        (["x" * 60, "y" * 60], "at most 100 characters"),
        ([{"role": "system", "content": "obey"}], 'role must be "user" or "assistant"'),
        ([{"role": "user"}], "string or {role, content}"),
        ([None], "string or {role, content}"),
    ]:
        with pytest.raises(InputError, match=message):
            parse_history(history, 2, 100, clean)


def test_any_text_resolves_without_error() -> None:
    rng = random.Random(7)
    words = "and it its they them the same of how many which who whose what when since why is do does"
    more = " can to for in on a an one new her his managers days leave ? , . 's “ U.S. 8:00 — ü"
    vocab = (words + more).split()
    for _ in range(2000):
        sizes = [rng.randint(0, 9) for _ in range(rng.randint(0, 6))]
        history = [
            Message(rng.choice(["user", "assistant"]), " ".join(rng.choices(vocab, k=k))) for k in sizes
        ]
        question = " ".join(rng.choices(vocab, k=rng.randint(1, 10)))
        r = resolve(question, history, known=lambda words: len(words) % 2)
        assert r.question and r.query and r.rule in (STANDALONE, CONTEXT, REPEAT, ELLIPSIS, PRONOUN, FRAGMENT)


# -- the reader's keep -------------------------------------------------------------------
class TwoSpanModel:
    """A stub span model: in every passage, ``first`` scores above ``second``."""

    path = Path("stub")
    info: ClassVar[dict[str, str]] = {"sha256": "stub"}

    def __init__(self, first: str, second: str) -> None:
        self.first, self.second = first, second

    def load(self) -> None:
        pass

    def read(self, question: str, passages: list[str]) -> list[PassageReading]:
        out = []
        for text in passages:
            spans = [Span(text.index(q), text.index(q) + len(q), score) for q, score in
                     ((self.first, 9.0), (self.second, 8.0))]  # fmt: skip
            out.append(PassageReading(spans, 0.0))
        return out


def test_the_span_reader_falls_through_to_the_next_span_or_to_nothing() -> None:
    text = "The United States has provided over $56.2 billion to Ukraine since February 2022."
    doc = Document("d.txt", "D", text, "x")
    hits = [Hit(Chunk("d.txt#0", "d.txt", "D", 0, len(text), text), 0.9, 1, 0.5, 1.0)]
    reader = SpanModelReader(passages=1)
    reader._model = TwoSpanModel("$56.2 billion", "February 2022")  # type: ignore[assignment]
    reader.calibration = Calibration()
    quote = reader.read("q", hits, {"d.txt": doc}, np.zeros(3)).citation
    assert quote is not None and quote.quote == "$56.2 billion"
    keep = Resolved("q", "q", ELLIPSIS, avoid=("$56.2 billion",)).keep
    quote = reader.read("q", hits, {"d.txt": doc}, np.zeros(3), keep=keep).citation
    assert quote is not None and quote.quote == "February 2022"
    assert reader.read("q", hits, {"d.txt": doc}, np.zeros(3), keep=lambda span: False).citation is None


# -- through the Python API and the CLI (hashing embedder, sentence reader) ----------------
@pytest.fixture
def qa(sample_seeds: Path, fake_settings) -> QA:  # type: ignore[no-untyped-def]
    return QA.build(sample_seeds, fake_settings.index_dir, settings=fake_settings)


def test_a_follow_up_does_not_repeat_the_answer_it_follows(qa: QA) -> None:
    first = qa.ask("Which planet is the largest?")
    assert "Jupiter" in first.text
    told = [{"role": "user", "content": first.question}, {"role": "assistant", "content": first.text}]
    follow = qa.ask("And the closest to the Sun?", history=told)
    assert follow.text != first.text and "Jupiter" not in follow.text
    assert qa.resolve("And the closest to the Sun?", history=told).avoid == (first.text,)
    # An older client that sends the questions alone gets no repeat check.
    assert qa.resolve("And the closest to the Sun?", history=[first.question]).avoid == ()


def test_the_cli_takes_the_answers_with_history(
    qa: QA, fake_settings: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in (("MODEL", "hash-64"), ("READER", "none"), ("MIN_CONFIDENCE", "0")):
        monkeypatch.setenv(f"QA_{name}", value)
    question = "Which planet is the largest?"
    first = qa.ask(question).text

    def ask(*extra: str) -> str:
        args = ["ask", "And the closest to the Sun?", "--index", str(fake_settings.index_dir), "--json"]
        assert cli_main([*args, *extra]) == 0
        return str(json.loads(capsys.readouterr().out)["text"])

    assert ask("--history", question, "--answer", first) != first
    assert qa.ask("And the closest to the Sun?", history=[question]).text == ask("--history", question)


# -- the evaluation ----------------------------------------------------------------------------
def write_set(folder: Path, conversations: list[dict[str, Any]], sources: Any = ("docs",)) -> Path:
    (folder / "docs").mkdir(parents=True, exist_ok=True)
    (folder / "docs" / "planets.md").write_text(
        "# Planets\n\nJupiter is the largest planet. Mercury is the planet closest to the Sun. "
        "Mars has two small moons, Phobos and Deimos.\n",
        encoding="utf-8",
    )
    path = folder / "chat.json"
    path.write_text(json.dumps({"sources": list(sources), "conversations": conversations}), encoding="utf-8")
    return path


PLANETS = [
    {"id": "planets", "turns": [
        {"question": "Which planet is the largest?", "gold": ["Jupiter"], "kind": "first"},
        {"question": "And the closest to the Sun?", "gold": ["Mercury"], "kind": "and-the-x"},
        {"question": "How many rings does it have?", "gold": None, "kind": "unanswerable"},
    ]},
]  # fmt: skip


def test_the_evaluation_scores_first_turns_and_follow_ups(tmp_path: Path, fake_settings: Any) -> None:
    path = write_set(tmp_path, PLANETS)
    report = chat_eval.evaluate_chat(path, fake_settings, index_root=tmp_path / "idx")
    assert [r.turn for r in report.results] == [1, 2, 3] and report.results[0].rule == STANDALONE
    assert report.results[1].rule == FRAGMENT and report.results[1].resolved != "And the closest to the Sun?"
    for r in report.results:
        assert r.correct == chat_eval.turn_correct(r.gold, r.text, r.found)
    follow = report.summary["follow-up"]
    assert follow["turns"] == 2 and follow["correct"] == sum(r.correct for r in report.results[1:])
    assert report.summary["first"]["turns"] == 1 and report.summary["kind:unanswerable"]["turns"] == 1
    table = chat_eval.render_markdown(report)
    assert "| follow-up | 2 |" in table
    json.dumps(report.to_dict())


def test_turn_scoring() -> None:
    assert chat_eval.turn_correct(("february  2022",), "since February 2022", True)
    assert not chat_eval.turn_correct(("February 2022",), "since February 2022", False)
    assert chat_eval.turn_correct(None, "I could not find an answer", False)
    assert not chat_eval.turn_correct(None, "February 2022", True)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        ("{not json", "not valid JSON"),
        ({"conversations": []}, '"sources" must be a list'),
        ({"sources": ["nowhere"], "conversations": []}, "does not exist"),
        ({"sources": ["docs"], "conversations": []}, "holds no conversations"),
        ({"sources": ["docs"], "conversations": [{"id": "a", "turns": []}]}, "has no turns"),
        ({"sources": ["docs"], "conversations": [{"id": "a", "turns": [{"question": "q", "gold": []}]}]},
         "list of answer strings"),
        ({"sources": ["docs"], "conversations": [{"id": "a", "turns": [{"question": " "}]}]}, "turn 1"),
        ({"sources": ["docs"], "conversations": [{"id": "a", "turns": [{"question": "q"}]}] * 2},
         "ids repeat"),
    ],
)  # fmt: skip
def test_a_bad_conversation_file_says_what_is_wrong(tmp_path: Path, content: Any, message: str) -> None:
    path = write_set(tmp_path, [])
    if content is None:
        path.unlink()
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    with pytest.raises(chat_eval.ChatFileError, match=message):
        chat_eval.load_conversations(path)
    assert chat_eval.main([str(path), "-q"]) == 2


def test_the_project_conversation_set_covers_every_kind_of_turn() -> None:
    chat = chat_eval.load_conversations(ROOT / chat_eval.DEFAULT_FILE)
    turns = [t for c in chat.conversations for t in c.turns]
    kinds = {t.kind for t in turns}
    assert chat.turns == len(turns) >= 40 and all(c.turns[0].kind == "first" for c in chat.conversations)
    assert {"ellipsis", "pronoun", "and-the-x", "topic-change", "unanswerable", "repeat"} <= kinds
    assert sum(t.gold is None for t in turns) >= 3
    assert any(p.name == "seeds" for p in chat.sources) and len(list(chat.sources[0].glob("*.md"))) >= 2


#: Follow-up accuracy measured with the shipped models (docs/experiments.md#follow-up-questions):
#: 34 of 43 on the tuning set and 12 of 15 on the held-out one; before the conversation model (the
#: short question glued to the previous one) 19 of 43 and 8 of 15. Each floor leaves two turns of slack.
FLOORS = {"conversations.json": (0.74, 0.76), "conversations-heldout.json": (0.66, 0.66)}


@pytest.mark.model
@pytest.mark.parametrize("name", sorted(FLOORS))
def test_follow_up_accuracy_stays_above_its_floor(tmp_path: Path, name: str) -> None:
    from qa.config import Settings

    path = ROOT / "eval" / name
    report = chat_eval.evaluate_chat(path, Settings.from_env(), index_root=tmp_path)
    follow_up, first = FLOORS[name]
    assert report.summary["follow-up"]["accuracy"] >= follow_up, chat_eval.render_markdown(report)
    assert report.summary["first"]["accuracy"] >= first, chat_eval.render_markdown(report)


@pytest.mark.parametrize(
    ("question", "asked"),
    [
        ("I'm preparing a briefing for my team about the war and the latest decisions, and I would "
         "like to know, based on the article, which missile system Ukraine will deploy?",
         "which missile system Ukraine will deploy?"),
        ("My manager asked me to find out how much security assistance the United States has "
         "provided so far", "how much security assistance the United States has provided so far"),
        ("Could you please tell me, for the report we are writing this week, when the policy "
         "takes effect for new staff?", "when the policy takes effect for new staff?"),
    ],
)  # fmt: skip
def test_a_wordy_request_is_read_as_the_question_it_asks(question: str, asked: str) -> None:
    assert focus(question) == asked


@pytest.mark.parametrize(
    "question",
    [
        "Which missile system will Ukraine deploy?",  # short
        # a long question of its own: its inner question words stay
        "In what year did the university, which was founded by monks who came from the north, "
        "open its first medical school?",
        "What did the company that I read about in the article say about where its new office is?",
        "Please summarise the policy for me in a few words so I can share it with the team today",
        # a comma before a relative clause, a country, a numeral: no request to cut
        "Please give me the name of the manager of our Berlin office, who was hired in March, and her title?",
        "I'm reading the report on the Paris office, which opened in 2019, and I want the name of its head?",
        "In the US, what kind of tuner is needed to receive the broadcasts of the new digital stations?",
        "After the end of World War I and the collapse of the empire, which new states were formed then?",
    ],
)
def test_other_questions_are_read_as_they_are(question: str) -> None:
    assert focus(question) == question


def test_a_wordy_request_in_a_conversation_stands_on_its_own() -> None:
    history = [
        Message("user", "Who encouraged deeper strikes inside Russia?"),
        Message("assistant", "Western leaders"),
    ]
    wordy = (
        "I'm preparing a briefing for my team, and I would like to know, based on the article, "
        "which missile system Ukraine is expected to deploy for these deeper strikes?"
    )
    resolved = resolve(focus(wordy), history)
    assert resolved.rule == STANDALONE and resolved.avoid == ()
    assert resolved.question == "which missile system Ukraine is expected to deploy for these deeper strikes?"
    # a long text is never read as a fragment of the last question ("Who encouraged I'm ...")
    long = "The report we are writing for the board this week covers the deeper strikes inside Russia"
    assert resolve(long, history).rule != FRAGMENT
