from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from qa import QA
from qa.errors import (
    BuildLockedError,
    IndexCorruptError,
    IndexMismatchError,
    IndexMissingError,
)
from qa.store import files as store
from qa.store import index as index_mod
from qa.store.embedding import HashEmbedder


class CountingEmbedder(HashEmbedder):
    def __init__(self) -> None:
        super().__init__(64)
        self.embedded = 0

    def embed(self, texts, batch_size=32, progress=None):  # type: ignore[no-untyped-def]
        self.embedded += len(texts)
        return super().embed(texts, batch_size, progress)


class PoolingEmbedder(CountingEmbedder):
    """Pools span vectors from each text's own pass, as the bundled model does
    (``embed_pooled``); here a span's vector is the hash of its characters."""

    pools_spans = True

    def __init__(self) -> None:
        super().__init__()
        self.pooled = 0

    def embed_pooled(self, texts, spans, batch_size=32, progress=None):  # type: ignore[no-untyped-def]
        self.pooled += len(texts)
        rows = [HashEmbedder.embed(self, [t[a:b] for a, b in s]) for t, s in zip(texts, spans, strict=True)]
        return HashEmbedder.embed(self, texts, batch_size, progress), rows


def build(sample_seeds: Path, settings, embedder=None) -> QA:  # type: ignore[no-untyped-def]
    return QA.build(sample_seeds, settings.index_dir, settings=settings, embedder=embedder)


def test_build_writes_readable_versioned_files(sample_seeds: Path, fake_settings) -> None:  # type: ignore[no-untyped-def]
    qa = build(sample_seeds, fake_settings)
    gen = store.current_generation(fake_settings.index_dir)
    manifest = json.loads((gen / "manifest.json").read_text())
    assert manifest["format_version"] == index_mod.FORMAT_VERSION
    assert manifest["model"] == {"name": "hash-64", "dim": 64, "weights": None}
    assert manifest["chunking"]["chunk_tokens"] == fake_settings.chunk_tokens
    assert {d["doc_id"] for d in manifest["documents"]} == {"page.html", "rivers/nile.txt", "solar.md"}
    assert all(len(d["sha256"]) == 64 for d in manifest["documents"])
    rows = [json.loads(line) for line in (gen / "chunks.jsonl").read_text().splitlines()]
    assert len(rows) == manifest["counts"]["chunks"] == len(qa.data.chunks)
    for row in rows:  # the chunk store slices the documents exactly
        assert qa.document(row["doc_id"]).text[row["start"] : row["end"]] == row["text"]
    assert not list(gen.rglob("*.pkl")) and not list(gen.rglob("*.pickle"))


def sentence_count(qa: QA) -> int:
    return 0 if qa.data.sentences is None else len(qa.data.sentences)


@pytest.mark.parametrize("sentence_weight", [0.0, 0.75])
def test_rebuild_reembeds_only_what_changed(  # type: ignore[no-untyped-def]
    sample_seeds: Path, fake_settings, sentence_weight: float
) -> None:
    fake_settings = fake_settings.replace(sentence_weight=sentence_weight)
    emb = CountingEmbedder()
    first = build(sample_seeds, fake_settings, emb)
    total = len(first.data.chunks)
    assert (first.data.sentences is not None) == (sentence_weight > 0)
    assert emb.embedded == total + sentence_count(first)  # each chunk, then any sentences

    emb.embedded = 0
    again = build(sample_seeds, fake_settings, emb)
    assert again.last_build is not None and again.last_build.up_to_date
    assert emb.embedded == 0

    (sample_seeds / "rivers" / "nile.txt").write_text("The Nile\n\nThe Nile flows through Egypt.\n")
    (sample_seeds / "new.txt").write_text("Penguins\n\nPenguins live in the Southern Hemisphere.\n")
    (sample_seeds / "page.html").unlink()
    emb.embedded = 0
    qa = build(sample_seeds, fake_settings, emb)
    report = qa.last_build
    assert report is not None
    assert report.added == ["new.txt"] and report.changed == ["rivers/nile.txt"]
    assert report.removed == ["page.html"]
    assert report.embedded == 2  # one chunk each for the new and changed file (and their sentences)
    fresh = [c for c in qa.data.chunks if c.doc_id in ("new.txt", "rivers/nile.txt")]
    n_sentences = sum(len(index_mod.sentence_texts(c)) for c in fresh) if sentence_weight else 0
    assert emb.embedded == 2 + n_sentences
    assert all(h.chunk.doc_id != "page.html" for h in qa.search("bread dough yeast", k=10))
    assert "Penguins" in qa.search("penguins southern hemisphere", k=1)[0].chunk.text


