"""Attention accuracy (paper Sec. 5.2, Table 5): AIoU of a model's GradCAM maps against core-object masks."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from harness.attention.cams import require_network
from harness.attention.maps import DEFAULT_CHUNK, iter_upsampled
from harness.attention.passes import AttentionPass, extract
from harness.core.errors import HarnessError
from harness.data.containers import Benchmark
from simulated_oracle import aiou_batch, attention_accuracy
from simulated_oracle.aiou import ATTENTION_CORRECT


def split_aiou(attention: AttentionPass, masks: torch.Tensor, delta: float,
               chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
    """Per-image AIoU (N,) of a pass's maps, upsampled to the masks' size chunk by chunk."""
    size = tuple(masks.shape[1:])
    scores = [aiou_batch(maps.numpy(), masks[ids].numpy(), delta)
              for ids, maps in iter_upsampled(attention.cams, size, chunk_size=chunk_size)]
    return np.concatenate(scores)


def attention_metrics(
    model: nn.Module, benchmark: Benchmark, device: torch.device | str, *, delta: float = 0.8,
    splits: list[str] | None = None, batch_size: int = 256, show_progress: bool = False,
) -> dict[str, dict[str, float]]:
    """Attention accuracy (paper Sec. 5.2, Table 5) of ``model``: {split: {aiou_worst, aiou_avg, group_aiou,
    group_attention_correct}} (:func:`attention_scores`, then :func:`aiou_summary`)."""
    scores = attention_scores(model, benchmark, device, delta=delta, splits=splits, batch_size=batch_size,
                              show_progress=show_progress)
    return {name: aiou_summary(values, benchmark.splits[name].groups.numpy(), benchmark.group_names)
            for name, values in scores.items()}


def attention_scores(
    model: nn.Module, benchmark: Benchmark, device: torch.device | str, *, delta: float = 0.8,
    splits: list[str] | None = None, batch_size: int = 256, show_progress: bool = False,
) -> dict[str, np.ndarray]:
    """Per-image AIoU (float64) of ``model`` on each split: {split: scores (N,)}.

    Maps are GradCAM for the TRUE class (AIoU asks whether the model looks at the class's object, so
    a misclassified image is judged on its attention for its class, not for the wrong prediction),
    upsampled to image size and scored against the core-object masks (``simulated_oracle.aiou_batch``).
    ``splits`` defaults to the evaluation splits that have masks.
    """
    require_network(model)
    provide = "provide masks (Split.masks) or boxes (simulated_oracle.box_mask) to measure AIoU"
    if splits is None:
        splits = [name for name in benchmark.eval_splits if benchmark.splits[name].masks is not None]
        if not splits:
            raise HarnessError(f"benchmark {benchmark.name!r} has no core-object masks in its evaluation "
                               f"splits ({', '.join(benchmark.eval_splits)}): {provide}")
    for name in splits:
        if name not in benchmark.splits:
            raise HarnessError(f"benchmark {benchmark.name!r} has no split {name!r}")
        if benchmark.splits[name].masks is None:
            raise HarnessError(f"split {name!r} of {benchmark.name!r} has no core-object masks: {provide}")
    results = {}
    for name in splits:
        split = benchmark.splits[name]
        attention = extract(model, split, device, target="label", batch_size=batch_size,
                            show_progress=show_progress)
        results[name] = split_aiou(attention, split.masks, delta)
    return results


def aiou_summary(scores: np.ndarray, groups: np.ndarray, group_names: list[str]) -> dict[str, Any]:
    """A split's attention accuracy from its per-image AIoU: ``aiou_worst`` (the lowest group mean),
    ``aiou_avg``, ``group_aiou`` and ``group_attention_correct`` (:func:`correct_shares`)."""
    summary = attention_accuracy(scores, groups, group_names)
    return {"aiou_worst": summary["aiou_worst"], "aiou_avg": summary["aiou_avg"], "group_aiou": summary["group_aiou"],
            "group_attention_correct": correct_shares(scores, groups, group_names)}


def correct_shares(scores: np.ndarray, groups: np.ndarray, group_names: list[str],
                   threshold: float = ATTENTION_CORRECT) -> dict[str, float]:
    """Per non-empty group, the share of instances whose AIoU reaches ``threshold``: attention the
    simulated oracle calls correct (its default threshold)."""
    return {name: float((scores[groups == g] >= threshold).mean())
            for g, name in enumerate(group_names) if (groups == g).any()}
