"""Fusion rules for dense + BM25 candidates, compared on the same candidate lists.

Each SQuAD file's paragraphs are indexed as the app does (the cached ``qa eval`` index); every
answerable question is embedded once, both retrievers return their top ``candidates``, and
each rule ranks the union. Recall@k and MRR@10 count the gold paragraph among the first k
distinct documents, as ``qa eval`` does. Tune on one file, confirm on the other:

    .venv/bin/python -m bench.fusion                       # both files, every rule
    .venv/bin/python -m bench.fusion --files ../shared/eval/squad-v2.0-dev-a.json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT, load_line, table
from qa.answer.retrieval import Ranked, fuse, retrieve
from qa.config import Settings
from qa.evaluation import metrics
from qa.evaluation.evaluate import DEFAULT_INDEX_ROOT, Question, index_dir_for, load_squad
from qa.pipeline import QA
from qa.store.embedding import make_embedder

FILES = [
    ROOT.parent / "shared" / "eval" / "squad-v1.1-dev-a.json",
    ROOT.parent / "shared" / "eval" / "squad-v2.0-dev-a.json",
]

Rule = Callable[[Ranked, dict[int, float]], dict[int, float]]


def rrf(k: int) -> Rule:
    def score(r: Ranked, cos: dict[int, float]) -> dict[int, float]:
        out: dict[int, float] = {}
        for results in (r.dense, r.lexical):
            for row, (rank, _) in results.items():
                out[row] = out.get(row, 0.0) + 1.0 / (k + rank)
        return out

    return score


def convex(alpha: float, norm: str) -> Rule:
    """alpha * dense + (1 - alpha) * BM25, each normalised over the query's candidates."""

    def score(r: Ranked, cos: dict[int, float]) -> dict[int, float]:
        bm = {row: s for row, (_, s) in r.lexical.items()}
        top = max(bm.values(), default=0.0)
        if norm == "max":  # txtai: cosine as is, BM25 over the query's best
            d = cos
            b = {row: s / top for row, s in bm.items()} if top > 0 else {}
        else:  # min-max over each list
            d = _minmax(cos)
            b = _minmax(bm)
        return {row: alpha * d.get(row, 0.0) + (1 - alpha) * b.get(row, 0.0) for row in cos}

    return score


def _minmax(scores: dict[int, float]) -> dict[int, float]:
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    span = hi - lo or 1.0
    return {row: (s - lo) / span for row, s in scores.items()}


def rules() -> dict[str, Rule]:
    out: dict[str, Rule] = {"rrf k=60": rrf(60), "rrf k=10": rrf(10)}
    for a in (0.3, 0.4, 0.5, 0.6):
        out[f"{a:g} cos + {1 - a:g} bm25/max"] = convex(a, "max")
    for a in (0.3, 0.4, 0.5):
        out[f"min-max {a:g} cos + {1 - a:g} bm25"] = convex(a, "minmax")
    return out


Candidates = list[tuple[str, Ranked, dict[int, float], np.ndarray]]


def squad_index(path: Path, settings: Settings) -> tuple[QA, list[Question], np.ndarray]:
    """The file's paragraphs indexed as the app does (the cached ``qa eval`` index), its
    answerable questions and their embeddings."""
    data = load_squad(path)
    embedder = make_embedder(settings.model)
    index_dir = index_dir_for(Path(DEFAULT_INDEX_ROOT), data, settings, embedder, 0.0, 0)
    qa = QA.from_documents(data.documents, settings=settings.replace(index_dir=index_dir), embedder=embedder)
    questions = [q for q in data.questions if not q.impossible]
    return qa, questions, embedder.embed([q.text for q in questions], batch_size=64)


def collect(path: Path, settings: Settings) -> tuple[Candidates, QA]:
    qa, questions, vecs = squad_index(path, settings)
    idx = qa.data
    out = []
    for q, v in zip(questions, vecs, strict=True):
        ranked = retrieve(idx, v, q.text, settings.candidates)
        rows = set(ranked.dense) | set(ranked.lexical)
        cos = {row: float(np.dot(idx.vectors.reconstruct(row), v)) for row in rows}
        out.append((q.doc_id, ranked, cos, v))
    return out, qa


def score_rule(rule: Rule | None, cands: Candidates, qa: QA) -> dict[str, float]:
    """Rank metrics of ``rule``; None: the engine's own ``retrieval.fuse`` with its settings."""
    chunks = qa.data.chunks
    ranks = []
    for gold, ranked, cos, v in cands:
        if rule is None:
            st = qa.settings
            hits = fuse(qa.data, ranked, v, 30, st.dense_weight, st.sentence_weight, st.overlap_weight)
            ids = [h.chunk.doc_id for h in hits]
        else:
            fused = rule(ranked, cos)
            order = sorted(fused, key=lambda r: (-fused[r], -(ranked.lexical.get(r, (0, 0.0))[1]), r))[:30]
            ids = [chunks[r].doc_id for r in order]
        ranks.append(metrics.gold_rank(ids, gold))
    res = {f"R@{k}": float(np.mean([x is not None and x <= k for x in ranks])) for k in (1, 5, 10)}
    res["MRR@10"] = float(np.mean([1.0 / x if x is not None and x <= 10 else 0.0 for x in ranks]))
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="*", type=Path, default=FILES)
    args = ap.parse_args(argv)
    settings = Settings()
    for path in args.files:
        cands, qa = collect(path, settings)
        rows: list[list[Any]] = []
        engine = (f"qa: retrieval.fuse (dense_weight {settings.dense_weight:g}, "
                  f"overlap_weight {settings.overlap_weight:g})")  # fmt: skip
        named: dict[str, Rule | None] = {**rules(), engine: None}
        for name, rule in named.items():
            r = score_rule(rule, cands, qa)
            rows.append([name, *(f"{r[k]:.3f}" for k in ("R@1", "R@5", "R@10", "MRR@10"))])
        title = (f"Fusion on {path.name} ({len(cands)} answerable questions, "
                 f"candidates {settings.candidates} per retriever; {load_line()})")  # fmt: skip
        print(table(title, ["rule", "R@1", "R@5", "R@10", "MRR@10"], rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
