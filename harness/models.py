"""One factory over timm for every architecture the harness trains (timm's ``create_model`` shape).

Every model is a :class:`Network`: a timm backbone plus its linear head, taking float images in
[0, 1] and exposing what the methods need: the attention target layer (ResNet: the last block,
``layer4``; ViT: the last block's tokens), a function turning that layer's activation into a
(B, C, h, w) grid, the pooled feature vector (penultimate layer) and the linear head.

Small images (the synthetic presets, 32-64 px) get a documented adaptation so the target layer still
has a spatial grid to attend over: ResNets drop the stem max-pool and dilate the last stage
(output stride 16 -> a 4x4 map at 32 px), ViTs use a patch size of image_size / 4 (a 4x4 token grid).
``width`` scales ResNet channels and ``depth`` sets the ViT's block count, so CPU runs stay fast.

Pretrained weights load from a local file through timm's own mechanism
(``pretrained_cfg_overlay=dict(file=...)``, .safetensors or a weights-only .pth); nothing is downloaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from harness.errors import HarnessError


@dataclass(frozen=True)
class ArchSpec:
    timm_name: str
    family: str  # "resnet" | "vit"


ARCHS: dict[str, ArchSpec] = {
    "resnet18": ArchSpec("resnet18", "resnet"),
    "resnet34": ArchSpec("resnet34", "resnet"),
    "resnet50": ArchSpec("resnet50", "resnet"),
    "vit_tiny": ArchSpec("vit_tiny_patch16_224", "vit"),
    "vit_small": ArchSpec("vit_small_patch16_224", "vit"),
    "vit_base": ArchSpec("vit_base_patch16_224", "vit"),
}

SMALL_INPUT_MAX = 96  # images up to this size get the small-input adaptation


class Network(nn.Module):
    """A timm classifier with the pieces SLIM and the baselines use."""

    def __init__(self, backbone: nn.Module, arch: str, family: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.arch = arch
        self.family = family
        cfg = backbone.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1))

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
        """The layer whose activation GradCAM weights: the last block."""
        if self.family == "resnet":
            return self.backbone.layer4
        # With average pooling the last block's output tokens reach the head directly; with a class token
        # the patch tokens of the last block's output do not, so (like pytorch-grad-cam) use its input norm.
        last = self.backbone.blocks[-1]
        return last if self.backbone.global_pool == "avg" else last.norm1

    @property
    def cam_is_exact(self) -> bool:
        """True when the head is global average pooling + linear, so GradCAM at the target equals CAM."""
        return self.family == "resnet" and self.backbone.global_pool.pool_type == "avg"

    def to_grid(self, activation: torch.Tensor) -> torch.Tensor:
        """The target layer's activation as a (B, C, h, w) grid (ViT: prefix tokens dropped)."""
        if self.family == "resnet":
            return activation
        tokens = activation[:, self.backbone.num_prefix_tokens:]
        gh, gw = self.backbone.patch_embed.grid_size
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], gh, gw)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] -> the backbone's normalised input."""
        return (images - self.mean) / self.std

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features (B, D), the input of the linear head."""
        x = self.backbone.forward_features(self.normalize(images))
        return self.backbone.forward_head(x, pre_logits=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def model_kwargs(arch: str, image_size: int, *, width: float = 1.0, depth: int | None = None) -> dict:
    """timm keyword arguments that adapt ``arch`` to ``image_size`` (see the module docstring)."""
    spec = _spec(arch)
    kwargs: dict = {}
    small = image_size <= SMALL_INPUT_MAX
    if spec.family == "resnet":
        if width != 1.0:
            kwargs["channels"] = tuple(int(round(c * width)) for c in (64, 128, 256, 512))
        if small:
            kwargs["output_stride"] = 16
    else:
        kwargs["img_size"] = image_size
        if small:
            if image_size % 4:
                raise HarnessError(f"ViT on small images needs an image size divisible by 4, got {image_size}")
            kwargs.update(patch_size=image_size // 4, global_pool="avg", class_token=False)
        if depth is not None:
            kwargs["depth"] = depth
    return kwargs


def create_model(
    arch: str,
    num_classes: int,
    image_size: int,
    *,
    width: float = 1.0,
    depth: int | None = None,
    pretrained_file: str | Path | None = None,
) -> Network:
    """Build ``arch`` for ``num_classes`` at ``image_size``, optionally from a local weights file.

    The weights file may hold a different classifier (e.g. ImageNet's 1000 classes, or the synthetic
    pretraining task's 10): timm drops it and a fresh head is made, as its fine-tuning path does.
    """
    spec = _spec(arch)
    kwargs = model_kwargs(arch, image_size, width=width, depth=depth)
    if pretrained_file is not None:
        path = Path(pretrained_file)
        if not path.is_file():
            raise HarnessError(f"pretrained weights file not found: {path}")
        head_classes = _head_classes(path)
        backbone = timm.create_model(
            spec.timm_name, pretrained=True, num_classes=num_classes,
            pretrained_cfg_overlay=dict(file=str(path), num_classes=head_classes), **kwargs,
        )
    else:
        backbone = timm.create_model(spec.timm_name, pretrained=False, num_classes=num_classes, **kwargs)
    if spec.family == "resnet" and image_size <= SMALL_INPUT_MAX:
        backbone.maxpool = nn.Identity()
    return Network(backbone, arch, spec.family)


def _spec(arch: str) -> ArchSpec:
    if arch not in ARCHS:
        raise HarnessError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)}")
    return ARCHS[arch]


def _head_classes(path: Path) -> int | None:
    """Number of classes of the classifier stored in a weights file (None if it has none)."""
    from timm.models import load_state_dict

    try:
        state = load_state_dict(str(path), weights_only=True)
    except Exception as exc:  # corrupt or not a weights file: say which file
        raise HarnessError(f"cannot read weights file {path}: {exc}") from exc
    for key in ("fc.weight", "head.weight"):
        if key in state:
            return int(state[key].shape[0])
    return None
