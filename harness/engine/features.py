"""Penultimate features of a model on a split, cached per (model, split, precision): what DFR and SLIM_Val
retrain on."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from harness.core.cache import load_tensors, save_tensors
from harness.data.containers import Split
from harness.engine.context import RunContext
from harness.engine.evaluation import batched_outputs
from harness.models.precision import precision_key


def penultimate_features(model: nn.Module, split: Split, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """(N, D) float32 inputs of the linear head, in split order, on the CPU."""
    model.eval().to(device)
    return batched_outputs(model.features, split, device, batch_size)


def reference_features(ctx: RunContext, split: str) -> torch.Tensor:
    """Penultimate features of the cached reference ERM model on ``split`` (computed once, cached)."""
    model, _ = ctx.reference_model()

    def compute(path: Path) -> None:
        save_tensors(path, {"features": penultimate_features(model, ctx.benchmark.splits[split], ctx.device)})

    path = ctx.cache.get_or_create("features", dict(ctx.reference_key(), split=split, **precision_key(ctx.device)),
                                   "safetensors", compute)
    return load_tensors(path)[0]["features"]
