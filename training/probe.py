"""The reader's own abstention on held-out articles, without retrieval or calibration.

    python -m training.probe READER_DIR [READER_DIR ...]     (about 8 minutes a reader on 2 cores)

A quick way to compare trained readers before the slower ``training.calibrate`` and ``qa eval``:
each question's score is the reader's margin (best span score less the passage's no-answer
score), the best over the passages it is given, and a threshold is set to answer 90% (or 85%)
of the answerable questions. On the articles the readers held out, one JSON line per reader:
- ``gold``, ``distractor``: gold-paragraph EM/F1, and with the top BM25 held-out distractor
  beside it (``training.reader``'s own final measures);
- ``v2``: v2.0 answerable against unanswerable questions, each on its own paragraph, the share
  of unanswerables declined;
- ``unindexed_sim``: every v1.1 question read with its gold paragraph and its top 2 BM25
  held-out others (answerable), or with its top 3 others alone, as if its paragraph were not
  indexed; the share of the latter declined;
- ``three_passages``: from the gold paragraph and those top 2 others, the answer of the passage
  with the best margin (``by_margin``) or the best span score (``by_span``): EM/F1 and the share
  of questions whose gold paragraph was chosen.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qa.answer.span_reader import CONFIG_FILE, PassageReading, SpanReader
from training.reader_data import DATA_DIR, V2_FILE, bm25_distractors, build_data, load_squad
from training.reader_eval import choose_passages, evaluate, evaluate_with_distractor


def declined_at(
    answerable: Sequence[float] | np.ndarray, negatives: Sequence[float] | np.ndarray, answer_rate: float
) -> float:
    """% of ``negatives`` scored below the threshold that answers ``answer_rate`` of
    ``answerable`` (a score at the threshold is answered)."""
    if not len(answerable) or not len(negatives):
        return float("nan")
    cut = float(np.quantile(np.asarray(answerable, dtype=float), 1 - answer_rate))
    return round(100 * float(np.mean(np.asarray(negatives, dtype=float) < cut)), 2)


#: A passage without a span scores this: finite, so a threshold between it and a real margin
#: interpolates to a number, not NaN (-inf + inf).
NO_SPAN = -1e9


def margins(reader: SpanReader, pairs: list[tuple[str, str]]) -> list[float]:
    """Best span score less no-answer score for each (question, passage); ``NO_SPAN`` without one."""
    return margins_of(reader.read_pairs(pairs))


def margins_of(readings: list[PassageReading]) -> list[float]:
    """``margins`` of readings already made."""
    return [(r.spans[0].score - r.null_score) if r.spans else NO_SPAN for r in readings]


def best_of(scores: list[float], owners: list[int], n: int) -> np.ndarray:
    """Per owner 0..n-1, the highest of its scores."""
    best = np.full(n, -np.inf)
    for s, o in zip(scores, owners, strict=True):
        best[o] = max(best[o], s)
    return best


def probe(folder: Path, data_dir: Path, device: str) -> dict[str, Any]:
    holdout = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")).get("holdout", [])
    if not holdout:
        raise SystemExit(f"{folder}: its config names no held-out articles to probe on")
    _, _, questions, paras = build_data(data_dir, holdout, 0, None)
    reader = SpanReader(folder).to(device)
    out: dict[str, Any] = {
        "reader": str(folder),
        "gold": evaluate(reader, questions),
        "distractor": evaluate_with_distractor(reader, questions, paras),
    }
    v2 = [
        (q["question"], p["context"], bool(q.get("is_impossible")))
        for a in load_squad(data_dir / V2_FILE)
        if a["title"] in holdout
        for p in a["paragraphs"]
        for q in p["qas"]
    ]
    m = margins(reader, [(q, c) for q, c, _ in v2])
    ans = [x for x, (_, _, impossible) in zip(m, v2, strict=True) if not impossible]
    neg = [x for x, (_, _, impossible) in zip(m, v2, strict=True) if impossible]
    out["v2"] = {
        "answerable": len(ans),
        "unanswerable": len(neg),
        "declined@90": declined_at(ans, neg, 0.90),
        "declined@85": declined_at(ans, neg, 0.85),
    }
    others = bm25_distractors(
        [q["question"] for q in questions], [q["context"] for q in questions], paras, n=3
    )
    with_gold: list[tuple[str, str]] = []
    gold_owner: list[int] = []
    without: list[tuple[str, str]] = []
    without_owner: list[int] = []
    for i, (q, row) in enumerate(zip(questions, others, strict=True)):
        for p in [q["context"], *row[:2]]:
            with_gold.append((q["question"], p))
            gold_owner.append(i)
        for p in row[:3]:
            without.append((q["question"], p))
            without_owner.append(i)
    readings = reader.read_pairs(with_gold)
    a = best_of(margins_of(readings), gold_owner, len(questions))
    u = best_of(margins(reader, without), without_owner, len(questions))
    out["unindexed_sim"] = {
        "n": len(questions),
        "declined@90": declined_at(a, u, 0.90),
        "declined@85": declined_at(a, u, 0.85),
    }
    out["three_passages"] = choose_passages(questions, with_gold, gold_owner, readings)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.probe", description=__doc__.split("\n")[0])
    ap.add_argument("readers", nargs="+", type=Path, help="reader folders (weights, config with its holdout)")
    ap.add_argument("--data-dir", type=Path, default=DATA_DIR)
    ap.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"]
    )
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    for folder in args.readers:
        print(json.dumps(probe(folder, args.data_dir, args.device)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
