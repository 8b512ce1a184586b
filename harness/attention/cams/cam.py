"""CAM (Zhou et al. 2016): for a GAP + linear head, dlogit_k/dA_c(i, j) = W[k, c] / (h w) everywhere, so
GradCAM equals CAM with those weights: one forward pass, exact."""
from __future__ import annotations

from torch import nn

from harness.attention.cams.base import CamExtractor
from harness.core.errors import HarnessError
from harness.core.registry import CAMS


@CAMS.register("cam")
class CAM(CamExtractor):
    """CAM (Zhou et al. 2016) for a GAP + linear head: w_c = W[class, c] / (h w), equal to GradCAM there."""

    needs_gradients = False
    package_class = "GradCAM"  # equal to GradCAM on the heads CAM accepts

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        if not getattr(model, "cam_is_exact", False):
            raise HarnessError(
                f"CAM needs a global-average-pooling + linear head (a ResNet); {type(model).__name__} "
                f"{getattr(model, 'arch', '')} is not one: use method 'gradcam'"
            )

    def channel_weights(self, grid, gradients, classes):
        h, w = grid.shape[-2:]
        return self.model.head.weight.float()[classes] / (h * w)
