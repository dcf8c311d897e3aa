"""The peer side of section 3: txtai on the same chunks, model and questions.

Runs inside ``bench/.venv-peer`` (txtai is never a dependency of qa), started by ``bench.peer``:

    bench/.venv-peer/bin/python bench/peer_txtai.py JOB.json OUT.json

JOB.json holds the model folder, the chunk texts, the questions and the thread settings; OUT.json
gets the build time, the per-question latencies and the ranked chunk ids.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(job_path: str, out_path: str) -> None:
    with open(job_path, encoding="utf-8") as fh:
        job = json.load(fh)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    t0 = time.perf_counter()
    import torch
    from txtai import Embeddings

    import_s = time.perf_counter() - t0
    config = {
        "path": job["model"],
        "hybrid": True,  # dense + BM25, like qa
        "content": False,
        "maxlength": 256,  # the model's max_seq_length, as sentence-transformers uses it
        "backend": "faiss",
    }
    t0 = time.perf_counter()
    embeddings = Embeddings(config)
    embeddings.index([(0, "warm up the model", None)])  # loads the model outside the timed build
    load_s = time.perf_counter() - t0

    texts = job["texts"]
    t0 = time.perf_counter()
    embeddings.index([(i, t, None) for i, t in enumerate(texts)])
    build_s = time.perf_counter() - t0

    k = job["k"]
    embeddings.search("warm up query", k)
    if job.get("query_threads"):
        torch.set_num_threads(int(job["query_threads"]))
    latencies, ranked = [], []
    for q in job["questions"]:
        t0 = time.perf_counter()
        hits = embeddings.search(q, k)
        latencies.append(time.perf_counter() - t0)
        ranked.append([int(h[0]) for h in hits])
    out = {
        "peer": "txtai",
        "version": _version(),
        "config": config,
        "torch_threads_build": torch.get_num_threads() if not job.get("query_threads") else None,
        "query_threads": job.get("query_threads"),
        "import_seconds": import_s,
        "model_load_seconds": load_s,
        "build_seconds": build_s,
        "chunks": len(texts),
        "latencies": latencies,
        "ranked": ranked,
    }
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(out, fh)


def _version() -> str:
    from importlib.metadata import version

    return version("txtai")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
