import numpy as np
import torch
from torch import nn

from harness.engine.evaluation import group_metrics
from harness.experiments.predictions import collect_predictions


def test_group_metrics_by_hand():
    # groups: 0 -> 2/2 right, 1 -> 1/3 right, 2 -> empty, 3 -> 0/1 right
    labels = np.array([0, 0, 1, 1, 1, 1])
    preds = np.array([0, 0, 1, 0, 0, 0])
    groups = np.array([0, 0, 1, 1, 1, 3])
    m = group_metrics(preds, labels, groups, ["a", "b", "c", "d"])
    assert m["worst_group_acc"] == 0.0
    assert m["avg_acc"] == 3 / 6
    assert m["group_acc"] == {"a": 1.0, "b": 1 / 3, "d": 0.0}  # empty group c is not reported
    assert m["group_count"] == {"a": 2, "b": 3, "d": 1}
    assert "weighted_avg_acc" not in m


def test_weighted_average_uses_train_proportions_over_present_groups():
    labels = np.array([0, 0, 1, 1])
    preds = np.array([0, 1, 1, 1])
    groups = np.array([0, 0, 1, 1])
    m = group_metrics(preds, labels, groups, ["a", "b", "c"], train_proportions=np.array([0.6, 0.2, 0.2]))
    # group a: 0.5, group b: 1.0; c absent -> weights 0.6, 0.2 renormalised
    assert np.isclose(m["weighted_avg_acc"], (0.6 * 0.5 + 0.2 * 1.0) / 0.8)


class _Oracle(nn.Module):
    """Predicts class 1 exactly for images whose first pixel is bright."""

    def forward(self, x):
        bright = (x[:, 0, 0, 0] > 0.5).float()
        return torch.stack([1 - bright, bright], 1)


def test_metrics_cover_every_eval_split(toy_benchmark):
    for split in toy_benchmark.splits.values():
        split.masks = None  # the oracle is no network with a target layer: no attention accuracy
    metrics = collect_predictions(_Oracle(), toy_benchmark, torch.device("cpu")).metrics()
    assert set(metrics) == {"val", "test"}
    for m in metrics.values():
        assert 0.0 <= m["worst_group_acc"] <= m["avg_acc"] <= 1.0
        assert set(m["group_acc"]) <= set(toy_benchmark.group_names)
