"""FAISS vector indexes: exact search below a size threshold, HNSW above it.

Measured choices (``python -m bench.run`` and ``python -m bench.ann_sweep``; tables in
``bench/README.md``):

* Exact ``IndexFlatIP`` up to ``hnsw_threshold`` vectors: a one-thread scan costs about
  0.05-0.1 ms per thousand 384-d vectors (with the load) and is never wrong.
* ``IndexHNSWFlat`` above it: recall@10 0.996 against exact search at 1M clustered vectors,
  0.8 ms a query on one thread. IVF (1024 lists) needed 256 probes, 24 ms a query, for 0.96
  on the same vectors, and a training pass before every build.
* One query is searched on one thread: FAISS splits a single-query scan over its OpenMP
  threads, and on a shared CPU waiting for a descheduled thread costs a scheduler slice
  (a 20k-vector scan: 11.7 ms on 2 threads, 1.3 ms on one, on a busy 2-core machine).
* Index files are memory-mapped, not read: loading takes no time whatever the size, processes
  serving the same index share the pages, and the kernel can drop them under memory pressure.
  Files are never rewritten in place (each build writes a new generation), so a mapping stays
  valid.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from qa.errors import IndexCorruptError

#: Graph degree: 100k clustered vectors, efConstruction 40, efSearch 32: recall@10 0.930 with
#: 16, 0.968 with 32.
HNSW_M = 32
#: Candidates while building. It decides the graph's quality at scale: at 1M clustered vectors,
#: 80 gave recall@10 0.996 at efSearch 128 where 40 gave 0.877 (0.914 at efSearch 256).
HNSW_EF_CONSTRUCTION = 80
#: Candidates while searching (FAISS raises it to k when k is larger): 0.8 ms a query at 1M,
#: a tenth of the query's embedding; 64 saved 0.4 ms and lost 0.014 recall@10.
HNSW_EF_SEARCH = 128


def build_vector_index(vectors: np.ndarray, hnsw_threshold: int) -> Any:
    """An inner-product index over L2-normalised ``vectors`` (so scores are cosines).

    Exact (``IndexFlatIP``) up to ``hnsw_threshold`` vectors: at that size a brute-force
    scan takes milliseconds and is never wrong. Above it, HNSW keeps search sub-linear.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    index: Any
    if kind_for(len(vectors), hnsw_threshold) == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    if len(vectors):
        index.add(vectors)
    return index


def kind_for(n: int, hnsw_threshold: int) -> str:
    """The kind of index ``build_vector_index`` makes for ``n`` vectors: ``"flat"`` or ``"hnsw"``."""
    return "flat" if n <= hnsw_threshold else "hnsw"


def index_kind(index: Any) -> str:
    """``"hnsw"`` or ``"flat"``: the name a manifest records for ``index``."""
    return "hnsw" if isinstance(index, faiss.IndexHNSW) else "flat"


def write_vector_index(index: Any, path: Path) -> None:
    faiss.write_index(index, str(path))


def read_vector_index(path: Path) -> Any:
    """Map a FAISS index file into memory (FAISS's own binary format, not pickle)."""
    if not path.is_file():
        raise IndexCorruptError(f"index file {path} is missing: run `qa build` to rebuild it")
    try:
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
    except RuntimeError as exc:
        raise IndexCorruptError(
            f"index file {path} is damaged ({str(exc).splitlines()[0][:200]}): run `qa build`"
        ) from None
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = HNSW_EF_SEARCH
    return index


def search(index: Any, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` (scores, ids) for one query vector; ids of -1 are dropped."""
    k = min(k, int(index.ntotal))
    if k <= 0:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
    with one_thread():
        scores, ids = index.search(np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32), k)
    keep = ids[0] >= 0
    return scores[0][keep], ids[0][keep]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run FAISS on one OpenMP thread inside the block (the setting is per calling thread)."""
    before = faiss.omp_get_max_threads()
    if before > 1:
        faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        if before > 1:
            faiss.omp_set_num_threads(before)
