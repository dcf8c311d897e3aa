"""The calibration fit (training/calibrate.py) on synthetic rows, and its readings from the real reader."""

from __future__ import annotations

import json
import logging
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qa.answer.calibration import DEFAULT_SELECTION, SELECTION_FEATURES, Calibration
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
        row = {"article": f"A{i % 4}", "kind": kind, "label": int(good), "features": feats}
        out.append({**row, "f1": float(good)})  # every answerable question's span right
    out.append({"article": "A0", "kind": "answerable", "label": 1, "features": {}, "f1": 0.0})  # no span
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


def test_a_confidently_wrong_span_counts_against_the_confidence() -> None:
    """Answerable questions whose chosen span is wrong (F1 0) have a low span score, which
    answerability alone does not predict: fitted on whether the answer is right, its weight is
    positive and those wrong answers are declined far more often than right ones."""
    rng = random.Random(3)
    data = rows(900, 4)
    for r in data:
        if r["features"]:
            r["features"]["span_score"] = rng.gauss(0.0, 1.0)
        if r["label"] == 1 and r["features"] and rng.random() < 0.4:  # a wrong span: low span score
            r["f1"] = 0.0
            r["features"]["span_score"] = rng.gauss(-2.0, 1.0)
    w, b = calibrate.fit_with_threshold(data, 0.9)
    assert w["span_score"] > 0.5

    def declined(f1: float) -> float:
        got = [calibrate.logit(w, b, r["features"]) < 0 for r in data if r["label"] == 1 and r["f1"] == f1]
        return sum(got) / len(got)

    assert declined(0.0) > 2 * declined(1.0)
    with pytest.raises(ValueError, match="right and wrong"):
        calibrate.fit([r for r in data if r["label"] == 0])


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
    from qa.evaluation.evaluate import heldout_articles

    titles = heldout_articles()
    assert len(titles) >= 3 and all(isinstance(t, str) and t for t in titles)


