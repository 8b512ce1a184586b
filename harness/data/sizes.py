"""How big the data is: the scales runs come in, and the size real images are decoded to. Imports no torch
(the command line's parser reads it)."""
from __future__ import annotations

from harness.core.errors import HarnessError

SCALES = ("tiny", "quick", "paper")  # synthetic preset sizes and the matching training budgets
REAL_IMAGE_SIZE = 224  # real datasets are decoded and resized to this size unless --image-size says otherwise


def check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise HarnessError(f"unknown scale {scale!r}; choose from {', '.join(SCALES)}")
