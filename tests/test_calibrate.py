"""The calibration fit (training/calibrate.py) on synthetic rows: no model, no data files."""

from __future__ import annotations

import random

from qa.calibration import Calibration
from training import calibrate


def rows(n: int, seed: int) -> list[dict]:  # type: ignore[type-arg]
    """Answerable questions get a higher margin and cosine than declined ones, with noise."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = ("answerable", "unanswerable", "unindexed")[i % 3]
        good = kind == "answerable"
        feats = {
            "margin": rng.gauss(4.0 if good else 0.0, 1.5),
            "cosine": rng.gauss(0.6 if good else 0.4, 0.1),
        }
        out.append({"article": f"A{i % 4}", "kind": kind, "label": int(good), "features": feats})
    out.append({"article": "A0", "kind": "answerable", "label": 1, "features": {}})  # cited nothing
    return out


def test_threshold_answers_the_chosen_share_and_separates_the_kinds() -> None:
    data = rows(600, 0)
    weights, bias = calibrate.fit_with_threshold(data, 0.9)
    answered = [calibrate.logit(weights, bias, r["features"]) >= 0 for r in data]
    got = calibrate.rates(data, answered)
    assert 0.88 <= got["answered_answerable"] <= 0.92
    assert got["declined_unanswerable"] > 0.7 and got["declined_unindexed"] > 0.7
    assert weights["margin"] > 0
    # The app's confidence is 0.5 exactly at that threshold.
    cal = Calibration({k: v for k, v in weights.items()}, bias)
    assert all(
        (cal.confidence(r["features"]) >= 0.5) == a
        for r, a in zip(data, answered, strict=True)
        if r["features"]
    )


def test_a_question_that_cites_nothing_is_declined() -> None:
    assert calibrate.logit({"margin": 1.0}, 5.0, {}) == float("-inf")
