"""Every method of the grad-cam package (ScoreCAM, EigenCAM, GradCAM++, ...) at latent resolution, so
everything downstream of a map is the same as for our own extractors."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import numpy as np
import torch
from torch import nn

from harness.attention.cams.base import CamExtractor
from harness.core.registry import CAMS

# grad-cam package methods selectable by name (method name -> class in pytorch_grad_cam).
PACKAGE_METHODS = {
    "gradcam-package": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "gradcam-elementwise": "GradCAMElementWise",
    "eigencam": "EigenCAM",
    "eigengradcam": "EigenGradCAM",
    "scorecam": "ScoreCAM",
}


class PackageCam(CamExtractor):
    """A method of the grad-cam package (pytorch_grad_cam), computed at the target layer's resolution.

    The package runs its own forward/backward passes in float32 (ViT tokens reshaped by ``to_grid``);
    its maps are asked for at latent size, so they come back ReLU'd and min-max scaled, unresized.
    Parameter gradients the package's backward leaves behind are put back as they were.
    """

    needs_gradients = False  # our own pass only captures F and the logits

    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__(model)
        import pytorch_grad_cam  # here: the package (and OpenCV) load only when one of its methods is used

        self.cam_class = getattr(pytorch_grad_cam, PACKAGE_METHODS[method])  # package_class stays None: these
        # maps are the package's own, so there is nothing to compare them with

    def maps(self, images, grid, gradients, classes):
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # as in __init__

        height, width = grid.shape[-2:]
        cam = self.cam_class(model=self.model, target_layers=[self.model.target_layer],
                             reshape_transform=self.model.to_grid)
        cam.get_target_width_height = lambda _input: (width, height)
        targets = [ClassifierOutputTarget(int(c)) for c in classes.tolist()]
        try:
            with preserved_parameter_grads(self.model), torch.enable_grad():
                out = cam(images.float(), targets=targets)
        finally:
            cam.activations_and_grads.release()
        return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(grid.device)


@contextmanager
def preserved_parameter_grads(model: nn.Module) -> Iterator[None]:
    saved = [(p, p.grad) for p in model.parameters()]
    try:
        yield
    finally:
        for p, grad in saved:
            p.grad = grad


for _name in PACKAGE_METHODS:
    CAMS.register(_name)(partial(PackageCam, method=_name))
