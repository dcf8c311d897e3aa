"""FAISS vector indexes: exact search below a size threshold, HNSW above it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np

from qa.errors import IndexCorruptError

HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128


def build_vector_index(vectors: np.ndarray, hnsw_threshold: int) -> Any:
    """An inner-product index over L2-normalised ``vectors`` (so scores are cosines).

    Exact (``IndexFlatIP``) up to ``hnsw_threshold`` vectors: at that size a brute-force
    scan takes milliseconds and is never wrong. Above it, HNSW keeps search sub-linear.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    index: Any
    if len(vectors) <= hnsw_threshold:
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    if len(vectors):
        index.add(vectors)
    return index


def write_vector_index(index: Any, path: Path) -> None:
    faiss.write_index(index, str(path))


def read_vector_index(path: Path) -> Any:
    """Read a FAISS index file (FAISS's own binary format, not pickle)."""
    if not path.is_file():
        raise IndexCorruptError(f"index file {path} is missing: run `qa build` to rebuild it")
    try:
        index = faiss.read_index(str(path))
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
    scores, ids = index.search(np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32), k)
    keep = ids[0] >= 0
    return scores[0][keep], ids[0][keep]
