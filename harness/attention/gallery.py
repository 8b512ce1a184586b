"""CAM galleries (paper Table 5, left): the same images of one group under the attention of several models.

The group shown is the worst group of the first model (ERM's, in a SLIM run: where the spurious feature
misleads it); its first ``per_group`` test images are drawn with the object outlined, then one row per
model with that model's GradCAM for the true class over the image and the image's AIoU (paper Sec. 5.2).
The group labels pick the images to show, for this figure only.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from harness.attention.passes import extract
from harness.core.errors import HarnessError
from harness.data.containers import Benchmark, Split
from harness.engine.evaluation import group_metrics, predict_logits
from simulated_oracle import aiou_batch

PER_GROUP = 6


def worst_group(model: nn.Module, split: Split, group_names: list[str], device: torch.device | str) -> int:
    """The non-empty group on which ``model`` has the lowest accuracy (ties: the lowest id)."""
    preds = predict_logits(model, split, torch.device(device)).argmax(1).numpy()
    accuracy = group_metrics(preds, split.labels.numpy(), split.groups.numpy(), group_names)["group_acc"]
    return group_names.index(min(accuracy, key=accuracy.get))


def cam_gallery_figure(models: Mapping[str, nn.Module], split: Split, ids: np.ndarray,
                       device: torch.device | str, *, title: str, delta: float = 0.8) -> Figure:
    """Row 0: the images at ``ids`` with the object's outline; then per model its CAM overlay and AIoU."""
    if split.masks is None:
        raise HarnessError("a CAM gallery needs the split's object masks (for the outline and AIoU)")
    if not len(ids):
        raise HarnessError("a CAM gallery needs at least one image")
    shown = split.subset(ids)
    images = shown.images.permute(0, 2, 3, 1).numpy()
    masks = shown.masks.numpy()
    fig = Figure(figsize=(1.7 * len(ids) + 1.2, 1.8 * (1 + len(models))), layout="constrained")
    axes = fig.subplots(1 + len(models), len(ids), squeeze=False)
    for j in range(len(ids)):
        axes[0, j].imshow(images[j])
        axes[0, j].contour(masks[j], levels=[0.5], colors="white", linewidths=0.8)
    axes[0, 0].set_ylabel("image,\nobject", fontsize=8)
    for i, (name, model) in enumerate(models.items(), start=1):
        maps = extract(model, shown, device, target="label", show_progress=False).maps(
            np.arange(len(ids)), split.image_size)
        scores = aiou_batch(maps, masks, delta)
        for j in range(len(ids)):
            axes[i, j].imshow(images[j])
            axes[i, j].imshow(maps[j], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            axes[i, j].set_xlabel(f"AIoU {scores[j]:.2f}", fontsize=7)
        axes[i, 0].set_ylabel(f"{name}\n(mean {scores.mean():.2f})", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    return fig


def save_cam_gallery(path: Path, models: Mapping[str, nn.Module], benchmark: Benchmark,
                     device: torch.device | str, *, split: str = "test", per_group: int = PER_GROUP) -> Path:
    """Draw the gallery of the first model's worst group on ``split`` into ``path`` (PNG)."""
    data = benchmark.splits[split]
    group = worst_group(next(iter(models.values())), data, benchmark.group_names, device)
    ids = np.flatnonzero(data.groups.numpy() == group)[:per_group]
    names = " vs ".join(models)
    title = (f"{benchmark.name} {split}, group {benchmark.group_names[group]} (worst group of "
             f"{next(iter(models))}): GradCAM for the true class")
    fig = cam_gallery_figure(models, data, ids, device, title=f"{names}\n{title}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
