"""The ``upper`` fine-tuning protocol's input cache: the frozen stem's output, computed once per image.

With ``finetune='upper'`` every method trains the same part of the network (the target layer's block and
the linear head) on top of a frozen ImageNet stem, as DFR caches penultimate features. The stem's output
for every image of every split is computed once per (data, architecture, weights, input size), stored as
float16 safetensors in the run's artifact cache and shared by every method and seed that starts from the
same weights. Models of this protocol take those activations as their input (``Network(inputs='stem')``).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.core.cache import ArtifactCache, load_tensors, save_tensors
from harness.core.progress import progress
from harness.data.containers import Benchmark, Split
from harness.models.network import Network
from harness.models.precision import autocast, precision_key, to_float

STORAGE = torch.float16
# Images per batch of the stem pass. On the CPU a small batch keeps the activations of 256 px images in the
# caches, where a batch of 128 spills them to memory (`python -m harness bench --sections stem` measures the
# two; results/bench/stem-cpu.md).
BATCH_SIZE = {"cpu": 4, "cuda": 128}
CHUNK = 1024  # images per cached piece of the pass: a multiple of every batch size above


def stem_pass(device: torch.device) -> dict[str, Any]:
    """How the stem pass runs on ``device``: batch size, memory layout and, where it is not float32, precision
    (bf16 on the GPU). Each changes the float sums a convolution does, so they are part of the cache key: a
    cache written another way is not reused."""
    return {"batch_size": BATCH_SIZE.get(device.type, BATCH_SIZE["cuda"]), "memory_format": "channels_last",
            **precision_key(device)}


@torch.no_grad()
def encode_split(model: Network, split: Split, device: torch.device, *, batch_size: int | None = None,
                 desc: str = "stem", show_progress: bool = True) -> torch.Tensor:
    """(N, ...) stem activations of every image of ``split``, in order, as float16 on the CPU, in batches of
    ``batch_size`` (default: the device's, :func:`stem_pass`); the model is left in channels-last layout
    (its stem convolutions run faster so)."""
    how = stem_pass(device)
    batch_size, layout = batch_size or how["batch_size"], getattr(torch, how["memory_format"])
    model.eval().to(device, memory_format=layout)
    out = []
    for start in progress(range(0, len(split), batch_size), desc=desc, enabled=show_progress, steps=True):
        images = split.images[start:start + batch_size].to(device, non_blocking=True)
        with autocast(device):
            stem = model.encode(to_float(images).contiguous(memory_format=layout))
        out.append(stem.to(STORAGE).contiguous().cpu())
    return torch.cat(out)


def with_stem_inputs(benchmark: Benchmark, model: Network, cache: ArtifactCache, key: dict[str, Any],
                     device: torch.device, *, show_progress: bool = True) -> Benchmark:
    """A copy of ``benchmark`` whose splits also carry the frozen stem's output of ``model``, cached by
    ``key`` (which must identify the data, the architecture and the starting weights), split name and chunk.

    The pass is cached in chunks of :data:`CHUNK` images (a multiple of every batch size, so each chunk's
    batches, and so its numbers, are those of a pass over the whole split), and workers that need the same
    stem encode different chunks at the same time (:meth:`ArtifactCache.get_or_create_all`): a sweep's two
    workers starting on one preset share its stem pass instead of one waiting for the other.
    """
    how = stem_pass(device)
    items, owners = [], []
    for name, split in benchmark.splits.items():
        for start in range(0, len(split), CHUNK):
            part = split.subset(np.arange(start, min(start + CHUNK, len(split))))

            def compute(path: Path, part: Split = part, name: str = name, start: int = start) -> None:
                stem = encode_split(model, part, device, desc=f"frozen stem ({name} from {start})",
                                    show_progress=show_progress)
                save_tensors(path, {"stem": stem})

            items.append(("stem", dict(key, split=name, storage=str(STORAGE), chunk=[start, start + len(part)], **how),
                          "safetensors", compute))
            owners.append(name)
    paths = cache.get_or_create_all(items)
    splits = {}
    for name, split in benchmark.splits.items():
        parts = [load_tensors(path)[0]["stem"] for path, owner in zip(paths, owners, strict=True) if owner == name]
        splits[name] = replace(split, stem=torch.cat(parts))
    return replace(benchmark, splits=splits)
