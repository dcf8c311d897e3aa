"""The retrieval embedder's training: its pairs and negatives, and a tiny run the app can load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qa.config import Settings
from tests.test_reader_training import _PARAS, _squad


def test_pairs_leave_out_held_out_articles_and_negatives_hold_no_answer(tmp_path: Path) -> None:
    from training.embedder import training_pairs

    data = _squad(tmp_path)
    pairs, pool = training_pairs(data, ["Article_2"], Settings())
    # v2.0 repeats no answerable question here; v1.1 has 2 + 2 outside Article_2
    assert sorted(p.question for p in pairs) == sorted(q for ctx, qas in _PARAS[:2] for q, _ in qas)
    assert all("Nile" not in text for _, text in pool)  # the held-out paragraph is never seen
    for p in pairs:
        assert p.positive.startswith("Article ")  # titled as the index embeds it
        assert any(a in p.positive for a in p.answers)


def test_hard_negative_is_another_paragraph_without_the_answer(tmp_path: Path) -> None:
    from training.embedder import Pair, hard_negatives

    class Fixed:
        """Vectors by keyword, so the ranking is known."""

        def preprocess(self, texts: list[str]) -> list[str]:
            return texts

        def __call__(self, texts: list[str]) -> dict[str, object]:
            import torch

            rows = [[float("tower" in t.lower()), float("1889" in t), 0.1] for t in texts]
            return {"sentence_embedding": torch.tensor(rows)}

    pool = [
        ("a", "The tower opened in 1889."),  # the positive
        ("b", "Another tower, also from 1889."),  # holds the answer: not a negative
        ("c", "A tower in another city."),  # the hardest true negative
        ("d", "Nothing related."),
    ]
    pair = Pair("When did the tower open?", pool[0][1], "a", ("1889",))
    assert hard_negatives(Fixed(), [pair], pool) == ["A tower in another city."]  # type: ignore[arg-type]


@pytest.mark.model  # the bundled all-MiniLM-L6-v2 weights
def test_tiny_training_run_writes_a_model_the_app_loads(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from qa.store.embedding import MeanPoolingModel, SentenceTransformerEmbedder
    from training.embedder import main

    data = _squad(tmp_path)
    out = tmp_path / "emb"
    rc = main([
        "--out", str(out), "--data-dir", str(data), "--holdout", "Article_2",
        "--max-steps", "2", "--batch-size", "2", "--no-eval", "--seed", "1",
    ])  # fmt: skip
    assert rc == 0
    weights = load_file(str(out / "model.safetensors"))
    assert {str(v.dtype) for k, v in weights.items() if v.is_floating_point()} == {"torch.float16"}
    log = json.loads((out / "train_log.json").read_text())
    assert log["steps"] == 2 and log["counts"]["pairs"] == 4 and len(log["sha256"]) == 64
    assert MeanPoolingModel.open(str(out)) is not None  # the fast path, not sentence-transformers
    emb = SentenceTransformerEmbedder(str(out))
    vecs = emb.embed(["When was the Eiffel Tower completed?", _PARAS[0][0]])
    assert vecs.dtype == np.float32 and vecs.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert next(emb.model.auto_model.parameters()).dtype.is_floating_point
    assert str(next(emb.model.auto_model.parameters()).dtype) == "torch.float32"
