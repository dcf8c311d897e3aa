"""The index on disk: FAISS vectors, a JSONL chunk store, BM25 arrays and a versioned manifest.

Layout of one generation (see ``qa.store.files`` for how generations are swapped)::

    manifest.json    format version, model, dimension, chunking settings, documents and hashes
    documents.jsonl  one document per line (id, title, sha256, text, and where a paged document's
                     pages or slides start: ``locations``, absent in indexes from before them)
    chunks.jsonl     one chunk per line; line n is vector id n
    vectors.faiss    the FAISS index (exact inner product, or HNSW above a size threshold)
    sentences.npy    one fp16 vector per sentence of each chunk (numpy, loaded without pickle;
                     absent when ``sentence_weight`` is 0), pooled from the chunk's own forward
                     pass or embedded apart (the manifest's ``sentence_vectors``)
    sentence_starts.npy  chunk n's sentences are rows starts[n]:starts[n + 1] of sentences.npy
    bm25/            bm25s arrays (numpy .npy, loaded without pickle) and vocabulary JSON

Nothing is ever unpickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from qa.config import Settings
from qa.errors import IndexCorruptError, IndexMismatchError
from qa.ingest.chunking import chunk_document
from qa.ingest.sentences import SPLIT_VERSION, sentence_spans
from qa.store import files as store
from qa.store.embedding import Embedder, PoolingEmbedder
from qa.store.lexical import LEXICAL_PARAMS, LexicalIndex
from qa.store.vectors import build_vector_index, index_kind, kind_for, read_vector_index, write_vector_index
from qa.types import Chunk, Document

log = logging.getLogger(__name__)

FORMAT = "qa-index"
FORMAT_VERSION = 1
#: Files above this size are checked by size only at load (hashing them would slow start-up).
HASH_CHECK_LIMIT = 256 * 1024 * 1024


@dataclass
class BuildReport:
    """What a build did."""

    documents: int = 0
    chunks: int = 0
    embedded: int = 0  # chunks whose vectors were computed (the rest were reused)
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    up_to_date: bool = False
    generation: str = ""


@dataclass
class IndexData:
    """A loaded generation: read-only after load, so it can be shared between threads."""

    path: Path
    manifest: dict[str, Any]
    documents: dict[str, Document]
    chunks: list[Chunk]
    vectors: Any  # a faiss.Index
    lexical: LexicalIndex
    # One vector per sentence of each chunk (fp16, memory-mapped), chunk n's being rows
    # sentence_starts[n]:sentence_starts[n + 1]; None in an index built without them (before
    # them, or with sentence_weight 0).
    sentences: np.ndarray | None = None
    sentence_starts: np.ndarray | None = None

    @property
    def model(self) -> str:
        return str(self.manifest["model"]["name"])


def chunking_settings(settings: Settings) -> dict[str, Any]:
    return {
        "encoding": settings.encoding,
        "chunk_tokens": settings.chunk_tokens,
        "chunk_overlap": settings.chunk_overlap,
        "title_in_embedding": True,
    }


def embed_text(chunk: Chunk) -> str:
    """What is embedded and BM25-indexed for a chunk: its title gives the passage context."""
    return f"{chunk.title}\n{chunk.text}" if chunk.title and chunk.title not in chunk.text else chunk.text


#: How an index's sentence vectors were made (the manifest's ``sentence_vectors``): none; each
#: sentence embedded apart, titled (``sentence_texts``); or pooled from its chunk's own forward
#: pass (``PoolingEmbedder.embed_pooled``, for models that expose their token states).
NONE, SEPARATE, POOLED = "none", "separate", "pooled"


def sentence_method_for(embedder: Embedder, settings: Settings) -> str:
    """How a build with these settings makes sentence vectors."""
    if settings.sentence_weight == 0:
        return NONE
    return POOLED if getattr(embedder, "pools_spans", False) else SEPARATE


def sentence_method(manifest: dict[str, Any]) -> str:
    """How an index's sentence vectors were made; an index from before pooling embedded them
    apart. Pooled over other sentence boundaries (``SPLIT_VERSION``) counts as another way."""
    default = SEPARATE if manifest.get("counts", {}).get("sentences") else NONE
    method = str(manifest.get("sentence_vectors", default))
    if method == POOLED and manifest.get("sentence_split") != SPLIT_VERSION:
        return f"{POOLED} (sentence split {manifest.get('sentence_split')})"
    return method


def sentence_texts(chunk: Chunk) -> list[str]:
    """What is embedded for each sentence of a chunk (in order), titled like ``embed_text``."""
    out = []
    for start, end in sentence_spans(chunk.text):
        text = chunk.text[start:end].strip()
        if text:
            out.append(f"{chunk.title}\n{text}" if chunk.title and chunk.title not in text else text)
    return out or [embed_text(chunk)]


def build(
    documents: Sequence[Document],
    index_dir: Path,
    embedder: Embedder,
    settings: Settings,
    progress: Callable[[int, int], None] | None = None,
    warnings: Sequence[str] = (),
    chunked: Mapping[str, list[Chunk]] | None = None,
    lock_held: bool = False,
) -> BuildReport:
    """Build or update the index in ``index_dir`` from ``documents``; reuses unchanged vectors.

    ``progress(done, total)`` is called as chunks are embedded. ``chunked``: documents' chunks
    made elsewhere (a cluster build's workers), by document id; the others are chunked here.
    ``lock_held``: the caller already holds the index's build lock (``files.build_lock``).
    """
    t0 = time.perf_counter()
    index_dir = Path(index_dir)
    report = BuildReport(warnings=list(warnings))
    method = sentence_method_for(embedder, settings)
    with contextlib.nullcontext() if lock_held else store.build_lock(index_dir):
        store.clean_stale(index_dir)
        previous = _load_previous(index_dir, embedder, settings)
        old_docs = previous.documents if previous else {}
        new_ids = [d.doc_id for d in documents]
        if len(set(new_ids)) != len(new_ids):
            raise IndexCorruptError("two documents share one id; document ids must be unique")
        report.added = [i for i in new_ids if i not in old_docs]
        report.changed = [
            d.doc_id for d in documents if d.doc_id in old_docs and old_docs[d.doc_id].sha256 != d.sha256
        ]
        report.removed = sorted(set(old_docs) - set(new_ids))
        report.documents = len(documents)
        if (
            previous
            and not (report.added or report.changed or report.removed)
            and [d["doc_id"] for d in previous.manifest["documents"]] == new_ids
            # pages or slides read anew (e.g. an index from before locations) are written out
            and all(old_docs[d.doc_id].locations == d.locations for d in documents)
            # a changed hnsw_threshold or vector_compression may call for another kind of vector index
            and previous.manifest["vector_index"].get("type")
            == kind_for(len(previous.chunks), settings.hnsw_threshold, settings.vector_compression)
            # BM25's scores are computed at build time with its parameters
            and previous.manifest.get("lexical") == LEXICAL_PARAMS
            # an index without sentence vectors, or with another kind, gets them unless the dense
            # score does not use them
            and (
                settings.sentence_weight == 0
                or (previous.sentences is not None and sentence_method(previous.manifest) == method)
            )
        ):
            report.up_to_date = True
            report.chunks = len(previous.chunks)
            report.generation = previous.path.name
            report.seconds = time.perf_counter() - t0
            return report

        chunks = _chunks(documents, previous, settings, chunked or {})
        sentences: np.ndarray | None = None
        starts: np.ndarray | None = None
        if method == POOLED:
            reusable = previous if previous and sentence_method(previous.manifest) == method else None
            vectors, sentences, starts, report.embedded = _pooled_vectors(
                chunks, reusable, embedder, settings, progress
            )
        else:
            vectors, report.embedded = _chunk_vectors(chunks, previous, embedder, settings, progress)
            if method == SEPARATE:
                reusable = previous if previous and sentence_method(previous.manifest) == SEPARATE else None
                sentences, starts = _sentence_vectors(chunks, reusable, embedder, settings)
        report.chunks = len(chunks)
        tmp = store.new_generation_dir(index_dir)
        _write_generation(tmp, documents, chunks, vectors, sentences, starts, embedder, settings, method)
        report.generation = store.publish(index_dir, tmp).name
    report.seconds = time.perf_counter() - t0
    return report


def _load_previous(index_dir: Path, embedder: Embedder, settings: Settings) -> IndexData | None:
    """The live generation if its vectors can be reused with these settings, else None."""
    try:
        previous = load(index_dir)
    except (IndexMismatchError, IndexCorruptError) as exc:
        log.warning("rebuilding from scratch: %s", exc)
        return None
    except Exception:  # missing index: nothing to reuse
        return None
    man = previous.manifest
    if man["model"]["name"] != embedder.name or man["chunking"] != chunking_settings(settings):
        log.info("model or chunking settings changed: re-embedding everything")
        return None
    if man["model"].get("weights") != getattr(embedder, "fingerprint", None):
        log.info("the embedding model's weights changed: re-embedding everything")
        return None
    if str(man["vector_index"].get("type", "")).endswith("-sq8") and settings.vector_compression == "none":
        # its stored vectors are the 8-bit ones: reusing them would keep their rounding
        log.info("vector compression turned off: re-embedding everything at full precision")
        return None
    return previous


def _chunks(
    documents: Sequence[Document],
    previous: IndexData | None,
    settings: Settings,
    chunked: Mapping[str, list[Chunk]],
) -> list[Chunk]:
    """Every document's chunks: an unchanged document (text and title) keeps its previous ones,
    a changed one takes those in ``chunked`` or is chunked here."""
    old_docs = previous.documents if previous else {}
    old_rows: dict[str, list[int]] = {}
    if previous:
        for row, ch in enumerate(previous.chunks):
            old_rows.setdefault(ch.doc_id, []).append(row)
    chunks: list[Chunk] = []
    for doc in documents:
        old = old_docs.get(doc.doc_id)
        if old is not None and old.sha256 == doc.sha256 and old.title == doc.title and previous:
            chunks.extend(previous.chunks[r] for r in old_rows.get(doc.doc_id, []))
        elif doc.doc_id in chunked:
            chunks.extend(chunked[doc.doc_id])
        else:
            chunks.extend(
                chunk_document(doc, settings.chunk_tokens, settings.chunk_overlap, settings.encoding)
            )
    return chunks


def _reusable_rows(chunks: list[Chunk], previous: IndexData | None) -> tuple[list[int | None], list[int]]:
    """For each chunk, the previous index's row with the same embedded text (or None), and the
    chunks that have none."""
    reuse: dict[str, int] = {}  # hash of embedded text -> row in the previous index
    for row, ch in enumerate(previous.chunks if previous else []):
        reuse.setdefault(_text_key(embed_text(ch)), row)
    rows = [reuse.get(_text_key(embed_text(ch))) for ch in chunks]
    return rows, [i for i, row in enumerate(rows) if row is None]


def _steps(progress: Callable[[int, int], None] | None, total: int) -> Callable[[int], None]:
    """``progress(done, total)`` as batches of ``n`` are embedded."""
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, total)

    return step


def _chunk_vectors(
    chunks: list[Chunk],
    previous: IndexData | None,
    embedder: Embedder,
    settings: Settings,
    progress: Callable[[int, int], None] | None,
) -> tuple[np.ndarray, int]:
    """Every chunk's vector (a chunk whose embedded text is unchanged keeps its previous one),
    and how many were computed."""
    rows, todo = _reusable_rows(chunks, previous)
    vectors = np.zeros((len(chunks), embedder.dim), dtype=np.float32)
    for i, row in enumerate(rows):
        if row is not None and previous is not None:
            vectors[i] = previous.vectors.reconstruct(row)
    if todo:
        vectors[todo] = embedder.embed(
            [embed_text(chunks[i]) for i in todo],
            batch_size=settings.batch_size,
            progress=_steps(progress, len(todo)),
        )
    return vectors, len(todo)


def _sentence_offsets(chunk: Chunk) -> list[tuple[int, int]]:
    """Where each sentence of a chunk lies in its embedded text (``embed_text``)."""
    shift = len(embed_text(chunk)) - len(chunk.text)  # the title line, when one is prepended
    spans = [(shift + a, shift + b) for a, b in sentence_spans(chunk.text) if chunk.text[a:b].strip()]
    return spans or [(0, len(embed_text(chunk)))]


def _pooled_vectors(
    chunks: list[Chunk],
    previous: IndexData | None,
    embedder: Embedder,
    settings: Settings,
    progress: Callable[[int, int], None] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Every chunk's vector and its sentences' vectors, pooled from the same forward pass
    (``embed_pooled``), where each chunk's rows start, and how many chunks were computed. A
    chunk whose embedded text is unchanged keeps its previous vector and rows (``previous``
    must hold pooled sentence vectors)."""
    rows, todo = _reusable_rows(chunks, previous)
    vectors = np.zeros((len(chunks), embedder.dim), dtype=np.float32)
    parts: list[np.ndarray] = [np.zeros((0, embedder.dim), np.float16)] * len(chunks)
    if previous is not None and previous.sentences is not None and previous.sentence_starts is not None:
        old_vectors, old_starts = previous.sentences, previous.sentence_starts
        for i, row in enumerate(rows):
            if row is None:
                continue
            # the same embedded text may split into other sentences (a title line, or none);
            # with the same chunk text too it cannot, and splitting costs ~20 us a chunk
            old = previous.chunks[row]
            if old.text == chunks[i].text or _sentence_offsets(old) == _sentence_offsets(chunks[i]):
                vectors[i] = previous.vectors.reconstruct(row)
                parts[i] = np.asarray(old_vectors[old_starts[row] : old_starts[row + 1]], dtype=np.float16)
            else:
                todo.append(i)
        todo.sort()
    else:
        todo = list(range(len(chunks)))
    if todo:
        fresh, pooled = cast(PoolingEmbedder, embedder).embed_pooled(
            [embed_text(chunks[i]) for i in todo],
            [_sentence_offsets(chunks[i]) for i in todo],
            batch_size=settings.batch_size,
            progress=_steps(progress, len(todo)),
        )
        vectors[todo] = fresh
        for i, rows_i in zip(todo, pooled, strict=True):
            parts[i] = rows_i.astype(np.float16)
    starts = np.zeros(len(chunks) + 1, dtype=np.int64)
    starts[1:] = np.cumsum([len(p) for p in parts])
    sentences = np.concatenate(parts) if parts else np.zeros((0, embedder.dim), dtype=np.float16)
    return vectors, sentences, starts, len(todo)


def _sentence_vectors(
    chunks: list[Chunk], previous: IndexData | None, embedder: Embedder, settings: Settings
) -> tuple[np.ndarray, np.ndarray]:
    """Every chunk's sentence vectors (fp16) and where each chunk's rows start; a chunk whose
    sentence texts (titles included) are unchanged keeps its previous rows."""
    reuse: dict[str, int] = {}
    old_vectors, old_starts = np.zeros((0, embedder.dim), np.float16), np.zeros(1, np.int64)
    if previous is not None and previous.sentences is not None and previous.sentence_starts is not None:
        old_vectors, old_starts = previous.sentences, previous.sentence_starts
        for row, ch in enumerate(previous.chunks):
            reuse.setdefault(_sentences_key(sentence_texts(ch)), row)
    starts = np.zeros(len(chunks) + 1, dtype=np.int64)
    parts: list[np.ndarray] = []
    todo_texts: list[str] = []
    todo_at: list[int] = []  # index into parts for each chunk needing embedding
    for i, ch in enumerate(chunks):
        texts = sentence_texts(ch)
        old = reuse.get(_sentences_key(texts))
        if old is not None:
            parts.append(np.asarray(old_vectors[old_starts[old] : old_starts[old + 1]], dtype=np.float16))
        else:
            todo_at.append(len(parts))
            parts.append(np.zeros((len(texts), embedder.dim), dtype=np.float16))
            todo_texts.extend(texts)
        starts[i + 1] = starts[i] + len(parts[-1])
    if todo_texts:
        fresh = embedder.embed(todo_texts, batch_size=settings.batch_size).astype(np.float16)
        at = 0
        for j in todo_at:
            n = len(parts[j])
            parts[j] = fresh[at : at + n]
            at += n
    dim = int(embedder.dim)
    sentences = np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float16)
    return sentences, starts


