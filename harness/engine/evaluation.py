"""Predictions and group metrics shared by every method (paper eq. 2: worst-group accuracy)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.data.containers import Benchmark, Split
from harness.data.facts import facts
from harness.models.precision import autocast, to_device, to_float


@torch.no_grad()
def batched_outputs(forward: Callable[[torch.Tensor], torch.Tensor], split: Split, device: torch.device,
                    batch_size: int = 256) -> torch.Tensor:
    """``forward`` of every input of ``split``, ``batch_size`` at a time, in order, float32 on the CPU."""
    out = []
    for start in range(0, len(split), batch_size):
        images = to_device(split.inputs[start:start + batch_size], device)
        with autocast(device):
            out.append(forward(to_float(images)).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def predict_logits(model: nn.Module, split: Split, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """Logits (N, C) of ``model`` on every image of ``split``, in order, on the CPU."""
    model.eval()
    return batched_outputs(model, split, device, batch_size)


def group_metrics(
    preds: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    group_names: list[str],
    train_proportions: np.ndarray | None = None,
) -> dict[str, Any]:
    """Per-group, worst-group and average accuracy (fractions).

    Worst-group accuracy is the minimum over the groups present in the split (eq. 2). With
    ``train_proportions``, ``weighted_avg_acc`` weights each group's accuracy by its share of the
    training set (the Waterbirds reporting convention), renormalised over the groups present.
    """
    correct = preds == labels
    counts = np.bincount(groups, minlength=len(group_names))
    hits = np.bincount(groups, weights=correct.astype(float), minlength=len(group_names))
    present = counts > 0
    acc = np.divide(hits, counts, out=np.zeros_like(hits), where=present)
    metrics: dict[str, Any] = {
        "worst_group_acc": float(acc[present].min()) if present.any() else float("nan"),
        "avg_acc": float(correct.mean()) if len(correct) else float("nan"),
        "group_acc": {name: float(acc[g]) for g, name in enumerate(group_names) if present[g]},
        "group_count": {name: int(counts[g]) for g, name in enumerate(group_names) if present[g]},
    }
    if train_proportions is not None:
        w = np.where(present, train_proportions, 0.0)
        metrics["weighted_avg_acc"] = float((w * acc).sum() / w.sum()) if w.sum() > 0 else float("nan")
    return metrics


def train_weights(benchmark: Benchmark) -> np.ndarray | None:
    """The train group proportions where the dataset's "Avg" weights group accuracies by them (the Waterbirds
    convention, :mod:`harness.data.facts`), else None: ``group_metrics``'s ``train_proportions``."""
    known = facts(benchmark.name)
    return benchmark.train_group_proportions() if known is not None and known.weighted_avg else None
