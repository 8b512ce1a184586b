"""ResNets (He et al. 2016): GradCAM targets the last stage, ``layer4``.

Small images (<= 96 px) drop the stem max-pool and dilate the last stage (output stride 16: a 4x4 map at
32 px). ``width`` scales the stages' channels (the stem keeps 64), so CPU runs stay fast. The ``upper``
protocol freezes the stem and layers 1-3 and trains ``layer4`` and the head.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harness.models.families.base import SMALL_INPUT_MAX, Family

STAGE_CHANNELS = (64, 128, 256, 512)  # timm's ResNet stages at width 1


class ResNet(Family):
    name = "resnet"
    archs = {"resnet18": "resnet18", "resnet34": "resnet34", "resnet50": "resnet50"}

    def model_kwargs(self, image_size: int, *, width: float, depth: int | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if width != 1.0:
            kwargs["channels"] = tuple(int(round(c * width)) for c in STAGE_CHANNELS)
        if image_size <= SMALL_INPUT_MAX:
            kwargs["output_stride"] = 16
        return kwargs

    def adapt(self, backbone: nn.Module, image_size: int) -> None:
        if image_size <= SMALL_INPUT_MAX:
            backbone.maxpool = nn.Identity()

    def target_layer(self, backbone: nn.Module) -> nn.Module:
        return backbone.layer4

    def stem_modules(self, backbone: nn.Module) -> list[nn.Module]:
        b = backbone
        return [b.conv1, b.bn1, b.act1, b.maxpool, b.layer1, b.layer2, b.layer3]

    def upper(self, backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return backbone.layer4(x)

    def cpu_scale_hparams(self) -> dict[str, Any]:
        return {"width": 0.5}

    def guess_arch(self, state: dict[str, torch.Tensor]) -> str | None:
        keys = set(state)
        if "conv1.weight" not in keys or "layer1.0.conv1.weight" not in keys:
            return None
        width = state["layer1.0.conv1.weight"].shape[0] / 64  # the stages scale with width, the stem does not
        layer3 = {k.split(".")[1] for k in keys if k.startswith("layer3.")}
        bottleneck = "layer1.0.conv3.weight" in keys
        depth = {(2, False): "resnet18", (6, False): "resnet34", (6, True): "resnet50"}.get((len(layer3), bottleneck))
        return f"--arch {depth} --set width={width:g}" if depth else None
