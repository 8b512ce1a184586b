"""One factory over timm for every architecture the harness trains (timm's ``create_model`` shape).

Every model is a :class:`Network`: a timm backbone plus its linear head, taking float images in
[0, 1] and exposing what the methods need: the attention target layer (ResNet: the last block,
``layer4``; EfficientNet: the last convolution ``conv_head`` after its BN + activation, ``bn2``; ViT: the
last block's tokens), a function turning that layer's activation into a (B, C, h, w) grid, the pooled
feature vector (penultimate layer) and the linear head.

Small images get a documented adaptation so the target layer still has a spatial grid to attend over:
ResNets (<= 96 px) drop the stem max-pool and dilate the last stage (output stride 16 -> a 4x4 map at
32 px); EfficientNets see small images upsampled to 256 px (``input_size='auto'``), an 8x8 grid at their
own output stride 32, and only below 224 px (an explicit ``input_size``) dilate their last stride-2 stages
to keep the grid at least 8x8 (output stride 16 at 128 px, 8 at 64 px). Dilating ImageNet weights costs
attention: at 128 px the maps carry a fixed, input-independent pattern and the oracle judges 0-22 % of ERM's
maps per waterbirds-synth group correct, against 98 % on the landbird groups at 256 px (README, "Why 256 px").
ViTs (<= 96 px) use a patch of image_size / 4.
``width`` scales ResNet channels and ``depth`` sets the ViT's block count, so CPU runs stay fast.

Fine-tuning protocols (``finetune``): ``full`` trains every layer on images; ``upper`` freezes the stem
(everything below the target layer's block: EfficientNet's blocks 0-6, ResNet's layers 1-3, ViT's blocks
but the last), whose output is computed once per image and cached (``harness.models.stem_cache``), and trains the
target layer's block and the head on it. Such a model takes the cached stem activations as its input.

Starting weights come from :mod:`harness.models.weights` (checked, weights-only loading).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from timm.models.vision_transformer import checkpoint_filter_fn as vit_checkpoint_filter
from torch import nn
from torch.nn import functional as F

from harness.core.errors import HarnessError
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

FAMILIES = ("resnet", "vit", "efficientnet")
FINETUNE = ("full", "upper")


@dataclass(frozen=True)
class ArchSpec:
    timm_name: str
    family: str  # one of FAMILIES


ARCHS: dict[str, ArchSpec] = {
    "resnet18": ArchSpec("resnet18", "resnet"),
    "resnet34": ArchSpec("resnet34", "resnet"),
    "resnet50": ArchSpec("resnet50", "resnet"),
    "vit_tiny": ArchSpec("vit_tiny_patch16_224", "vit"),
    "vit_small": ArchSpec("vit_small_patch16_224", "vit"),
    "vit_base": ArchSpec("vit_base_patch16_224", "vit"),
    **{arch: ArchSpec(f"tf_{arch}", "efficientnet") for arch in BUNDLED},
}

SMALL_INPUT_MAX = 96  # ResNets and ViTs on images up to this size get the small-input adaptation
MIN_GRID = 8  # EfficientNets below 224 px dilate until the target grid has this many cells a side


class Network(nn.Module):
    """A timm classifier with the pieces SLIM and the baselines use.

    ``inputs='images'`` takes float images in [0, 1]; ``inputs='stem'`` takes the frozen stem's output
    (:meth:`encode`) and runs only the trainable upper part (the ``upper`` fine-tuning protocol).
    """

    def __init__(self, backbone: nn.Module, arch: str, family: str, inputs: str = "images",
                 input_size: int | None = None) -> None:
        super().__init__()
        if inputs not in ("images", "stem"):
            raise HarnessError(f"unknown model input kind {inputs!r}; choose images or stem")
        self.backbone = backbone
        self.arch = arch
        self.family = family
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
        """The layer whose activation GradCAM weights: the last block (EfficientNet: the last conv + BN)."""
        if self.family == "resnet":
            return self.backbone.layer4
        if self.family == "efficientnet":
            return self.backbone.bn2
        # With average pooling the last block's output tokens reach the head directly; with a class token
        # the patch tokens of the last block's output do not, so (like pytorch-grad-cam) use its input norm.
        last = self.backbone.blocks[-1]
        return last if self.backbone.global_pool == "avg" else last.norm1

    @property
    def cam_is_exact(self) -> bool:
        """True when the head is global average pooling + linear, so GradCAM at the target equals CAM."""
        return self.family in ("resnet", "efficientnet") and self.backbone.global_pool.pool_type == "avg"

    def to_grid(self, activation: torch.Tensor) -> torch.Tensor:
        """The target layer's activation as a (B, C, h, w) grid (ViT: prefix tokens dropped)."""
        if self.family != "vit":
            return activation
        tokens = activation[:, self.backbone.num_prefix_tokens:]
        gh, gw = self.backbone.patch_embed.grid_size
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], gh, gw)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] -> the backbone's normalised input, resized to ``input_size`` if set."""
        if self.input_size is not None and images.shape[-1] != self.input_size:
            images = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear",
                                   align_corners=False, antialias=images.shape[-1] > self.input_size)
        return (images - self.mean) / self.std

    # ---- the frozen stem and the trainable upper part --------------------------------------------
    def stem_modules(self) -> list[nn.Module]:
        b = self.backbone
        if self.family == "resnet":
            return [b.conv1, b.bn1, b.act1, b.maxpool, b.layer1, b.layer2, b.layer3]
        if self.family == "efficientnet":
            return [b.conv_stem, b.bn1, b.blocks]
        return [b.patch_embed, b.patch_drop, b.norm_pre, b.blocks[:-1]] + (
            [b.pos_embed] if isinstance(b.pos_embed, nn.Parameter) else [])

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen stem's output for float images in [0, 1]: what the ``upper`` protocol caches."""
        b, x = self.backbone, self.normalize(images)
        if self.family == "resnet":
            for module in self.stem_modules():
                x = module(x)
            return x
        if self.family == "efficientnet":
            return b.blocks(b.bn1(b.conv_stem(x)))
        return b.blocks[:-1](b.norm_pre(b.patch_drop(b._pos_embed(b.patch_embed(x)))))

    def _upper(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        if self.family == "resnet":
            return b.layer4(x)
        if self.family == "efficientnet":
            return b.bn2(b.conv_head(x))
        return b.norm(b.blocks[-1](x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features (B, D), the input of the linear head."""
        if self.inputs == "stem":
            out = self._upper(x)
        else:
            out = self.backbone.forward_features(self.normalize(x))
        return self.backbone.forward_head(out, pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


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
    elif spec.family == "efficientnet":
        if image_size < 224:
            kwargs["output_stride"] = 16 if image_size // 16 >= MIN_GRID else 8
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
    spec = _spec(arch)
    seen = input_size or image_size
    kwargs = model_kwargs(arch, seen, width=width, depth=depth)
    backbone = timm.create_model(spec.timm_name, pretrained=False, num_classes=num_classes, **kwargs)
    if spec.family == "resnet" and seen <= SMALL_INPUT_MAX:
        backbone.maxpool = nn.Identity()
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
    filter_fn = vit_checkpoint_filter if _spec(arch).family == "vit" else None
    load_checked(backbone, read_state_dict(weights.path), arch=arch, source=weights.path, filter_fn=filter_fn)


def hub_weights(arch: str) -> Weights:
    """ImageNet weights of ``arch`` from timm's hub (the local hub cache first); one line if unreachable."""
    spec = _spec(arch)
    cfg = timm.create_model(spec.timm_name, pretrained=False).pretrained_cfg
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


def check_arch(arch: str) -> None:
    """An unknown architecture name fails here, in one line naming the known ones."""
    _spec(arch)


def _spec(arch: str) -> ArchSpec:
    if arch not in ARCHS:
        raise HarnessError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)}")
    return ARCHS[arch]
