"""Scores for ``qa eval``: SQuAD answer metrics, retrieval ranks, abstention and its threshold curve.

Pure functions over plain values: nothing here loads a model or touches an index,
so every number ``qa eval`` reports can be checked by hand in a unit test.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

#: The kinds of question an outcome can be (see ``Outcome.kind``).
ANSWERABLE, UNANSWERABLE, UNINDEXED = "answerable", "unanswerable", "unindexed"

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


# -- answers (SQuAD's official evaluation script, v1.1 and v2.0) ---------------------------
def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer, else 0.0."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in golds))


def f1_score(prediction: str, golds: Sequence[str]) -> float:
    """The best token F1 of ``prediction`` against any of ``golds`` (0.0 without golds)."""
    return max((_f1(prediction, g) for g in golds), default=0.0)


def _f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        # SQuAD v2.0: an empty gold answer matches only an empty prediction.
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def contains_answer(text: str, golds: Sequence[str]) -> bool:
    """Whether any non-empty normalised gold answer occurs in the normalised ``text``."""
    # Padding with spaces keeps "10" from matching inside "2010".
    haystack = f" {normalize_answer(text)} "
    return any((needle := normalize_answer(g)) and f" {needle} " in haystack for g in golds)


# -- retrieval ------------------------------------------------------------------------
def unique_in_order(items: Iterable[str]) -> list[str]:
    """``items`` without repeats, first occurrence kept (hits are chunks; docs repeat)."""
    return list(dict.fromkeys(items))


def gold_rank(ranked: Sequence[str], gold: str) -> int | None:
    """1-based rank of ``gold`` among the distinct ``ranked`` ids, or None when absent."""
    for rank, item in enumerate(unique_in_order(ranked), 1):
        if item == gold:
            return rank
    return None


def recall_at_k(ranked: Sequence[str], gold: str, k: int) -> float:
    """1.0 when ``gold`` is among the first ``k`` distinct ids of ``ranked``, else 0.0."""
    rank = gold_rank(ranked, gold)
    return float(rank is not None and rank <= k)


def mrr_at_k(ranked: Sequence[str], gold: str, k: int) -> float:
    """Reciprocal rank of ``gold`` among the first ``k`` distinct ids, 0.0 beyond ``k``."""
    rank = gold_rank(ranked, gold)
    return 1.0 / rank if rank is not None and rank <= k else 0.0


# -- abstention --------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """One asked question, reduced to what the threshold curve needs.

    ``score`` is the answer's confidence, or None when the reader cited nothing (then
    the question is declined at every threshold). ``f1``/``em`` score the answer the
    reader would show if it were not declined; they matter for answerable questions only.
    """

    kind: str  # ANSWERABLE, UNANSWERABLE or UNINDEXED
    score: float | None
    f1: float = 0.0
    em: float = 0.0


def answered(outcome: Outcome, threshold: float) -> bool:
    """Whether the app shows an answer at ``threshold`` (``found`` is score >= threshold)."""
    return outcome.score is not None and outcome.score >= threshold


def answered_rate(outcomes: Sequence[Outcome], threshold: float, kind: str = ANSWERABLE) -> float | None:
    """Share of the ``kind`` questions answered at ``threshold``; None when there are none."""
    group = [o for o in outcomes if o.kind == kind]
    return sum(answered(o, threshold) for o in group) / len(group) if group else None


def declined_rate(outcomes: Sequence[Outcome], threshold: float, kind: str) -> float | None:
    """Share of the ``kind`` questions declined at ``threshold``; None when there are none."""
    rate = answered_rate(outcomes, threshold, kind)
    return None if rate is None else 1.0 - rate


@dataclass(frozen=True)
class CurvePoint:
    """The abstention trade-off at one confidence threshold."""

    threshold: float
    answered_answerable: float | None
    declined_unanswerable: float | None
    declined_unindexed: float | None
    f1_answered: float | None  # mean F1 over the answerable questions that were answered
    f1: float | None  # mean F1 over all answerable questions, a declined one scoring 0
    exact_match: float | None


def thresholds(step: float = 0.05) -> list[float]:
    """0.0, step, ..., 1.0 (rounded, so 0.3 is exactly 0.3 and matches a setting)."""
    n = round(1.0 / step)
    return [round(i * step, 4) for i in range(n + 1)]


def threshold_curve(outcomes: Sequence[Outcome], points: Sequence[float] | None = None) -> list[CurvePoint]:
    """The abstention trade-off at each threshold, computed from the scores (no re-asking)."""
    curve = []
    answerable = [o for o in outcomes if o.kind == ANSWERABLE]
    for t in thresholds() if points is None else points:
        shown = [o for o in answerable if answered(o, t)]
        curve.append(
            CurvePoint(
                threshold=t,
                answered_answerable=answered_rate(outcomes, t, ANSWERABLE),
                declined_unanswerable=declined_rate(outcomes, t, UNANSWERABLE),
                declined_unindexed=declined_rate(outcomes, t, UNINDEXED),
                f1_answered=mean(o.f1 for o in shown),
                f1=sum(o.f1 for o in shown) / len(answerable) if answerable else None,
                exact_match=sum(o.em for o in shown) / len(answerable) if answerable else None,
            )
        )
    return curve


# -- summaries ---------------------------------------------------------------------
def mean(values: Iterable[float]) -> float | None:
    """Arithmetic mean, or None for no values (a metric with nothing to count is not 0)."""
    items = list(values)
    return sum(items) / len(items) if items else None


def median_p95(values: Sequence[float]) -> tuple[float, float]:
    """Median and 95th percentile (linear interpolation); (0.0, 0.0) for no values."""
    if not values:
        return 0.0, 0.0
    med, p95 = np.percentile(np.asarray(values, dtype=np.float64), [50, 95])
    return float(med), float(p95)
