"""One factory over timm for every architecture the harness trains (timm's ``create_model`` shape).

Every model is a :class:`Network`: a timm backbone plus its linear head, taking float images in
[0, 1] and exposing what the methods need: the attention target layer, a function turning that layer's
activation into a (B, C, h, w) grid, the pooled feature vector (penultimate layer) and the linear head.
What differs between families (ResNet, ViT, EfficientNet) lives in their adapters,
:mod:`harness.models.families`: the target layer, the small-input adaptation that keeps a spatial grid to
attend over, and where the frozen stem ends. ``width`` scales ResNet channels and ``depth`` sets the ViT's
block count, so CPU runs stay fast.

Fine-tuning protocols (``finetune``): ``full`` trains every layer on images; ``upper`` freezes the stem
(everything below the target layer's block), whose output is computed once per image and cached
(``harness.models.stem_cache``), and trains the target layer's block and the head on it. Such a model takes
the cached stem activations as its input.

Starting weights come from :mod:`harness.models.weights` (checked, weights-only loading).
"""
from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn
from torch.nn import functional as F

from harness.core.errors import HarnessError
from harness.models.families import Family, arch_spec
from harness.models.weights import (
    BUNDLED,
    OFFLINE_ALTERNATIVES,
    Weights,
    bundled_file,
    hub_endpoint,
    hub_reachable,
    load_checked,
    read_state_dict,
)

FINETUNE = ("full", "upper")


class Network(nn.Module):
    """A timm classifier with the pieces SLIM and the baselines use.

    ``inputs='images'`` takes float images in [0, 1]; ``inputs='stem'`` takes the frozen stem's output
    (:meth:`encode`) and runs only the trainable upper part (the ``upper`` fine-tuning protocol).
    """

    def __init__(self, backbone: nn.Module, arch: str, family: Family, inputs: str = "images",
                 input_size: int | None = None) -> None:
        super().__init__()
        if inputs not in ("images", "stem"):
            raise HarnessError(f"unknown model input kind {inputs!r}; choose images or stem")
        self.backbone = backbone
        self.arch = arch
        self.family = family  # the family's adapter: target layer, grid, stem / upper split
        self.inputs = inputs
        self.input_size = input_size  # images are resized to this before the stem (None: as they come)
        cfg = backbone.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1))
        if inputs == "stem":
            for module in self.stem_modules():
                module.requires_grad_(False)

    @property
    def head(self) -> nn.Linear:
        head = self.backbone.get_classifier()
        assert isinstance(head, nn.Linear)
        return head

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    @property
    def target_layer(self) -> nn.Module:
        """The layer whose activation GradCAM weights (see the family's adapter)."""
        return self.family.target_layer(self.backbone)

    @property
    def cam_is_exact(self) -> bool:
        """True when the head is global average pooling + linear, so GradCAM at the target equals CAM."""
        return self.family.cam_is_exact(self.backbone)

    def to_grid(self, activation: torch.Tensor) -> torch.Tensor:
        """The target layer's activation as a (B, C, h, w) grid (ViT: prefix tokens dropped)."""
        return self.family.to_grid(self.backbone, activation)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] -> the backbone's normalised input, resized to ``input_size`` if set."""
        if self.input_size is not None and images.shape[-1] != self.input_size:
            images = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear",
                                   align_corners=False, antialias=images.shape[-1] > self.input_size)
        return (images - self.mean) / self.std

    # ---- the frozen stem and the trainable upper part --------------------------------------------
    def stem_modules(self) -> list[nn.Module]:
        return self.family.stem_modules(self.backbone)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen stem's output for float images in [0, 1]: what the ``upper`` protocol caches."""
        return self.family.encode(self.backbone, self.normalize(images))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features (B, D), the input of the linear head."""
        if self.inputs == "stem":
            out = self.family.upper(self.backbone, x)
        else:
            out = self.backbone.forward_features(self.normalize(x))
        return self.backbone.forward_head(out, pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def model_kwargs(arch: str, image_size: int, *, width: float = 1.0, depth: int | None = None) -> dict:
    """timm keyword arguments that adapt ``arch`` to ``image_size`` (its family's small-input adaptation)."""
    return arch_spec(arch).family.model_kwargs(image_size, width=width, depth=depth)


def create_model(
    arch: str,
    num_classes: int,
    image_size: int,
    *,
    width: float = 1.0,
    depth: int | None = None,
    weights: Weights | None = None,
    inputs: str = "images",
    input_size: int | None = None,
) -> Network:
    """Build ``arch`` for ``num_classes`` on images of ``image_size`` px, from ``weights`` (default: random).

    ``input_size`` resizes the images to what the backbone sees (e.g. 64 px presets shown at 256 px to an
    ImageNet EfficientNet); the small-input adaptation follows the size the backbone sees.

    The weights may hold a different classifier (ImageNet's 1000 classes, the stand-in task's 10): it is
    dropped and a fresh head is made, as timm's fine-tuning path does.
    """
    spec = arch_spec(arch)
    seen = input_size or image_size
    kwargs = model_kwargs(arch, seen, width=width, depth=depth)
    backbone = timm.create_model(spec.timm_name, pretrained=False, num_classes=num_classes, **kwargs)
    spec.family.adapt(backbone, seen)
    if weights is not None and weights.kind != "none":
        _load_weights(backbone, arch, weights)
    return Network(backbone, arch, spec.family, inputs=inputs, input_size=input_size)


def _load_weights(backbone: nn.Module, arch: str, weights: Weights) -> None:
    if weights.kind == "imagenet" and arch in BUNDLED:
        path = bundled_file(arch)
        load_checked(backbone, read_state_dict(path), arch=arch, source=path, by_order=True)
        return
    if weights.path is None:
        raise HarnessError(f"weights source {weights.kind!r} for {arch} has no file")
    load_checked(backbone, read_state_dict(weights.path), arch=arch, source=weights.path,
                 filter_fn=arch_spec(arch).family.checkpoint_filter)


def hub_weights(arch: str) -> Weights:
    """ImageNet weights of ``arch`` from timm's hub (the local hub cache first); one line if unreachable."""
    cfg = timm.create_model(arch_spec(arch).timm_name, pretrained=False).pretrained_cfg
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            cached = try_to_load_from_cache(hub_id, filename)
            if isinstance(cached, str):
                return Weights("imagenet", Path(cached), origin=f"hub {hub_id} (cached)")
        if hub_reachable(hub_endpoint()):
            try:
                path = hf_hub_download(hub_id, "model.safetensors")
            except Exception as exc:
                raise HarnessError(f"could not download the ImageNet weights of {arch} ({hub_id}): {exc}") from exc
            return Weights("imagenet", Path(path), origin=f"hub {hub_id}")
    raise HarnessError(f"the ImageNet weights of {arch} come from timm's hub, which cannot be reached from "
                       f"here; use {OFFLINE_ALTERNATIVES}")

