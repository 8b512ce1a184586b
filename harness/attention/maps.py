"""Attention maps after extraction: min-max normalisation and bilinear upsampling to image size."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from harness.core.errors import HarnessError

DEFAULT_CHUNK = 256  # maps upsampled to image size at a time


def minmax_normalize(maps: torch.Tensor) -> torch.Tensor:
    """Scale each map of a (k, h, w) stack to [0, 1] (float32).

    A constant map (e.g. all zero after the ReLU: no positive evidence for the class anywhere) has
    no spatial preference to scale; it becomes all zeros, as the grad-cam package's scaling gives.
    """
    flat = maps.float().flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    varying = span > 0
    scaled = torch.where(varying, (flat - low) / torch.where(varying, span, torch.ones_like(span)), 0.0)
    return scaled.view(maps.shape)


def upsample(cams: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """(k, h, w) maps -> (k, H, W) by bilinear interpolation (half-pixel centres), renormalised to [0, 1]."""
    if cams.ndim != 3:
        raise HarnessError(f"maps to upsample must be (k, h, w), got shape {tuple(cams.shape)}")
    out_size = (size, size) if isinstance(size, int) else tuple(size)
    out = F.interpolate(cams[:, None].float(), size=out_size, mode="bilinear", align_corners=False)[:, 0]
    return minmax_normalize(out)


def iter_upsampled(
    cams: torch.Tensor, size: int | tuple[int, int], ids: np.ndarray | torch.Tensor | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(ids, maps at image size) for the maps at ``ids`` (default: all), ``chunk_size`` at a time.

    Only one chunk of image-size maps exists at once, so a large split never needs N x H x W floats.
    """
    ids = torch.arange(len(cams)) if ids is None else torch.as_tensor(np.asarray(ids), dtype=torch.long)
    if chunk_size < 1:
        raise HarnessError(f"chunk_size must be positive, got {chunk_size}")
    low, high = (int(ids.min()), int(ids.max())) if len(ids) else (0, -1)
    if low < 0 or high >= len(cams):
        raise HarnessError(f"attention ids must lie in [0, {len(cams)}), got values from {low} to {high}")
    for start in range(0, len(ids), chunk_size):
        chunk = ids[start:start + chunk_size]
        yield chunk, upsample(cams[chunk], size)
