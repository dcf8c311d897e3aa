"""Fit the reader's passage selection and confidence calibration (qa/models/reader/calibration.json).

Runs the real pipeline (retrieval + the shipped reader), set up exactly as ``qa eval
--questions-from heldout`` sets it up: every paragraph of the file is the corpus, and the
questions asked are those of the articles the reader never trained on. Two files: v1.1 with
a seeded 20% of the paragraphs left out of the index (their questions should be declined)
and v2.0 (its unanswerable questions should be declined). On training articles the reader
has seen the answers, so its scores there are not the scores it gives new text; the
calibration is therefore fitted on held-out articles' questions only.

First the passage selection (``qa.answer.calibration.SELECTION_FEATURES``): a conditional logit
over the passages read for each answerable question, whose target puts each passage's weight
in proportion to the token F1 of its best span, so the passage whose span answers best wins.
Then, with that selection applied, a logistic regression over the chosen span's features
(``qa.answer.calibration.FEATURES``) estimates whether the answer shown is right: an answerable
question counts as right in proportion to its chosen span's token F1 and as wrong for the
rest, and a question the index cannot answer as wrong (``fit``). The
shipped weights are fitted on all held-out articles, and the threshold that answers
``--answer-rate`` of the answerable questions is folded into the bias, so the app's
``min_confidence = 0.5`` is that threshold. The rates printed as ``crossfit`` are honest
estimates for unseen articles: each half of the articles is scored by a selection, weights
and a threshold fitted on the other half only. With six articles one split moves the rates by
several points, so ``crossfit_splits`` gives their mean, lowest and highest over every split.

    python -m training.calibrate            # ~10 min on 2 cores
    python -m training.calibrate --reader-path DIR    # a reader of your own: writes DIR/calibration.json
    python -m training.calibrate --save-rows R.json   # and keep the readings
    python -m training.calibrate --rows R.json        # refit from them in seconds
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from qa import QA, Settings
from qa.answer.calibration import DEFAULT_SELECTION, FEATURES, FILE, SELECTION_FEATURES
from qa.answer.span_reader import DEFAULT_PATH, check_folder, reader_sha256
from qa.errors import ConfigError, QAError
from qa.evaluation import evaluate as ev
from qa.evaluation.metrics import f1_score
from qa.store.embedding import make_embedder, weights_fingerprint
from qa.store.files import write_atomic
from qa.store.lexical import LEXICAL_PARAMS

EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"
UNINDEXED = 0.2


def collect(
    path: Path, articles: list[str], unindexed: float, limit: int | None, settings: Settings
) -> list[dict[str, Any]]:
    """Ask the questions of ``articles`` in ``path`` as ``qa eval`` would, over the whole file;
    one row per question: the file's name, the question's id (the two identify the row),
    article, kind, the question, label (1: answerable from the index), the best passage's
    cosine, and the candidates the reader chose among (features, span F1, whether the passage
    is the gold document, the span's text, the passage's text and the span's character offset
    in it), so that a new feature can be tried on saved readings without reading again.
    Readings saved before these fields were added lack the file, id, question and texts."""
    settings = settings.replace(reader="model")
    data = ev.load_squad(path)
    left_out = ev.choose_unindexed([d.doc_id for d in data.documents], unindexed, 0)
    docs = [d for d in data.documents if d.doc_id not in left_out]
    embedder = make_embedder(settings.model)
    index_dir = ev.index_dir_for(Path(ev.DEFAULT_INDEX_ROOT), data, settings, embedder, unindexed, 0)
    qa = QA.from_documents(docs, settings=settings.replace(index_dir=index_dir), embedder=embedder)
    rows = []
    for q in ev.sample_questions(ev.questions_of_articles(data, articles), limit, 0):
        kind = ev.question_kind(q, left_out)
        _, reading = qa.read(q.text)
        candidates = [
            {
                "features": c.features,
                "f1": f1_score(c.text, q.answers) if q.answers else 0.0,
                "gold": c.hit.chunk.doc_id == q.doc_id,
                "text": c.text,
                "passage": c.hit.chunk.text,
                "start": c.start,
            }
            for c in reading.candidates
        ]
        rows.append(
            {
                "file": path.name,
                "qid": q.qid,
                "article": q.doc_id.split("/")[0],
                "kind": kind,
                "question": q.text,
                "label": int(kind == "answerable"),
                "top_cosine": reading.features.get("top_cosine", 0.0),
                "candidates": candidates,
            }
        )
    return rows


def fit_selection(rows: list[dict[str, Any]], l2: float = 0.01) -> dict[str, float]:
    """Selection weights: a conditional logit over each answerable question's candidates with
    target weights in proportion to their span F1 (questions where no span scores are skipped)."""
    from scipy.optimize import minimize

    groups = []
    for r in rows:
        cands = r["candidates"]
        f1 = np.array([c["f1"] for c in cands])
        if r["label"] == 1 and len(cands) > 1 and f1.sum() > 0:
            x = np.array([[c["features"].get(f, 0.0) for f in SELECTION_FEATURES] for c in cands])
            groups.append((x, f1 / f1.sum()))
    if not groups:
        raise ValueError("no answerable question with a scoring span to fit the passage selection on")

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = 0.0, np.zeros_like(w)
        for x, target in groups:
            z = x @ w
            p = np.exp(z - z.max())
            p /= p.sum()
            total -= float(target @ np.log(p + 1e-12))
            grad -= x.T @ (target - p)
        return total / len(groups) + l2 * float(w @ w), grad / len(groups) + 2 * l2 * w

    w = minimize(loss, np.zeros(len(SELECTION_FEATURES)), jac=True, method="L-BFGS-B").x
    return dict(zip(SELECTION_FEATURES, map(float, w), strict=True))


def choose(rows: list[dict[str, Any]], selection: dict[str, float]) -> list[dict[str, Any]]:
    """The rows with ``features`` (the chosen candidate's, as the reader builds them) and the
    chosen candidate's ``f1`` and ``gold``, under these selection weights."""
    out = []
    for r in rows:
        best = max(
            r["candidates"],
            key=lambda c: sum(w * c["features"].get(k, 0.0) for k, w in selection.items()),
            default=None,
        )
        features = {**best["features"], "top_cosine": r["top_cosine"]} if best else {}
        f1, gold = (best["f1"], best["gold"]) if best else (0.0, False)
        out.append({**r, "features": features, "f1": f1, "gold": gold})
    return out


def selection_quality(chosen: list[dict[str, Any]]) -> dict[str, float]:
    """Over answerable questions: mean F1 of the chosen span, share whose passage is the gold one."""
    answerable = [r for r in chosen if r["label"] == 1]
    n = max(1, len(answerable))
    return {
        "f1": round(sum(r["f1"] for r in answerable) / n, 4),
        "gold_passage": round(sum(r["gold"] for r in answerable) / n, 4),
    }


def fit(rows: list[dict[str, Any]]) -> tuple[dict[str, float], float]:
    """A logistic regression of whether the shown answer is right: an answerable question's row
    is a right answer with weight its chosen span's token F1 (``f1``) and a wrong one with the
    rest; an unanswerable or unindexed question's row is a wrong answer. So a confidently wrong
    span counts against the features that gave it, as a quote from a silent source does."""
    from sklearn.linear_model import LogisticRegression

    x, y, weight = [], [], []
    for r in rows:
        if not r["features"]:
            continue
        right = min(max(float(r["f1"]), 0.0), 1.0) if r["label"] == 1 else 0.0
        for target, w in ((1, right), (0, 1.0 - right)):
            if w > 0:
                x.append([r["features"].get(f, 0.0) for f in FEATURES])
                y.append(target)
                weight.append(w)
    if len(set(y)) < 2:
        raise ValueError("the confidence needs both right and wrong answers to fit on")
    model = LogisticRegression(C=1.0, max_iter=5000).fit(
        np.array(x), np.array(y), sample_weight=np.array(weight)
    )
    return dict(zip(FEATURES, map(float, model.coef_[0]), strict=True)), float(model.intercept_[0])


def logit(weights: dict[str, float], bias: float, feats: dict[str, float]) -> float:
    if not feats:
        return -math.inf
    return bias + sum(w * feats.get(k, 0.0) for k, w in weights.items())


def fit_with_threshold(rows: list[dict[str, Any]], answer_rate: float) -> tuple[dict[str, float], float]:
    """Weights, and a bias shifted so that logit 0 answers ``answer_rate`` of the answerable rows.

    Answerable questions for which the reader cited nothing cannot be answered at any
    threshold; they count against the rate (so the threshold is a little lower), and the
    threshold is taken among the finite scores only.
    """
    weights, bias = fit(rows)
    answerable = [logit(weights, bias, r["features"]) for r in rows if r["label"] == 1]
    scores = sorted(x for x in answerable if math.isfinite(x))
    if not scores:
        raise ValueError("no answerable question with a reader answer to set the threshold from")
    declined = max(0, int((1 - answer_rate) * len(answerable)) - (len(answerable) - len(scores)))
    cut = scores[min(len(scores) - 1, declined)]
    if not math.isfinite(bias - cut):
        raise ValueError(f"the fitted threshold is not finite (bias {bias}, cut {cut})")
    return weights, bias - cut


def rates(rows: list[dict[str, Any]], answered: list[bool]) -> dict[str, float]:
    def share(kind: str, want: bool) -> float:
        got = [a == want for r, a in zip(rows, answered, strict=True) if r["kind"] == kind]
        return round(sum(got) / len(got), 4) if got else float("nan")

    return {
        "answered_answerable": share("answerable", True),
        "declined_unanswerable": share("unanswerable", False),
        "declined_unindexed": share("unindexed", False),
    }


def cross_fit(
    rows: list[dict[str, Any]], halves: list[set[str]], answer_rate: float
) -> list[tuple[dict[str, Any], bool]]:
    """Each half's rows (as chosen) and whether they are answered, under a selection, weights
    and threshold fitted on the other half's articles only."""
    out: list[tuple[dict[str, Any], bool]] = []
    for test in halves:
        selection = fit_selection([r for r in rows if r["article"] not in test])
        chosen = choose(rows, selection)
        w, b = fit_with_threshold([r for r in chosen if r["article"] not in test], answer_rate)
        out += [(r, logit(w, b, r["features"]) >= 0) for r in chosen if r["article"] in test]
    return out


def article_splits(articles: list[str], cap: int = 20) -> list[list[set[str]]]:
    """Every split of ``articles`` into two halves (each split once), or ``cap`` of them drawn
    with a fixed seed when there are more."""
    arts = sorted(articles)
    k = len(arts) // 2
    firsts = [set(c) for c in itertools.combinations(arts, k) if len(arts) % 2 or arts[0] in c]
    if len(firsts) > cap:
        firsts = random.Random(0).sample(firsts, cap)
    return [[first, set(arts) - first] for first in firsts if first and len(first) < len(arts)]


def answered_f1(rows: list[dict[str, Any]], answered: list[bool]) -> float:
    """Over answerable questions, the chosen span's F1 where it is answered and 0 where declined
    (``qa eval``'s ``f1``)."""
    got = [r["f1"] * a for r, a in zip(rows, answered, strict=True) if r["label"] == 1]
    return round(sum(got) / len(got), 4) if got else float("nan")


def summary(scored: list[tuple[dict[str, Any], bool]]) -> dict[str, Any]:
    """The abstention rates, the F1 of the answers shown and the selection quality of
    cross-fitted rows."""
    rows, answered = [r for r, _ in scored], [a for _, a in scored]
    return {**rates(rows, answered), "f1": answered_f1(rows, answered), "selection": selection_quality(rows)}


def spread(summaries: list[dict[str, Any]], how: Any) -> dict[str, Any]:
    """``how`` (mean, min or max) of each rate and selection measure over several summaries."""

    def of(values: list[float]) -> float:
        finite = [v for v in values if not math.isnan(v)]  # a kind absent from the rows is NaN
        return round(float(how(finite)), 4) if finite else float("nan")

    rates_ = {k: of([s[k] for s in summaries]) for k in summaries[0] if k != "selection"}
    return {
        **rates_,
        "selection": {k: of([s["selection"][k] for s in summaries]) for k in summaries[0]["selection"]},
    }


#: The settings that the readings depend on besides the reader weights and BM25's parameters.
ROWS_SETTINGS = (
    "model", "encoding", "chunk_tokens", "chunk_overlap", "candidates", "dense_weight", "sentence_weight",
    "overlap_weight", "read_passages", "read_gap", "max_answer_tokens",
)  # fmt: skip


def _rows_key(reader_sha: str, settings: Settings) -> dict[str, Any]:
    """What the readings depend on: the reader weights, the embedding model, the chunking and
    the retrieval settings (BM25's included)."""
    return {
        "reader_sha256": reader_sha,
        **{name: getattr(settings, name) for name in ROWS_SETTINGS},
        "embedding_weights": weights_fingerprint(settings.model),
        "lexical": json.loads(json.dumps(LEXICAL_PARAMS)),  # as it reads back from JSON
    }


def save_rows(path: Path, rows: list[dict[str, Any]], reader_sha: str, settings: Settings) -> None:
    """Write the readings (atomically) for ``load_rows``; ValueError when ``path`` is not writable."""
    try:
        write_atomic(path, json.dumps({**_rows_key(reader_sha, settings), "rows": rows}).encode("utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot write the readings to {path}: {exc}") from exc


def check_writable(path: Path) -> None:
    """ValueError unless ``path``'s folder exists (or can be made) and can be written to."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot write the readings to {path}: {exc}") from exc
    if path.is_dir() or not os.access(path.parent, os.W_OK):
        raise ValueError(f"cannot write the readings to {path}")


def load_rows(path: Path, reader_sha: str, settings: Settings) -> list[dict[str, Any]]:
    """Readings saved by ``--save-rows``; refused (ValueError) when they were read with other
    reader weights or retrieval settings, since a refit on them would not fit this app."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read saved readings {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise ValueError(f"{path} is not a file of readings that --save-rows wrote")
    want = _rows_key(reader_sha, settings)
    differ = [k for k, v in want.items() if data.get(k) != v]
    if differ:
        raise ValueError(f"{path} was read with another {', '.join(differ)}: collect the readings again")
    return data["rows"]


def main(argv: list[str] | None = None) -> int:
    try:
        run(argv)
    except (QAError, ValueError) as exc:
        print(f"calibrate: error: {exc}", file=sys.stderr)
        return 2
    return 0


def paths(reader_path: Path | None, out: Path | None) -> tuple[Path, Path]:
    """The reader folder to calibrate and the calibration file to write: ``--reader-path`` (else
    ``--out`` when it is a folder, as before ``--reader-path`` existed, else the shipped reader),
    and ``--out`` (a folder gets ``calibration.json``; default: the reader folder's)."""
    reader = reader_path or (out if out is not None and out.is_dir() else DEFAULT_PATH)
    check_folder(reader)
    if out is None or out.is_dir() or out.suffix != ".json":
        return reader, (out if out is not None else reader) / FILE
    return reader, out


def holdout_of(reader: Path) -> list[str]:
    """The articles the reader did not train on: those its config names; for a Hugging Face
    checkpoint without that list, the shipped reader's (trained on none of the dev-a file's
    articles, a SQuAD model has not seen them either), so the two are measured alike."""
    try:
        return ev.heldout_articles(reader)
    except ConfigError:
        if check_folder(reader) != "transformers":
            raise
        return ev.heldout_articles()


def run(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="questions per file (default: all)")
    ap.add_argument("--answer-rate", type=float, default=0.90)
    ap.add_argument("--reader-path", type=Path, metavar="DIR",
                    help="the reader folder to calibrate (this project's format or a Hugging Face "
                         "extractive QA checkpoint; default: the shipped reader)")  # fmt: skip
    ap.add_argument(
        "--out", type=Path, help="calibration.json to write, or its folder (default: the reader's)"
    )
    ap.add_argument("--save-rows", type=Path, help="also write the collected readings (JSON) here")
    ap.add_argument(
        "--rows", type=Path, help="refit from readings --save-rows wrote for these weights, not reading again"
    )
    args = ap.parse_args(argv)
    reader, out = paths(args.reader_path, args.out)
    holdout = holdout_of(reader)
    # What the app is configured with (QA_* variables), reading with the reader being calibrated.
    settings = Settings.from_env(reader_path=str(reader))
    reader_sha = reader_sha256(reader)
    t0 = time.time()
    if args.save_rows:  # before minutes of reading, not after
        check_writable(args.save_rows)
    if args.rows:
        rows = load_rows(args.rows, reader_sha, settings)
    else:
        rows = collect(EVAL / "squad-v1.1-dev-a.json", holdout, UNINDEXED, args.limit, settings)
        rows += collect(EVAL / "squad-v2.0-dev-a.json", holdout, 0.0, args.limit, settings)
    if args.save_rows:
        save_rows(args.save_rows, rows, reader_sha, settings)

    # Honest estimate: two halves of the articles, each scored by the other's fit.
    halves = [set(holdout[0::2]), set(holdout[1::2])]
    crossfit = cross_fit(rows, halves, args.answer_rate)
    # One split of a few articles is noisy (a few points either way): every split, summarised.
    every = [summary(cross_fit(rows, h, args.answer_rate)) for h in article_splits(holdout)]

    selection = fit_selection(rows)
    chosen = choose(rows, selection)
    weights, bias = fit_with_threshold(chosen, args.answer_rate)
    shipped = [logit(weights, bias, r["features"]) >= 0 for r in chosen]
    result = {
        "features": list(FEATURES),
        "weights": weights,
        "bias": bias,
        "selection": selection,
        # the features depend on these: ``qa.answer.calibration`` warns when they differ at load
        "reader_sha256": reader_sha,
        "dense_weight": settings.dense_weight,
        "sentence_weight": settings.sentence_weight,
        "overlap_weight": settings.overlap_weight,
        "read_passages": settings.read_passages,
        "read_gap": settings.read_gap,
        "embedding_model": settings.model,
        "fitted_on": (
            f"{len(rows)} questions of the {len(holdout)} held-out articles ({', '.join(holdout)}): "
            f"v1.1 with {UNINDEXED:g} of paragraphs unindexed, and v2.0"
        ),
        "answer_rate": args.answer_rate,
        "crossfit": {
            "how": (
                "articles in two halves; each half scored by a selection, weights and threshold "
                "fitted on the other"
            ),
            "halves": [sorted(h) for h in halves],
            **summary(crossfit),
        },
        "crossfit_splits": {
            "how": "the same, over every split of the articles into two halves (at most 20)",
            "splits": len(every),
            **{
                name: spread(every, how)
                for name, how in (("mean", np.mean), ("min", np.min), ("max", np.max))
                if every  # one held-out article cannot be split
            },
        },
        "in_sample": {
            **rates(chosen, shipped),
            "f1": answered_f1(chosen, shipped),
            "selection": selection_quality(chosen),
        },
        "default_selection": selection_quality(choose(rows, DEFAULT_SELECTION)),
        "seconds": round(time.time() - t0, 1),
    }
    try:
        write_atomic(out, (json.dumps(result, indent=1) + "\n").encode("utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot write the calibration to {out}: {exc}") from exc
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())