def _sentences_key(texts: list[str]) -> str:
    return _text_key("\x1f".join(texts))


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _write_generation(
    gen: Path,
    documents: Sequence[Document],
    chunks: list[Chunk],
    vectors: np.ndarray,
    sentences: np.ndarray | None,
    sentence_starts: np.ndarray | None,
    embedder: Embedder,
    settings: Settings,
    method: str,
) -> None:
    store.write_jsonl(gen / "documents.jsonl", [_document_row(d) for d in documents])
    store.write_jsonl(
        gen / "chunks.jsonl",
        [
            {"chunk_id": c.chunk_id, "doc_id": c.doc_id, "start": c.start, "end": c.end, "text": c.text}
            for c in chunks
        ],
    )
    index = build_vector_index(vectors, settings.hnsw_threshold, settings.vector_compression)
    write_vector_index(index, gen / "vectors.faiss")
    if sentences is not None and sentence_starts is not None:  # none when sentence_weight is 0
        np.save(gen / "sentences.npy", sentences, allow_pickle=False)
        np.save(gen / "sentence_starts.npy", sentence_starts, allow_pickle=False)
    LexicalIndex.build([embed_text(c) for c in chunks]).save(gen / "bm25")
    counts: dict[str, int] = {}
    for c in chunks:
        counts[c.doc_id] = counts.get(c.doc_id, 0) + 1
    files = {}
    for f in sorted(gen.rglob("*")):
        if f.is_file():
            files[f.relative_to(gen).as_posix()] = {"bytes": f.stat().st_size, "sha256": store.sha256_file(f)}
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": {
            "name": embedder.name,
            "dim": int(embedder.dim),
            "weights": getattr(embedder, "fingerprint", None),  # qa.store.embedding.weights_fingerprint
        },
        "chunking": chunking_settings(settings),
        "vector_index": {"type": index_kind(index), "vectors": int(index.ntotal)},
        "lexical": LEXICAL_PARAMS,
        "sentence_vectors": method,
        "sentence_split": SPLIT_VERSION,
        "counts": {
            "documents": len(documents),
            "chunks": len(chunks),
            "sentences": len(sentences) if sentences is not None else 0,
        },
        "documents": [
            {"doc_id": d.doc_id, "title": d.title, "sha256": d.sha256, "chunks": counts.get(d.doc_id, 0)}
            for d in documents
        ],
        "files": files,
    }
    store.write_json(gen / "manifest.json", manifest)