@pytest.mark.parametrize("sentence_weight", [0.0, 0.75])
def test_retrained_weights_under_the_same_name_are_reembedded(  # type: ignore[no-untyped-def]
    sample_seeds: Path, fake_settings, sentence_weight: float
) -> None:
    fake_settings = fake_settings.replace(sentence_weight=sentence_weight)
    emb = CountingEmbedder()
    emb.fingerprint = "aaaa"  # type: ignore[attr-defined]
    total = len(build(sample_seeds, fake_settings, emb).data.chunks)
    emb.embedded = 0
    assert build(sample_seeds, fake_settings, emb).last_build.up_to_date  # type: ignore[union-attr]
    emb.fingerprint = "bbbb"  # type: ignore[attr-defined]
    qa = build(sample_seeds, fake_settings, emb)
    assert emb.embedded == total + sentence_count(qa)
    assert qa.data.manifest["model"]["weights"] == "bbbb"


def test_sentence_vectors_are_stored_per_chunk_and_checked(sample_seeds: Path, fake_settings) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    fake_settings = fake_settings.replace(sentence_weight=0.75)  # opt-in
    emb = CountingEmbedder()
    qa = build(sample_seeds, fake_settings, emb)
    data = qa.data
    assert data.sentences is not None and data.sentence_starts is not None
    starts = data.sentence_starts
    assert len(starts) == len(data.chunks) + 1 and starts[0] == 0 and starts[-1] == len(data.sentences)
    for n, chunk in enumerate(data.chunks):  # row for row, the chunk's sentences, as embedded
        texts = index_mod.sentence_texts(chunk)
        assert starts[n + 1] - starts[n] == len(texts)
        want = emb.embed(texts).astype(np.float16)
        assert np.array_equal(np.asarray(data.sentences[starts[n] : starts[n + 1]]), want)
    gen = store.current_generation(fake_settings.index_dir)
    assert json.loads((gen / "manifest.json").read_text())["counts"]["sentences"] == len(data.sentences)

    # an index from before sentence vectors: the next build adds them and reuses the chunk vectors
    (gen / "sentences.npy").unlink()
    (gen / "sentence_starts.npy").unlink()
    manifest = json.loads((gen / "manifest.json").read_text())
    del manifest["files"]["sentences.npy"], manifest["files"]["sentence_starts.npy"]
    (gen / "manifest.json").write_text(json.dumps(manifest))
    old = index_mod.load(fake_settings.index_dir)
    assert old.sentences is None and old.sentence_starts is None
    from qa.answer.retrieval import fuse, retrieve

    qv = emb.embed(["the Nile flows north"])[0]
    hits = fuse(old, retrieve(old, qv, "the Nile flows north", 10), qv, 3)  # old index: cosine only
    assert hits and hits[0].chunk.doc_id == "rivers/nile.txt"
    emb.embedded = 0
    rebuilt = build(sample_seeds, fake_settings, emb)
    assert rebuilt.last_build is not None and not rebuilt.last_build.up_to_date
    assert rebuilt.last_build.embedded == 0 and emb.embedded == len(data.sentences)
    assert rebuilt.data.sentences is not None

    # starts that do not fit the chunks are refused, not trusted
    gen = store.current_generation(fake_settings.index_dir)
    bad = np.asarray(rebuilt.data.sentence_starts).copy()
    bad[-1] += 1
    np.save(gen / "sentence_starts.npy", bad, allow_pickle=False)
    manifest = json.loads((gen / "manifest.json").read_text())
    path = gen / "sentence_starts.npy"
    size, digest = path.stat().st_size, store.sha256_file(path)
    manifest["files"]["sentence_starts.npy"] = {"bytes": size, "sha256": digest}
    (gen / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexCorruptError, match="sentence vectors"):
        index_mod.load(fake_settings.index_dir)


