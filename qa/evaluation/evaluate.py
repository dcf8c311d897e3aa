"""``qa eval``: retrieval, answer and abstention scores on a SQuAD file, through the app's own pipeline.

Every paragraph of the file becomes one source document; the index is built with the
app's chunking, embedder and index code (cached per file and settings, so a re-run
reuses the vectors), every question is asked with ``QA.ask``, and the answers are
scored by ``qa.evaluation.metrics``. Questions are asked once, with the confidence threshold at
0 so that the answer the reader would show is always known; the app's threshold and
the whole curve are then applied to the recorded scores.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qa.config import Settings
from qa.errors import ConfigError, InputError
from qa.evaluation import metrics as scoring
from qa.ingest.sources import make_document
from qa.store.embedding import Embedder, make_embedder
from qa.types import Answer, Document

#: Where evaluation indexes are cached when no ``--index`` is given (never the app's index).
DEFAULT_INDEX_ROOT = Path("artifacts/eval-index")
#: Recall is reported at these depths (distinct documents).
RECALL_AT = (1, 5, 10)
#: Hits asked for per question: documents can span several chunks, and Recall@10 counts documents.
HIT_DEPTH = 2 * max(RECALL_AT)
STAGES = ("embed", "dense", "lexical", "fusion", "reader", "total")


class EvalFileError(InputError):
    """The evaluation file is missing or not SQuAD JSON."""


# -- the data set ------------------------------------------------------------------
@dataclass(frozen=True)
class Question:
    """One SQuAD question and the document (paragraph) it was asked about."""

    qid: str
    text: str
    answers: tuple[str, ...]  # empty for an unanswerable (v2.0 is_impossible) question
    doc_id: str
    article: str
    impossible: bool = False


@dataclass(frozen=True)
class Dataset:
    """A SQuAD file read into documents and questions."""

    path: Path
    version: str  # "1.1" or "2.0"
    sha256: str
    documents: list[Document]
    questions: list[Question]
    articles: int
    selection: tuple[str, ...] = ()  # the article titles chosen with ``--articles`` (else all)


def read_json(path: Path, what: str, hint: str, error: type[InputError]) -> tuple[bytes, Any]:
    """The bytes of a JSON file and what they hold; raises ``error`` naming ``what`` is wrong with
    it (missing, not UTF-8, not JSON: where), then ``hint``."""
    if not path.exists():
        raise error(f"{what} {path} does not exist: {hint}")
    if not path.is_file():
        raise error(f"{what} {path} is not a file: {hint}")
    raw = path.read_bytes()
    try:
        return raw, json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path} is not UTF-8 (byte {exc.start}): {hint}") from None
    except json.JSONDecodeError as exc:
        raise error(
            f"{what} {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}): {hint}"
        ) from None


def load_squad(path: str | Path, articles: Sequence[str] | None = None) -> Dataset:
    """Read and check a SQuAD v1.1/v2.0 JSON file; raises EvalFileError saying what is wrong.

    ``articles``: keep only the articles with these titles (every one must be in the file).
    """
    path = Path(path)
    hint = "give the path of a SQuAD JSON file (v1.1 or v2.0), e.g. ../shared/eval/squad-v1.1-dev-a.json"
    raw, data = read_json(path, "eval file", hint, EvalFileError)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list) or not data["data"]:
        raise EvalFileError(
            f'eval file {path} is not SQuAD JSON (expected {{"data": [articles...]}}): {hint}'
        )
    declared = str(data.get("version", "")).lstrip("v")
    sha256 = hashlib.sha256(raw).hexdigest()
    if articles is not None:
        data["data"], sha256 = _select_articles(path, data["data"], articles, sha256)
    documents: list[Document] = []
    questions: list[Question] = []
    seen_titles: dict[str, int] = {}
    for a, article in enumerate(data["data"], 1):
        where = f"eval file {path}, article {a}"
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise EvalFileError(f'{where}: expected {{"title": ..., "paragraphs": [...]}}')
        title = str(article.get("title") or f"article-{a}")
        # Titles become folder names in doc ids: no slashes, and a repeated title gets a suffix.
        folder = title.replace("/", "_").strip() or f"article-{a}"
        seen_titles[folder] = seen_titles.get(folder, 0) + 1
        if seen_titles[folder] > 1:
            folder = f"{folder}~{seen_titles[folder]}"
        for p, para in enumerate(article["paragraphs"], 1):
            at = f"{where} ({title}), paragraph {p}"
            if not isinstance(para, dict) or not isinstance(para.get("context"), str):
                raise EvalFileError(f'{at}: expected {{"context": "...", "qas": [...]}}')
            if not para["context"].strip():
                raise EvalFileError(f"{at}: the context is empty")
            doc_id = f"{folder}/p{p:03d}.txt"
            human = " ".join(folder.replace("_", " ").split())
            documents.append(make_document(doc_id, para["context"], f"{human} ¶{p}"))
            for q, qa in enumerate(para.get("qas") or [], 1):
                questions.append(_question(qa, doc_id, folder, f"{at}, question {q}"))
    if not questions:
        raise EvalFileError(f"eval file {path} has no questions: {hint}")
    impossible = any(q.impossible for q in questions)
    version = "2.0" if declared.startswith("2") or impossible else "1.1"
    chosen = tuple(sorted({t.strip() for t in articles if t.strip()})) if articles is not None else ()
    return Dataset(path, version, sha256, documents, questions, len(data["data"]), chosen)


def _select_articles(
    path: Path, data: list[Any], titles: Sequence[str], sha256: str
) -> tuple[list[Any], str]:
    """The articles of ``data`` titled ``titles``, and a digest naming the file and the choice."""
    wanted = [t.strip() for t in titles if t.strip()]
    if not wanted:
        raise EvalFileError("--articles needs at least one article title")
    have = [str(a.get("title", "")) if isinstance(a, dict) else "" for a in data]
    missing = [t for t in wanted if t not in have]
    if missing:
        sample = ", ".join(have[:8]) + (", ..." if len(have) > 8 else "")
        raise EvalFileError(f"eval file {path} has no article titled {', '.join(missing)} (it has: {sample})")
    chosen = [a for a, t in zip(data, have, strict=True) if t in set(wanted)]
    key = json.dumps({"file": sha256, "articles": sorted(set(wanted))}, sort_keys=True)
    return chosen, hashlib.sha256(key.encode()).hexdigest()


def questions_of_articles(data: Dataset, titles: Sequence[str] | None) -> list[Question]:
    if titles is None:
        return list(data.questions)
    wanted = {t.replace("/", "_").strip() for t in titles if t.strip()}
    have = {q.article for q in data.questions}
    missing = sorted(wanted - have)
    if not wanted or missing:
        raise EvalFileError(
            f"--questions-from: eval file {data.path} has no questions of article(s) "
            f"{', '.join(missing) or '(none given)'}"
        )
    return [q for q in data.questions if q.article in wanted]


def heldout_articles(reader_path: str | Path | None = None) -> list[str]:
    """The article titles the shipped (or given) reader was not trained on, from its config.

    A Hugging Face checkpoint folder names none (its config is the model's own): it is scored
    on the shipped reader's held-out articles, which are in no SQuAD train set."""
    from qa.answer.span_reader import CONFIG_FILE, DEFAULT_PATH

    cfg = Path(reader_path or DEFAULT_PATH) / CONFIG_FILE
    try:
        config = json.loads(cfg.read_text(encoding="utf-8"))
        if (
            reader_path
            and isinstance(config, dict)
            and "holdout" not in config
            and config.get("architectures")
        ):
            return heldout_articles(None)
        titles = config["holdout"]
    except (OSError, ValueError, KeyError, TypeError):
        titles = None
    if not isinstance(titles, list) or not titles or not all(isinstance(t, str) and t for t in titles):
        raise ConfigError(f"'heldout': {cfg} names no held-out articles; give the titles instead")
    return titles


def _question(qa: Any, doc_id: str, article: str, at: str) -> Question:
    if not isinstance(qa, dict) or not isinstance(qa.get("question"), str) or not qa["question"].strip():
        raise EvalFileError(f'{at}: expected {{"id": ..., "question": "...", "answers": [...]}}')
    answers = qa.get("answers")
    if not isinstance(answers, list) or not all(
        isinstance(x, dict) and isinstance(x.get("text"), str) for x in answers
    ):
        raise EvalFileError(f'{at}: "answers" must be a list of {{"text": ..., "answer_start": ...}}')
    impossible = bool(qa.get("is_impossible", False))
    texts = tuple(x["text"] for x in answers if x["text"].strip())
    if not impossible and not texts:
        raise EvalFileError(f'{at}: no answer text (only questions marked "is_impossible" may have none)')
    return Question(
        str(qa.get("id", at)), qa["question"], () if impossible else texts, doc_id, article, impossible
    )


def sample_questions(questions: Sequence[Question], limit: int | None, seed: int = 0) -> list[Question]:
    """A seeded sample of ``limit`` questions, stratified by article (file order kept).

    Each article gets a share of the sample proportional to its questions (largest
    remainder), so a small run covers every article instead of the first few.
    """
    if limit is None or limit >= len(questions):
        return list(questions)
    if limit < 1:
        raise ConfigError("--limit must be at least 1")
    groups: dict[str, list[int]] = {}
    for i, q in enumerate(questions):
        groups.setdefault(q.article, []).append(i)
    exact = {a: limit * len(ix) / len(questions) for a, ix in groups.items()}
    quota = {a: int(x) for a, x in exact.items()}
    rest = sorted(groups, key=lambda a: (-(exact[a] - quota[a]), list(groups).index(a)))
    for a in rest[: limit - sum(quota.values())]:
        quota[a] += 1
    rng = random.Random(f"qa-eval-sample-{seed}")
    chosen = sorted(i for a, ix in groups.items() for i in rng.sample(ix, quota[a]))
    return [questions[i] for i in chosen]


def choose_unindexed(doc_ids: Sequence[str], fraction: float, seed: int = 0) -> set[str]:
    """A seeded choice of ``round(fraction * len(doc_ids))`` documents to leave out of the index."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError("--unindexed must be a fraction from 0 up to (not including) 1")
    n = round(fraction * len(doc_ids))
    return set(random.Random(f"qa-eval-unindexed-{seed}").sample(list(doc_ids), n)) if n else set()


# -- the report --------------------------------------------------------------------
@dataclass(frozen=True)
class QuestionResult:
    """One asked question, scored."""

    qid: str
    question: str
    doc_id: str
    kind: str  # ANSWERABLE, UNANSWERABLE or UNINDEXED
    score: float | None  # None: the reader cited nothing
    found: bool  # at the app's threshold
    prediction: str  # the span the reader would show ("" when it cited nothing)
    em: float
    f1: float
    contains_gold: bool
    gold_rank: int | None  # of the gold document among the answer's hits (after the reader)
    retriever_rank: int | None  # the same before the reader moved its passage first
    timings_ms: dict[str, float]


@dataclass
class EvalReport:
    """What ``qa eval`` measured; ``to_dict`` is the JSON that ``--json`` prints."""

    file: str
    version: str
    sha256: str
    settings: dict[str, Any]
    counts: dict[str, Any]
    metrics: dict[str, float | None]
    retriever: dict[str, float | None]
    threshold: float
    curve: list[scoring.CurvePoint]
    latency_ms: dict[str, dict[str, float]]
    index: dict[str, Any]
    seconds: float
    command: str = ""
    results: list[QuestionResult] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The headline metrics as top-level keys, then everything else but per-question results."""
        out: dict[str, Any] = {k: _round(v) for k, v in self.metrics.items()}
        out.update(
            retriever={k: _round(v) for k, v in self.retriever.items()},
            threshold=self.threshold,
            curve=[{k: _round(v) for k, v in dataclasses.asdict(p).items()} for p in self.curve],
            latency_ms=self.latency_ms,
            counts=self.counts,
            index=self.index,
            settings=self.settings,
            file=self.file,
            version=self.version,
            sha256=self.sha256,
            seconds=round(self.seconds, 2),
            command=self.command,
        )
        return out


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


# -- evaluation ----------------------------------------------------------------------
def evaluate(
    path: str | Path,
    settings: Settings,
    *,
    limit: int | None = None,
    unindexed: float = 0.0,
    seed: int = 0,
    progress: bool = True,
    embedder: Embedder | None = None,
    index_root: str | Path | None = None,
    articles: Sequence[str] | None = None,
    questions_from: Sequence[str] | None = None,
) -> EvalReport:
    """Index every paragraph of the SQuAD file at ``path``, ask its questions, and score them.

    ``limit``: ask a seeded, article-stratified sample of that many questions (the
    corpus stays the whole file). ``unindexed``: leave that seeded fraction of the
    paragraphs out of the index; their questions should be declined. ``index_root``:
    where the cached indexes live (default ``artifacts/eval-index``). ``articles``: evaluate
    only these articles of the file (they alone are the corpus). ``questions_from``: ask only
    the questions of these articles, with the whole file (or ``articles``) as the corpus.
    """
    from qa.pipeline import QA

    t_start = time.perf_counter()
    data = load_squad(path, articles)
    asked = sample_questions(questions_of_articles(data, questions_from), limit, seed)
    left_out = choose_unindexed([d.doc_id for d in data.documents], unindexed, seed)
    docs = [d for d in data.documents if d.doc_id not in left_out]
    if not docs:
        raise ConfigError(f"--unindexed {unindexed:g} leaves no document of {path} to index: use a smaller F")
    embedder = embedder or make_embedder(settings.model)
    root = Path(index_root or DEFAULT_INDEX_ROOT)
    index_dir = index_dir_for(root, data, settings, embedder, unindexed, seed)
    # Threshold 0: every answer the reader can cite comes back with its text and score,
    # so one pass yields the app's numbers and the whole curve. top_k only lengthens
    # the hit list (readers read the first read_passages), so answers do not change.
    run_settings = settings.replace(
        index_dir=index_dir, min_confidence=0.0, top_k=max(settings.top_k, HIT_DEPTH)
    )
    with _bar(progress, "embedding", "chunk") as bar:
        qa = QA.from_documents(docs, settings=run_settings, embedder=embedder, progress=_bar_update(bar))
    build = qa.last_build
    qa.warm_up()  # keep one-time loading out of the latencies
    results: list[QuestionResult] = []
    t_ask = time.perf_counter()
    with _bar(progress, "asking", "question", total=len(asked)) as bar:
        for q in asked:
            kind = question_kind(q, left_out)
            results.append(_score(q, kind, qa.ask(q.text), settings.min_confidence))
            if bar is not None:
                bar.update(1)
    ask_seconds = time.perf_counter() - t_ask
    report = _report(data, asked, results, docs, settings, qa, left_out, unindexed, seed)
    report.settings["questions_from"] = sorted({q.article for q in asked}) if questions_from else "all"
    report.index.update(
        path=str(index_dir),
        build_seconds=round(build.seconds, 2) if build else None,
        embedded=build.embedded if build else None,
        up_to_date=build.up_to_date if build else None,
    )
    report.counts["questions_per_second"] = round(len(asked) / ask_seconds, 2) if ask_seconds else 0
    report.seconds = time.perf_counter() - t_start
    return report


def question_kind(q: Question, left_out: set[str]) -> str:
    if q.doc_id in left_out:
        return scoring.UNINDEXED
    return scoring.UNANSWERABLE if q.impossible else scoring.ANSWERABLE


def _score(q: Question, kind: str, answer: Answer, threshold: float) -> QuestionResult:
    citation = answer.citations[0] if answer.citations else None
    # The reader may cite nothing at all (no readable passage): declined at every threshold.
    score = answer.score if citation is not None else None
    prediction = citation.quote if citation is not None else ""
    found = score is not None and score >= threshold
    ranked = [h.chunk.doc_id for h in answer.hits]
    # The reader moved its passage to the top and kept the others in order; the fused
    # score (ties on BM25, as ``retrieval.fuse`` breaks them) restores the retriever's order.
    before = sorted(answer.hits, key=lambda h: (-h.score, -(h.lexical_score or 0.0)))
    scored = kind == scoring.ANSWERABLE
    return QuestionResult(
        qid=q.qid,
        question=q.text,
        doc_id=q.doc_id,
        kind=kind,
        score=score,
        found=found,
        prediction=prediction,
        em=scoring.exact_match(prediction, q.answers) if scored and citation else 0.0,
        f1=scoring.f1_score(prediction, q.answers) if scored and citation else 0.0,
        contains_gold=bool(scored and citation and scoring.contains_answer(citation.sentence, q.answers)),
        gold_rank=scoring.gold_rank(ranked, q.doc_id),
        retriever_rank=scoring.gold_rank([h.chunk.doc_id for h in before], q.doc_id),
        timings_ms={k: round(v * 1000, 3) for k, v in answer.timings.items()},
    )


def _report(
    data: Dataset,
    asked: list[Question],
    results: list[QuestionResult],
    docs: list[Document],
    settings: Settings,
    qa: Any,
    left_out: set[str],
    unindexed: float,
    seed: int,
) -> EvalReport:
    t = settings.min_confidence
    answerable = [r for r in results if r.kind == scoring.ANSWERABLE]
    outcomes = [scoring.Outcome(r.kind, r.score, r.f1, r.em) for r in results]

    def shown(r: QuestionResult, value: float | bool) -> float:
        return float(value) if r.found else 0.0  # a declined answer scores 0

    def recall(rank_of: str) -> dict[str, float | None]:
        ranks = [getattr(r, rank_of) for r in answerable]
        out: dict[str, float | None] = {
            f"recall@{k}": scoring.mean(float(x is not None and x <= k) for x in ranks) for k in RECALL_AT
        }
        k = max(RECALL_AT)
        out[f"mrr@{k}"] = scoring.mean(1.0 / x if x is not None and x <= k else 0.0 for x in ranks)
        return out

    scores = recall("gold_rank")
    scores.update(
        exact_match=scoring.mean(shown(r, r.em) for r in answerable),
        f1=scoring.mean(shown(r, r.f1) for r in answerable),
        contains_gold=scoring.mean(shown(r, r.contains_gold) for r in answerable),
        answered_answerable=scoring.answered_rate(outcomes, t, scoring.ANSWERABLE),
    )
    if data.version == "2.0":
        scores["declined_unanswerable"] = scoring.declined_rate(outcomes, t, scoring.UNANSWERABLE)
    if unindexed > 0:
        scores["declined_unindexed"] = scoring.declined_rate(outcomes, t, scoring.UNINDEXED)
    scores["f1_answered"] = scoring.mean(r.f1 for r in answerable if r.found)
    latency = {}
    for stage in STAGES:
        med, p95 = scoring.median_p95([r.timings_ms[stage] for r in results if stage in r.timings_ms])
        latency[stage] = {"median": round(med, 2), "p95": round(p95, 2)}
    kinds = [r.kind for r in results]
    return EvalReport(
        file=str(data.path),
        version=data.version,
        sha256=data.sha256,
        settings={
            "model": qa.embedder.name,
            "reader": getattr(qa.reader, "name", str(settings.reader)),
            "chunk_tokens": settings.chunk_tokens,
            "chunk_overlap": settings.chunk_overlap,
            "candidates": settings.candidates,
            "dense_weight": settings.dense_weight,
            "sentence_weight": settings.sentence_weight,
            "overlap_weight": settings.overlap_weight,
            "read_passages": settings.read_passages,
            "read_gap": settings.read_gap,
            "min_confidence": t,
            "seed": seed,
            "unindexed": unindexed,
            "articles": list(data.selection) or "all",
        },
        counts={
            "articles": data.articles,
            "documents": len(data.documents),
            "indexed_documents": len(docs),
            "chunks": len(qa.data.chunks),
            "questions_in_file": len(data.questions),
            "questions": len(results),
            "answerable": kinds.count(scoring.ANSWERABLE),
            "unanswerable": kinds.count(scoring.UNANSWERABLE),
            "unindexed": kinds.count(scoring.UNINDEXED),
        },
        metrics=scores,
        retriever=recall("retriever_rank"),
        threshold=t,
        curve=scoring.threshold_curve(outcomes),
        latency_ms=latency,
        index={"unindexed_documents": len(left_out)},
        seconds=0.0,
        results=results,
    )


def index_dir_for(
    root: Path, data: Dataset, settings: Settings, embedder: Embedder, unindexed: float, seed: int
) -> Path:
    """The cache folder for this file, these index settings and this set of left-out documents.

    A folder for a subset starts as a copy of the whole file's index when that exists,
    so leaving documents out re-embeds nothing.
    """
    from qa.store import files as store

    key = {
        "file_sha256": data.sha256,
        "model": embedder.name,
        "weights": getattr(embedder, "fingerprint", None),
        "encoding": settings.encoding,
        "chunk_tokens": settings.chunk_tokens,
        "chunk_overlap": settings.chunk_overlap,
    }  # the vector index kind is not part of the key: ``index.build`` rebuilds it when it changes
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    stem = f"{data.path.stem}-articles" if data.selection else data.path.stem
    full = root / f"{stem}-{digest}"
    target = full if not unindexed else root / f"{full.name}-unindexed{unindexed:g}-seed{seed}"
    if target != full and not target.exists() and (full / store.POINTER).exists():
        try:
            gen = store.current_generation(full)
            target.mkdir(parents=True)
            shutil.copytree(gen, target / gen.name)
            shutil.copy2(full / store.POINTER, target / store.POINTER)
        except Exception:  # only a head start: a plain build still works
            shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True, exist_ok=True)
    store.write_json(target / "eval-key.json", {**key, "unindexed": unindexed, "seed": seed})
    return target


