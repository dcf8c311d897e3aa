"""Is a new reader better than the shipped one? Paired held-out gold-paragraph scores.

    python -m training.compare qa/models/reader artifacts/reader-full     (about a minute a reader)
    python -m training.compare artifacts/eval-old artifacts/eval-new      (two `qa eval --out` runs)

Both readers must hold out the same articles; every question of those articles is read with its
gold paragraph by each reader, and the new reader's F1 and EM gains over the old one come with
95% paired bootstrap intervals (``training.average.paired_gain``). The shipped file is replaced
only when the F1 interval lies above zero.

Given two ``qa eval --out`` folders instead (the same file and questions, asked with two
readers or two settings), it pairs their ``eval-questions.jsonl`` question by question: EM, F1,
contains_gold and the answered share over the answerable questions, and the declined share over
the unanswerable and the unindexed ones, each gain with its paired interval.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from qa.answer.span_reader import SpanReader
from training.average import paired_gain
from training.reader_data import DATA_DIR, build_data
from training.reader_eval import question_scores, summarise
from training.reader_model import read_reader_config

EVAL_ROWS = "eval-questions.jsonl"


def shown(row: dict[str, Any], field: str) -> float:
    """A question's ``field`` as ``qa eval`` scores it: 0 when the answer was declined."""
    return float(row[field]) if row["found"] else 0.0


def _eval_rows(folder: Path) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """The eval file's sha256 (from ``eval.json``, when there) and the rows by question id."""
    summary = folder / "eval.json"
    sha = json.loads(summary.read_text(encoding="utf-8")).get("sha256") if summary.is_file() else None
    lines = (folder / EVAL_ROWS).read_text(encoding="utf-8").splitlines()
    return sha, {r["qid"]: r for r in (json.loads(line) for line in lines if line.strip())}


def compare_evals(old: Path, new: Path) -> dict[str, object]:
    """Paired gains of the ``qa eval`` run in ``new`` over the one in ``old``: the same file and
    questions, each of the same kind (answerable, unanswerable, unindexed) in both runs. Shares
    are fractions (0-1), gains and their 95% intervals too."""
    (sha_a, a), (sha_b, b) = _eval_rows(old), _eval_rows(new)
    if sha_a and sha_b and sha_a != sha_b:
        raise SystemExit(f"{old} and {new} evaluated different files: no paired comparison")
    if a.keys() != b.keys():
        raise SystemExit(
            f"{old} and {new} asked different questions ({len(a.keys() ^ b.keys())} asked by one "
            "only; another --limit, --articles or --questions-from?): no paired comparison"
        )
    if differ := sum(a[q]["kind"] != b[q]["kind"] for q in a):
        raise SystemExit(
            f"{differ} questions are of another kind in {new} than in {old} (another --unindexed "
            "or --seed?): no paired comparison"
        )
    result: dict[str, object] = {"old": str(old), "new": str(new)}
    measures = {
        "answerable": (("em", "em"), ("f1", "f1"), ("contains_gold", "contains_gold"), ("answered", "found")),
        "unanswerable": (("declined", "found"),),
        "unindexed": (("declined", "found"),),
    }
    for kind, pairs in measures.items():
        ids = sorted(q for q in a if a[q]["kind"] == kind)
        if not ids:
            continue
        out: dict[str, object] = {"n": len(ids)}
        for name, field in pairs:
            # as `qa eval` reports them: a declined answer scores 0, a declined question counts
            x, y = ([shown(run[q], field) for q in ids] for run in (a, b))
            if name == "declined":
                x, y = [1 - v for v in x], [1 - v for v in y]
            gain = paired_gain(y, x)  # in points (0-100)
            out[name] = {"old": round(sum(x) / len(x), 4), "new": round(sum(y) / len(y), 4),
                         **{k: round(v / 100, 4) for k, v in gain.items()}}  # fmt: skip
        result[kind] = out
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.compare", description=__doc__.split("\n")[0])
    p.add_argument(
        "old", type=Path, help="the reader folder to beat (e.g. qa/models/reader), or a qa eval --out"
    )
    p.add_argument(
        "new", type=Path, help="the candidate reader folder, or a qa eval --out with the same questions"
    )
    p.add_argument("--data-dir", default=str(DATA_DIR))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    evals = [(folder / EVAL_ROWS).is_file() for folder in (args.old, args.new)]
    if any(evals):
        if not all(evals):
            lacking = [str(f) for f, has in zip((args.old, args.new), evals, strict=True) if not has]
            raise SystemExit(f"{lacking[0]} has no {EVAL_ROWS}: compare two `qa eval --out` folders")
        print(json.dumps(compare_evals(args.old, args.new), indent=1))
        return 0
    torch.set_num_threads(args.threads)
    configs = [read_reader_config(f) for f in (args.old, args.new)]  # SpanReader loads the weights
    holdouts = {tuple(sorted(c.get("holdout", []))) for c in configs}
    if len(holdouts) != 1 or not next(iter(holdouts)):
        raise SystemExit("the readers held out different (or no) articles: no honest paired score")
    _, _, questions, _ = build_data(
        Path(args.data_dir), list(holdouts.pop()), 0, None, distractors_per_question=0
    )
    if not questions:
        raise SystemExit("no held-out questions to score the readers on")
    result: dict[str, object] = {"n": len(questions)}
    per: dict[str, list[tuple[float, float]]] = {}
    for name, folder, cfg in (("old", args.old, configs[0]), ("new", args.new, configs[1])):
        kw = {
            k: cfg["settings"][k]
            for k in ("max_length", "stride", "max_answer_tokens")
            if k in cfg.get("settings", {})
        }
        got, secs = question_scores(SpanReader(folder, **kw), questions)
        per[name] = got
        result[name] = {"folder": str(folder), **summarise(got, secs)}
    for i, metric in enumerate(("em", "f1")):
        result[f"{metric}_gain"] = paired_gain([s[i] for s in per["new"]], [s[i] for s in per["old"]])
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