def candidate_rows(n: int, seed: int) -> list[dict]:  # type: ignore[type-arg]
    """Questions with three read passages; the one whose span answers has a higher span score
    and a sentence holding more of the question's words, with noise; rank is uninformative."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        good = rng.randrange(3)
        cands = []
        for j in range(3):
            hit = j == good
            feats = {
                "span_score": rng.gauss(6.0 if hit else 4.0, 1.5),
                "null_score": rng.gauss(0.0, 1.0),
                "cosine": rng.gauss(0.5, 0.1),
                "fused": rng.gauss(0.5, 0.1),
                "rank": float(j + 1),
                "overlap": min(1.0, max(0.0, rng.gauss(0.7 if hit else 0.3, 0.15))),
            }
            feats["margin"] = feats["span_score"] - feats["null_score"]
            cands.append({"features": feats, "f1": 1.0 if hit else 0.0, "gold": hit})
        row = {"article": f"A{i % 4}", "kind": "answerable", "label": 1, "top_cosine": 0.6}
        out.append({**row, "candidates": cands})
    return out


def test_fitted_selection_picks_the_answering_passage_more_often_than_the_default() -> None:
    data = candidate_rows(400, 2)
    selection = calibrate.fit_selection(data)
    assert set(selection) == set(SELECTION_FEATURES)
    assert selection["overlap"] > 0 and selection["span_score"] > 0
    fitted = calibrate.selection_quality(calibrate.choose(data, selection))
    default = calibrate.selection_quality(calibrate.choose(data, DEFAULT_SELECTION))
    assert fitted["gold_passage"] > default["gold_passage"] + 0.1
    assert fitted["f1"] == fitted["gold_passage"]  # f1 is 1 exactly on the gold passage here
    # The chosen row carries the chosen candidate's features, as the reader builds them.
    row = calibrate.choose(data[:1], selection)[0]
    assert row["features"]["top_cosine"] == 0.6 and "overlap" in row["features"]
    # A question whose reader offered nothing keeps no features (declined at any threshold).
    empty = calibrate.choose([{**data[0], "candidates": []}], selection)[0]
    assert empty["features"] == {} and empty["f1"] == 0.0


def test_selection_needs_an_answerable_question_with_a_scoring_span() -> None:
    data = candidate_rows(5, 3)
    for r in data:
        for c in r["candidates"]:
            c["f1"] = 0.0
    with pytest.raises(ValueError, match="no answerable question"):
        calibrate.fit_selection(data)


def test_calibration_file_selection_and_passages(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert Calibration().selection == DEFAULT_SELECTION
    # The default selection is the unfitted rule: span minus no-answer score, 0.3 less per rank.
    assert Calibration().select({"span_score": 5.0, "null_score": 1.0, "rank": 2.0}) == pytest.approx(3.4)
    body = {"weights": {"margin": 1.0}, "bias": 0.0, "read_passages": 4, "embedding_model": "model-a",
            "selection": {"overlap": 2.0, "span_score": 1.0, "unknown": 9.0}}  # fmt: skip
    (tmp_path / "calibration.json").write_text(json.dumps(body))
    cal = Calibration.load(tmp_path)
    assert cal.selection == {"overlap": 2.0, "span_score": 1.0}
    assert cal.select({"overlap": 0.5, "span_score": 3.0}) == pytest.approx(4.0)
    with caplog.at_level(logging.WARNING, logger="qa"):
        cal.check(None, None, 4, "model-a")
        assert not caplog.records
        cal.check(None, None, 3)
        assert "reading 4 passages, not 3" in caplog.records[0].getMessage()
        cal.check(None, None, 4, "model-b")
        assert "embedding model 'model-a', not 'model-b'" in caplog.records[1].getMessage()
    # Written before the read gap existed, it read all its passages: the app's gap is a change.
    assert cal.read_gap == 2.0
    with caplog.at_level(logging.WARNING, logger="qa"):
        caplog.clear()
        cal.check(None, None, 4, "model-a", 0.2)
        assert "within 2.0 of the best, not 0.2" in caplog.records[0].getMessage()
    body["read_gap"] = 0.2
    (tmp_path / "calibration.json").write_text(json.dumps(body))
    cal = Calibration.load(tmp_path)
    assert cal.read_gap == 0.2
    with caplog.at_level(logging.WARNING, logger="qa"):
        caplog.clear()
        cal.check(None, None, 4, "model-a", 0.2)
        assert not caplog.records
        cal.check(None, None, 4, "model-a", 2.0)
        assert "within 0.2 of the best, not 2.0" in caplog.records[0].getMessage()
    body["selection"] = {"overlap": float("nan")}
    (tmp_path / "calibration.json").write_text(json.dumps(body))
    with pytest.raises(ModelError, match="non-finite"):
        Calibration.load(tmp_path)
    body["selection"] = {"overlap": 1.0}
    for gap in (-0.5, 7.0, float("nan")):
        (tmp_path / "calibration.json").write_text(json.dumps({**body, "read_gap": gap}))
        with pytest.raises(ModelError, match="read_gap outside 0-2"):
            Calibration.load(tmp_path)


def test_saved_readings_reload_only_for_the_same_reader_and_retrieval(tmp_path: Path) -> None:
    from qa import Settings

    data = rows(30, 5)
    path = tmp_path / "readings.json"
    calibrate.save_rows(path, data, "sha-a", Settings())
    assert calibrate.load_rows(path, "sha-a", Settings()) == data
    with pytest.raises(ValueError, match="another reader_sha256"):
        calibrate.load_rows(path, "sha-b", Settings())
    with pytest.raises(ValueError, match="another dense_weight"):
        calibrate.load_rows(path, "sha-a", Settings(dense_weight=0.3))
    with pytest.raises(ValueError, match="another overlap_weight"):
        calibrate.load_rows(path, "sha-a", Settings(overlap_weight=0.0))
    with pytest.raises(ValueError, match="another chunk_tokens, read_passages"):
        calibrate.load_rows(path, "sha-a", Settings(chunk_tokens=100, read_passages=2))
    stored = json.loads(path.read_text())
    path.write_text(json.dumps({**stored, "lexical": {"bm25": {"k1": 9.0}}}))
    with pytest.raises(ValueError, match="another lexical"):
        calibrate.load_rows(path, "sha-a", Settings())
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a file of readings"):
        calibrate.load_rows(path, "sha-a", Settings())
    with pytest.raises(ValueError, match="cannot read"):
        calibrate.load_rows(tmp_path / "missing.json", "sha-a", Settings())
    with pytest.raises(ValueError, match="cannot write the readings"):  # its folder is a file
        calibrate.save_rows(path / "readings.json", data, "sha-a", Settings())
    with pytest.raises(ValueError, match="cannot write the readings"):  # checked before reading
        calibrate.check_writable(path / "readings.json")
    with pytest.raises(ValueError, match="cannot write the readings"):
        calibrate.check_writable(tmp_path)
    calibrate.check_writable(tmp_path / "new" / "readings.json")  # a new folder is made
    assert (tmp_path / "new").is_dir()


@pytest.mark.parametrize("name", ["sentence_weight", "overlap_weight"])
def test_calibration_records_the_sentence_and_overlap_weights(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    body = {"weights": {"margin": 1.0}, "bias": 0.0, "dense_weight": 0.65}
    (tmp_path / "calibration.json").write_text(json.dumps(body))
    cal = Calibration.load(tmp_path)
    # fitted before sentence vectors (the chunk's cosine alone) and before the overlap (none)
    assert getattr(cal, name) == 0.0
    with caplog.at_level(logging.WARNING, logger="qa"):
        cal.check(None, 0.65, **{name: 0.0})
        assert not caplog.records
        cal.check(None, 0.65, **{name: 0.75})
        assert f"{name} 0.0, not 0.75" in caplog.records[0].getMessage()
    (tmp_path / "calibration.json").write_text(json.dumps({**body, name: 0.75}))
    cal = Calibration.load(tmp_path)
    assert getattr(cal, name) == 0.75
    with caplog.at_level(logging.WARNING, logger="qa"):
        caplog.clear()
        cal.check(None, 0.65, **{name: 0.75})
        assert not caplog.records
    assert getattr(Calibration(), name) is None  # the hand-set default checks nothing


def test_article_splits_cover_every_split_once() -> None:
    six = [f"A{i}" for i in range(6)]
    splits = calibrate.article_splits(six)
    assert len(splits) == 10  # C(6,3) / 2: a split and its mirror are the same split
    keys = {frozenset(frozenset(h) for h in s) for s in splits}
    assert len(keys) == 10
    assert all(len(a) == len(b) == 3 and a | b == set(six) and not a & b for a, b in splits)
    five = calibrate.article_splits([f"A{i}" for i in range(5)])
    assert len(five) == 10 and all({len(a), len(b)} == {2, 3} for a, b in five)  # C(5,2)
    many = calibrate.article_splits([f"A{i}" for i in range(12)], cap=20)
    assert len(many) == 20 and many == calibrate.article_splits([f"A{i}" for i in range(12)], cap=20)
    assert calibrate.article_splits(["only"]) == []


def test_spread_over_splits_skips_a_kind_a_split_lacks() -> None:
    a = {"answered_answerable": 0.9, "declined_unindexed": 0.5, "selection": {"f1": 0.6}}
    b = {"answered_answerable": 0.8, "declined_unindexed": float("nan"), "selection": {"f1": 0.7}}
    assert calibrate.spread([a, b], np.mean) == {
        "answered_answerable": 0.85,
        "declined_unindexed": 0.5,
        "selection": {"f1": 0.65},
    }
    assert calibrate.spread([a, b], np.min)["answered_answerable"] == 0.8
    assert math.isnan(calibrate.spread([b], np.max)["declined_unindexed"])


def test_cross_fit_scores_each_article_once_from_the_other_half() -> None:
    data = [
        {**r, "candidates": [{"features": r["features"], "f1": 1.0, "gold": True}] * 2, "top_cosine": 0.5}
        for r in rows(600, 2)
        if r["features"]
    ]
    halves = [{"A0", "A1"}, {"A2", "A3"}]
    scored = calibrate.cross_fit(data, halves, 0.9)
    # every row comes back once, scored by the half it is not in
    assert sorted(r["article"] for r, _ in scored) == sorted(r["article"] for r in data)
    got = calibrate.summary(scored)
    assert 0.8 <= got["answered_answerable"] <= 0.97 and got["declined_unindexed"] > 0.6
    assert got["selection"] == {"f1": 1.0, "gold_passage": 1.0}
    assert got["f1"] == got["answered_answerable"]  # every chosen span right: F1 shown = share answered


@pytest.mark.model
def test_collected_readings_carry_what_a_new_feature_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``collect`` runs the real pipeline and reader: one row per question, labelled by kind,
    with the question and each candidate's span as text and as an offset into its passage."""
    from qa.config import Settings
    from qa.evaluation import evaluate as ev
    from tests.test_eval import squad, write

    monkeypatch.setattr(ev, "DEFAULT_INDEX_ROOT", tmp_path / "index")
    path = write(tmp_path / "tiny-v2.json", squad())
    articles = ["Solar_Power", "Tea", "Harbour_Ledger"]
    got = calibrate.collect(path, articles, 0.0, None, Settings(model="hash-64"))
    data = ev.load_squad(path)
    asked = {q.qid: q for q in data.questions}
    assert sorted(r["qid"] for r in got) == sorted(asked) and {r["file"] for r in got} == {path.name}
    text_of = {d.doc_id: d.text for d in data.documents}
    for row in got:
        q = asked[row["qid"]]
        assert row["question"] == q.text and row["article"] == q.doc_id.split("/")[0]
        assert row["kind"] == ("unanswerable" if q.impossible else "answerable")
        assert row["label"] == int(not q.impossible)
        for c in row["candidates"]:
            # the offset is into the passage read (a chunk), not into its document
            assert c["passage"][c["start"] : c["start"] + len(c["text"])] == c["text"] != ""
            if c["gold"]:
                assert c["passage"] in text_of[q.doc_id]
            assert set(SELECTION_FEATURES) <= set(c["features"])

    def gold(qid: str) -> dict[str, Any]:
        return next(c for r in got if r["qid"] == qid for c in r["candidates"] if c["gold"])

    # A short paragraph that states the answer: the reader's span there quotes it, and the row's
    # F1 is that span's token F1 against the gold answer.
    from qa.evaluation.metrics import f1_score

    tea = gold("t1")
    assert "Anxi" in tea["text"] and tea["f1"] > 0
    assert tea["f1"] == pytest.approx(f1_score(tea["text"], ["Anxi County"]))
    # The long paragraph is several chunks; its answer is in the last, far into the document.
    # The gold candidate is that chunk (the only one with the question's words), and its span's
    # offset counts from the chunk's start, not the document's. (Which words the reader quotes
    # from this repetitive filler is the model's business, not the collection's.)
    ledger, document = gold("h1"), text_of["Harbour_Ledger/p001.txt"]
    assert "vermilion" in ledger["passage"] and len(ledger["passage"]) < len(document)
    chunk_at = document.index(ledger["passage"])
    assert chunk_at > 0 and ledger["start"] < len(ledger["passage"])
    assert document[chunk_at + ledger["start"] :].startswith(ledger["text"])