def _rows_match_fresh(data, emb) -> bool:  # type: ignore[no-untyped-def]
    import numpy as np

    starts = data.sentence_starts
    for n, chunk in enumerate(data.chunks):
        want = emb.embed(index_mod.sentence_texts(chunk)).astype(np.float16)
        if not np.array_equal(np.asarray(data.sentences[starts[n] : starts[n + 1]]), want):
            return False
    return True


def test_sentence_rows_follow_a_title_change(tmp_path: Path, fake_settings) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    from qa.types import Document

    on = fake_settings.replace(sentence_weight=0.75, index_dir=tmp_path / "index")
    emb = CountingEmbedder()
    text = "The Nile is long. The Amazon is wide. Both are rivers."
    other = "Penguins live in the south."

    def docs(title: str, other_text: str) -> list[Document]:
        return [
            Document("rivers.txt", title, text, hashlib.sha256(text.encode()).hexdigest()),
            Document("birds.txt", "Birds", other_text, hashlib.sha256(other_text.encode()).hexdigest()),
        ]

    first = QA.from_documents(docs("Nile", other), settings=on, embedder=emb)
    assert _rows_match_fresh(first.data, emb)
    # the chunk text holds both titles, so its own vector is reused; its sentences' titles change
    later = QA.from_documents(docs("Amazon", other + " Gulls too."), settings=on, embedder=emb)
    assert _rows_match_fresh(later.data, emb)


def test_sentence_files_are_read_only_as_the_manifest_lists_them(sample_seeds: Path, fake_settings) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    on = fake_settings.replace(sentence_weight=0.75)
    qa = build(sample_seeds, on, CountingEmbedder())
    gen = store.current_generation(on.index_dir)
    manifest = json.loads((gen / "manifest.json").read_text())

    def write(starts: np.ndarray, files: dict) -> None:  # type: ignore[type-arg]
        np.save(gen / "sentence_starts.npy", starts, allow_pickle=False)
        path = gen / "sentence_starts.npy"
        files = dict(files)
        if "sentence_starts.npy" in files:
            files["sentence_starts.npy"] = {"bytes": path.stat().st_size, "sha256": store.sha256_file(path)}
        (gen / "manifest.json").write_text(json.dumps({**manifest, "files": files}))

    good = np.asarray(qa.data.sentence_starts)
    wrapped = good.astype(np.uint64)
    wrapped[1] = len(qa.data.sentences) + 5  # past the end: unsigned offsets must not wrap around
    write(wrapped, manifest["files"])
    with pytest.raises(IndexCorruptError, match="sentence vectors"):
        index_mod.load(on.index_dir)
    write(good, {k: v for k, v in manifest["files"].items() if k != "sentences.npy"})
    with pytest.raises(IndexCorruptError, match="only one of the sentence files"):
        index_mod.load(on.index_dir)
    unlisted = {k: v for k, v in manifest["files"].items() if not k.startswith("sentence")}
    write(good, unlisted)  # files the manifest does not list (so were not checked) are not read
    assert index_mod.load(on.index_dir).sentences is None


