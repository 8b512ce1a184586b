"""A researcher's plug-in in another package: a method, a dataset and a CAM variant, found by the harness
through entry points alone (tests/test_plugins.py installs this file as the package ``harness_demo_plugin``
with the entry points of :data:`ENTRY_POINTS`)."""
from __future__ import annotations

import numpy as np
import torch

from harness.attention.cams.base import CamExtractor
from harness.data.containers import Benchmark, Split
from harness.data.dataset import Dataset
from harness.engine.methods import Method, MethodResult

ENTRY_POINTS = {  # group -> {name: object}, as the package's metadata lists them
    "slim_harness.methods": {"demo-erm": "DemoERM"},
    "slim_harness.datasets": {"demo-shapes": "DemoShapes"},
    "slim_harness.cams": {"demo-absgrad": "AbsGradCAM"},
}


class DemoERM(Method):
    """ERM with the learning rate halved."""

    name, title = "demo-erm", "ERM (half lr)"

    def fit(self, ctx):
        model = ctx.new_model()
        return MethodResult(model=model, selection=ctx.train(model, dict(self.hparams, lr=self.hparams["lr"] / 2))
                            .selection)


class DemoShapes(Dataset):
    """Squares against bars on a background colour that agrees with the class in 90 % of the training set."""

    name, description = "demo-shapes", "squares vs bars on green or blue, 24 px (a test plug-in)"
    options = ("aligned",)

    def load(self, *, scale, data_seed, data_root, image_size, options, show_progress):
        aligned = float(options.get("aligned", 0.9))
        rng = np.random.default_rng([data_seed, 7])
        splits = {name: _shapes(n, share, rng) for name, n, share in
                  (("train", 96, aligned), ("val", 48, 0.5), ("test", 48, 0.5))}
        return Benchmark(name=self.name, class_names=["square", "bar"], spurious_names=["green", "blue"],
                         group_names=["square/green", "square/blue", "bar/green", "bar/blue"], splits=splits,
                         info={"seed": data_seed, "aligned": aligned, "version": "demo-shapes-1"})


def _shapes(n: int, aligned: float, rng: np.random.Generator, size: int = 24) -> Split:
    labels = rng.integers(0, 2, n)
    spurious = np.where(rng.random(n) < aligned, labels, 1 - labels)
    images = np.where(spurious[:, None, None, None] == 0, np.array([40, 140, 40])[:, None, None],
                      np.array([40, 60, 160])[:, None, None]) + rng.integers(0, 30, (n, 3, size, size))
    masks = np.zeros((n, size, size), bool)
    for i, (y, x) in enumerate(rng.integers(2, size - 10, (n, 2))):
        rows = slice(y, y + 8) if labels[i] == 0 else slice(y + 3, y + 5)  # a square, or a bar across it
        masks[i, rows, x:x + 8] = True
    images = np.where(masks[:, None], 230, images).astype(np.uint8)
    return Split(images=torch.from_numpy(images), labels=torch.from_numpy(labels),
                 spurious=torch.from_numpy(spurious), groups=torch.from_numpy(labels * 2 + spurious),
                 masks=torch.from_numpy(masks))


class AbsGradCAM(CamExtractor):
    """GradCAM with absolute gradients: w_c = spatial mean of |dlogit / dA_c|."""

    def channel_weights(self, grid, gradients, classes):
        return gradients.abs().mean(dim=(2, 3))


class WithoutLoad(Dataset):
    """A dataset class that forgot :meth:`Dataset.load`: its entry point is refused."""

    name = "without-load"
    description = "nothing to load"
