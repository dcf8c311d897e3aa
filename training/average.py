"""Average the weights of readers fine-tuned from one start ("model soup"): one model, the
inference cost of one, usually better than each of them.

    python -m training.average --out DIR READER_DIR READER_DIR [...]

Each READER_DIR is a folder ``training.reader`` wrote (weights, config, model card). The
readers must share the architecture; the held-out gold-paragraph EM/F1 of each and of the
average is measured on the articles none of them trained on and added to the card, which
starts from the first folder's. The average is written in fp16 like a trained reader.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from qa.answer.span_reader import WEIGHTS_FILE, SpanReader, build_model, sha256_file
from training.reader import log
from training.reader_data import DATA_DIR, build_data
from training.reader_eval import question_scores, summarise
from training.reader_model import export, load_reader_folder

CARD = "README.md"


def average(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of state dicts with the same names and shapes."""
    names = set(states[0])
    for s in states[1:]:
        if set(s) != names or any(s[k].shape != states[0][k].shape for k in names):
            raise SystemExit("the readers do not share one architecture: cannot average them")
    return {k: torch.stack([s[k] for s in states]).mean(dim=0) for k in states[0]}


def shipped_card(card: str, first_sha: str, sha: str) -> str:
    """The first reader's card, saying that what follows describes the first ingredient, with the
    file's size and sha256 now the average's."""
    lines = card.rstrip("\n").split("\n") if card else ["# qa span reader"]
    note = (
        "> The shipped weights average several readers fine-tuned from one start: see "
        "*Weight averaging* at the end. The data, training and scores below are the first one's."
    )
    lines[1:1] = ["", note]
    text = "\n".join(lines) + "\n"
    # same tensors, same precision: the size is unchanged, the hash is the average's
    return text.replace(first_sha, sha)


BOOTSTRAP = 2000


def paired_gain(new: list[float], old: list[float], seed: int = 0) -> dict[str, float]:
    """Mean of ``new - old`` per question (in F1 points, 0-100) and its 95% paired bootstrap
    interval: resampling questions keeps each question's two scores together."""
    diff = np.asarray(new, dtype=float) - np.asarray(old, dtype=float)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(BOOTSTRAP, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {
        "gain": round(100 * float(diff.mean()), 2),
        "low": round(100 * float(low), 2),
        "high": round(100 * float(high), 2),
    }


def ingredient_facts(card_path: Path) -> list[str]:
    """The lines of a reader's card that say how long and how it trained ("Steps run", "Command"),
    so the average's card keeps every ingredient's provenance."""
    if not card_path.is_file():
        return ["no model card"]
    keep = ("- Steps run:", "- Command:")
    lines = card_path.read_text(encoding="utf-8").splitlines()
    facts = [line[2:].strip() for line in lines if line.startswith(keep)]
    return facts or ["its card does not say how it was trained"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.average", description=__doc__.split("\n")[0])
    p.add_argument("readers", nargs="+", type=Path, help="reader folders to average (two or more)")
    p.add_argument("--out", required=True, type=Path, help="folder for the averaged reader")
    p.add_argument("--data-dir", default=str(DATA_DIR))
    p.add_argument("--eval-limit", type=int, default=None, help="cap on held-out questions")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to score the readers")
    args = p.parse_args(argv)
    if len(args.readers) < 2:
        p.error("give two or more reader folders")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    loaded = [load_reader_folder(f) for f in args.readers]
    configs = [c for _, c in loaded]
    if any(c.get("bert") != configs[0].get("bert") for c in configs):
        raise SystemExit("the readers' configs differ (bert): cannot average them")
    holdouts = {tuple(c.get("holdout", [])) for c in configs}
    if len(holdouts) != 1:
        raise SystemExit("the readers held out different articles: no honest score for the average")
    holdout = list(holdouts.pop())
    card = (args.readers[0] / CARD).read_text(encoding="utf-8") if (args.readers[0] / CARD).is_file() else ""
    shas = [sha256_file(f / WEIGHTS_FILE) for f in args.readers]

    _, _, heldout_q, _ = build_data(Path(args.data_dir), holdout, 0, None)
    if args.eval_limit is not None:
        heldout_q = heldout_q[: args.eval_limit]
    kw = {
        k: configs[0]["settings"][k]
        for k in ("max_length", "stride", "max_answer_tokens")
        if k in configs[0].get("settings", {})
    }
    if not heldout_q:
        raise SystemExit("no held-out questions to score the readers on")
    scores, per_question = [], []
    for folder in args.readers:
        got, secs = question_scores(SpanReader(folder, **kw).to(args.device), heldout_q)
        per_question.append([f for _, f in got])
        scores.append(summarise(got, secs))
        log(f"{folder}: held-out {scores[-1]}")

    model = build_model(configs[0]["bert"])
    model.load_state_dict(average([s for s, _ in loaded]), strict=False)
    meta = {
        "settings": {**configs[0].get("settings", {}), "averaged": [str(f) for f in args.readers]},
        "holdout": holdout,
    }
    wpath = export(model, args.out, configs[0]["bert"], meta)
    got, secs = question_scores(SpanReader(args.out, **kw).to(args.device), heldout_q)
    result = summarise(got, secs)
    log(f"average: held-out {result}")
    gains = [paired_gain([f for _, f in got], base) for base in per_question]
    sha = sha256_file(wpath)

    rows = [
        f"| `{f}` (sha256 {sha[:12]}...) | {c.get('settings', {}).get('seed', '?')} | "
        f"{c.get('settings', {}).get('epochs', '?')} | {s['em']:.2f} | {s['f1']:.2f} | "
        f"{g['gain']:+.2f} ({g['low']:+.2f} to {g['high']:+.2f}) |"
        for f, sha, c, s, g in zip(args.readers, shas, configs, scores, gains, strict=True)
    ]
    provenance = [f"- `{f}`: " + "; ".join(ingredient_facts(f / CARD)) for f in args.readers]
    section = "\n".join(
        [
            "",
            "## Weight averaging",
            "",
            f"The shipped weights are the element-wise mean of {len(args.readers)} readers fine-tuned "
            "from the same start (`python -m training.average`). Held-out gold-paragraph scores "
            f"({result['n']} questions of the held-out articles, fp16 as shipped):",
            "",
            "The last column is the average's F1 less that reader's, over the same questions, with a "
            f"95% paired bootstrap interval ({BOOTSTRAP} resamples of the questions).",
            "",
            "| reader | seed | epochs | EM | F1 | average's F1 gain |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
            f"| **average (shipped)** | | | **{result['em']:.2f}** | **{result['f1']:.2f}** | |",
            "",
            "How each was trained (from its own card):",
            "",
            *provenance,
            "",
            f"Command: `python -m training.average --out {args.out} "
            + " ".join(str(f) for f in args.readers)
            + "`",
            "",
            f"`{WEIGHTS_FILE}`: {wpath.stat().st_size} bytes, sha256 {sha}.",
            "",
        ]
    )
    (args.out / CARD).write_text(shipped_card(card, shas[0], sha) + section, encoding="utf-8")
    print(json.dumps({"readers": scores, "average": result, "gain_over_each": gains, "sha256": sha}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
