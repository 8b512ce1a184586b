"""GradCAM (Selvaraju et al. 2017) by autograd, and ``gradcam``: CAM's exact one-pass form where it applies.

:class:`GradCAM` takes ``torch.autograd.grad`` of the sum of the selected logits with respect to the
target activation only. CAM = ReLU(sum_c w_c A_c), w_c = spatial mean of dlogit/dA_c. For a ResNet whose
head is global average pooling + linear that equals :class:`harness.attention.cams.cam.CAM`, which the name
``gradcam`` uses whenever the model says it is exact (``cam_is_exact``).
"""
from __future__ import annotations

from torch import nn

from harness.attention.cams.base import CamExtractor
from harness.attention.cams.cam import CAM
from harness.core.registry import CAMS


@CAMS.register("gradcam-autograd")
class GradCAM(CamExtractor):
    """GradCAM (Selvaraju et al. 2017): w_c = spatial mean of the selected logit's gradient w.r.t. A_c."""

    package_class = "GradCAM"

    def channel_weights(self, grid, gradients, classes):
        return gradients.mean(dim=(2, 3))


@CAMS.register("gradcam")
def gradcam(model: nn.Module) -> CamExtractor:
    """GradCAM: the CAM fast path when it is exact for ``model``, else autograd GradCAM."""
    return CAM(model) if getattr(model, "cam_is_exact", False) else GradCAM(model)
