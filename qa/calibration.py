"""One calibrated confidence from the reader's and the retriever's signals.

A logistic model over a few features (span score minus no-answer score, the raw
scores, the cosine of the chosen passage and of the best passage, whether BM25 also
found it, its fused retrieval score and rank). Its weights are fitted by
``training/calibrate.py`` on articles the reader never trained on and shipped beside the
reader as ``calibration.json``; the bias is shifted so that the chosen threshold maps to
0.5, so ``Settings.min_confidence = 0.5`` means "the calibrated threshold" for any reader.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from qa.errors import ModelError

FEATURES = ("margin", "span_score", "null_score", "cosine", "top_cosine", "lexical", "fused", "rank")
FILE = "calibration.json"
log = logging.getLogger("qa")


@dataclass(frozen=True)
class Calibration:
    weights: dict[str, float] = field(default_factory=dict)
    bias: float = 0.0
    source: str = "default"
    reader_sha256: str | None = None  # the reader weights it was fitted for
    dense_weight: float | None = None  # the fusion weight it was fitted with

    def confidence(self, features: dict[str, float]) -> float:
        z = self.bias + sum(w * features.get(name, 0.0) for name, w in self.weights.items())
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def to_json(self) -> dict[str, object]:
        return {"features": list(FEATURES), "weights": self.weights, "bias": self.bias}

    def check(self, reader_sha256: str | None, dense_weight: float | None) -> None:
        """Log a warning when fitted for other reader weights or another fusion weight: the
        app keeps answering, but its threshold is no longer the one chosen."""
        if reader_sha256 and self.reader_sha256 and self.reader_sha256 != reader_sha256:
            log.warning(
                "%s was fitted for other reader weights: re-run `python -m training.calibrate`", self.source
            )
        if dense_weight is not None and self.dense_weight is not None and self.dense_weight != dense_weight:
            log.warning(
                "%s was fitted with dense_weight %s, not %s: confidences shift",
                self.source, self.dense_weight, dense_weight,
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
            calibration = cls(
                weights,
                bias,
                str(path),
                raw.get("reader_sha256"),
                float(fitted_weight) if fitted_weight is not None else None,
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"{path} is damaged ({exc}); restore it from git") from None
        if not math.isfinite(bias) or not all(math.isfinite(w) for w in weights.values()):
            raise ModelError(f"{path} holds a non-finite weight; re-run `python -m training.calibrate`")
        calibration.check(reader_sha256, dense_weight)
        return calibration


# Before fitting: margin in logits, cosine around 0.3 separating related from unrelated.
DEFAULT = Calibration({"margin": 0.6, "cosine": 6.0}, bias=-1.8)
