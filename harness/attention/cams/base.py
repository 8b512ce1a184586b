"""The extractor base class: how a class activation map is computed at a model's target layer.

Extractors follow pytorch-grad-cam's shape: a :class:`CamExtractor` subclass says how channel weights
(or the whole map) follow from the activation and its gradient, one short module per variant
(:mod:`harness.attention.cams.gradcam`, :mod:`harness.attention.cams.cam`,
:mod:`harness.attention.cams.package`), each registered in
:data:`harness.core.registry.CAMS` by name. Ours are batched and cheap: the backbone runs up to the target
layer without autograd, then the rest of the network on a detached copy of the activation that requires
grad, so no gradient reaches the layers below the target or any parameter.

On CUDA the network runs under bf16 autocast; the map and everything built from it are float32.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from harness.core.errors import HarnessError
from harness.core.registry import CAMS
from harness.models.precision import autocast

TARGETS = ("label", "prediction")


# ---- hooks ------------------------------------------------------------------------------------------
def require_network(model: nn.Module) -> nn.Module:
    """``model`` if it exposes a target layer and ``to_grid`` (a harness Network does), else HarnessError."""
    missing = [name for name in ("target_layer", "to_grid") if not hasattr(model, name)]
    if missing:
        raise HarnessError(
            f"model {type(model).__name__} has no {' / '.join(missing)}: attention needs a "
            "harness.models.network.Network (or a module exposing target_layer and to_grid)"
        )
    return model


@contextmanager
def target_activation(model: nn.Module, with_gradient: bool) -> Iterator[list[torch.Tensor]]:
    """Run ``model`` inside this block with no autograd up to its target layer, capturing that layer's output.

    The target layer's output is replaced by a detached copy (appended to the yielded list); with
    ``with_gradient`` the copy requires grad and autograd is switched on from there to the logits, so a
    gradient can reach the copy and nothing below it. The hook is removed and the caller's grad mode
    restored on exit, also when the block raises.
    """
    captured: list[torch.Tensor] = []

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        leaf = output.detach().requires_grad_(with_gradient)
        torch.set_grad_enabled(with_gradient)  # undone by the enclosing no_grad's exit
        captured.append(leaf)
        return leaf

    handle = model.target_layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            yield captured
    finally:
        handle.remove()


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode inside the block, its previous mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


# ---- the base class ---------------------------------------------------------------------------------
@dataclass
class CamBatch:
    """One batch through an extractor, on the model's device, float32."""

    grid: torch.Tensor  # (B, C, h, w) target-layer features F
    cams: torch.Tensor  # (B, h, w) ReLU'd maps, not normalised
    logits: torch.Tensor  # (B, K)
    classes: torch.Tensor  # (B,) the class each map explains


class CamExtractor:
    """Computes class activation maps at the target layer for batches of float images in [0, 1].

    Subclasses override :meth:`channel_weights` (maps are ReLU(sum_c w_c A_c)) or, for maps of
    another form, :meth:`maps`. ``needs_gradients`` says whether the gradient of the selected
    logits with respect to the target activation must be computed.
    """

    needs_gradients: ClassVar[bool] = True
    # the grad-cam package's class computing the maps this extractor computes its own way, if the package
    # has one (the contract tests compare the two)
    package_class: ClassVar[str | None] = None

    def __init__(self, model: nn.Module) -> None:
        self.model = require_network(model)

    def channel_weights(self, grid: torch.Tensor, gradients: torch.Tensor | None,
                        classes: torch.Tensor) -> torch.Tensor:
        """(B, C) weight of each activation channel in the map of each image."""
        raise NotImplementedError

    def maps(self, images: torch.Tensor, grid: torch.Tensor, gradients: torch.Tensor | None,
             classes: torch.Tensor) -> torch.Tensor:
        """(B, h, w) maps from the grid (B, C, h, w), its gradient (same shape or None) and the classes."""
        weights = self.channel_weights(grid, gradients, classes)
        return torch.relu(torch.einsum("bc,bchw->bhw", weights, grid))

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                 target: str = "label") -> CamBatch:
        """Maps for the true class (``target="label"``, needs ``labels``) or the predicted class."""
        check_target(target)
        if target == "label" and labels is None:
            raise HarnessError('target="label" needs the images\' labels')
        model = self.model
        with eval_mode(model):
            with target_activation(model, self.needs_gradients) as captured, autocast(images.device):
                logits = model(images)
            if len(captured) != 1:
                raise HarnessError(f"the target layer ran {len(captured)} times in one forward pass")
            activation = captured[0]
            classes = labels.to(logits.device) if target == "label" else logits.argmax(1)
            check_classes(classes, logits.shape[1])
            gradients = None
            if self.needs_gradients:
                selected = logits.gather(1, classes[:, None]).sum()
                (gradient,) = torch.autograd.grad(selected, activation)
                gradients = model.to_grid(gradient).float()
            grid = model.to_grid(activation.detach()).float()
            with torch.no_grad():
                cams = self.maps(images, grid, gradients, classes).float()
        return CamBatch(grid=grid, cams=cams, logits=logits.detach().float(), classes=classes)


def make_extractor(model: nn.Module, method: str = "gradcam") -> CamExtractor:
    """The registered extractor ``method`` for ``model`` (``harness.core.registry.CAMS`` lists them)."""
    require_network(model)
    return CAMS.get(method)(model)


def check_target(target: str) -> None:
    if target not in TARGETS:
        raise HarnessError(f"unknown attention target {target!r}; choose from {', '.join(TARGETS)}")


def check_classes(classes: torch.Tensor, num_classes: int) -> None:
    low, high = int(classes.min()), int(classes.max())
    if low < 0 or high >= num_classes:
        raise HarnessError(f"attention target classes must lie in [0, {num_classes}), got [{low}, {high}]")
