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

This module is the command line and the training loop (checkpoints, logging, the learning
curve's evaluations); the pieces it runs: ``reader_data`` (the examples), ``reader_features``
(windows and batches), ``reader_model`` (model, reader folders, losses), ``reader_distill``
(``--teacher``), ``reader_eval`` (held-out scores) and ``reader_card`` (the model card).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qa.answer.span_reader import WEIGHTS_FILE, SpanReader, load_tokenizer, sha256_file
from training.reader_card import write_card
from training.reader_data import DATA_DIR, HOLDOUT, V1_FILE, V2_FILE, build_data
from training.reader_distill import distill_loss, pad_targets, teacher_targets
from training.reader_eval import evaluate, evaluate_with_distractor, time_per_passage
from training.reader_features import (
    batch_groups,
    feature_units,
    make_batches,
    make_features,
    make_unit_batches,
)
from training.reader_model import (
    base_reader_model,
    collate,
    context_mask,
    export,
    first_answer_masks,
    label_masks,
    load_init,
    marginal_nll,
    shared_norm_nll,
)

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
    "holdout",
    "dev_files_sha256",
)
#: Keys recorded only since a later version: a checkpoint without them is not refused for them.
LATER_KEYS = ("holdout", "dev_files_sha256")


def log(msg: str) -> None:
    """Print ``msg`` after the time of day, flushed at once so a log can be followed live."""
    print(f"[{dt.datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def hardware(device: torch.device, threads: int) -> str:
    """What the run trained on, for the model card: the GPU, or the CPU and its cores; torch's version."""
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
        "paragraph without the answer, labelled no-answer; up to 3: that many each (1.5: one "
        "each, two for half)",
    )
    p.add_argument(
        "--swap-negatives",
        type=float,
        default=0.0,
        help="share (0-1) of answerable questions also asked with one name (capitalised words or a "
        "year) swapped for another of their article that the gold paragraph lacks, labelled "
        "no-answer on that paragraph",
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
    if not 0.0 <= args.article_negatives <= 3.0:
        p.error("--article-negatives must be between 0 and 3")
    if not 0.0 <= args.swap_negatives <= 1.0:
        p.error("--swap-negatives must be between 0 and 1")
    if len({tf.resolve() for tf in args.train_file}) < len(args.train_file):
        p.error("--train-file names the same file twice")
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
        logged = json.loads(log_path.read_text())
        meta: dict[str, Any] = logged["meta"]
        meta.setdefault("curve", logged.get("state", {}).get("curve", []))
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
        swap_share=args.swap_negatives,
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
        **({"swap_negatives": args.swap_negatives} if args.swap_negatives else {}),
        "max_steps": args.max_steps,
        "threads": args.threads,
        "holdout": sorted(holdout),
        "dev_files_sha256": [sha256_file(Path(args.data_dir) / f) for f in (V1_FILE, V2_FILE)],
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
        changed = [
            k
            for k in BATCH_KEYS
            if before.get(k) != settings.get(k) and not (k in LATER_KEYS and k not in before)
        ]
        if changed:
            diff = ", ".join(f"{k} {before.get(k)} -> {settings.get(k)}" for k in changed)
            raise SystemExit(f"--resume: {ckpt_path} was made with other data or batches ({diff})")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        state = ck["state"]
        torch.set_rng_state(ck["torch_rng"])
        if ck.get("cuda_rng") and device.type == "cuda":  # dropout on a GPU draws from its own generator
            torch.cuda.set_rng_state_all(ck["cuda_rng"])
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
                "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
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
        "curve": state.get("curve", []),
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