def test_a_sentence_weight_without_sentence_vectors_warns(  # type: ignore[no-untyped-def]
    sample_seeds: Path, fake_settings, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    off = fake_settings.replace(sentence_weight=0.0)
    qa = build(sample_seeds, off, CountingEmbedder())  # none built
    with caplog.at_level(logging.WARNING, logger="qa"):
        QA(qa.data, off, qa.embedder)
        assert not caplog.records
        QA(qa.data, fake_settings, qa.embedder)  # the default weighs them
        assert "no sentence vectors" in caplog.records[0].getMessage()


def test_sentence_weight_zero_builds_no_sentence_vectors(sample_seeds: Path, fake_settings) -> None:  # type: ignore[no-untyped-def]
    emb = CountingEmbedder()
    off = fake_settings.replace(sentence_weight=0.0)
    qa = build(sample_seeds, off, emb)
    assert qa.data.sentences is None and emb.embedded == len(qa.data.chunks)  # chunks only
    gen = store.current_generation(off.index_dir)
    assert not (gen / "sentences.npy").exists() and not (gen / "sentence_starts.npy").exists()
    assert build(sample_seeds, off, emb).last_build.up_to_date  # type: ignore[union-attr]
    emb.embedded = 0
    on = build(sample_seeds, off.replace(sentence_weight=0.75), emb)  # on: sentences added, chunks reused
    assert on.last_build is not None and on.last_build.embedded == 0
    assert on.data.sentences is not None and emb.embedded == len(on.data.sentences)
    assert build(sample_seeds, off, emb).last_build.up_to_date  # type: ignore[union-attr]


def test_weights_fingerprint_follows_the_weight_files(tmp_path: Path) -> None:
    from qa.store.embedding import weights_fingerprint

    (tmp_path / "config.json").write_text("{}")
    assert weights_fingerprint(str(tmp_path)) is None  # no weight files
    assert weights_fingerprint("some-hub-name/not-on-disk") is None
    (tmp_path / "model.safetensors").write_bytes(b"one")
    first = weights_fingerprint(str(tmp_path))
    assert first is not None and len(first) == 16 and weights_fingerprint(str(tmp_path)) == first
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"two")  # same size: the modification time tells them apart
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = weights_fingerprint(str(tmp_path))
    assert second not in (None, first)
    weights.write_bytes(b"three")  # another size
    assert weights_fingerprint(str(tmp_path)) not in (None, first, second)


def test_changed_hnsw_threshold_switches_the_vector_index_without_reembedding(
    sample_seeds: Path,
    fake_settings,  # type: ignore[no-untyped-def]
) -> None:
    emb = CountingEmbedder()
    flat = build(sample_seeds, fake_settings, emb)
    assert flat.data.manifest["vector_index"]["type"] == "flat"
    emb.embedded = 0
    hnsw = build(sample_seeds, fake_settings.replace(hnsw_threshold=0), emb)
    report = hnsw.last_build
    assert report is not None and not report.up_to_date and report.embedded == emb.embedded == 0
    assert hnsw.data.manifest["vector_index"]["type"] == "hnsw"
    query = "bread dough yeast"
    assert hnsw.search(query, k=1)[0].chunk.doc_id == flat.search(query, k=1)[0].chunk.doc_id
    again = build(sample_seeds, fake_settings.replace(hnsw_threshold=0), emb)
    assert again.last_build is not None and again.last_build.up_to_date


