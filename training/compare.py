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


def compare_evals(old: Path, new: Path) -> dict[str, object]:
    """Paired gains of the ``qa eval`` run in ``new`` over the one in ``old`` (same questions)."""
    runs = []
    for folder in (old, new):
        rows = [json.loads(line) for line in (folder / EVAL_ROWS).read_text().splitlines() if line]
        runs.append({(r["qid"], r["kind"]): r for r in rows})
    if runs[0].keys() != runs[1].keys():
        raise SystemExit(f"{old} and {new} asked different questions: no paired comparison")
    keys = sorted(runs[0])
    result: dict[str, object] = {"old": str(old), "new": str(new)}
    measures = {
        "answerable": (("em", "em"), ("f1", "f1"), ("contains_gold", "contains_gold"), ("answered", "found")),
        "unanswerable": (("declined", "found"),),
        "unindexed": (("declined", "found"),),
    }
    for kind, pairs in measures.items():
        mine = [k for k in keys if k[1] == kind]
        if not mine:
            continue
        out: dict[str, object] = {"n": len(mine)}
        for name, field in pairs:
            # as `qa eval` reports them: a declined answer scores 0, a declined question counts
            a, b = ([shown(run[k], field) for k in mine] for run in runs)
            if name == "declined":
                a, b = [1 - x for x in a], [1 - x for x in b]
            out[name] = {"old": round(sum(a) / len(a), 4), "new": round(sum(b) / len(b), 4),
                         "gain": paired_gain(b, a)}  # fmt: skip
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
    if (args.old / EVAL_ROWS).is_file() and (args.new / EVAL_ROWS).is_file():
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
