"""Is a new reader better than the shipped one? Paired held-out gold-paragraph scores.

    python -m training.compare qa/models/reader artifacts/reader-full     (about a minute a reader)

Both readers must hold out the same articles; every question of those articles is read with its
gold paragraph by each reader, and the new reader's F1 and EM gains over the old one come with
95% paired bootstrap intervals (``training.average.paired_gain``). The shipped file is replaced
only when the F1 interval lies above zero.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from qa.answer.span_reader import SpanReader
from training.average import paired_gain
from training.reader_data import DATA_DIR, build_data
from training.reader_eval import question_scores, summarise
from training.reader_model import read_reader_config


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.compare", description=__doc__.split("\n")[0])
    p.add_argument("old", type=Path, help="the reader folder to beat (e.g. qa/models/reader)")
    p.add_argument("new", type=Path, help="the candidate reader folder")
    p.add_argument("--data-dir", default=str(DATA_DIR))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
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
