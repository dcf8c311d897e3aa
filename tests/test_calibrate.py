"""The calibration fit (training/calibrate.py) on synthetic rows: no model, no data files."""

from __future__ import annotations

import json
import logging
import math
import random
from pathlib import Path

import pytest

from qa.calibration import Calibration
from qa.errors import ModelError
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


def test_answerable_questions_without_a_reader_answer_count_against_the_rate() -> None:
    data = rows(600, 1)
    for r in data[:60]:  # 20% of the 200 answerable rows cite nothing
        if r["label"] == 1:
            r["features"] = {}
    weights, bias = calibrate.fit_with_threshold(data, 0.9)
    assert math.isfinite(bias)
    answered = [calibrate.logit(weights, bias, r["features"]) >= 0 for r in data]
    assert 0.86 <= calibrate.rates(data, answered)["answered_answerable"] <= 0.91


def test_calibration_file_checks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "calibration.json").write_text(
        json.dumps({"weights": {"margin": 1.0}, "bias": 0.5, "reader_sha256": "abc", "dense_weight": 0.5})
    )
    with caplog.at_level(logging.WARNING, logger="qa"):
        assert Calibration.load(tmp_path, "abc", 0.5).weights == {"margin": 1.0}
        assert not caplog.records
        Calibration.load(tmp_path, "other", 0.5)
        Calibration.load(tmp_path, "abc", 0.7)
    assert "other reader weights" in caplog.records[0].getMessage()
    assert "dense_weight" in caplog.records[1].getMessage()
    (tmp_path / "calibration.json").write_text('{"weights": {"margin": 1.0}, "bias": Infinity}')
    with pytest.raises(ModelError, match="non-finite"):
        Calibration.load(tmp_path)


def test_shipped_reader_names_its_held_out_articles() -> None:
    from qa.evaluate import heldout_articles

    titles = heldout_articles()
    assert len(titles) >= 3 and all(isinstance(t, str) and t for t in titles)
