"""Attention accuracy (AIoU, paper Sec. 5.2 and Appx. A.7).

AIoU = sum(A * M over pixels with A >= delta) / sum(A over pixels with A >= delta), where A is the
class activation map upsampled to image size and scaled to [0, 1], M the core-object mask and
delta = 0.8: the share of the model's strongest attention that lies on the object; 0 when no pixel
reaches delta. Unlike the authors' code, nothing here modifies the caller's arrays, and box masks
index rows by y and columns by x.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness.core.errors import HarnessError

DEFAULT_DELTA = 0.8
ATTENTION_CORRECT = 0.5  # AIoU from which attention counts as correct (the simulated oracle's default threshold)
RANGE_TOLERANCE = 1e-6  # attention may leave [0, 1] by this much (float rounding of a min-max scaling)


def check_delta(delta: float) -> None:
    if isinstance(delta, (bool, np.bool_)) or not (
        isinstance(delta, (int, float, np.floating, np.integer)) and 0.0 < float(delta) <= 1.0
    ):
        raise HarnessError(f"AIoU delta must be in (0, 1], got {delta!r}")


def check_attention(attention: np.ndarray, ndim: int, what: str = "attention") -> np.ndarray:
    """``attention`` as a real array of ``ndim`` dimensions with finite values in [0, 1]."""
    attention = np.asarray(attention)
    if attention.dtype == bool or not (
        np.issubdtype(attention.dtype, np.floating) or np.issubdtype(attention.dtype, np.integer)
    ):
        raise HarnessError(f"{what} must be a real-valued array, got dtype {attention.dtype}")
    if attention.ndim != ndim:
        raise HarnessError(f"{what} must have {ndim} dimensions, got shape {attention.shape}")
    if attention.size:
        if not np.isfinite(attention).all():
            raise HarnessError(f"{what} contains NaN or infinite values")
        low, high = float(attention.min()), float(attention.max())
        if low < -RANGE_TOLERANCE or high > 1.0 + RANGE_TOLERANCE:
            raise HarnessError(f"{what} must be scaled to [0, 1], got values in [{low:.6g}, {high:.6g}]")
    return attention


def check_mask(mask: np.ndarray, shape: tuple[int, ...], what: str = "mask") -> np.ndarray:
    """``mask`` as a boolean array of exactly ``shape``."""
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise HarnessError(f"{what} must be a boolean array, got dtype {mask.dtype}")
    if mask.shape != shape:
        raise HarnessError(f"{what} shape {mask.shape} does not match attention shape {shape}")
    return mask


def aiou_stack_unchecked(attention: np.ndarray, masks: np.ndarray, delta: float) -> np.ndarray:
    """AIoU of each map in a validated (N, h, w) stack; new arrays only, inputs untouched."""
    strong = np.where(attention >= delta, attention.astype(np.float64), 0.0)
    total = strong.sum(axis=(1, 2))
    on_object = np.where(masks, strong, 0.0).sum(axis=(1, 2))
    scores = np.zeros(len(attention), dtype=np.float64)
    np.divide(on_object, total, out=scores, where=total > 0)
    return scores


def aiou(attention: np.ndarray, mask: np.ndarray, delta: float = DEFAULT_DELTA) -> float:
    """AIoU of one (h, w) attention map in [0, 1] against an (h, w) boolean mask.

    Pixels exactly at ``delta`` count as strong attention. Returns 0.0 when no pixel reaches ``delta``.
    """
    check_delta(delta)
    attention = check_attention(attention, ndim=2)
    mask = check_mask(mask, attention.shape)
    return float(aiou_stack_unchecked(attention[None], mask[None], float(delta))[0])


def aiou_batch(attention: np.ndarray, masks: np.ndarray, delta: float = DEFAULT_DELTA) -> np.ndarray:
    """AIoU of each of N maps, (N, h, w) attention against (N, h, w) boolean masks; float64 (N,)."""
    check_delta(delta)
    attention = check_attention(attention, ndim=3)
    masks = check_mask(masks, attention.shape, what="masks")
    return aiou_stack_unchecked(attention, masks, float(delta))


def attention_accuracy(
    scores: np.ndarray, groups: np.ndarray, group_names: Sequence[str]
) -> dict[str, float | dict[str, float]]:
    """Group-wise attention accuracy (paper Table 5) from per-instance AIoU ``scores``.

    ``groups[i]`` indexes ``group_names``. Returns ``aiou_worst`` (lowest group mean over non-empty
    groups), ``aiou_avg`` (mean over all instances) and ``group_aiou`` {name: mean}, which lists only
    non-empty groups.
    """
    scores = np.asarray(scores, dtype=np.float64)
    groups = np.asarray(groups)
    if scores.ndim != 1 or scores.size == 0:
        raise HarnessError(f"AIoU scores must be a non-empty 1-d array, got shape {scores.shape}")
    if groups.shape != scores.shape:
        raise HarnessError(f"groups shape {groups.shape} does not match scores shape {scores.shape}")
    if not np.issubdtype(groups.dtype, np.integer):
        raise HarnessError(f"group ids must be integers, got dtype {groups.dtype}")
    if not np.isfinite(scores).all():
        raise HarnessError("AIoU scores contain NaN or infinite values")
    if groups.min() < 0 or groups.max() >= len(group_names):
        raise HarnessError(
            f"group ids must lie in [0, {len(group_names)}) for {len(group_names)} group names, "
            f"got range [{groups.min()}, {groups.max()}]"
        )
    group_aiou = {
        name: float(scores[groups == g].mean()) for g, name in enumerate(group_names) if (groups == g).any()
    }
    return {
        "aiou_worst": min(group_aiou.values()),
        "aiou_avg": float(scores.mean()),
        "group_aiou": group_aiou,
    }