def _document_row(doc: Document) -> dict[str, Any]:
    row: dict[str, Any] = {"doc_id": doc.doc_id, "title": doc.title, "sha256": doc.sha256, "text": doc.text}
    if doc.locations:  # only paged formats: other rows stay as they were
        row["locations"] = [[start, label] for start, label in doc.locations]
    return row


def _document(row: dict[str, Any], path: Path) -> Document:
    """A document row of ``documents.jsonl``; one without ``locations`` has none."""
    try:
        locations = tuple((int(start), str(label)) for start, label in row.get("locations", ()))
    except (TypeError, ValueError):
        raise IndexCorruptError(f"{path} has a malformed 'locations' field: run `qa build`") from None
    return Document(row["doc_id"], row["title"], row["text"], row["sha256"], locations)


def read_manifest(gen: Path) -> dict[str, Any]:
    """Read and check a generation's manifest (format and version)."""
    manifest = store.read_json(gen / "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexCorruptError(
            f"{gen / 'manifest.json'} is not a qa index manifest: run `qa build` to rebuild the index"
        )
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexMismatchError(
            f"the index in {gen} has format version {manifest.get('format_version')}, "
            f"this qa reads version {FORMAT_VERSION}: run `qa build` to rebuild it"
        )
    return manifest


def load(index_dir: Path, model: str | None = None) -> IndexData:
    """Load the live generation of ``index_dir``, checking files against the manifest.

    ``model``: the embedding model the caller will query with; a different one is an error.
    """
    index_dir = Path(index_dir)
    gen = store.current_generation(index_dir)
    try:
        return _load_generation(gen, model)
    except IndexCorruptError:
        # A build may have swapped generations between reading CURRENT and opening files.
        newer = store.current_generation(index_dir)
        if newer == gen:
            raise
        return _load_generation(newer, model)


