"""CAM galleries: the group they show, their layout and per-image AIoU."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_toy_benchmark
from torch import nn

from harness.attention.gallery import cam_gallery_figure, save_cam_gallery, worst_group
from harness.core.errors import HarnessError
from harness.models.network import create_model


class Constant(nn.Module):
    """Predicts ``label`` for every image."""

    def __init__(self, label: int) -> None:
        super().__init__()
        self.label = label

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(torch.full((len(images),), self.label), 2).float()


def test_worst_group_is_the_least_accurate_non_empty_group():
    bench = make_toy_benchmark()
    split, names = bench.splits["test"], bench.group_names
    # always "square": both plus groups (ids 2, 3) score 0, the lowest id wins the tie
    assert worst_group(Constant(0), split, names, "cpu") == 2
    assert worst_group(Constant(1), split, names, "cpu") == 0
    # an empty group is never the worst: without plus/green, always "square" is worst on plus/blue
    no_group_2 = split.subset(np.flatnonzero(split.groups.numpy() != 2))
    assert worst_group(Constant(0), no_group_2, names, "cpu") == 3


def test_gallery_layout_and_scores(tmp_path):
    bench = make_toy_benchmark()
    torch.manual_seed(0)
    models = {"ERM": create_model("resnet18", 2, 32, width=0.25).eval(),
              "SLIM": create_model("resnet18", 2, 32, width=0.25).eval()}
    fig = cam_gallery_figure(models, bench.splits["test"], np.arange(4), "cpu", title="t")
    axes = fig.get_axes()
    assert len(axes) == 3 * 4  # image row + one row per model, four images each
    titles = [ax.get_xlabel() for ax in axes]
    assert sum(t.startswith("AIoU ") for t in titles) == 8
    scores = [float(t.split()[1]) for t in titles if t.startswith("AIoU ")]
    assert all(0.0 <= s <= 1.0 for s in scores)
    path = save_cam_gallery(tmp_path / "g.png", models, bench, "cpu", per_group=3)
    assert path.read_bytes()[:4] == b"\x89PNG"
    no_masks = bench.splits["test"].subset(np.arange(4))
    no_masks.masks = None
    with pytest.raises(HarnessError, match="needs the split's object masks"):
        cam_gallery_figure(models, no_masks, np.arange(2), "cpu", title="t")
