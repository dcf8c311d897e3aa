"""Section 1: query latency of ``search`` and ``ask`` against the floor, split into stages.

The floor is one forward pass of the embedding model's transformer (``BertModel.forward``) on
the already-tokenised question, run the way the engine runs a query (one thread); pooling,
normalisation and tokenisation count against the engine. ``search`` adds those, FAISS, BM25
and fusion; ``ask`` adds the reader (answer selection), which is reported on its own.

With the span reader, ``ask`` is also timed reading every one of its ``read_passages`` passages
(``read_gap`` off), interleaved with the rest, so the ratio shows what skipping the passages far
behind the best one saves.
"""

from __future__ import annotations

import math
import time
from typing import Any

from bench.common import load_line, median, ms, percentile, say, table
from bench.corpus import Question
from qa.pipeline import QA

STAGES = ("embed", "dense", "lexical", "fusion", "reader")


def floor_fn(qa: QA) -> Any:
    """A function timing one forward pass of the embedding model (the transformer itself,
    ``BertModel.forward``) on a tokenised question, on one thread as the engine runs a query."""
    import torch

    model = qa.embedder.model  # type: ignore[attr-defined]
    transformer = getattr(model, "auto_model", None) or model[0].auto_model

    def once(question: str) -> float:
        features = {
            k: v
            for k, v in model.preprocess([question]).items()
            if k in ("input_ids", "attention_mask", "token_type_ids")
        }
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                t0 = time.perf_counter()
                transformer(**features)
                return time.perf_counter() - t0
        finally:
            torch.set_num_threads(threads)

    return once


def run(name: str, qa: QA, questions: list[Question], repeats: int) -> tuple[dict[str, Any], list[str]]:
    """Time floor, search and ask on every question ``repeats`` times, interleaved."""
    floor = floor_fn(qa)
    qa.ask("warm up: which models load?")
    for q in questions[:3]:
        qa.search(q.text)
        floor(q.text)
    say(f"  latency on {name}: {len(questions)} questions x {repeats} ({load_line()})")
    t_floor: list[float] = []
    t_search: list[float] = []
    t_ask: list[float] = []
    t_ask_all: list[float] = []
    stages: dict[str, list[float]] = {s: [] for s in STAGES}
    pre_reader: list[float] = []
    gap = getattr(qa.reader, "read_gap", None)  # the span reader's; the sentence reader has none
    steps = ("floor", "search", "ask", "ask_all") if gap is not None else ("floor", "search", "ask")
    for r in range(repeats):
        for i, q in enumerate(questions):
            # Rotate the order so no step always runs with warm caches from the one before.
            turn = (i + r) % len(steps)
            for step in steps[turn:] + steps[:turn]:
                if step == "floor":
                    t_floor.append(floor(q.text))
                elif step == "search":
                    t0 = time.perf_counter()
                    qa.search(q.text)
                    t_search.append(time.perf_counter() - t0)
                elif step == "ask_all" and gap is not None:
                    t_ask_all.append(_ask_reading_all(qa, q.text, gap))
                else:
                    t0 = time.perf_counter()
                    answer = qa.ask(q.text)
                    wall = time.perf_counter() - t0
                    t_ask.append(wall)
                    for s in STAGES:
                        stages[s].append(answer.timings.get(s, 0.0))
                    pre_reader.append(wall - answer.timings.get("reader", 0.0))
    f = median(t_floor)
    st = {s: ms(median(v)) for s, v in stages.items()}
    result: dict[str, Any] = {
        "questions": len(questions),
        "repeats": repeats,
        "reader": qa.reader.name,
        "floor_ms": {"median": ms(f), "p95": ms(percentile(t_floor, 0.95))},
        "search_ms": {"median": ms(median(t_search)), "p95": ms(percentile(t_search, 0.95))},
        "ask_ms": {"median": ms(median(t_ask)), "p95": ms(percentile(t_ask, 0.95))},
        "ask_without_reader_ms": {"median": ms(median(pre_reader)), "p95": ms(percentile(pre_reader, 0.95))},
        "read_passages": qa.settings.read_passages,
        "read_gap": gap,
        "stages_ms": st,
        "search_over_floor": median(t_search) / f,
        "ask_without_reader_over_floor": median(pre_reader) / f,
        "load": load_line(),
    }
    read_all: list[list[Any]] = []  # the row for ``ask`` with the gap off, when it was timed
    if t_ask_all:
        ratio = median(t_ask) / median(t_ask_all)
        all_p95 = ms(percentile(t_ask_all, 0.95))
        result["ask_reading_all_ms"] = {"median": ms(median(t_ask_all)), "p95": all_p95}
        result["ask_over_ask_reading_all"] = ratio
        label = f"ask reading all {qa.settings.read_passages} passages (read_gap {gap:g} off)"
        read_all.append([label, ms(median(t_ask_all)), all_p95, f"ask = {ratio:.2f}x this"])
    rows = [
        ["floor: one forward pass (BertModel, 1 thread)", ms(f), ms(percentile(t_floor, 0.95)), 1.0],
        ["search (k=5)", ms(median(t_search)), ms(percentile(t_search, 0.95)), median(t_search) / f],
        ["ask", ms(median(t_ask)), ms(percentile(t_ask, 0.95)), ""],
        *read_all,
        [
            "ask minus answer selection",
            ms(median(pre_reader)),
            ms(percentile(pre_reader, 0.95)),
            median(pre_reader) / f,
        ],
        [
            f"  answer selection (reader: {qa.reader.name})",
            st["reader"],
            ms(percentile(stages["reader"], 0.95)),
            "",
        ],
        ["  query embedding", st["embed"], ms(percentile(stages["embed"], 0.95)), st["embed"] / ms(f)],
        ["  vector search", st["dense"], ms(percentile(stages["dense"], 0.95)), ""],
        ["  BM25", st["lexical"], ms(percentile(stages["lexical"], 0.95)), ""],
        ["  fusion", st["fusion"], ms(percentile(stages["fusion"], 0.95)), ""],
    ]
    md = [
        table(
            f"Query latency, {name} ({len(questions)} questions x {repeats}; {load_line()})",
            ["stage", "median ms", "p95 ms", "x floor"],
            rows,
        )
    ]
    return result, md


def _ask_reading_all(qa: QA, question: str, gap: float) -> float:
    """Seconds for ``qa.ask`` with the reader reading all its passages, whatever their scores."""
    qa.answer.reader.read_gap = math.inf  # type: ignore[attr-defined]
    try:
        t0 = time.perf_counter()
        qa.ask(question)
        return time.perf_counter() - t0
    finally:
        qa.answer.reader.read_gap = gap  # type: ignore[attr-defined]
