"""The dense score from the best sentence of a chunk, beside the chunk's own cosine, and the
question words one sentence holds.

A question usually matches one sentence of its passage; the chunk's single vector averages
that sentence with the rest. With ``sentence_weight`` above 0 (the default is 1,
``QA_SENTENCE_WEIGHT``), ``retrieval.fuse`` re-scores the candidates both retrievers found with
``sentence_weight * (best sentence cosine) + (1 - sentence_weight) * (chunk cosine)`` before
weighing BM25; with ``overlap_weight`` above 0 (default 0.15, ``QA_OVERLAP_WEIGHT``) it adds
that much of the most idf-weighted question words one sentence holds, over the query's best
(``retrieval.sentence_overlap``). The indexes here are built with sentence vectors whatever the settings say
(the bundled model pools them from each chunk's own forward pass, ``PoolingEmbedder.embed_pooled``).
This compares sentence, dense and overlap weights through the engine's own
``retrieve`` and ``fuse`` on each SQuAD file's cached ``qa eval`` index (answerable questions,
gold paragraph among distinct documents, as ``qa eval`` counts), separately on the articles
the reader trained on (where the weights were chosen), on its held-out articles, and on all:

    .venv/bin/python -m bench.sentence_dense               # both files, the default grid (~10 min)
    .venv/bin/python -m bench.sentence_dense --sentence-weight 0 0.75 --dense-weight 0.65 0.75 \
        --overlap-weight 0 0.15
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bench.common import load_line, table
from bench.fusion import FILES, squad_index
from qa.answer.retrieval import fuse, retrieve
from qa.config import Settings
from qa.evaluation import metrics
from qa.evaluation.evaluate import heldout_articles

#: (sentence, dense, overlap weight): the chunk's cosine alone, weighed 0.65 (the default before
#: sentence vectors); the best sentence's cosine weighed 0.7 (the default before the overlap);
#: and the default.
BEFORE = (0.0, 0.65, 0.0)
PREVIOUS = (1.0, 0.7, 0.0)
DEFAULT = (Settings().sentence_weight, Settings().dense_weight, Settings().overlap_weight)
MARKS = {BEFORE: " (chunk only)", PREVIOUS: " (before overlap)", DEFAULT: " (default)"}


def scores(ranks: list[int | None]) -> list[float]:
    return [float(np.mean([x is not None and x <= k for x in ranks])) for k in (1, 5, 10)] + [
        float(np.mean([1.0 / x if x is not None and x <= 10 else 0.0 for x in ranks]))
    ]


def sweep(path: Path, settings: Settings, grid: list[tuple[float, float, float]]) -> list[list[str]]:
    qa, questions, vecs = squad_index(path, settings.replace(sentence_weight=DEFAULT[0] or 1.0))
    idx = qa.data
    if idx.sentences is None:
        raise SystemExit(f"the index of {path} has no sentence vectors: rebuild it")
    held = set(heldout_articles())
    ranked = [retrieve(idx, v, q.text, settings.candidates) for q, v in zip(questions, vecs, strict=True)]
    groups = {
        "training articles": [i for i, q in enumerate(questions) if q.article not in held],
        "held-out articles": [i for i, q in enumerate(questions) if q.article in held],
        "all": list(range(len(questions))),
    }
    rows = []
    for name, members in groups.items():
        base: list[float] = []
        for s, w, o in [BEFORE, *[g for g in grid if g != BEFORE]]:
            ranks = [
                metrics.gold_rank(
                    [h.chunk.doc_id for h in fuse(idx, ranked[i], vecs[i], 30, w, s, o)], questions[i].doc_id
                )
                for i in members
            ]
            got = scores(ranks)
            base = base or got
            rows.append(
                [f"{name} ({len(members)})", f"{s:g}", f"{w:g}", f"{o:g}{MARKS.get((s, w, o), '')}"]
                + [f"{x:.3f}" for x in got]
                + [f"{got[0] - base[0]:+.3f}", f"{got[3] - base[3]:+.3f}"]
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="*", type=Path, default=FILES)
    ap.add_argument("--sentence-weight", nargs="*", type=float, default=[0.0, 1.0])
    ap.add_argument("--dense-weight", nargs="*", type=float, default=[0.65, 0.7, 0.75, 0.8])
    ap.add_argument("--overlap-weight", nargs="*", type=float, default=[0.0, 0.1, 0.15, 0.2])
    args = ap.parse_args(argv)
    settings = Settings()
    grid = [(s, w, o) for s in args.sentence_weight for w in args.dense_weight for o in args.overlap_weight]
    for path in args.files:
        rows = sweep(path, settings, grid)
        title = (f"Sentence, dense and overlap weights on {path.name} (answerable questions, fused as "
                 f"the app fuses; {load_line()})")  # fmt: skip
        headers = ["questions", "sentence weight", "dense weight", "overlap weight", "R@1", "R@5", "R@10",
                   "MRR@10", "R@1 vs chunk only", "MRR@10 vs chunk only"]  # fmt: skip
        table(title, headers, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
