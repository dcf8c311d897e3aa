"""Fit the reader's confidence calibration (qa/models/reader/calibration.json).

Runs the real pipeline (retrieval + the shipped reader) over SQuAD questions and fits a
logistic regression that separates questions the sources answer from those they do
not: v2.0 unanswerables, and v1.1 questions whose paragraph was left out of the index.
The weights are fitted on training articles only; the threshold is then chosen on the
held-out articles' curve (answer at least ``--answer-rate`` of answerable questions)
and folded into the bias, so the app's ``min_confidence = 0.5`` is that threshold.

    python -m training.calibrate --limit 1500
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from qa import QA, Settings
from qa.calibration import FEATURES, FILE
from qa.sources import make_document
from qa.span_reader import DEFAULT_PATH
from training.reader import HOLDOUT

EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"


def load_squad(path: Path) -> list[dict[str, Any]]:
    """Paragraphs as {title, doc_id, context, questions: [(question, answerable)]}."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    out = []
    for article in data:
        for i, para in enumerate(article["paragraphs"]):
            out.append(
                {
                    "article": article["title"],
                    "doc_id": f"{article['title']}/p{i:03d}.txt",
                    "title": f"{article['title'].replace('_', ' ')} ¶{i}",
                    "context": para["context"],
                    "questions": [(q["question"], not q.get("is_impossible", False)) for q in para["qas"]],
                }
            )
    return out


def collect(
    paragraphs: list[dict[str, Any]], unindexed: float, seed: int, limit: int, index_dir: Path
) -> list[dict[str, Any]]:
    """Ask a seeded sample of questions; return features, label, article per question."""
    rng = random.Random(seed)
    left_out = {p["doc_id"] for p in paragraphs if rng.random() < unindexed}
    docs = [
        make_document(p["doc_id"], p["context"], p["title"])
        for p in paragraphs
        if p["doc_id"] not in left_out
    ]
    qa = QA.from_documents(docs, index_dir=index_dir, settings=Settings(index_dir=index_dir, reader="model"))
    items = [(p, q, ok) for p in paragraphs for q, ok in p["questions"]]
    rng.shuffle(items)
    rows = []
    for p, question, answerable in items[:limit]:
        kind = "unanswerable" if not answerable else "unindexed" if p["doc_id"] in left_out else "answerable"
        _, reading = qa.read(question)
        feats = reading.features if reading.citation is not None else {}
        rows.append(
            {"article": p["article"], "label": int(kind == "answerable"), "kind": kind, "features": feats}
        )
    return rows


def fit(rows: list[dict[str, Any]]) -> tuple[dict[str, float], float]:
    from sklearn.linear_model import LogisticRegression

    usable = [r for r in rows if r["features"]]
    x = np.array([[r["features"].get(f, 0.0) for f in FEATURES] for r in usable])
    y = np.array([r["label"] for r in usable])
    model = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
    return dict(zip(FEATURES, map(float, model.coef_[0]), strict=True)), float(model.intercept_[0])


def logit_score(weights: dict[str, float], bias: float, feats: dict[str, float]) -> float:
    if not feats:
        return -math.inf
    return bias + sum(w * feats.get(k, 0.0) for k, w in weights.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=1500, help="questions per file")
    ap.add_argument("--answer-rate", type=float, default=0.90)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_PATH)
    args = ap.parse_args()
    holdout = set(HOLDOUT)
    t0 = time.time()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += collect(
            load_squad(EVAL / "squad-v1.1-dev-a.json"), 0.2, args.seed, args.limit, Path(tmp) / "v11"
        )
        rows += collect(
            load_squad(EVAL / "squad-v2.0-dev-a.json"), 0.0, args.seed, args.limit, Path(tmp) / "v20"
        )
    train = [r for r in rows if r["article"] not in holdout]
    held = [r for r in rows if r["article"] in holdout]
    weights, bias = fit(train)
    scores = sorted(logit_score(weights, bias, r["features"]) for r in held if r["label"] == 1)
    cut = scores[int((1 - args.answer_rate) * len(scores))]  # answer `answer-rate` of answerable
    bias -= cut  # the chosen threshold now sits at logit 0, confidence 0.5

    def rate(kind: str, answered: bool) -> float:
        got = [
            (logit_score(weights, bias, r["features"]) >= 0) == answered for r in held if r["kind"] == kind
        ]
        return round(sum(got) / max(1, len(got)), 4)

    result = {
        "features": list(FEATURES),
        "weights": weights,
        "bias": bias,
        "fitted_on": f"{len(train)} questions of training articles (v1.1 with 20% unindexed, v2.0)",
        "threshold_from": f"{len(held)} questions of held-out articles",
        "heldout_answered_answerable": rate("answerable", True),
        "heldout_declined_unanswerable": rate("unanswerable", False),
        "heldout_declined_unindexed": rate("unindexed", False),
        "seconds": round(time.time() - t0, 1),
    }
    (args.out / FILE).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