def test_vector_compression_switches_the_vector_index_without_reembedding(
    sample_seeds: Path,
    fake_settings,  # type: ignore[no-untyped-def]
) -> None:
    emb = CountingEmbedder()
    full = build(sample_seeds, fake_settings, emb)
    emb.embedded = 0
    small = build(sample_seeds, fake_settings.replace(vector_compression="sq8"), emb)
    report = small.last_build
    assert report is not None and not report.up_to_date and report.embedded == emb.embedded == 0
    assert small.data.manifest["vector_index"]["type"] == "flat-sq8"
    for query in ("bread dough yeast", "How long is the Nile?", "largest planet"):
        assert small.search(query, k=1)[0].chunk.chunk_id == full.search(query, k=1)[0].chunk.chunk_id
    assert build(sample_seeds, fake_settings.replace(vector_compression="sq8"), emb).last_build.up_to_date  # type: ignore[union-attr]
    # back to float32: the 8-bit vectors are not reused, every chunk is embedded again
    back = build(sample_seeds, fake_settings, emb)
    assert back.data.manifest["vector_index"]["type"] == "flat"
    assert back.last_build is not None and back.last_build.embedded == back.last_build.chunks > 0


def test_missing_index_says_run_build(tmp_path: Path) -> None:
    with pytest.raises(IndexMissingError, match="qa build"):
        QA.load(tmp_path / "index", settings=None, embedder=HashEmbedder(64))


def test_other_model_gives_clear_mismatch(sample_seeds: Path, fake_settings) -> None:  # type: ignore[no-untyped-def]
    build(sample_seeds, fake_settings)
    with pytest.raises(IndexMismatchError, match=r"hash-64.*qa build"):
        QA.load(settings=fake_settings, embedder=HashEmbedder(32))


def test_other_format_version_gives_clear_mismatch(sample_seeds: Path, fake_settings) -> None:  # type: ignore[no-untyped-def]
    build(sample_seeds, fake_settings)
    gen = store.current_generation(fake_settings.index_dir)
    manifest = json.loads((gen / "manifest.json").read_text())
    manifest["format_version"] = 999
    (gen / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match=r"format version 999.*qa build"):
        QA.load(settings=fake_settings)


@pytest.mark.parametrize("name", ["chunks.jsonl", "vectors.faiss", "documents.jsonl", "manifest.json"])
@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_files_name_the_file_and_the_fix(
    sample_seeds: Path, fake_settings, name: str, damage: str
) -> None:  # type: ignore[no-untyped-def]
    build(sample_seeds, fake_settings)
    path = store.current_generation(fake_settings.index_dir) / name
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:10] + bytes([data[10] ^ 0xFF]) + data[11:])
    else:
        path.unlink()
    with pytest.raises((IndexCorruptError, IndexMismatchError)) as err:
        QA.load(settings=fake_settings)
    assert name in str(err.value) and "qa build" in str(err.value)
    # A rebuild repairs it.
    build(sample_seeds, fake_settings)
    assert QA.load(settings=fake_settings).search("Nile river", k=1)


