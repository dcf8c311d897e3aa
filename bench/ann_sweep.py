"""The measurements behind ``qa/store/vectors.py``'s HNSW settings: recall@10 against exact search
and one-thread latency for HNSW and IVF configurations on the clustered synthetic vectors.

    python -m bench.ann_sweep --n 100k            # ~5 min on 2 busy cores
    python -m bench.ann_sweep --n 1m              # ~1 h: each 1M HNSW build takes 15-20 min here

Not part of ``make bench``: it only re-derives the constants.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import faiss
import numpy as np

from bench.common import load_line, median, ms, table
from bench.corpus import clustered_vectors

CONFIGS = ["hnsw:32:80:64,128,256", "hnsw:32:40:128,256", "hnsw:16:80:64,128", "ivf:1024:64,128,256"]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ann_sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="100k", help="corpus size: 100k, 1m, ...")
    parser.add_argument("--configs", default=",".join(c.replace(",", "/") for c in CONFIGS))
    args = parser.parse_args()
    t = args.n.lower()
    n = int(float(t[:-1]) * {"k": 1_000, "m": 1_000_000}[t[-1]]) if t[-1] in "km" else int(t)
    xb = clustered_vectors(n + 200, seed=1)
    queries, xb = xb[n:].copy(), xb[:n]
    exact = faiss.IndexFlatIP(xb.shape[1])
    exact.add(xb)
    _, truth = exact.search(queries, 10)
    del exact
    rows = []
    for config in args.configs.split(","):
        kind, *params = config.split(":")
        sweep = [int(v) for v in params[-1].split("/")]
        t0 = time.perf_counter()
        index: Any
        if kind == "hnsw":
            m, efc = int(params[0]), int(params[1])
            index = faiss.IndexHNSWFlat(xb.shape[1], m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = efc
            index.add(xb)
            name = f"HNSW M{m} efConstruction {efc}"
        else:
            nlist = int(params[0])
            index = faiss.IndexIVFFlat(
                faiss.IndexFlatIP(xb.shape[1]), xb.shape[1], nlist, faiss.METRIC_INNER_PRODUCT
            )
            sample = np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False)
            index.train(xb[sample])
            index.add(xb)
            name = f"IVF{nlist},Flat"
        build_s = time.perf_counter() - t0
        for value in sweep:
            if kind == "hnsw":
                index.hnsw.efSearch = value
                setting = f"efSearch {value}"
            else:
                index.nprobe = value
                setting = f"nprobe {value}"
            _, found = index.search(queries, 10)
            recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)]))
            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            lat = []
            for q in queries[:100]:
                t1 = time.perf_counter()
                index.search(q[None, :], 50)
                lat.append(time.perf_counter() - t1)
            faiss.omp_set_num_threads(threads)
            rows.append([name, setting, build_s, recall, ms(median(lat))])
        del index
    table(
        f"Approximate search on {n:,} clustered vectors (recall@10 vs exact, 200 queries; "
        f"latency: k=50, one thread; {load_line()})",
        ["index", "search setting", "build s", "recall@10", "median ms"],
        rows,
    )


if __name__ == "__main__":
    main()
