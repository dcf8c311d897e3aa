"""Ensemble distillation (``--teacher``): the teachers' mean span distributions and the KL loss."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from qa.answer.span_reader import build_model
from training.reader_model import collate, fit_state, load_reader_folder


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
    """The teachers' start (``k`` 0) or end (1) distributions of ``batch``'s windows, zero-padded to
    ``width``."""
    out = torch.zeros((len(batch), width))
    for r, i in enumerate(batch):
        out[r, : len(targets[i][k])] = torch.from_numpy(targets[i][k])
    return out
