"""Predictions and group metrics shared by every method (paper eq. 2: worst-group accuracy), and how model
inputs and outputs cross between the host and the device (precision, memory layout, transfers).

Precision: bf16 autocast on the GPU, float32 on the CPU (exact and deterministic). ``forced_precision``
overrides that for a block (float32 on the GPU with TF32 off, or bf16 autocast on the CPU): what
``python -m harness gpu-check`` compares. Inputs go to the GPU through pinned memory without blocking, so
the host does not wait for the GPU's queued work at every copy (outputs come back once per batch).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.data import Benchmark, Split
from harness.dataset_facts import facts
from harness.errors import HarnessError


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


def to_float(inputs: torch.Tensor) -> torch.Tensor:
    """Model inputs as float32: uint8 images (B, 3, H, W) -> [0, 1]; cached stem activations as they are.
    4-d inputs are channels-last on the GPU."""
    x = inputs.float()
    if inputs.dtype == torch.uint8:
        x = x.div_(255)
    return device_layout(x)


def device_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the layout the device's convolutions want: channels-last for 4-d tensors on the GPU."""
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda and x.ndim == 4 else x


# ---- precision ------------------------------------------------------------------------------------------
PRECISIONS = ("bf16", "fp32")
_forced: str | None = None


def precision(device: torch.device | str) -> str:
    """What float work on ``device`` runs in: "bf16" (autocast) on the GPU, "fp32" on the CPU, unless a
    :func:`forced_precision` block says otherwise. Caches of computed tensors carry it in their keys."""
    return _forced or ("bf16" if torch.device(device).type == "cuda" else "fp32")


def precision_key(device: torch.device | str) -> dict[str, str]:
    """The precision as cache-key entries: ``{"precision": "bf16"}`` where it is not float32, none where it
    is, so the caches written before the precision was recorded (all float32, on the CPU) stay valid."""
    name = precision(device)
    return {} if name == "fp32" else {"precision": name}


def autocast(device: torch.device | str):
    """bf16 autocast where :func:`precision` says bf16 (the GPU), nothing otherwise (CPU results stay exact
    and deterministic)."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision(device) == "bf16")


@contextlib.contextmanager
def forced_precision(name: str) -> Iterator[None]:
    """Within the block every device computes in ``name``: "fp32" (on the GPU with TF32 off, so float32
    matrix products and convolutions keep their 24-bit significands) or "bf16" (autocast, on the CPU too).

    For comparing precisions (``python -m harness gpu-check``); a run made inside the block uses cache keys
    that say which precision it ran in."""
    global _forced
    if name not in PRECISIONS:
        raise HarnessError(f"unknown precision {name!r}; choose from {', '.join(PRECISIONS)}")
    saved = _forced, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    _forced = name
    if name == "fp32":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        _forced, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# ---- transfers -----------------------------------------------------------------------------------------
def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A host tensor on ``device``. To the GPU it goes through pinned memory without blocking, so the host
    does not wait for the GPU's queued work (a copy from pageable memory would); on the CPU it is returned
    as it is."""
    device = torch.device(device)
    if device.type != "cuda" or tensor.is_cuda:
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


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
    convention, :mod:`harness.dataset_facts`), else None: ``group_metrics``'s ``train_proportions``."""
    known = facts(benchmark.name)
    return benchmark.train_group_proportions() if known is not None and known.weighted_avg else None