def test_failed_build_leaves_previous_index_live(sample_seeds: Path, fake_settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    build(sample_seeds, fake_settings)
    before = store.current_generation(fake_settings.index_dir)
    (sample_seeds / "new.txt").write_text("Otters\n\nSea otters hold hands while sleeping.\n")

    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(index_mod, "write_vector_index", boom)
    with pytest.raises(OSError):
        build(sample_seeds, fake_settings)
    assert store.current_generation(fake_settings.index_dir) == before
    qa = QA.load(settings=fake_settings)
    assert "new.txt" not in qa.data.documents
    monkeypatch.undo()
    qa = build(sample_seeds, fake_settings)
    assert "new.txt" in qa.data.documents
    leftovers = [p.name for p in fake_settings.index_dir.iterdir() if p.name.startswith(".building-")]
    assert leftovers == []


def test_a_build_cleans_what_a_build_killed_while_publishing_left(tmp_path: Path) -> None:
    index = tmp_path / "index"
    names = [f"gen-20261126T1000{i:02d}-000000000" for i in range(4)]
    for name in names:
        (index / name).mkdir(parents=True)
    (index / ".building-x").mkdir()
    store.write_atomic(index / store.POINTER, (names[2] + "\n").encode())
    # names[0]: pruning was cut short; names[3]: published, but CURRENT never named it
    store.clean_stale(index)
    assert sorted(p.name for p in index.iterdir() if p.is_dir()) == [names[1], names[2]]
    assert store.current_generation(index).name == names[2]
    (index / store.POINTER).unlink()  # nothing live: nothing is judged stale
    store.clean_stale(index)
    assert sorted(p.name for p in index.iterdir() if p.is_dir()) == [names[1], names[2]]


def test_second_build_is_refused_by_the_lock(sample_seeds: Path, fake_settings) -> None:  # type: ignore[no-untyped-def]
    with (
        store.build_lock(fake_settings.index_dir),
        pytest.raises(BuildLockedError, match="another build is running"),
    ):
        build(sample_seeds, fake_settings)
    build(sample_seeds, fake_settings)  # free again


def test_reload_swaps_in_a_new_generation(sample_seeds: Path, fake_settings) -> None:  # type: ignore[no-untyped-def]
    qa = build(sample_seeds, fake_settings)
    assert not qa.reload()
    (sample_seeds / "new.txt").write_text("Owls\n\nOwls can rotate their heads 270 degrees.\n")
    build(sample_seeds, fake_settings)
    assert qa.reload()
    assert qa.search("owls rotate heads", k=1)[0].chunk.doc_id == "new.txt"


def test_index_built_with_other_bm25_parameters_is_rebuilt_without_reembedding(
    sample_seeds: Path,
    fake_settings,  # type: ignore[no-untyped-def]
) -> None:
    from qa.store.lexical import LEXICAL_PARAMS

    emb = CountingEmbedder()
    first = build(sample_seeds, fake_settings, emb)
    assert first.data.manifest["lexical"] == LEXICAL_PARAMS
    # An index from before the parameters were recorded (or with other ones) is out of date.
    gen = store.current_generation(fake_settings.index_dir)
    manifest = json.loads((gen / "manifest.json").read_text())
    del manifest["lexical"]
    (gen / "manifest.json").write_text(json.dumps(manifest))
    emb.embedded = 0
    again = build(sample_seeds, fake_settings, emb)
    report = again.last_build
    assert report is not None and not report.up_to_date and report.embedded == emb.embedded == 0
    assert again.data.manifest["lexical"] == LEXICAL_PARAMS
    assert (
        again.search("bread dough yeast", k=1)[0].chunk.doc_id
        == first.search("bread dough yeast", k=1)[0].chunk.doc_id
    )


def _rows_are_pooled(data, emb) -> bool:  # type: ignore[no-untyped-def]
    """Each chunk's rows are its sentences (without the title line), pooled in order."""
    import numpy as np

    from qa.ingest.sentences import sentence_spans

    starts = data.sentence_starts
    for n, chunk in enumerate(data.chunks):
        texts = [chunk.text[a:b] for a, b in sentence_spans(chunk.text) if chunk.text[a:b].strip()]
        want = HashEmbedder.embed(emb, texts).astype(np.float16)
        if not np.array_equal(np.asarray(data.sentences[starts[n] : starts[n + 1]]), want):
            return False
    return True


def test_pooled_sentence_vectors_come_from_the_chunks_own_pass(sample_seeds: Path, fake_settings) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    on = fake_settings.replace(sentence_weight=0.75)
    emb = PoolingEmbedder()
    qa = build(sample_seeds, on, emb)
    total = len(qa.data.chunks)
    assert qa.data.manifest["sentence_vectors"] == "pooled"
    assert emb.pooled == total and emb.embedded == 0  # one pass per chunk, no sentence embedded apart
    assert _rows_are_pooled(qa.data, emb)
    assert np.array_equal(  # the chunk vectors are the ones ``embed`` gives
        np.stack([qa.data.vectors.reconstruct(i) for i in range(total)]),
        HashEmbedder.embed(emb, [index_mod.embed_text(c) for c in qa.data.chunks]),
    )

    emb.pooled = 0
    assert build(sample_seeds, on, emb).last_build.up_to_date and emb.pooled == 0  # type: ignore[union-attr]

    # one changed file: only its chunk is pooled again, the others keep their rows
    (sample_seeds / "rivers" / "nile.txt").write_text("The Nile\n\nThe Nile flows north. It floods.\n")
    emb.pooled = 0
    later = build(sample_seeds, on, emb)
    assert later.last_build is not None and later.last_build.embedded == emb.pooled == 1
    assert _rows_are_pooled(later.data, emb)

    # sentences embedded apart (another model layout) are not mixed with pooled ones: each way
    # of making them rebuilds all of them
    apart = CountingEmbedder()
    moved = build(sample_seeds, on, apart)
    assert moved.data.manifest["sentence_vectors"] == "separate"
    assert moved.last_build.embedded == 0 and apart.embedded == len(moved.data.sentences)  # type: ignore[union-attr, arg-type]
    assert _rows_match_fresh(moved.data, apart)
    emb.pooled = 0
    back = build(sample_seeds, on, emb)
    assert emb.pooled == total and back.data.manifest["sentence_vectors"] == "pooled"
    assert _rows_are_pooled(back.data, emb)

    # with the sentence weight at 0 a fresh index pools nothing and keeps no sentence vectors
    emb.pooled = 0
    off = build(sample_seeds, on.replace(sentence_weight=0.0, index_dir=on.index_dir.with_name("off")), emb)
    assert off.data.sentences is None and emb.pooled == 0 and emb.embedded == len(off.data.chunks)
    assert off.data.manifest["sentence_vectors"] == "none"


def test_pooled_rows_are_not_reused_when_the_same_text_splits_into_other_sentences(  # type: ignore[no-untyped-def]
    tmp_path: Path, fake_settings
) -> None:
    import hashlib

    from qa.types import Document

    on = fake_settings.replace(sentence_weight=0.75, index_dir=tmp_path / "index")
    emb = PoolingEmbedder()

    def doc(title: str, text: str) -> Document:
        return Document("rivers.txt", title, text, hashlib.sha256(text.encode()).hexdigest())

    # the same embedded text: "Rivers" as the title line, then as the text's own first line
    first = QA.from_documents([doc("Rivers", "The Nile is long. It floods.")], settings=on, embedder=emb)
    later = QA.from_documents([doc("", "Rivers\nThe Nile is long. It floods.")], settings=on, embedder=emb)
    assert index_mod.embed_text(first.data.chunks[0]) == index_mod.embed_text(later.data.chunks[0])
    assert later.last_build is not None and later.last_build.embedded == 1
    assert len(first.data.sentences) == 2 and len(later.data.sentences) == 3  # type: ignore[arg-type]
    assert _rows_are_pooled(later.data, emb)

    # the same count of sentences with other boundaries: a lower-case line goes on the sentence
    again = QA.from_documents([doc("Rivers", "the Nile is long.")], settings=on, embedder=emb)
    moved = QA.from_documents([doc("", "Rivers\nthe Nile is long.")], settings=on, embedder=emb)
    assert len(again.data.sentences) == len(moved.data.sentences) == 1  # type: ignore[arg-type]
    assert moved.last_build is not None and moved.last_build.embedded == 1
    assert _rows_are_pooled(moved.data, emb)

    # pooled over the boundaries of another version of the splitter: pooled again, all of them
    gen = store.current_generation(on.index_dir)
    manifest = json.loads((gen / "manifest.json").read_text())
    manifest["sentence_split"] = -1
    (gen / "manifest.json").write_text(json.dumps(manifest))
    emb.pooled = 0
    redone = QA.from_documents([doc("", "Rivers\nthe Nile is long.")], settings=on, embedder=emb)
    assert redone.last_build is not None and not redone.last_build.up_to_date and emb.pooled == 1
    assert redone.data.manifest["sentence_split"] == index_mod.SPLIT_VERSION
