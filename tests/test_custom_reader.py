"""Bring your own reader: Hugging Face extractive QA checkpoints as ``Settings.reader_path``.

Tiny randomly initialised BERT and RoBERTa question-answering models are built in a temporary
folder with tokenizers of their own (a WordPiece vocabulary and a byte-level BPE, trained here
on a few sentences; nothing is downloaded), saved with ``save_pretrained`` and loaded offline
through the same ``QA`` the app uses, with the hashing embedder. Their spans are random, which
is the point: whatever span a model picks, every citation's offsets are exact and whole.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from qa import QA, Settings
from qa.answer.calibration import FILE
from qa.answer.span_reader import (
    NO_ANSWER_SCORE,
    OPTIONS_FILE,
    SpanReader,
    inside_token,
    reader_format,
    reader_sha256,
)
from qa.errors import ModelError
from qa.types import Document
from training import calibrate

pytest.importorskip("torch")

DOCS = {
    "travel.md": (
        "Travel policy\n\nQuestions about travel go to name@company.example or +1 555-0100. "
        "The current version is v3.2, certified to ISO-27001. The daily allowance is €1,200 and "
        "it rises 3.5% each year. The full text is at https://intranet.example/policy."
    ),
    "cafe.txt": (
        "The café opens at 8:30 and closes at 17:00. Its manager is Zoë Müller, who "
        "joined in 2019. Orders over €50 are delivered free of charge to every office."
    ),
    "long.txt": " ".join(
        f"Room {i} on floor {i % 7} seats {i * 3} people and is booked through desk-{i}@company.example."
        for i in range(40)
    ),
}
QUESTIONS = [
    "Who answers questions about travel?",
    "What is the daily allowance?",
    "When does the café open?",
    "How many people does room 31 seat?",
    "Where is the full policy text?",
]
CORPUS = [*DOCS.values(), *QUESTIONS]


def _bert(folder: Path) -> Path:
    """A tiny BertForQuestionAnswering with a WordPiece vocabulary trained on ``CORPUS``."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertForQuestionAnswering, BertTokenizer

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wp = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wp.normalizer = normalizers.BertNormalizer(lowercase=True)
    wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wp.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=400, special_tokens=special))
    tokenizer = BertTokenizer(vocab=wp.get_vocab(), do_lower_case=True, model_max_length=512)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(wp.get_vocab()), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)  # fmt: skip
    BertForQuestionAnswering(config).save_pretrained(folder)
    return folder


