"""Which passage's span to quote, and one calibrated confidence that it answers.

Two linear models over the reader's and the retriever's signals, fitted by
``training/calibrate.py`` on articles the reader never trained on and shipped beside the
reader as ``calibration.json``:

- ``selection``: a score per read passage (its best span's score, the passage's no-answer
  score, cosine, fused retrieval score, rank, and the share of the question's words in the
  span's sentence); the highest-scoring passage's span is the answer.
- ``weights``/``bias``: a logistic confidence that the chosen span is right, over its
  features (those, plus span minus no-answer score, the best passage's cosine, whether BM25
  also found it), fitted with each answerable question right in proportion to its span's
  token F1 and every unanswerable one wrong; the bias is shifted so that the chosen threshold
  maps to 0.5, so ``Settings.min_confidence = 0.5`` means "the calibrated threshold" for any
  reader.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from qa.errors import ModelError

FEATURES = (
    "margin", "span_score", "null_score", "cosine", "top_cosine", "lexical", "fused", "rank", "overlap",
)  # fmt: skip
SELECTION_FEATURES = ("span_score", "null_score", "cosine", "fused", "rank", "overlap")
#: Before fitting: span score minus the passage's no-answer score, less 0.3 per retrieval rank.
DEFAULT_SELECTION = {"span_score": 1.0, "null_score": -1.0, "rank": -0.3}
FILE = "calibration.json"
log = logging.getLogger("qa")


@dataclass(frozen=True)
class Calibration:
    weights: dict[str, float] = field(default_factory=dict)
    bias: float = 0.0
    source: str = "default"
    reader_sha256: str | None = None  # the reader weights it was fitted for
    dense_weight: float | None = None  # the fusion weight it was fitted with
    selection: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SELECTION))
    read_passages: int | None = None  # how many passages the reader read when it was fitted
    embedding_model: str | None = None  # the embedding model (its cosines are features)
    read_gap: float | None = None  # how far behind the best passage a passage was still read
    sentence_weight: float | None = None  # the best sentence's share of the dense score
    overlap_weight: float | None = None  # the sentence word overlap's weight in the fused score

    def select(self, features: dict[str, float]) -> float:
        """A passage's selection score: the reader quotes the passage that scores highest."""
        return sum(w * features.get(name, 0.0) for name, w in self.selection.items())

    def confidence(self, features: dict[str, float]) -> float:
        z = self.bias + sum(w * features.get(name, 0.0) for name, w in self.weights.items())
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def check(
        self,
        reader_sha256: str | None,
        dense_weight: float | None,
        read_passages: int | None = None,
        embedding_model: str | None = None,
        read_gap: float | None = None,
        sentence_weight: float | None = None,
        overlap_weight: float | None = None,
    ) -> None:
        """Log a warning when fitted for other reader weights, another fusion, sentence or
        overlap weight, another number of passages read (or gap to the best one) or another embedding
        model: the app keeps answering, but its threshold is no longer the one chosen."""
        if reader_sha256 and self.reader_sha256 and self.reader_sha256 != reader_sha256:
            log.warning(
                "%s was fitted for other reader weights (sha256 %s, not %s): its confidences do not "
                "fit this reader; re-run `python -m training.calibrate --reader-path FOLDER`",
                self.source, self.reader_sha256[:12], reader_sha256[:12],
            )  # fmt: skip
        if dense_weight is not None and self.dense_weight is not None and self.dense_weight != dense_weight:
            log.warning(
                "%s was fitted with dense_weight %s, not %s: confidences shift",
                self.source, self.dense_weight, dense_weight,
            )  # fmt: skip
        if sentence_weight is not None and self.sentence_weight not in (None, sentence_weight):
            log.warning(
                "%s was fitted with sentence_weight %s, not %s: confidences shift",
                self.source, self.sentence_weight, sentence_weight,
            )  # fmt: skip
        if overlap_weight is not None and self.overlap_weight not in (None, overlap_weight):
            log.warning(
                "%s was fitted with overlap_weight %s, not %s: confidences shift",
                self.source, self.overlap_weight, overlap_weight,
            )  # fmt: skip
        if read_passages is not None and self.read_passages not in (None, read_passages):
            log.warning(
                "%s was fitted reading %s passages, not %s: confidences shift",
                self.source, self.read_passages, read_passages,
            )  # fmt: skip
        if read_gap is not None and self.read_gap not in (None, read_gap):
            log.warning(
                "%s was fitted reading passages within %s of the best, not %s: confidences shift",
                self.source, self.read_gap, read_gap,
            )  # fmt: skip
        if embedding_model and self.embedding_model and self.embedding_model != embedding_model:
            log.warning(
                "%s was fitted with embedding model %r, not %r: confidences shift; re-run "
                "`python -m training.calibrate`",
                self.source, self.embedding_model, embedding_model,
            )  # fmt: skip

    @classmethod
    def load(
        cls, folder: Path, reader_sha256: str | None = None, dense_weight: float | None = None
    ) -> Calibration:
        """The calibration shipped in ``folder``, or the hand-set default when absent;
        ``check``ed against ``reader_sha256`` and ``dense_weight`` when given."""
        path = folder / FILE
        if not path.is_file():
            return DEFAULT
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            weights = {k: float(v) for k, v in raw["weights"].items() if k in FEATURES}
            bias = float(raw["bias"])
            fitted_weight = raw.get("dense_weight")
            selection = raw.get("selection") or DEFAULT_SELECTION
            passages = raw.get("read_passages")
            # Fitted before the read gap existed, it read every one of its passages.
            gap = raw.get("read_gap", 2.0 if passages is not None else None)
            # ...and before sentence vectors, its dense score was the chunk's cosine alone.
            sentence = raw.get("sentence_weight", 0.0 if fitted_weight is not None else None)
            # ...and before the sentence word overlap, the fused score had none.
            overlap = raw.get("overlap_weight", 0.0 if fitted_weight is not None else None)
            calibration = cls(
                weights,
                bias,
                str(path),
                raw.get("reader_sha256"),
                float(fitted_weight) if fitted_weight is not None else None,
                {k: float(v) for k, v in selection.items() if k in SELECTION_FEATURES},
                int(passages) if passages is not None else None,
                str(raw["embedding_model"]) if raw.get("embedding_model") else None,
                float(gap) if gap is not None else None,
                float(sentence) if sentence is not None else None,
                float(overlap) if overlap is not None else None,
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"{path} is damaged ({exc}); restore it from git") from None
        numbers = [bias, *weights.values(), *calibration.selection.values()]
        if not all(math.isfinite(x) for x in numbers):
            raise ModelError(f"{path} holds a non-finite weight; re-run `python -m training.calibrate`")
        if calibration.read_gap is not None and not 0.0 <= calibration.read_gap <= 2.0:
            raise ModelError(f"{path} records a read_gap outside 0-2; re-run `python -m training.calibrate`")
        calibration.check(reader_sha256, dense_weight)
        return calibration


# Before fitting: margin in logits, cosine around 0.3 separating related from unrelated.
DEFAULT = Calibration({"margin": 0.6, "cosine": 6.0}, bias=-1.8)