def _load_generation(gen: Path, model: str | None) -> IndexData:
    manifest = read_manifest(gen)
    if model is not None and manifest["model"]["name"] != model:
        raise IndexMismatchError(
            f"the index in {gen.parent} was built with embedding model "
            f"{manifest['model']['name']!r}, but {model!r} is configured: run `qa build` to rebuild "
            f"it with {model!r}, or set QA_MODEL={manifest['model']['name']}"
        )
    _check_files(gen, manifest)
    docs = {
        row["doc_id"]: _document(row, gen / "documents.jsonl")
        for row in store.read_jsonl(gen / "documents.jsonl")
    }
    chunks = []
    for row in store.read_jsonl(gen / "chunks.jsonl"):
        doc = docs.get(row["doc_id"])
        if doc is None:
            raise IndexCorruptError(f"{gen / 'chunks.jsonl'} cites an unknown document: run `qa build`")
        chunks.append(Chunk(row["chunk_id"], row["doc_id"], doc.title, row["start"], row["end"], row["text"]))
    vectors = read_vector_index(gen / "vectors.faiss")
    if vectors.ntotal != len(chunks) or vectors.d != manifest["model"]["dim"]:
        raise IndexCorruptError(
            f"{gen / 'vectors.faiss'} does not match {gen / 'chunks.jsonl'}: run `qa build` to rebuild"
        )
    lexical = LexicalIndex.load(gen / "bm25", len(chunks))
    sentences, starts = _load_sentences(gen, manifest, len(chunks), int(vectors.d))
    return IndexData(gen, manifest, docs, chunks, vectors, lexical, sentences, starts)


