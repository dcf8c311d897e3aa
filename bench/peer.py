"""Section 3: qa against txtai on the same chunks, model and questions.

txtai lives in its own virtual environment, ``bench/.venv-peer`` (gitignored), created on first
use; it runs in a subprocess (``bench/peer_txtai.py``) so one ``make bench`` prints both sides.
Both sides: hybrid dense + BM25 retrieval, the bundled all-MiniLM-L6-v2 folder, offline, the
same thread settings (queries on one thread, builds on all; ``OMP_WAIT_POLICY=PASSIVE``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, load_line, median, ms, percentile, say, table
from bench.corpus import Question
from qa.pipeline import QA

VENV = ROOT / "bench" / ".venv-peer"
PEER_PY = VENV / "bin" / "python"
INSTALL = ["torch==2.13.0", "txtai>=9,<10"]
K = 10  # chunks asked for; Recall@5 counts the first 5 distinct documents among them


def ensure_venv() -> bool:
    """Create the peer's virtual environment if it is missing; False if that fails."""
    if PEER_PY.exists():
        ok = subprocess.run([str(PEER_PY), "-c", "import txtai"], capture_output=True).returncode == 0
        if ok:
            return True
    say(f"  creating {VENV} with {' '.join(INSTALL)} (once; a few minutes)")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(PEER_PY), "-m", "pip", "install", "-q", "--disable-pip-version-check", *INSTALL], check=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        say(f"  cannot create the peer environment ({exc}); skipping the peer comparison")
        return False
    return True


def recall_at(ranked_docs: list[list[str]], gold: list[str], n: int = 5) -> float:
    hits = 0
    for docs, g in zip(ranked_docs, gold, strict=True):
        hits += g in list(dict.fromkeys(docs))[:n]
    return hits / len(gold) if gold else float("nan")


def run(
    qa: QA, texts: list[str], doc_ids: list[str], questions: list[Question], our_build: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    from qa.store.embedding import resolve_model

    if not ensure_venv():
        return {"skipped": True}, []
    job = {
        "model": resolve_model(qa.embedder.name),
        "texts": texts,
        "questions": [q.text for q in questions],
        "k": K,
        "query_threads": 1,
    }
    with tempfile.TemporaryDirectory(prefix="qa-bench-peer-") as tmp:
        job_path, out_path = Path(tmp) / "job.json", Path(tmp) / "out.json"
        job_path.write_text(json.dumps(job), encoding="utf-8")
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_WAIT_POLICY="PASSIVE")
        load_peer = load_line()
        say(f"  peer: txtai build of {len(texts)} chunks + {len(questions)} questions ({load_peer})")
        t0 = time.perf_counter()
        script = ROOT / "bench" / "peer_txtai.py"
        proc = subprocess.run(
            [str(PEER_PY), str(script), str(job_path), str(out_path)], env=env, capture_output=True, text=True
        )
        peer_wall = time.perf_counter() - t0
        if proc.returncode != 0:
            say(proc.stderr[-3000:])
            return {"skipped": True, "error": proc.stderr[-2000:]}, []
        peer = json.loads(out_path.read_text(encoding="utf-8"))

    load_ours = load_line()
    say(f"  qa: the same {len(questions)} questions ({load_ours})")
    for q in questions[:3]:
        qa.search(q.text, k=K)
    ours_lat, ours_docs = [], []
    for q in questions:
        t0 = time.perf_counter()
        hits = qa.search(q.text, k=K)
        ours_lat.append(time.perf_counter() - t0)
        ours_docs.append([h.chunk.doc_id for h in hits])
    gold = [q.doc_id for q in questions]
    peer_docs = [[doc_ids[i] for i in ids if 0 <= i < len(doc_ids)] for ids in peer["ranked"]]
    r_ours, r_peer = recall_at(ours_docs, gold), recall_at(peer_docs, gold)
    lat_ours, lat_peer = median(ours_lat), median(peer["latencies"])
    cps_ours = our_build["pipeline_chunks_per_s"]
    cps_peer = peer["chunks"] / peer["build_seconds"]
    result = {
        "peer": f"txtai {peer['version']}",
        "config": peer["config"],
        "questions": len(questions),
        "ours": {
            "search_ms": {"median": ms(lat_ours), "p95": ms(percentile(ours_lat, 0.95))},
            "recall_at_5": r_ours,
            "build_chunks_per_s": cps_ours,
            "load": load_ours,
        },
        "peer_side": {
            "search_ms": {"median": ms(lat_peer), "p95": ms(percentile(peer["latencies"], 0.95))},
            "recall_at_5": r_peer,
            "build_chunks_per_s": cps_peer,
            "build_seconds": peer["build_seconds"],
            "model_load_seconds": peer["model_load_seconds"],
            "wall_seconds": peer_wall,
            "load": load_peer,
        },
        "speedup_search": lat_peer / lat_ours,
        "speedup_build": cps_ours / cps_peer,
    }
    fusion = _fusion_recall(qa, questions, doc_ids)
    result["recall_at_5_by_fusion"] = fusion
    md = [
        table(
            f"qa vs txtai {peer['version']}, SQuAD ({len(texts)} chunks, {len(questions)} questions, hybrid "
            f"dense+BM25 on both; qa run at {load_ours}, txtai at {load_peer})",
            ["", "qa", "txtai", "qa advantage"],
            [
                ["search median ms (k=10)", ms(lat_ours), ms(lat_peer), f"{lat_peer / lat_ours:.2f}x faster"],
                [
                    "search p95 ms",
                    ms(percentile(ours_lat, 0.95)),
                    ms(percentile(peer["latencies"], 0.95)),
                    "",
                ],
                [
                    "build chunks/s (full build)",
                    cps_ours,
                    cps_peer,
                    f"{cps_ours / cps_peer:.2f}x faster"
                    if cps_ours == cps_ours
                    else "(run with the build section)",
                ],
                [
                    "Recall@5 (gold paragraph, by document)",
                    f"{r_ours:.3f}",
                    f"{r_peer:.3f}",
                    f"{r_ours - r_peer:+.3f}",
                ],
            ],
        )
    ]
    md.append(
        table(
            "Recall@5 on the same questions by fusion rule, over qa's own candidates (dense top 50, "
            "BM25 top 50); qa uses the first",
            ["fusion", "Recall@5"],
            [[name, f"{value:.3f}"] for name, value in fusion.items()],
        )
    )
    return result, md


