"""BM25's k1, b and word-pair buckets, and the fusion's dense weight, compared through the
engine's own fusion on the same dense candidates.

Each SQuAD file's paragraphs are indexed as the app does (the cached ``qa eval`` index). For
every (k1, b, buckets) a BM25 index is built over the same chunk texts with ``qa.store.lexical``'s
terms (buckets 0: words only, no word pairs); each answerable question's BM25 top 50 is fused
with its dense top 50 by ``retrieval.fuse`` with each dense weight and the app's sentence and
overlap weights (``--sentence-weight 0 --overlap-weight 0``: the chunk's cosine alone and no
sentence overlap, as when these parameters were tuned; the tables in bench/README.md were
measured so). Recall@k and MRR@10 count
the gold paragraph among distinct documents, as ``qa eval`` does. Tune on one file, confirm
on the other:

    .venv/bin/python -m bench.bm25_sweep                    # both files, the default grid (~6 min)
    .venv/bin/python -m bench.bm25_sweep --k1 0.6 1.5 --b 0.5 0.75 --buckets 0 --dense-weight 0.5
    .venv/bin/python -m bench.bm25_sweep --k1 0.6 --b 0.5 --buckets 0 65536 262144 1048576
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import load_line, table
from bench.fusion import FILES, squad_index
from qa.answer.retrieval import Ranked, fuse
from qa.config import Settings
from qa.evaluation import metrics
from qa.store import vectors
from qa.store.index import embed_text
from qa.store.lexical import BIGRAM_BUCKETS, BM25_PARAMS, corpus_token_ids, query_term_ids, tokenize


def sweep(
    path: Path, settings: Settings, grid: list[tuple[float, float, int]], weights: list[float]
) -> list[list[Any]]:
    import bm25s

    s = settings

    qa, questions, vecs = squad_index(path, settings)
    idx = qa.data
    dense = [vectors.search(idx.vectors, v, settings.candidates) for v in vecs]
    texts = [embed_text(c) for c in idx.chunks]
    # "(qa)" marks the app's own row
    app = (settings.sentence_weight, settings.overlap_weight) == (
        Settings().sentence_weight,
        Settings().overlap_weight,
    )
    shipped = (BM25_PARAMS["k1"], BM25_PARAMS["b"], BIGRAM_BUCKETS, settings.dense_weight if app else -1.0)
    rows = []
    for k1, b, buckets in grid:
        ids, vocab = corpus_token_ids(texts, buckets)
        bm25 = bm25s.BM25(method=BM25_PARAMS["method"], k1=k1, b=b)
        bm25.index(ids, show_progress=False)
        ranked = []
        for q, (d_scores, d_ids) in zip(questions, dense, strict=True):
            terms = query_term_ids(tokenize(q.text), vocab, buckets)
            scores = bm25.get_scores(terms) if terms else np.zeros(len(idx.chunks))
            top = np.argsort(-scores, kind="stable")[: settings.candidates]
            top = top[scores[top] > 0]
            ranked.append(
                Ranked(
                    {int(i): (r, float(s)) for r, (i, s) in enumerate(zip(d_ids, d_scores, strict=True), 1)},
                    {int(i): (r, float(scores[i])) for r, i in enumerate(top, 1)},
                    frozenset(tokenize(q.text)),
                )
            )
        for w in weights:
            ranks = [
                metrics.gold_rank(
                    [h.chunk.doc_id for h in fuse(idx, r, v, 30, w, s.sentence_weight, s.overlap_weight)],
                    q.doc_id,
                )
                for q, v, r in zip(questions, vecs, ranked, strict=True)
            ]
            mark = " (qa)" if (k1, b, buckets, w) == shipped else ""
            rows.append(
                [f"{k1:g}", f"{b:g}", str(buckets), f"{w:g}{mark}"]
                + [f"{np.mean([x is not None and x <= k for x in ranks]):.3f}" for k in (1, 5, 10)]
                + [f"{np.mean([1.0 / x if x is not None and x <= 10 else 0.0 for x in ranks]):.3f}"]
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="*", type=Path, default=FILES)
    ap.add_argument("--k1", nargs="*", type=float, default=[0.6, 1.2])
    ap.add_argument("--b", nargs="*", type=float, default=[0.5])
    ap.add_argument("--buckets", nargs="*", type=int, default=[0, BIGRAM_BUCKETS], help="0: no word pairs")
    ap.add_argument("--dense-weight", nargs="*", type=float, default=[0.5, 0.6, 0.65, 0.7, 0.8])
    ap.add_argument(
        "--sentence-weight", type=float, default=None, help="the best sentence's share of the dense score"
    )
    ap.add_argument(
        "--overlap-weight",
        type=float,
        default=None,
        help="the sentence word overlap's weight in the fused score",
    )
    args = ap.parse_args(argv)
    settings = Settings()
    if args.sentence_weight is not None:
        settings = settings.replace(sentence_weight=args.sentence_weight)
    if args.overlap_weight is not None:
        settings = settings.replace(overlap_weight=args.overlap_weight)
    grid = [(k1, b, n) for k1 in args.k1 for b in args.b for n in args.buckets]
    for path in args.files:
        rows = sweep(path, settings, grid, args.dense_weight)
        title = (f"BM25 parameters on {path.name} (answerable questions, fused as the app fuses; "
                 f"{load_line()})")  # fmt: skip
        table(title, ["k1", "b", "pair buckets", "dense weight", "R@1", "R@5", "R@10", "MRR@10"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
