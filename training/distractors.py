"""Mine the reader's no-answer distractors with the product's own retriever.

    python -m training.distractors --out artifacts/distractors.json     (about 2 minutes on 2 cores)

``training.reader`` labels, for each answerable training question, other paragraphs "no answer"
so that the reader learns to abstain on passages that look relevant but are silent. By default
those are BM25's top picks. This writes the paragraphs that the app's hybrid retrieval (dense +
BM25 + sentence overlap, ``qa.Settings`` defaults) ranks highest for each question instead, the
passages the reader actually meets at run time: the corpus is every paragraph of the training
articles of ``squad-v1.1-dev-a.json`` (the held-out articles are left out, so no held-out text
is trained on), and each question's picks skip its own paragraph and any paragraph that holds
one of its gold answers as whole words (case-insensitive), whose no-answer label could be wrong.

``python -m training.reader --distractor-file F --distractors N`` takes the first N picks of
each question. The file records the held-out titles and the source file's sha256; the trainer
refuses a file made for other held-out articles or another file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from qa import QA, Settings
from qa.errors import QAError
from qa.evaluation import evaluate as ev
from qa.store.embedding import make_embedder
from qa.store.files import write_atomic
from training.reader_data import DATA_DIR, HOLDOUT, V1_FILE, answer_pattern, load_squad, paragraph_key

#: Retrieval depth searched for each question's picks.
DEPTH = 12
#: Picks kept per question (``training.reader --distractors`` takes at most 4).
KEEP = 4


def pick(hits: list[tuple[str, str]], gold_doc: str, answers: list[str], keep: int = KEEP) -> list[str]:
    """From ranked ``(doc_id, paragraph text)`` hits, the first ``keep`` distinct paragraphs that
    are not ``gold_doc`` and hold none of ``answers`` (``answer_pattern``, case-insensitive).
    (``training.reader_data.bm25_distractors`` keeps its plain substring test, so that the recorded
    BM25 runs still rebuild the same data.)"""
    bad = [answer_pattern(a) for a in answers if a.strip()]
    seen: set[str] = set()
    out: list[str] = []
    for doc_id, text in hits:
        if doc_id == gold_doc or doc_id in seen:
            continue
        seen.add(doc_id)
        if any(a.search(text.lower()) for a in bad):
            continue
        out.append(text)
        if len(out) == keep:
            break
    return out


def mine(data_dir: Path, holdout: list[str], index_dir: Path, limit: int | None = None) -> dict[str, Any]:
    """The file's contents: each answerable question of the training articles (the first
    ``limit``) with its picks, asked through the app's retrieval over their paragraphs alone.
    A question with no pick is listed with none (the trainer then gives it no distractor)."""
    path = data_dir / V1_FILE
    whole = ev.load_squad(path)  # checks the file; its raw titles are what --holdout names
    hold = set(holdout)
    titles = sorted({str(a.get("title", "")) for a in load_squad(path)} - hold)
    data = ev.load_squad(path, titles)
    text_of = {d.doc_id: d.text for d in data.documents}
    questions = [q for q in data.questions if q.answers][:limit]
    settings = Settings(index_dir=index_dir)
    qa = QA.from_documents(data.documents, settings=settings, embedder=make_embedder(settings.model))
    picks: dict[str, list[str]] = {}
    t0 = time.perf_counter()
    for i, q in enumerate(questions, 1):
        hits = [(h.chunk.doc_id, text_of[h.chunk.doc_id]) for h in qa.search(q.text, k=DEPTH)]
        picks[q.qid] = [paragraph_key(t) for t in pick(hits, q.doc_id, list(q.answers))]
        if i % 500 == 0:
            print(f"{i}/{len(questions)} questions, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    counts = [len(v) for v in picks.values()]
    return {
        "source": V1_FILE,
        "file_sha256": whole.sha256,
        "holdout": sorted(holdout),
        "retriever": {
            "model": settings.model,
            "dense_weight": settings.dense_weight,
            "sentence_weight": settings.sentence_weight,
            "overlap_weight": settings.overlap_weight,
            "depth": DEPTH,
        },
        "questions": len(picks),
        "picks_per_question": {str(n): counts.count(n) for n in sorted(set(counts))},
        "picks": picks,
    }


def main(argv: list[str] | None = None) -> int:
    """The command line: mine, write the file atomically; errors as one line, exit status 2."""
    p = argparse.ArgumentParser(prog="python -m training.distractors", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="the JSON file to write")
    p.add_argument("--data-dir", default=str(DATA_DIR))
    p.add_argument("--holdout", default=",".join(HOLDOUT), help="comma-separated held-out titles")
    p.add_argument("--index-dir", default="artifacts/distractor-index", help="where the index is built")
    p.add_argument("--limit", type=int, default=None, help="only the first N questions (a smoke run)")
    args = p.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be 1 or more")
    holdout = [t.strip() for t in args.holdout.split(",") if t.strip()]
    try:
        result = mine(Path(args.data_dir), holdout, Path(args.index_dir), args.limit)
        write_atomic(Path(args.out), (json.dumps(result, indent=1) + "\n").encode())
    except (QAError, OSError) as exc:
        print(f"training.distractors: error: {exc}", file=sys.stderr)
        return 2
    per = result["picks_per_question"]
    print(f"wrote {args.out}: {result['questions']} questions, picks per question {per}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
