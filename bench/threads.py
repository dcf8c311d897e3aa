"""The thread-settings profile behind ``qa.store.embedding`` and ``qa.store.vectors``, before and after.

OpenMP reads its wait policy once, when the runtime loads, so each policy runs in its own
process: one with libgomp's default (idle threads spin before sleeping), one with
``OMP_WAIT_POLICY=PASSIVE`` (what ``qa.store.embedding`` sets). Inside each, the variants are
interleaved question by question.

Child mode (used internally): ``python -m bench.threads child POLICY N_QUESTIONS``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from bench.common import ROOT, load_line, median, table

VARIANTS = [
    ("query: SentenceTransformer.encode, 2 threads (before)", "encode2"),
    ("query: SentenceTransformer.encode, 1 thread", "encode1"),
    ("query: qa embedder (after: 1 thread, no encode() overhead)", "qa"),
    ("query: FAISS flat search, 20k vectors, 2 threads (before)", "faiss2"),
    ("query: FAISS flat search, 20k vectors, 1 thread (after)", "faiss1"),
    ("build: encode 64 chunks, 2 threads, ms per chunk", "batch2"),
    ("build: encode 64 chunks, 1 thread, ms per chunk", "batch1"),
]


def run(n_questions: int) -> tuple[dict[str, Any], list[str]]:
    out: dict[str, Any] = {}
    for policy in ("default", "PASSIVE"):
        env = dict(os.environ)
        env.pop("OMP_WAIT_POLICY", None)
        if policy == "PASSIVE":
            env["OMP_WAIT_POLICY"] = "PASSIVE"
        proc = subprocess.run(
            [sys.executable, "-m", "bench.threads", "child", policy, str(n_questions)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"threads child failed:\n{proc.stderr[-3000:]}")
        out[policy] = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = [[label, out["default"][key], out["PASSIVE"][key]] for label, key in VARIANTS]
    md = [
        table(
            f"Thread settings, median ms ({n_questions} SQuAD questions each; {load_line()})",
            ["variant", "OpenMP default wait (before)", "OMP_WAIT_POLICY=PASSIVE (after)"],
            rows,
        )
    ]
    return out, md


def child(policy: str, n: int) -> None:
    # Load torch and FAISS before qa.store.embedding can set OMP_WAIT_POLICY, so the parent's
    # environment alone decides the policy of this process.
    import faiss
    import numpy as np
    import torch

    from bench.common import sentence_transformer
    from bench.corpus import chunk_texts, sample, squad
    from qa.store.embedding import SentenceTransformerEmbedder

    docs, questions = squad()
    qs = [q.text for q in sample(questions, n, seed=3)]
    chunks, _ = chunk_texts(docs[:64])
    chunks = chunks[:64]
    emb = SentenceTransformerEmbedder()
    emb.model  # noqa: B018 - load outside the timings
    model = sentence_transformer()
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((20_000, 384), dtype=np.float32)
    flat = faiss.IndexFlatIP(384)
    flat.add(xb)
    qv = rng.standard_normal((n, 384), dtype=np.float32)

    def encode(q: str, threads: int) -> float:
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        model.encode([q], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return time.perf_counter() - t0

    def ours(q: str) -> float:
        torch.set_num_threads(2)
        t0 = time.perf_counter()
        emb.embed([q])
        return time.perf_counter() - t0

    def search(i: int, threads: int) -> float:
        faiss.omp_set_num_threads(threads)
        t0 = time.perf_counter()
        flat.search(qv[i : i + 1], 50)
        return time.perf_counter() - t0

    for q in qs[:3]:
        encode(q, 2), encode(q, 1), ours(q)
    times: dict[str, list[float]] = {k: [] for _, k in VARIANTS}
    for i, q in enumerate(qs):
        times["encode2"].append(encode(q, 2))
        times["encode1"].append(encode(q, 1))
        times["qa"].append(ours(q))
        times["faiss2"].append(search(i, 2))
        times["faiss1"].append(search(i, 1))
    for threads in (2, 1):
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        model.encode(chunks, batch_size=32, show_progress_bar=False)
        times[f"batch{threads}"].append((time.perf_counter() - t0) / len(chunks))
    torch.set_num_threads(2)
    result: dict[str, Any] = {k: round(median(v) * 1000, 2) for k, v in times.items()}
    result["policy"] = os.environ.get("OMP_WAIT_POLICY", "(default)")
    print(json.dumps(result))


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "child":
    child(sys.argv[2], int(sys.argv[3]))
