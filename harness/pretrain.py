"""The embedded stand-in for ImageNet pretraining.

Real ImageNet weights cannot be downloaded here, yet the paper's protocol starts every model from them.
So each architecture is pretrained once on a balanced synthetic source task (object kinds and background
textures disjoint from every benchmark preset, no spurious correlation; ``synthetic.make_source_task``),
cached in the machine-wide cache, and loaded through timm's local-file mechanism exactly as a real
weights file would be. To use real weights instead pass ``--weights PATH`` (a timm .safetensors/.pth).
"""
from __future__ import annotations

from pathlib import Path

import torch

from harness.cache import ArtifactCache, default_cache_root, save_tensors
from harness.data import Split
from harness.models import create_model
from harness.training import TrainHparams, fit

SOURCE_TASK = dict(version=1, n=3000, num_classes=10, seed=0)
PRETRAIN_HPARAMS = dict(epochs=5, lr=0.05, weight_decay=5e-4, batch_size=64, optimizer="sgd", momentum=0.9,
                        augment=True, sampler="shuffle", selection="last")


def standin_weights(
    arch: str, image_size: int, *, width: float = 1.0, depth: int | None = None,
    cache_root: Path | None = None, source_size: int | None = None, device: torch.device | None = None,
    show_progress: bool = True,
) -> Path:
    """Path of the stand-in pretrained weights for this architecture, training them on first use."""
    from harness.synthetic import GENERATOR_VERSION

    task = dict(SOURCE_TASK, n=source_size or SOURCE_TASK["n"], generator_version=GENERATOR_VERSION)
    key = dict(arch=arch, image_size=image_size, width=width, depth=depth, task=task, hparams=PRETRAIN_HPARAMS)
    cache = ArtifactCache(Path(cache_root or default_cache_root()) / "pretrained")

    def train(path: Path) -> None:
        from harness.synthetic import make_source_task

        images, labels = make_source_task(task["n"], image_size, seed=task["seed"], num_classes=task["num_classes"])
        zeros = torch.zeros_like(labels)
        split = Split(images=images, labels=labels, spurious=zeros, groups=zeros)
        torch.manual_seed(task["seed"])
        model = create_model(arch, task["num_classes"], image_size, width=width, depth=depth)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # CPU float sums depend on the thread count: one thread, same weights anywhere
        try:
            fit(model, split, TrainHparams.from_dict(PRETRAIN_HPARAMS), device=device or torch.device("cpu"),
                seed=task["seed"], num_groups=1, desc=f"pretrain {arch} (stand-in)", show_progress=show_progress)
        finally:
            torch.set_num_threads(threads)
        save_tensors(path, model.backbone.state_dict(), meta=key)

    return cache.get_or_create("standin", key, "safetensors", train)
