"""Training examples to token windows with start/end labels, and the windows to batches."""

from __future__ import annotations

import random
from typing import Any

from qa.answer.span_reader import featurize


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