def _load_sentences(
    gen: Path, manifest: dict[str, Any], n_chunks: int, dim: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The sentence vectors (memory-mapped) and their starts, checked against the chunks;
    (None, None) for an index built without them. Only files the manifest lists (and so
    ``_check_files`` checked) are read."""
    listed = manifest.get("files", {})
    vec_path, start_path = gen / "sentences.npy", gen / "sentence_starts.npy"
    if vec_path.name not in listed and start_path.name not in listed:
        return None, None
    if vec_path.name not in listed or start_path.name not in listed:
        raise IndexCorruptError(f"the manifest in {gen} lists only one of the sentence files: run `qa build`")
    try:
        sentences = np.load(vec_path, mmap_mode="r", allow_pickle=False)
        starts = np.load(start_path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(
            f"the sentence vectors in {gen} are unreadable ({exc}): run `qa build`"
        ) from None
    if not _sentences_fit(sentences, starts, manifest, n_chunks, dim):
        raise IndexCorruptError(f"the sentence vectors in {gen} do not match its chunks: run `qa build`")
    return sentences, starts.astype(np.int64)


def _sentences_fit(
    sentences: np.ndarray, starts: np.ndarray, manifest: dict[str, Any], n_chunks: int, dim: int
) -> bool:
    """Whether the sentence arrays fit the chunks: float vectors of the model's width, and
    integer offsets from 0 to their count that never decrease, one per chunk and one more."""
    if (
        sentences.ndim != 2
        or not np.issubdtype(sentences.dtype, np.floating)
        or sentences.shape[1] != dim
        or starts.ndim != 1
        or len(starts) != n_chunks + 1
        or starts.dtype.kind not in "iu"
        or manifest.get("counts", {}).get("sentences") != len(sentences)
        or int(starts.max()) > len(sentences)  # checked before the cast below could wrap it
    ):
        return False
    offsets = starts.astype(np.int64)
    return bool(offsets[0] == 0 and offsets[-1] == len(sentences) and np.all(np.diff(offsets) >= 0))


def _check_files(gen: Path, manifest: dict[str, Any]) -> None:
    for name, meta in manifest.get("files", {}).items():
        path = gen / name
        try:
            size = path.stat().st_size
            damaged = (
                size == meta["bytes"]
                and size <= HASH_CHECK_LIMIT
                and (store.sha256_file(path) != meta["sha256"])
            )
        except FileNotFoundError:
            raise IndexCorruptError(f"index file {path} is missing: run `qa build` to rebuild") from None
        except OSError as exc:
            raise IndexCorruptError(
                f"cannot read index file {path} ({exc.strerror or exc}): let this user read the "
                "index folder, or run `qa build`"
            ) from None
        if size != meta["bytes"]:
            raise IndexCorruptError(
                f"index file {path} is truncated or damaged ({size} bytes, expected "
                f"{meta['bytes']}): run `qa build` to rebuild it"
            )
        if damaged:
            raise IndexCorruptError(
                f"index file {path} is damaged (checksum mismatch): run `qa build` to rebuild it"
            )
