"""The model families the harness knows, one adapter each (timm's one-file-per-family shape).

Each family's module holds everything family-specific: its architectures and their timm names, the
small-input adaptation, the CAM target layer, the stem / upper split of the ``upper`` fine-tuning protocol,
the default input size, its bundled weights and its hyperparameter defaults (:class:`Family`). ``ARCHS``
maps every ``--arch`` name to its timm model and family.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.core.errors import HarnessError
from harness.models.families.base import Family
from harness.models.families.efficientnet import EfficientNet
from harness.models.families.resnet import ResNet
from harness.models.families.vit import ViT

# name -> adapter, in the order ARCHS (and the list of known names) follows
FAMILIES: dict[str, Family] = {family.name: family for family in (ResNet(), ViT(), EfficientNet())}


@dataclass(frozen=True)
class ArchSpec:
    timm_name: str
    family: Family


ARCHS: dict[str, ArchSpec] = {arch: ArchSpec(timm_name, family) for family in FAMILIES.values()
                              for arch, timm_name in family.archs.items()}


def arch_spec(arch: str) -> ArchSpec:
    """The timm model and family of ``arch``; an unknown name fails here, in one line naming the known ones."""
    if arch not in ARCHS:
        raise HarnessError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)}")
    return ARCHS[arch]
