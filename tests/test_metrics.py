"""qa.evaluation.metrics: every number checked against a value worked out by hand."""

from __future__ import annotations

import pytest

from qa.evaluation import metrics
from qa.evaluation.metrics import ANSWERABLE, UNANSWERABLE, UNINDEXED, Outcome


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("The Denver Broncos!", "denver broncos"),
        ("  an   apple, a pear ", "apple pear"),
        ("Theatre of the Absurd", "theatre of absurd"),  # "the" only as a whole word
        ("U.S.-based", "usbased"),
        ("A", ""),
        ("", ""),
    ],
)
def test_normalize_answer(text: str, normal: str) -> None:
    assert metrics.normalize_answer(text) == normal


def test_exact_match_takes_the_best_gold() -> None:
    assert metrics.exact_match("the Broncos", ["Denver Broncos", "Broncos"]) == 1.0
    assert metrics.exact_match("Denver", ["Denver Broncos"]) == 0.0
    assert metrics.exact_match("anything", []) == 0.0


def test_f1_partial_overlap() -> None:
    # pred {denver, broncos, won}, gold {denver, broncos}: P = 2/3, R = 1, F1 = 0.8
    assert metrics.f1_score("Denver Broncos won", ["the Denver Broncos"]) == pytest.approx(0.8)
    # pred {carolina}, gold {denver, broncos}: no overlap
    assert metrics.f1_score("Carolina", ["Denver Broncos"]) == 0.0
    # best over golds: 0.8 against the first, 1.0 against the second
    assert metrics.f1_score("Denver Broncos won", ["Denver Broncos", "Broncos won Denver"]) == 1.0
    # repeated tokens count per occurrence: pred [x x y], gold [x y]: common 2, P 2/3, R 1
    assert metrics.f1_score("x x y", ["x y"]) == pytest.approx(0.8)


def test_f1_empty_cases() -> None:
    assert metrics.f1_score("", ["Denver"]) == 0.0
    assert metrics.f1_score("Denver", []) == 0.0
    assert metrics.f1_score("the", ["a"]) == 1.0  # both normalise to nothing (SQuAD v2.0 rule)


def test_contains_answer_respects_word_bounds() -> None:
    sentence = "The game was played on February 7, 2016, in Santa Clara."
    assert metrics.contains_answer(sentence, ["February 7, 2016"])
    assert metrics.contains_answer(sentence, ["nowhere", "santa clara"])
    assert not metrics.contains_answer(sentence, ["201"])  # inside a word
    assert not metrics.contains_answer(sentence, ["the", ""])  # empty after normalisation


def test_recall_and_mrr_dedupe_documents() -> None:
    ranked = ["a", "a", "b", "c", "b", "gold", "d"]  # distinct: a b c gold d -> gold at rank 4
    assert metrics.unique_in_order(ranked) == ["a", "b", "c", "gold", "d"]
    assert metrics.gold_rank(ranked, "gold") == 4
    assert metrics.recall_at_k(ranked, "gold", 1) == 0.0
    assert metrics.recall_at_k(ranked, "gold", 3) == 0.0
    assert metrics.recall_at_k(ranked, "gold", 4) == 1.0
    assert metrics.mrr_at_k(ranked, "gold", 10) == 0.25
    assert metrics.mrr_at_k(ranked, "gold", 3) == 0.0
    assert metrics.gold_rank(ranked, "missing") is None
    assert metrics.recall_at_k([], "gold", 10) == 0.0
    assert metrics.mrr_at_k(["gold"], "gold", 10) == 1.0


def _outcomes() -> list[Outcome]:
    return [
        Outcome(ANSWERABLE, 0.9, f1=1.0, em=1.0),
        Outcome(ANSWERABLE, 0.5, f1=0.5),
        Outcome(ANSWERABLE, 0.2, f1=0.0),
        Outcome(ANSWERABLE, None),  # no citation: declined at every threshold
        Outcome(UNANSWERABLE, 0.6),
        Outcome(UNANSWERABLE, 0.1),
        Outcome(UNINDEXED, 0.35),
    ]


def test_abstention_rates() -> None:
    out = _outcomes()
    assert metrics.answered_rate(out, 0.3) == 0.5  # 0.9 and 0.5 of four answerable
    assert metrics.answered_rate(out, 0.0) == 0.75  # None stays declined
    assert metrics.declined_rate(out, 0.3, UNANSWERABLE) == 0.5
    assert metrics.declined_rate(out, 0.7, UNANSWERABLE) == 1.0
    assert metrics.declined_rate(out, 0.35, UNINDEXED) == 0.0  # score >= threshold is answered
    assert metrics.declined_rate(out, 0.4, UNINDEXED) == 1.0
    assert metrics.declined_rate([Outcome(ANSWERABLE, 1.0)], 0.3, UNINDEXED) is None


def test_threshold_curve() -> None:
    curve = metrics.threshold_curve(_outcomes(), [0.0, 0.3, 0.95])
    zero, app, high = curve
    assert zero.threshold == 0.0
    assert zero.answered_answerable == 0.75
    assert zero.declined_unanswerable == 0.0
    assert zero.f1_answered == pytest.approx(0.5)  # (1 + 0.5 + 0) / 3
    assert zero.f1 == pytest.approx(0.375)  # 1.5 / 4
    assert zero.exact_match == 0.25
    assert app.answered_answerable == 0.5
    assert app.declined_unanswerable == 0.5
    assert app.declined_unindexed == 0.0
    assert app.f1_answered == pytest.approx(0.75)
    assert app.f1 == pytest.approx(0.375)
    assert high.answered_answerable == 0.0
    assert high.f1_answered is None
    assert high.f1 == 0.0
    assert high.declined_unanswerable == 1.0


def test_default_thresholds() -> None:
    points = metrics.thresholds()
    assert len(points) == 21
    assert points[0] == 0.0 and points[-1] == 1.0
    assert 0.3 in points and 0.05 in points


def test_summaries() -> None:
    assert metrics.mean([]) is None
    assert metrics.mean([1.0, 0.0, 0.5]) == 0.5
    assert metrics.median_p95([]) == (0.0, 0.0)
    med, p95 = metrics.median_p95([float(i) for i in range(1, 101)])  # 1..100
    assert med == pytest.approx(50.5)
    assert p95 == pytest.approx(95.05)