def _roberta(folder: Path) -> Path:
    """A tiny RobertaForQuestionAnswering with a byte-level BPE trained on ``CORPUS``; its offsets
    are left untrimmed, so a token's offsets include the space before it."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import RobertaConfig, RobertaForQuestionAnswering, RobertaTokenizer

    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    bpe.train_from_iterator(CORPUS, trainer)
    raw = folder / "bpe"
    raw.mkdir(parents=True)
    vocab, merges = bpe.model.save(str(raw))
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges, trim_offsets=False, model_max_length=512)
    shutil.rmtree(raw)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(1)
    config = RobertaConfig(vocab_size=bpe.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=64, max_position_embeddings=514,
                           type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2)  # fmt: skip
    RobertaForQuestionAnswering(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("readers")
    return {"bert": _bert(root / "bert"), "roberta": _roberta(root / "roberta")}


@pytest.fixture(params=["bert", "roberta"])
def reader_dir(request: pytest.FixtureRequest, built: dict[str, Path], tmp_path: Path) -> Path:
    """A private copy of one tiny checkpoint (tests write calibration files into it)."""
    return Path(shutil.copytree(built[request.param], tmp_path / request.param))


def _qa(tmp_path: Path, reader: Path, **changes: Any) -> QA:
    docs = [Document(name, name, text, "x") for name, text in DOCS.items()]
    settings = Settings(index_dir=tmp_path / "index", model="hash-64", reader="auto",
                        reader_path=str(reader), min_confidence=0.0, **changes)  # fmt: skip
    return QA.from_documents(docs, settings=settings)


def _assert_whole(text: str, start: int, end: int, quote: str) -> None:
    assert 0 <= start < end <= len(text)
    assert text[start:end] == quote and quote == quote.strip(), (quote, text[start:end])
    assert not inside_token(text, start) and not inside_token(text, end), quote


def test_tiny_checkpoints_are_hugging_face_readers(built: dict[str, Path]) -> None:
    for folder in built.values():
        assert reader_format(folder) == "transformers" and SpanReader.available(folder)
        assert "ForQuestionAnswering" in json.loads((folder / "config.json").read_text())["architectures"][0]
    # The RoBERTa tokenizer's offsets include the space before a word: the reader trims them.
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(built["roberta"]), local_files_only=True)
    text = DOCS["cafe.txt"]
    offsets = tok(text, return_offsets_mapping=True)["offset_mapping"]
    assert any(text[a] == " " for a, b in offsets if b > a)


def test_custom_reader_answers_with_exact_whole_citations(
    reader_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="qa"):
        qa = _qa(tmp_path, reader_dir)
        answers = [qa.read(q) for q in QUESTIONS]
    info = qa.info()["reader"]
    assert info["format"] == "transformers" and info["sha256"] == reader_sha256(reader_dir)
    assert info["no_answer"] is True
    # Without a calibration of its own: the margin rule, with a warning that says how to fit one.
    assert any("no calibration.json" in r.getMessage() for r in caplog.records)
    cited = 0
    for answer, reading in answers:
        for c in answer.citations:
            cited += 1
            text = qa.document(c.doc_id).text
            _assert_whole(text, c.start, c.end, c.quote)
            assert c.passage == text[c.passage_start : c.passage_end]
        for cand in reading.candidates:  # every passage's span, chosen or not
            _assert_whole(cand.hit.chunk.text, cand.start, cand.end, cand.text)
    assert cited == len(QUESTIONS)  # min_confidence 0: every question quotes something


def test_every_span_of_a_long_passage_is_exact(built: dict[str, Path]) -> None:
    """Many windows (a short max_length), every n-best span of every passage: exact and whole."""
    passages = list(DOCS.values())
    for folder in built.values():
        reader = SpanReader(folder, max_length=48, stride=16, n_best=20)
        for question in QUESTIONS:
            for text, reading in zip(passages, reader.read(question, passages), strict=True):
                assert reading.spans
                for span in reading.spans:
                    _assert_whole(text, span.start, span.end, text[span.start : span.end])


def test_no_answer_position_or_constant(reader_dir: Path) -> None:
    passages = list(DOCS.values())
    nulls = [r.null_score for r in SpanReader(reader_dir).read(QUESTIONS[0], passages)]
    # SQuAD 2.0 convention: the [CLS] / <s> logits, which differ from passage to passage.
    assert len(set(nulls)) > 1 and NO_ANSWER_SCORE not in nulls
    (reader_dir / OPTIONS_FILE).write_text(json.dumps({"no_answer": False}))
    reader = SpanReader(reader_dir)
    readings = reader.read(QUESTIONS[0], passages)
    assert reader.info["no_answer"] is False
    assert [r.null_score for r in readings] == [NO_ANSWER_SCORE] * len(passages)
    assert all(r.spans for r in readings)
    (reader_dir / OPTIONS_FILE).write_text(json.dumps({"no_answer": "sometimes"}))
    with pytest.raises(ModelError, match="no_answer"):
        SpanReader(reader_dir).load()


def test_a_folder_that_is_not_a_reader_says_what_one_holds(tmp_path: Path, built: dict[str, Path]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="Hugging Face extractive QA checkpoint"):
        _qa(tmp_path, empty)
    # A model of another head (here: its config names no ...ForQuestionAnswering): not a reader.
    other = Path(shutil.copytree(built["bert"], tmp_path / "other"))
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "architectures": ["BertModel"]}))
    assert reader_format(other) is None
    with pytest.raises(ModelError, match="reader folder holds either"):
        SpanReader(other).load()
    # Weights but no tokenizer of its own: a clear error, not the bundled WordPiece silently.
    lone = Path(shutil.copytree(built["roberta"], tmp_path / "lone"))
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        (lone / name).unlink(missing_ok=True)
    with pytest.raises(ModelError, match="tokenizer"):
        SpanReader(lone).load()


def _calibration_rows(articles: list[str], seed: int = 0) -> list[dict[str, Any]]:
    """Readings as ``collect`` writes them: answerable questions whose best passage scores higher,
    unanswerable and unindexed ones whose spans score lower, spread over ``articles``."""
    rng = random.Random(seed)
    out = []
    for i in range(96):
        kind = ("answerable", "answerable", "unanswerable", "unindexed")[i % 4]
        good = rng.randrange(3) if kind == "answerable" else -1
        cands = []
        for j in range(3):
            feats = {
                "span_score": rng.gauss(3.0 if j == good else 0.0, 1.0),
                "null_score": NO_ANSWER_SCORE,
                "cosine": rng.gauss(0.5 if j == good else 0.3, 0.1),
                "lexical": 1.0,
                "fused": rng.gauss(0.5, 0.1),
                "rank": float(j + 1),
                "overlap": rng.random(),
            }
            feats["margin"] = feats["span_score"] - feats["null_score"]
            cands.append({"features": feats, "f1": float(j == good), "gold": j == good})
        out.append({"article": articles[i % len(articles)], "kind": kind, "label": int(kind == "answerable"),
                    "top_cosine": 0.5, "candidates": cands})  # fmt: skip
    return out


def test_calibrate_fits_a_custom_reader_and_the_app_warns_on_another(
    built: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qa.evaluation.evaluate import heldout_articles

    monkeypatch.setenv("QA_MODEL", "hash-64")  # the embedder the app below runs with
    bert = Path(shutil.copytree(built["bert"], tmp_path / "bert"))
    settings = Settings.from_env(reader_path=str(bert))
    saved = tmp_path / "rows.json"
    # Its config names no held-out articles: the shipped reader's are the ones asked.
    calibrate.save_rows(saved, _calibration_rows(heldout_articles()), reader_sha256(bert), settings)
    assert calibrate.main(["--reader-path", str(bert), "--rows", str(saved)]) == 0
    fitted = json.loads((bert / FILE).read_text())
    assert fitted["reader_sha256"] == reader_sha256(bert) and set(fitted["weights"]) == set(
        calibrate.FEATURES
    )
    # --out elsewhere (a file, or a folder), so the reader folder can stay read-only; --out alone
    # is the reader folder, as before --reader-path.
    assert calibrate.paths(bert, tmp_path / "c.json") == (bert, tmp_path / "c.json")
    assert calibrate.paths(bert, tmp_path) == (bert, tmp_path / FILE)
    assert calibrate.paths(None, bert) == (bert, bert / FILE)
    with pytest.raises(ModelError, match="reader not found"):
        calibrate.paths(tmp_path, None)
    # Readings taken with other weights are refused.
    roberta = Path(shutil.copytree(built["roberta"], tmp_path / "roberta"))
    assert calibrate.main(["--reader-path", str(roberta), "--rows", str(saved)]) == 2

    with caplog.at_level(logging.WARNING, logger="qa"):
        qa = _qa(tmp_path / "a", bert)
        qa.warm_up()
    assert qa.reader.calibration.source == str(bert / FILE)  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if "calibration" in r.getMessage() or "fitted" in r.getMessage()]
    # The same calibration beside another reader's weights: the app warns, naming the fix.
    shutil.copy(bert / FILE, roberta / FILE)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="qa"):
        _qa(tmp_path / "b", roberta).warm_up()
    warned = [r.getMessage() for r in caplog.records if "other reader weights" in r.getMessage()]
    assert len(warned) == 1 and "training.calibrate --reader-path" in warned[0]


def test_cli_reader_path_option(
    built: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from qa.cli import main

    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for name, text in DOCS.items():
        (seeds / name).write_text(text, encoding="utf-8")
    index = ["--index", str(tmp_path / "index"), "--model", "hash-64", "-q"]
    assert main(["build", "--seeds", str(seeds), *index]) == 0
    capsys.readouterr()
    argv = ["ask", QUESTIONS[1], "--json", "--reader-path", str(built["roberta"]), *index]
    assert main(argv) == 0
    answer = json.loads(capsys.readouterr().out)
    for c in answer["citations"]:
        text = (seeds / c["doc_id"]).read_text(encoding="utf-8")
        _assert_whole(text, c["start"], c["end"], c["quote"])
    assert main(["ask", QUESTIONS[1], "--reader-path", str(tmp_path), *index]) == 6  # not a reader
    assert "reader not found" in capsys.readouterr().err


@pytest.mark.slow
def test_qa_serve_start_up_output_warns_of_another_readers_calibration(
    built: dict[str, Path], tmp_path: Path
) -> None:
    """``qa serve --reader-path``: the warning is printed before the app says it is running."""
    import os
    import signal
    import subprocess
    import sys

    from qa.serve.server import bind

    reader = Path(shutil.copytree(built["bert"], tmp_path / "bert"))
    (reader / FILE).write_text(
        json.dumps({"weights": {"margin": 1.0}, "bias": 0.0, "reader_sha256": "0" * 64})
    )
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "travel.md").write_text(DOCS["travel.md"], encoding="utf-8")
    sock = bind("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    sock.close()
    env = {**os.environ, "QA_MODEL": "hash-64", "QA_WATCH_INTERVAL": "0", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "qa.cli", "serve", "--reader-path", str(reader), "--port", str(port),
           "--seeds", str(seeds), "--index", str(tmp_path / "index")]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Running on"), line
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert "other reader weights" in err and "training.calibrate --reader-path" in err, err
