"""The ``QA`` facade: build or load an index, then ``ask`` and ``search``.

A QA object is safe to share between threads: everything it reads while answering
(the model, FAISS, BM25, chunk store) is read-only; ``reload`` swaps in a newly
built index as one reference assignment, so a query sees the old or the new index
whole, never a mix.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qa.answer.conversation import Resolved, focus, parse_history, resolve
from qa.answer.reader import Reader, Reading, make_reader
from qa.answer.retrieval import fuse, retrieve
from qa.config import Settings
from qa.errors import InputError, SourceError
from qa.ingest import sources
from qa.store import index as index_mod
from qa.store.embedding import Embedder, make_embedder
from qa.store.index import BuildReport, IndexData
from qa.types import Answer, Document, Hit

NOT_FOUND = "I could not find an answer to that in the sources."
#: An earlier turn: a {"role": "user"|"assistant", "content": ...} message, or a string (a user turn).
HistoryItem = str | dict[str, Any]
log = logging.getLogger("qa")


def _warn_without_sentences(data: IndexData, settings: Settings) -> None:
    if settings.sentence_weight > 0 and data.sentences is None:
        log.warning(
            "sentence_weight is %s but the index in %s has no sentence vectors, so the chunk's "
            "cosine is used alone: run `qa build` to add them",
            settings.sentence_weight, data.path.parent,
        )  # fmt: skip


# Control characters and lone surrogates (which cannot be encoded) become spaces.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


class QA:
    """Question answering over an index of seed documents."""

    def __init__(
        self, data: IndexData, settings: Settings, embedder: Embedder, reader: Reader | None = None
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self._data = data
        self.reader = reader or make_reader(
            settings.reader, embedder, settings.reader_path, settings.read_passages,
            settings.max_answer_tokens, settings.dense_weight, settings.read_gap,
            settings.sentence_weight, settings.overlap_weight,
        )  # fmt: skip
        self._reload_lock = threading.Lock()
        self.last_build: BuildReport | None = None
        _warn_without_sentences(data, settings)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        seeds_dir: str | Path | None = None,
        index_dir: str | Path | None = None,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> QA:
        """Build or update the index from ``seeds_dir`` (re-embedding only what changed), then load it.

        With ``settings.cluster`` set, the build runs on that Ray cluster, whose workers embed
        with ``settings.model`` (``qa.store.cluster``); ``embedder`` then only answers.
        """
        settings = _settings(settings, seeds_dir, index_dir)
        if settings.cluster:
            from qa.store import cluster  # imports Ray: only for a cluster build

            report = cluster.build(settings, progress)
            qa = cls.load(settings=settings, embedder=embedder)
            qa.last_build = report
            return qa
        result = sources.read_folder(settings.seeds_dir, settings.max_file_bytes, settings.index_dir)
        if not result.documents:
            detail = f" ({'; '.join(result.warnings[:3])})" if result.warnings else ""
            raise SourceError(
                f"no usable documents in {settings.seeds_dir}{detail}: {sources.ADD_FILES}, "
                "then run `qa build`"
            )
        return cls.from_documents(result.documents, settings=settings, embedder=embedder,
                                  progress=progress, warnings=result.warnings)  # fmt: skip

    @classmethod
    def from_documents(
        cls,
        documents: Sequence[Document],
        index_dir: str | Path | None = None,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
        progress: Callable[[int, int], None] | None = None,
        warnings: Sequence[str] = (),
    ) -> QA:
        """Build or update an index from documents already in memory, then load it."""
        settings = _settings(settings, None, index_dir)
        embedder = embedder or make_embedder(settings.model)
        report = index_mod.build(documents, settings.index_dir, embedder, settings, progress, warnings)
        qa = cls.load(settings=settings, embedder=embedder)
        qa.last_build = report
        return qa

    @classmethod
    def load(
        cls,
        index_dir: str | Path | None = None,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
    ) -> QA:
        """Load a built index; raises a QAError that says how to fix a missing or stale one."""
        settings = _settings(settings, None, index_dir)
        embedder = embedder or make_embedder(settings.model)
        data = index_mod.load(settings.index_dir, model=embedder.name)
        return cls(data, settings, embedder)

    def reload(self) -> bool:
        """Swap in the index's newest generation if it changed; True when it did."""
        with self._reload_lock:
            data = index_mod.load(self.settings.index_dir, model=self.embedder.name)
            if data.path == self._data.path:
                return False
            _warn_without_sentences(data, self.settings)
            self._data = data  # one assignment: queries see the old or the new index whole
            return True

    # -- queries ----------------------------------------------------------------------
    def search(self, question: str, k: int = 5, history: Sequence[HistoryItem] | None = None) -> list[Hit]:
        """The ``k`` best passages for ``question``, ranked by fused dense + BM25 score."""
        data = self._data
        hits, _, _ = self._search(data, self._resolve(data, question, history).query, _bounded_k(k), {})
        return hits

    def ask(self, question: str, history: Sequence[HistoryItem] | None = None) -> Answer:
        """Answer ``question`` with a span quoted from the sources, or ``found=False``."""
        return self.read(question, history)[0]

    def read(self, question: str, history: Sequence[HistoryItem] | None = None) -> tuple[Answer, Reading]:
        """Like ``ask``, also returning the reader's raw ``Reading`` (its confidence features).

        With ``history`` (the conversation so far, oldest first), the reader answers the question
        made to stand on its own (``resolve``) and a follow-up does not repeat earlier answers.
        """
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        data = self._data  # one snapshot for the whole question
        resolved = self._resolve(data, question, history)
        k = max(self.settings.top_k, self.settings.read_passages)
        hits, qvec, _ = self._search(data, resolved.query, k, timings)
        t1 = time.perf_counter()
        keep = resolved.keep if resolved.avoid else None
        reading = self.reader.read(resolved.question, hits, data.documents, qvec, keep=keep)
        timings["reader"] = time.perf_counter() - t1
        timings["total"] = time.perf_counter() - t0
        found = reading.citation is not None and reading.confidence >= self.settings.min_confidence
        answer = Answer(
            question=question,
            text=reading.citation.quote if found and reading.citation else NOT_FOUND,
            found=found,
            score=round(reading.confidence, 4),
            citations=[reading.citation] if found and reading.citation else [],
            hits=reading.hits[: self.settings.top_k],
            timings={k: round(v, 6) for k, v in timings.items()},
        )
        return answer, reading

    def _search(
        self, data: IndexData, query: str, k: int, timings: dict[str, float]
    ) -> tuple[list[Hit], np.ndarray, Any]:
        t0 = time.perf_counter()
        qvec = self.embedder.embed([query])[0]
        timings["embed"] = time.perf_counter() - t0
        ranked = retrieve(data, qvec, query, max(self.settings.candidates, k), timings)
        t1 = time.perf_counter()
        s = self.settings
        hits = fuse(data, ranked, qvec, k, s.dense_weight, s.sentence_weight, s.overlap_weight)
        timings["fusion"] = time.perf_counter() - t1
        return hits, qvec, ranked

    def resolve(self, question: str, history: Sequence[HistoryItem] | None = None) -> Resolved:
        """``question`` made to stand on its own given ``history``: what the reader answers, what
        retrieval searches, the rule that decided, and the earlier answers not to repeat."""
        return self._resolve(self._data, question, history)

    def _resolve(self, data: IndexData, question: str, history: Sequence[HistoryItem] | None) -> Resolved:
        question = focus(self._clean_question(question))  # a wordy request: what it asks
        s = self.settings
        turns = parse_history(history, s.max_history_turns, s.max_history_chars, self._clean_turn)
        return resolve(question, turns, known=lambda words: len(data.lexical.idf(words)), declined=NOT_FOUND)

    def _clean_turn(self, content: str) -> str:
        return " ".join(_CONTROL.sub(" ", content).split())[: self.settings.max_question_chars]

    def _clean_question(self, question: Any) -> str:
        if not isinstance(question, str):
            raise InputError("the question must be a string")
        question = _CONTROL.sub(" ", question).strip()
        if not question:
            raise InputError("the question is empty: ask something about the documents")
        if len(question) > self.settings.max_question_chars:
            raise InputError(
                f"the question is too long ({len(question)} characters; the limit is "
                f"{self.settings.max_question_chars})"
            )
        return " ".join(question.split())

    # -- information ----------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load the models and run one question through every stage, so that the first
        user's question does not wait for model loading (about 3 s on 2 cores)."""
        self.read("warm up: which models load?")

    def info(self) -> dict[str, Any]:
        """The live index's manifest, plus where it is and which reader answers."""
        data = self._data
        info = dict(data.manifest)
        info["path"] = str(data.path)
        info["reader"] = getattr(self.reader, "info", {"name": self.reader.name})
        return info

    def document(self, doc_id: str) -> Document:
        """One indexed document by id; KeyError if absent."""
        return self._data.documents[doc_id]

    @property
    def data(self) -> IndexData:
        return self._data


def _settings(settings: Settings | None, seeds_dir: Any, index_dir: Any) -> Settings:
    settings = settings or Settings.from_env()
    changes: dict[str, Any] = {}
    if seeds_dir is not None:
        changes["seeds_dir"] = Path(seeds_dir)
    if index_dir is not None:
        changes["index_dir"] = Path(index_dir)
    return settings.replace(**changes) if changes else settings


def _bounded_k(k: Any) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 100:
        raise InputError("k must be an integer from 1 to 100")
    return k