@dataclass
class _Bar:
    enabled: bool
    desc: str
    unit: str
    total: int | None
    bar: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from tqdm import tqdm

        # Off a terminal the bar is a log: a line every 30 s instead of a redraw per step.
        tty = sys.stderr.isatty()
        self.bar = tqdm(total=self.total, desc=self.desc, unit=self.unit, file=sys.stderr,
                        mininterval=0.1 if tty else 30.0, delay=0 if self.total else 1)  # fmt: skip
        return self.bar

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def _bar(enabled: bool, desc: str, unit: str, total: int | None = None) -> _Bar:
    return _Bar(enabled, desc, unit, total)


def _bar_update(bar: Any) -> Any:
    if bar is None:
        return None

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update


# -- rendering --------------------------------------------------------------------
_LABELS = {
    "recall@1": "Recall@1",
    "recall@5": "Recall@5",
    "recall@10": "Recall@10",
    "mrr@10": "MRR@10",
    "exact_match": "Exact match",
    "f1": "F1",
    "contains_gold": "Sentence contains gold",
    "answered_answerable": "Answered (answerable)",
    "declined_unanswerable": "Declined (unanswerable, v2.0)",
    "declined_unindexed": "Declined (document not indexed)",
    "f1_answered": "F1 over answered",
}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _chosen(settings: dict[str, Any], key: str = "articles") -> str:
    chosen = settings.get(key)
    return f" ({', '.join(chosen)})" if isinstance(chosen, list) else ""


