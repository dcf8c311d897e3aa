"""FAISS vector indexes: exact search below a size threshold, HNSW above it.

Choices (benchmarks in ``bench/README.md``; the figures behind them in
``docs/experiments.md#vector-index``):

* Exact ``IndexFlatIP`` up to ``hnsw_threshold`` vectors: a scan that size is cheap and never wrong.
* ``IndexHNSWFlat`` above it: near-exact recall in under a millisecond a query, with no training
  pass before a build (IVF needs one, and many probes for the same recall).
* ``vector_compression="sq8"`` stores either kind's vectors in one byte a dimension, 4x smaller,
  for a little recall (``docs/scale.md#compressed-vectors``).
* One query is searched on one thread: FAISS splits a single-query scan over its OpenMP
  threads, and on a shared CPU waiting for a descheduled thread costs a scheduler slice.
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

#: Graph degree: 32 recalls clearly more than 16 on clustered vectors.
HNSW_M = 32
#: Candidates while building: it decides the graph's quality at scale.
HNSW_EF_CONSTRUCTION = 80
#: Candidates while searching (FAISS raises it to k when k is larger): a tenth of the query's
#: embedding time at 1M vectors, where fewer lose recall for little time.
HNSW_EF_SEARCH = 128


#: The ``vector_compression="sq8"`` storage: one byte a dimension (8-bit scalar quantisation),
#: 4x smaller than float32 (recall in docs/scale.md#compressed-vectors).
_QT_8BIT: Any = faiss.ScalarQuantizer.QT_8bit


def build_vector_index(vectors: np.ndarray, hnsw_threshold: int, compression: str = "none") -> Any:
    """An inner-product index over L2-normalised ``vectors`` (so scores are cosines).

    Exact (``IndexFlatIP``) up to ``hnsw_threshold`` vectors: at that size a brute-force
    scan takes milliseconds and is never wrong. Above it, HNSW keeps search sub-linear.
    ``compression="sq8"`` stores each vector in one byte a dimension (``_fit_sq8``).
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    index: Any
    kind = kind_for(len(vectors), hnsw_threshold, compression)
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "flat-sq8":
        index = faiss.IndexScalarQuantizer(dim, _QT_8BIT, faiss.METRIC_INNER_PRODUCT)
        _fit_sq8(index, vectors)
    else:
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexHNSWSQ(dim, _QT_8BIT, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            _fit_sq8(faiss.downcast_index(index.storage), vectors)
            index.is_trained = True
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    if len(vectors):
        index.add(vectors)
    return index


def _fit_sq8(index: Any, vectors: np.ndarray) -> None:
    """Set an 8-bit scalar quantiser's range per dimension so that the smallest and largest
    values of ``vectors`` are the centres of its first and last codes. Decoded vectors then span
    the same range, so a rebuild that reuses them (``reconstruct``) fits the same quantiser and
    gets the same codes back, instead of drifting a little with every build as FAISS's own
    min-max training would."""
    low = vectors.min(axis=0) if len(vectors) else np.zeros(vectors.shape[1], np.float32)
    high = vectors.max(axis=0) if len(vectors) else np.zeros(vectors.shape[1], np.float32)
    # FAISS codes x as int(255 (x - vmin) / vdiff) and decodes code c as vmin + vdiff (c + 0.5) / 255
    diff = np.maximum((high - low) * 255 / 254, 1e-6)
    trained = np.concatenate([low - 0.5 * diff / 255, diff]).astype(np.float32)
    faiss.copy_array_to_vector(trained, index.sq.trained)
    index.is_trained = True


def kind_for(n: int, hnsw_threshold: int, compression: str = "none") -> str:
    """The kind of index ``build_vector_index`` makes for ``n`` vectors: ``"flat"`` or ``"hnsw"``,
    with ``"-sq8"`` when compressed."""
    kind = "flat" if n <= hnsw_threshold else "hnsw"
    return kind if compression == "none" else f"{kind}-{compression}"


def index_kind(index: Any) -> str:
    """The name a manifest records for ``index`` (``kind_for``'s names)."""
    hnsw = isinstance(index, faiss.IndexHNSW)
    storage = faiss.downcast_index(index.storage) if hnsw else index
    sq8 = "-sq8" if isinstance(storage, faiss.IndexScalarQuantizer) else ""
    return ("hnsw" if hnsw else "flat") + sq8


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
