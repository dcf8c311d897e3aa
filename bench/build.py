"""Section 2: index build throughput against the raw encoder, and incremental rebuilds."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import load_line, median, say, sentence_transformer, table
from bench.corpus import chunk_texts
from qa.config import Settings
from qa.store import index as index_mod
from qa.store.embedding import Pooled, ProgressFn, SentenceTransformerEmbedder, Spans
from qa.types import Document


class TimedEmbedder:
    """Delegates to an embedder and adds up the seconds spent embedding."""

    def __init__(self, inner: SentenceTransformerEmbedder) -> None:
        self.inner = inner
        self.seconds = 0.0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def pools_spans(self) -> bool:
        return self.inner.pools_spans

    @contextlib.contextmanager
    def _timed(self) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - t0

    def embed(
        self, texts: Sequence[str], batch_size: int = 32, progress: ProgressFn | None = None
    ) -> np.ndarray:
        with self._timed():
            return self.inner.embed(texts, batch_size=batch_size, progress=progress)

    def embed_pooled(
        self, texts: Sequence[str], spans: Spans, batch_size: int = 32, progress: ProgressFn | None = None
    ) -> Pooled:
        with self._timed():
            return self.inner.embed_pooled(texts, spans, batch_size=batch_size, progress=progress)


def run(
    docs: list[Document],
    index_dir: Path,
    embedder: SentenceTransformerEmbedder,
    rounds: int = 1,
    incremental: int = 3,
) -> tuple[dict[str, Any], list[str]]:
    """Raw ``SentenceTransformer.encode`` and full pipeline builds, alternating ``rounds`` times.

    The last full build is left in ``index_dir`` for the latency benchmark.
    """
    settings = Settings(index_dir=index_dir)
    texts, _ = chunk_texts(docs)
    model = sentence_transformer(embedder.name)
    raw_s: list[float] = []
    full: list[dict[str, float]] = []
    for r in range(rounds):
        say(f"  build round {r + 1}/{rounds}: raw encode of {len(texts)} chunks ({load_line()})")
        t0 = time.perf_counter()
        model.encode(
            texts,
            batch_size=settings.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        raw_s.append(time.perf_counter() - t0)
        say(f"  build round {r + 1}/{rounds}: full pipeline build ({load_line()})")
        _clear(index_dir)
        timed = TimedEmbedder(embedder)
        report = index_mod.build(docs, index_dir, timed, settings)
        assert report.chunks == len(texts), (report.chunks, len(texts))
        full.append({"seconds": report.seconds, "embed": timed.seconds, "chunks": report.chunks})
    raw_cps = [len(texts) / s for s in raw_s]
    pipe_cps = [f["chunks"] / f["seconds"] for f in full]
    ratios = [p / r for p, r in zip(pipe_cps, raw_cps, strict=True)]
    full_s = median([f["seconds"] for f in full])

    # Incremental: one document's text changes, everything else is reused.
    rng = np.random.default_rng(0)
    inc: list[dict[str, Any]] = []
    current = list(docs)
    for i in range(incremental):
        j = int(rng.integers(len(current)))
        d = current[j]
        text = d.text + f" This paragraph was revised ({i})."
        current[j] = _with_text(d, text)
        timed = TimedEmbedder(embedder)
        report = index_mod.build(current, index_dir, timed, settings)
        inc.append(
            {
                "seconds": report.seconds,
                "embedded": report.embedded,
                "embed": timed.seconds,
                "changed": report.changed,
            }
        )
    inc_s = median([x["seconds"] for x in inc])

    result = {
        "chunks": len(texts),
        "rounds": rounds,
        "raw_encode_seconds": raw_s,
        "raw_chunks_per_s": median(raw_cps),
        "pipeline": full,
        "pipeline_chunks_per_s": median(pipe_cps),
        "pipeline_over_raw": median(ratios),
        "pipeline_embed_share": median([f["embed"] / f["seconds"] for f in full]),
        "incremental": inc,
        "incremental_seconds": inc_s,
        "incremental_over_full": inc_s / full_s,
    }
    md = [
        table(
            f"Index build, SQuAD ({len(docs)} paragraphs, {len(texts)} chunks; {load_line()})",
            ["what", "seconds", "chunks/s", "vs raw encode"],
            [
                [
                    "raw SentenceTransformer.encode (same chunks, batch 32)",
                    median(raw_s),
                    median(raw_cps),
                    1.0,
                ],
                ["full build (chunk, embed, FAISS, BM25, write)", full_s, median(pipe_cps), median(ratios)],
                ["  of which embedding", median([f["embed"] for f in full]), "", ""],
                [
                    f"incremental: 1 paragraph changed (median of {len(inc)})",
                    inc_s,
                    f"{inc_s / full_s:.1%} of full",
                    "",
                ],
            ],
        )
    ]
    return result, md


def _with_text(doc: Document, text: str) -> Document:
    from qa.ingest.sources import make_document

    return make_document(doc.doc_id, text, doc.title)


def _clear(index_dir: Path) -> None:
    import shutil

    if index_dir.exists():
        shutil.rmtree(index_dir)