def render_markdown(report: EvalReport) -> str:
    """The report as Markdown: metrics, abstention curve, latency, index; for the README."""
    c, s, ix = report.counts, report.settings, report.index
    lines = [f"## qa eval: {Path(report.file).name} (SQuAD {report.version})", ""]
    if report.command:
        lines += [f"`{report.command}`", ""]
    lines += [
        f"{c['articles']} articles{_chosen(s)}, {c['documents']:,} paragraphs as documents "
        f"({c['indexed_documents']:,} indexed, {c['chunks']:,} chunks); {c['questions']:,} of "
        f"{c['questions_in_file']:,} questions asked{_chosen(s, 'questions_from')}: "
        f"{c['answerable']:,} answerable, "
        f"{c['unanswerable']:,} unanswerable, {c['unindexed']:,} about unindexed documents. "
        f"Model `{s['model']}`, reader `{s['reader']}`, chunks {s['chunk_tokens']}/{s['chunk_overlap']} "
        f"tokens, candidates {s['candidates']}, dense weight {s['dense_weight']:g}, "
        f"sentence weight {s.get('sentence_weight', 0):g}, overlap weight {s.get('overlap_weight', 0):g}, "
        f"threshold {report.threshold:g}.",
        "",
        "| metric | value | retriever alone |",
        "|---|---:|---:|",
    ]
    for key, value in report.metrics.items():
        alone = _fmt(report.retriever.get(key)) if key in report.retriever else ""
        lines.append(f"| {_LABELS.get(key, key)} | {_fmt(value)} | {alone} |")
    lines += [
        "",
        "Recall and MRR count distinct documents among the answer's hits (the reader moves the "
        'passage it quotes to the top; "retriever alone" is the fused ranking before that). '
        "Answer and retrieval scores count answerable questions whose document is indexed; "
        "a declined question scores 0.",
        "",
        "### Abstention by confidence threshold",
        "",
        "| threshold | answered (answerable) | declined (unanswerable) | declined (unindexed) "
        "| F1 over answered | F1 | EM |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in report.curve:
        mark = " ← app" if abs(p.threshold - report.threshold) < 1e-9 else ""
        lines.append(
            f"| {p.threshold:.2f}{mark} | {_fmt(p.answered_answerable)} | {_fmt(p.declined_unanswerable)} "
            f"| {_fmt(p.declined_unindexed)} | {_fmt(p.f1_answered)} | {_fmt(p.f1)} | {_fmt(p.exact_match)} |"
        )
    lines += ["", "### Latency per question (ms)", "", "| stage | median | p95 |", "|---|---:|---:|"]
    for stage, v in report.latency_ms.items():
        lines.append(f"| {stage} | {v['median']:.1f} | {v['p95']:.1f} |")
    build = (
        "up to date (vectors reused)"
        if ix.get("up_to_date")
        else f"built in {_fmt(ix.get('build_seconds'), 1)} s ({_fmt(ix.get('embedded'))} chunks embedded)"
    )
    lines += [
        "",
        f"Index `{ix.get('path')}`: {build}. {c['questions']:,} questions in "
        f"{report.seconds:.0f} s in all, index and model loading included; the questions alone "
        f"ran at {_fmt(c.get('questions_per_second'), 1)} questions/s.",
        "",
    ]
    return "\n".join(lines)


def plot(report: EvalReport, path: str | Path) -> None:
    """Write a PNG: Recall@k on the left, the abstention trade-off by threshold on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = [f"R@{k}" for k in RECALL_AT] + [f"MRR@{max(RECALL_AT)}"]
    keys = [f"recall@{k}" for k in RECALL_AT] + [f"mrr@{max(RECALL_AT)}"]
    xs = range(len(keys))
    for offset, (name, values) in zip(
        (-0.2, 0.2), (("with reader", report.metrics), ("retriever alone", report.retriever)), strict=True
    ):
        heights = [values.get(k) or 0.0 for k in keys]
        bars = left.bar([x + offset for x in xs], heights, width=0.4, label=name)
        left.bar_label(bars, fmt="%.2f", fontsize=8)
    left.set_xticks(list(xs), labels)
    left.set_ylim(0, 1.05)
    left.set_title("Retrieval of the gold paragraph")
    left.legend(loc="lower right", fontsize=8)

    ts = [p.threshold for p in report.curve]
    series = [
        ("answered (answerable)", [p.answered_answerable for p in report.curve]),
        ("declined (unanswerable)", [p.declined_unanswerable for p in report.curve]),
        ("declined (unindexed)", [p.declined_unindexed for p in report.curve]),
        ("F1 over answered", [p.f1_answered for p in report.curve]),
    ]
    for name, ys in series:
        if any(y is not None for y in ys):
            right.plot(ts, [float("nan") if y is None else y for y in ys], marker=".", label=name)
    right.axvline(report.threshold, color="grey", linestyle="--", linewidth=1)
    right.text(report.threshold, 1.02, f" app {report.threshold:g}", fontsize=8, color="grey")
    right.set_xlim(0, 1)
    right.set_ylim(0, 1.08)
    right.set_xlabel("confidence threshold")
    right.set_title("Abstention trade-off")
    right.legend(loc="lower left", fontsize=8)
    fig.suptitle(f"qa eval: {Path(report.file).name}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(report: EvalReport, out_dir: str | Path) -> list[Path]:
    """Write eval.md, eval.json, eval.png and per-question eval-questions.jsonl into ``out_dir``."""
    from qa.store import files as store

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store.write_atomic(out / "eval.md", render_markdown(report).encode("utf-8"))
    store.write_atomic(out / "eval.json", (json.dumps(report.to_dict(), indent=2) + "\n").encode("utf-8"))
    rows = (json.dumps(dataclasses.asdict(r), ensure_ascii=False) for r in report.results)
    store.write_atomic(out / "eval-questions.jsonl", "".join(r + "\n" for r in rows).encode("utf-8"))
    plot(report, out / "eval.png")
    return [out / n for n in ("eval.md", "eval.json", "eval.png", "eval-questions.jsonl")]


# -- the command line --------------------------------------------------------------
def run_cli(args: Any, settings: Settings) -> int:
    """``qa eval``: evaluate, then print JSON (``--json``) or Markdown, and write ``--out`` files."""
    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be at least 1")
    report = evaluate(
        args.file,
        settings,
        limit=args.limit,
        unindexed=args.unindexed,
        seed=args.seed,
        progress=not args.quiet,
        index_root=args.index_dir or DEFAULT_INDEX_ROOT,
        articles=_articles(args.articles, settings),
        questions_from=_articles(args.questions_from, settings),
    )
    report.command = command_line(args)
    if args.out:
        for written in write_outputs(report, args.out):
            if not args.quiet:
                print(f"qa: wrote {written}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        print(render_markdown(report))
    return 0


def _articles(value: str | None, settings: Settings) -> list[str] | None:
    """``--articles``, ``--questions-from``: comma-separated titles, or ``heldout`` (the
    reader's held-out articles)."""
    if value is None:
        return None
    if value.strip() == "heldout":
        return heldout_articles(settings.reader_path or None)
    return [t for t in value.split(",") if t.strip()]


#: Settings that change what ``qa eval`` measures; set through QA_* variables they join the command line.
_MEASURED = (
    "model", "encoding", "chunk_tokens", "chunk_overlap", "top_k", "candidates", "dense_weight",
    "sentence_weight", "overlap_weight", "hnsw_threshold", "reader", "reader_path", "read_passages",
    "read_gap", "max_answer_tokens", "min_confidence",
)  # fmt: skip


def command_line(args: Any) -> str:
    """The shell command that reproduces this run: QA_* overrides, then ``qa eval`` and its flags."""
    env = [f"QA_{k.upper()}={shlex.quote(os.environ[f'QA_{k.upper()}'])}" for k in _MEASURED
           if f"QA_{k.upper()}" in os.environ]  # fmt: skip
    words = ["qa", "eval", args.file]
    flags = (("--limit", args.limit), ("--reader", args.reader), ("--model", args.model),
             ("--index", args.index_dir), ("--out", args.out), ("--articles", args.articles),
             ("--questions-from", args.questions_from),
             ("--reader-path", getattr(args, "reader_path", None)))  # fmt: skip
    for flag, value in flags:
        if value is not None:
            words += [flag, str(value)]
    if args.unindexed:
        words += ["--unindexed", f"{args.unindexed:g}"]
    if args.seed:
        words += ["--seed", str(args.seed)]
    words += [flag for flag, on in (("--json", args.json), ("-q", args.quiet)) if on]
    return " ".join([*env, *(shlex.quote(w) for w in words)])
