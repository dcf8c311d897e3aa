"""How often a reader's no-answer wins on held-out questions with one name swapped.

The held-out articles' v1.1 questions are asked of their gold paragraphs twice: as written,
and with one name swapped as ``--swap-negatives`` swaps them in training
(``training.reader_data.swap_negatives``, seed 0). Printed per reader: the share of swapped
questions whose no-answer score beats their best span, and the share declined at the margin
(best span minus no-answer) that answers 90% and 85% of the same questions as written.

    python -m training.swap_probe qa/models/reader artifacts/other-reader   (about 1 minute a reader)
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

import numpy as np

from qa.answer.span_reader import SpanReader
from training.probe import declined_at, margins
from training.reader_data import DATA_DIR, HOLDOUT, V1_FILE, _example, load_squad, swap_negatives


def heldout_swaps(data_dir: Path, holdout: list[str] = HOLDOUT) -> list[tuple[dict[str, Any], str]]:
    """The questions of the ``holdout`` articles that have a name to swap, each with its swapped
    question."""
    paras: list[str] = []
    examples: list[dict[str, Any]] = []
    article_paras: dict[str, list[int]] = {}
    for art in load_squad(data_dir / V1_FILE):
        if art["title"] not in holdout:
            continue
        for p in art["paragraphs"]:
            paras.append(p["context"])
            for q in p["qas"]:
                examples.append(_example(q, p["context"], "dev", para=len(paras) - 1, article=art["title"]))
                article_paras.setdefault(art["title"], []).append(len(paras) - 1)
    return swap_negatives(examples, paras, article_paras, random.Random(0))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("readers", nargs="+", type=Path, help="reader folders")
    p.add_argument("--data-dir", type=Path, default=DATA_DIR)
    p.add_argument("--holdout", default=",".join(HOLDOUT), help="comma-separated held-out article titles")
    args = p.parse_args(argv)
    swaps = heldout_swaps(args.data_dir, [t.strip() for t in args.holdout.split(",") if t.strip()])
    print(f"{len(swaps)} held-out questions with a name to swap")
    for folder in args.readers:
        reader = SpanReader(folder)
        asked = np.array(margins(reader, [(e["question"], e["context"]) for e, _ in swaps]))
        swapped = np.array(margins(reader, [(q, e["context"]) for e, q in swaps]))
        line = f"{folder}: no-answer wins for {np.mean(asked < 0):.1%} as written"
        line += f", {np.mean(swapped < 0):.1%} swapped"
        for rate in (0.90, 0.85):
            line += f"; {declined_at(asked, swapped, rate):.1f}% declined at {rate:.0%} answered"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
