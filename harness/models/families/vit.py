"""Vision Transformers (Dosovitskiy et al. 2021): GradCAM targets the last block's tokens, as a patch grid.

With average pooling the last block's output tokens reach the head directly; with a class token the patch
tokens of the last block's output do not, so (like pytorch-grad-cam) the target is that block's input norm.
Small images (<= 96 px) use a patch of image_size / 4 (a 4x4 grid), average pooling and no class token.
``depth`` sets the block count, so CPU runs stay fast. The ``upper`` protocol freezes the patch embedding
and every block but the last, and trains the last block, the final norm and the head.
"""
from __future__ import annotations

from typing import Any

import torch
from timm.models.vision_transformer import checkpoint_filter_fn
from torch import nn

from harness.core.errors import HarnessError
from harness.models.families.base import SMALL_INPUT_MAX, Family

NAMES_BY_WIDTH = {192: "vit_tiny", 384: "vit_small", 768: "vit_base"}  # embedding width -> --arch
DEPTH = 12  # the block count of timm's ViTs


class ViT(Family):
    name = "vit"
    archs = {"vit_tiny": "vit_tiny_patch16_224", "vit_small": "vit_small_patch16_224",
             "vit_base": "vit_base_patch16_224"}
    checkpoint_filter = staticmethod(checkpoint_filter_fn)

    def model_kwargs(self, image_size: int, *, width: float, depth: int | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"img_size": image_size}
        if image_size <= SMALL_INPUT_MAX:
            if image_size % 4:
                raise HarnessError(f"ViT on small images needs an image size divisible by 4, got {image_size}")
            kwargs.update(patch_size=image_size // 4, global_pool="avg", class_token=False)
        if depth is not None:
            kwargs["depth"] = depth
        return kwargs

    def target_layer(self, backbone: nn.Module) -> nn.Module:
        last = backbone.blocks[-1]
        return last if backbone.global_pool == "avg" else last.norm1

    def cam_is_exact(self, backbone: nn.Module) -> bool:
        return False  # attention blocks and the final norm stand between the target tokens and the head

    def to_grid(self, backbone: nn.Module, activation: torch.Tensor) -> torch.Tensor:
        """The patch tokens (prefix tokens dropped) as a (B, C, h, w) grid."""
        tokens = activation[:, backbone.num_prefix_tokens:]
        gh, gw = backbone.patch_embed.grid_size
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], gh, gw)

    def stem_modules(self, backbone: nn.Module) -> list[nn.Module]:
        b = backbone
        return [b.patch_embed, b.patch_drop, b.norm_pre, b.blocks[:-1]] + (
            [b.pos_embed] if isinstance(b.pos_embed, nn.Parameter) else [])

    def encode(self, backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
        b = backbone
        return b.blocks[:-1](b.norm_pre(b.patch_drop(b._pos_embed(b.patch_embed(x)))))

    def upper(self, backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return backbone.norm(backbone.blocks[-1](x))

    def cpu_scale_hparams(self) -> dict[str, Any]:
        return {"depth": 6}

    def guess_arch(self, state: dict[str, torch.Tensor]) -> str | None:
        if "patch_embed.proj.weight" not in state:
            return None
        name = NAMES_BY_WIDTH.get(state["patch_embed.proj.weight"].shape[0])
        blocks = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
        return f"--arch {name}" + (f" --set depth={blocks}" if blocks != DEPTH else "") if name else None