def _fusion_recall(qa: QA, questions: list[Question], doc_ids: list[str]) -> dict[str, float]:
    """Recall@5 of other ways to merge the same two candidate lists (``bench/fusion.py`` has
    the full comparison on both SQuAD files)."""
    from qa.answer.retrieval import fuse, retrieve

    data = qa.data
    chunk_doc = [c.doc_id for c in data.chunks]
    rules: dict[str, list[list[int]]] = {
        f"qa: {qa.settings.dense_weight:g} {'best sentence ' if qa.settings.sentence_weight else ''}cosine"
        f" + {1 - qa.settings.dense_weight:g} BM25 / best BM25"
        f"{f' + {qa.settings.overlap_weight:g} sentence overlap' if qa.settings.overlap_weight else ''}": [],
        "reciprocal rank fusion, k=60 (qa before)": [],
        "dense only": [],
        "BM25 only": [],
    }
    names = list(rules)
    rows_of = {id(c): i for i, c in enumerate(data.chunks)}
    for q in questions:
        qvec = qa.embedder.embed([q.text])[0]
        ranked = retrieve(data, qvec, q.text, 50)
        s = qa.settings
        hits = fuse(data, ranked, qvec, K, s.dense_weight, s.sentence_weight, s.overlap_weight)
        rules[names[0]].append([rows_of[id(h.chunk)] for h in hits])
        rrf: dict[int, float] = {}
        for results in (ranked.dense, ranked.lexical):
            for row, (rank, _) in results.items():
                rrf[row] = rrf.get(row, 0.0) + 1.0 / (60 + rank)
        rules[names[1]].append(sorted(rrf, key=lambda r: -rrf[r])[:K])
        rules[names[2]].append(sorted(ranked.dense, key=lambda r: ranked.dense[r][0])[:K])
        rules[names[3]].append(sorted(ranked.lexical, key=lambda r: ranked.lexical[r][0])[:K])
    gold = [q.doc_id for q in questions]
    return {n: recall_at([[chunk_doc[r] for r in rows] for rows in v], gold) for n, v in rules.items()}
