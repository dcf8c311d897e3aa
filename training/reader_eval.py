"""Held-out scores of a reader: SQuAD EM/F1 with the gold paragraph, with a distractor, and speed."""

from __future__ import annotations

import collections
import re
import string
import time
from typing import Any

import numpy as np

from qa.answer.span_reader import PassageReading, SpanReader
from training.reader_data import bm25_distractors


def normalize_answer(s: str) -> str:
    """SQuAD official normalisation: lower, drop punctuation and articles, squeeze spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def f1_score(pred: str, gold: str) -> float:
    """SQuAD token F1 of ``pred`` against ``gold``, both normalised."""
    p, g = normalize_answer(pred).split(), normalize_answer(gold).split()
    common = collections.Counter(p) & collections.Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    prec, rec = same / len(p), same / len(g)
    return 2 * prec * rec / (prec + rec)


def em_score(pred: str, gold: str) -> float:
    """1.0 when ``pred`` and ``gold`` are equal once normalised, else 0.0."""
    return float(normalize_answer(pred) == normalize_answer(gold))


def score(pred: str, golds: list[str]) -> tuple[float, float]:
    """(EM, F1) of ``pred`` against its best gold answer."""
    if not golds:  # unanswerable: right iff empty
        v = float(pred == "")
        return v, v
    return max(em_score(pred, g) for g in golds), max(f1_score(pred, g) for g in golds)


def question_scores(
    reader: SpanReader, questions: list[dict[str, Any]]
) -> tuple[list[tuple[float, float]], float]:
    """Per question (EM, F1) with the gold paragraph given (the best non-null span is the
    prediction), and the seconds the reading took."""
    t0 = time.perf_counter()
    readings = reader.read_pairs([(q["question"], q["context"]) for q in questions])
    secs = time.perf_counter() - t0
    out = []
    for q, r in zip(questions, readings, strict=True):
        pred = q["context"][r.spans[0].start : r.spans[0].end] if r.spans else ""
        out.append(score(pred, q["golds"]))
    return out, secs


def summarise(scores: list[tuple[float, float]], secs: float) -> dict[str, float]:
    """EM and F1 in % over ``scores``, their count, and the ms per passage of a read taking ``secs``."""
    n = len(scores)
    return {
        "em": round(100 * sum(e for e, _ in scores) / n, 2),
        "f1": round(100 * sum(f for _, f in scores) / n, 2),
        "n": n,
        "ms_per_passage_batched": round(1000 * secs / n, 2),
    }


def evaluate(reader: SpanReader, questions: list[dict[str, Any]]) -> dict[str, float]:
    """EM/F1 with the gold paragraph given; the best non-null span is the prediction."""
    if not questions:
        return {"em": float("nan"), "f1": float("nan"), "n": 0}
    return summarise(*question_scores(reader, questions))


def choose_passages(
    questions: list[dict[str, Any]],
    pairs: list[tuple[str, str]],
    owners: list[int],
    readings: list[PassageReading],
) -> dict[str, dict[str, float]]:
    """Each question's answer taken from the passage whose best span has the highest margin, or
    the highest span score (comparable across passages only if the reader learnt so): EM/F1 of
    that span and the share of questions whose gold paragraph was chosen. A tie goes to the
    passage that is not the gold one, so ties never flatter the choice."""
    out: dict[str, dict[str, float]] = {}
    for name, key in (
        ("by_margin", lambda r: r.spans[0].score - r.null_score),
        ("by_span", lambda r: r.spans[0].score),
    ):
        best: dict[int, tuple[float, str, bool]] = {}
        for (_, passage), o, r in zip(pairs, owners, readings, strict=True):
            if not r.spans:
                continue
            is_gold = passage == questions[o]["context"]
            if o not in best or key(r) > best[o][0] or (key(r) == best[o][0] and not is_gold):
                s = r.spans[0]
                best[o] = (key(r), passage[s.start : s.end], is_gold)
        em = f1 = gold = 0.0
        for o, q in enumerate(questions):
            _, pred, chosen = best.get(o, (0.0, "", False))
            e, f = score(pred, q["golds"])
            em, f1, gold = em + e, f1 + f, gold + chosen
        n = max(1, len(questions))
        out[name] = {
            "em": round(100 * em / n, 2),
            "f1": round(100 * f1 / n, 2),
            "gold_passage_chosen": round(100 * gold / n, 2),
        }
    return out


def evaluate_with_distractor(
    reader: SpanReader, questions: list[dict[str, Any]], paras: list[str]
) -> dict[str, float]:
    """Gold paragraph + top BM25 held-out distractor; choose by span score minus null score
    (``choose_passages``: a tie goes to the distractor)."""
    if not questions:
        return {"em": float("nan"), "f1": float("nan"), "n": 0}
    dis = bm25_distractors([q["question"] for q in questions], [q["context"] for q in questions], paras)
    pairs, owners = [], []
    for qi, (q, d) in enumerate(zip(questions, dis, strict=True)):
        for p in [q["context"], *d]:
            pairs.append((q["question"], p))
            owners.append(qi)
    chosen = choose_passages(questions, pairs, owners, reader.read_pairs(pairs))["by_margin"]
    return {**chosen, "n": len(questions)}


def time_per_passage(reader: SpanReader, questions: list[dict[str, Any]], n: int = 100) -> float:
    """Median ms to read one (question, gold paragraph) pair alone, on the current threads."""
    sample = questions[:n]
    if not sample:
        return float("nan")
    reader.read(sample[0]["question"], [sample[0]["context"]])  # warm up
    times = []
    for q in sample:
        t0 = time.perf_counter()
        reader.read(q["question"], [q["context"]])
        times.append(1000 * (time.perf_counter() - t0))
    return round(float(np.median(times)), 2)
