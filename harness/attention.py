"""Class activation maps at the target layer, and what SLIM and the evaluation build from them.

One pass over a split (:func:`extract`) gives, per image, the map A at the target layer's latent
resolution (h x w) for the image's class, the target feature grid F (C x h x w) pooled three ways, and
the logits: SLIM pipeline step 2 (paper Sec. 4.1) and the input of AIoU (paper Sec. 5.2, Appx. A.7).

Extractors follow pytorch-grad-cam's shape: a :class:`CamExtractor` subclass says how channel weights
(or the whole map) follow from the activation and its gradient. Ours are batched and cheap:

- :class:`GradCAM` runs the backbone up to the target layer without autograd, then the rest of the
  network on a detached copy of the activation that requires grad, and takes ``torch.autograd.grad``
  of the sum of the selected logits with respect to that copy only: no gradient reaches the layers
  below the target or any parameter. CAM = ReLU(sum_c w_c A_c), w_c = spatial mean of dlogit/dA_c.
- :class:`CAM`: for a ResNet whose head is global average pooling + linear, dlogit_k/dA_c(i, j) =
  W[k, c] / (h w) everywhere, so GradCAM equals CAM with those weights: one forward pass, exact.
  ``method="gradcam"`` takes this path automatically when the model says it is exact.
- :class:`PackageCam` runs any other method of the grad-cam package (ScoreCAM, EigenCAM,
  GradCAM++, ...) at latent resolution, so everything downstream is the same.

On CUDA the network runs under bf16 autocast; the map and everything built from it are float32.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.cache import load_tensors, save_tensors
from harness.data import Benchmark, Split
from harness.datasets import dataset_fingerprint
from harness.errors import HarnessError
from harness.evaluation import autocast, to_float
from harness.methods import RunContext
from harness.progress import progress
from harness.records import config_hash
from simulated_oracle.aiou import ATTENTION_CORRECT

TARGETS = ("label", "prediction")
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
OWN_METHODS = ("gradcam", "gradcam-autograd", "cam")
METHODS = OWN_METHODS + tuple(PACKAGE_METHODS)
CACHE_FORMAT = 1  # bump when what an attention pass holds, or how it is computed, changes
DEFAULT_CHUNK = 256  # maps upsampled to image size at a time


# ---- hooks ------------------------------------------------------------------------------------------
def require_network(model: nn.Module) -> nn.Module:
    """``model`` if it exposes a target layer and ``to_grid`` (a harness Network does), else HarnessError."""
    missing = [name for name in ("target_layer", "to_grid") if not hasattr(model, name)]
    if missing:
        raise HarnessError(
            f"model {type(model).__name__} has no {' / '.join(missing)}: attention needs a "
            "harness.models.Network (or a module exposing target_layer and to_grid)"
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


# ---- extractors -------------------------------------------------------------------------------------
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


class GradCAM(CamExtractor):
    """GradCAM (Selvaraju et al. 2017): w_c = spatial mean of the selected logit's gradient w.r.t. A_c."""

    def channel_weights(self, grid, gradients, classes):
        return gradients.mean(dim=(2, 3))


class CAM(CamExtractor):
    """CAM (Zhou et al. 2016) for a GAP + linear head: w_c = W[class, c] / (h w), equal to GradCAM there."""

    needs_gradients = False

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


class PackageCam(CamExtractor):
    """A method of the grad-cam package (pytorch_grad_cam), computed at the target layer's resolution.

    The package runs its own forward/backward passes in float32 (ViT tokens reshaped by ``to_grid``);
    its maps are asked for at latent size, so they come back ReLU'd and min-max scaled, unresized.
    Parameter gradients the package's backward leaves behind are put back as they were.
    """

    needs_gradients = False  # our own pass only captures F and the logits

    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__(model)
        import pytorch_grad_cam

        self.cam_class = getattr(pytorch_grad_cam, PACKAGE_METHODS[method])

    def maps(self, images, grid, gradients, classes):
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

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


def make_extractor(model: nn.Module, method: str = "gradcam") -> CamExtractor:
    """The extractor for ``method``: 'gradcam' (CAM fast path when exact, else autograd GradCAM),
    'gradcam-autograd', 'cam', or a grad-cam package method (see ``PACKAGE_METHODS``)."""
    require_network(model)
    if method == "gradcam":
        return CAM(model) if getattr(model, "cam_is_exact", False) else GradCAM(model)
    if method == "gradcam-autograd":
        return GradCAM(model)
    if method == "cam":
        return CAM(model)
    if method in PACKAGE_METHODS:
        return PackageCam(model, method)
    raise HarnessError(f"unknown attention method {method!r}; choose from {', '.join(METHODS)}")


def check_target(target: str) -> None:
    if target not in TARGETS:
        raise HarnessError(f"unknown attention target {target!r}; choose from {', '.join(TARGETS)}")


def check_classes(classes: torch.Tensor, num_classes: int) -> None:
    low, high = int(classes.min()), int(classes.max())
    if low < 0 or high >= num_classes:
        raise HarnessError(f"attention target classes must lie in [0, {num_classes}), got [{low}, {high}]")


# ---- normalisation and upsampling --------------------------------------------------------------------
def minmax_normalize(maps: torch.Tensor) -> torch.Tensor:
    """Scale each map of a (k, h, w) stack to [0, 1] (float32).

    A constant map (e.g. all zero after the ReLU: no positive evidence for the class anywhere) has
    no spatial preference to scale; it becomes all zeros, as the grad-cam package's scaling gives.
    """
    flat = maps.float().flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    varying = span > 0
    scaled = torch.where(varying, (flat - low) / torch.where(varying, span, torch.ones_like(span)), 0.0)
    return scaled.view(maps.shape)


def upsample(cams: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """(k, h, w) maps -> (k, H, W) by bilinear interpolation (half-pixel centres), renormalised to [0, 1]."""
    if cams.ndim != 3:
        raise HarnessError(f"maps to upsample must be (k, h, w), got shape {tuple(cams.shape)}")
    out_size = (size, size) if isinstance(size, int) else tuple(size)
    out = F.interpolate(cams[:, None].float(), size=out_size, mode="bilinear", align_corners=False)[:, 0]
    return minmax_normalize(out)


def iter_upsampled(
    cams: torch.Tensor, size: int | tuple[int, int], ids: np.ndarray | torch.Tensor | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(ids, maps at image size) for the maps at ``ids`` (default: all), ``chunk_size`` at a time.

    Only one chunk of image-size maps exists at once, so a large split never needs N x H x W floats.
    """
    ids = torch.arange(len(cams)) if ids is None else torch.as_tensor(np.asarray(ids), dtype=torch.long)
    if chunk_size < 1:
        raise HarnessError(f"chunk_size must be positive, got {chunk_size}")
    low, high = (int(ids.min()), int(ids.max())) if len(ids) else (0, -1)
    if low < 0 or high >= len(cams):
        raise HarnessError(f"attention ids must lie in [0, {len(cams)}), got values from {low} to {high}")
    for start in range(0, len(ids), chunk_size):
        chunk = ids[start:start + chunk_size]
        yield chunk, upsample(cams[chunk], size)


# ---- one pass over a split ----------------------------------------------------------------------------
@dataclass
class AttentionPass:
    """Per-image attention facts of one model on one split, in split order (CPU, float32).

    ``fa`` and ``fabar`` are F_A = sum_ij F_ij A_ij and F_Abar = sum_ij F_ij (1 - A_ij) (SLIM Sec. 4.1),
    both with the SAME min-max normalised map A (``cams``). The authors' code weights F_A with the
    unnormalised map and F_Abar with the normalised one, an accident we do not copy. So
    fa + fabar = sum of F over positions = h w ``pooled``.
    """

    cams: torch.Tensor  # (N, h, w) normalised maps in [0, 1], latent resolution
    pooled: torch.Tensor  # (N, C) spatial mean of F
    fa: torch.Tensor  # (N, C) attention-weighted features
    fabar: torch.Tensor  # (N, C) inverse-attention-weighted features
    logits: torch.Tensor  # (N, K)
    targets: torch.Tensor  # (N,) int64 class each map explains
    method: str = "gradcam"
    target: str = "label"

    FIELDS: ClassVar[tuple[str, ...]] = ("cams", "pooled", "fa", "fabar", "logits", "targets")

    def __len__(self) -> int:
        return len(self.targets)

    def maps(self, ids: np.ndarray | torch.Tensor, size: int | tuple[int, int]) -> np.ndarray:
        """Maps of ``ids`` upsampled to ``size``, (k, H, W) float32 numpy: what SimulatedOracle takes
        as its attention callable (``lambda ids: attention.maps(ids, image_size)``)."""
        return upsample(self.cams[torch.as_tensor(np.asarray(ids), dtype=torch.long)], size).numpy()

    def save(self, path: Path) -> None:
        save_tensors(path, {name: getattr(self, name) for name in self.FIELDS},
                     meta={"method": self.method, "target": self.target})

    @classmethod
    def load(cls, path: Path) -> AttentionPass:
        tensors, meta = load_tensors(path)
        fields = {name: tensors[name] for name in cls.FIELDS}
        return cls(**fields, method=meta["method"], target=meta["target"])


def extract(model: nn.Module, split: Split, device: torch.device | str, *, target: str = "label",
            batch_size: int = 256, method: str = "gradcam", show_progress: bool = True) -> AttentionPass:
    """One batched pass over ``split``: per-image maps for the true class (default, as SLIM does) or
    the prediction, the pooled / attention-weighted / inverse-attention-weighted features and logits."""
    check_target(target)
    if batch_size < 1:
        raise HarnessError(f"batch_size must be positive, got {batch_size}")
    if not len(split):
        raise HarnessError("cannot extract attention from an empty split")
    device = torch.device(device)
    extractor = make_extractor(model, method)
    model.to(device)
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in AttentionPass.FIELDS}
    starts = range(0, len(split), batch_size)
    for start in progress(starts, desc=f"attention ({method})", enabled=show_progress):
        images = to_float(split.inputs[start:start + batch_size].to(device, non_blocking=True))
        labels = split.labels[start:start + batch_size].to(device)
        batch = extractor(images, labels, target=target)
        cams = minmax_normalize(batch.cams)
        for name, value in (
            ("cams", cams),
            ("pooled", batch.grid.mean(dim=(2, 3))),
            ("fa", torch.einsum("bchw,bhw->bc", batch.grid, cams)),
            ("fabar", torch.einsum("bchw,bhw->bc", batch.grid, 1.0 - cams)),
            ("logits", batch.logits),
            ("targets", batch.classes.long()),
        ):
            parts[name].append(value.cpu())
    fields = {name: torch.cat(values) for name, values in parts.items()}
    return AttentionPass(**fields, method=method, target=target)


# ---- cache ----------------------------------------------------------------------------------------------
def state_digest(model: nn.Module) -> str:
    """SHA-256 of a model's state_dict (names, dtypes, shapes, bytes): changes whenever any weight does."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def attention_key(ctx: RunContext, split: str, *, model: nn.Module | None = None, method: str = "gradcam",
                  target: str = "label") -> dict[str, Any]:
    """The cache key of an attention pass (see :func:`cached_attention`), after checking its parts."""
    check_target(target)
    if method not in METHODS:
        raise HarnessError(f"unknown attention method {method!r}; choose from {', '.join(METHODS)}")
    if split not in ctx.benchmark.splits:
        raise HarnessError(f"benchmark {ctx.benchmark.name!r} has no split {split!r}; "
                           f"it has {', '.join(ctx.benchmark.splits)}")
    if model is None:
        model_key = {"reference": ctx.reference_key()}
    else:
        require_network(model)
        model_key = {"data": dataset_fingerprint(ctx.benchmark),
                     "arch": getattr(model, "arch", type(model).__name__), "weights": state_digest(model)}
    return dict(model=model_key, split=split, method=method, target=target, format=CACHE_FORMAT,
                precision="bf16" if torch.device(ctx.device).type == "cuda" else "fp32")


def attention_identity(key: dict[str, Any]) -> str:
    """A pass's identity: the hash of its cache key (the name of its cache file), recorded with human answers."""
    return config_hash(key)


def cached_attention(ctx: RunContext, split: str, *, model: nn.Module | None = None, method: str = "gradcam",
                     target: str = "label") -> AttentionPass:
    """:func:`extract` of the reference model f_r (default) or ``model`` on ``split``, cached in ctx.cache.

    Keyed by the model's identity (``ctx.reference_key()`` for f_r, else the dataset fingerprint and a
    hash of the model's weights, so a changed checkpoint is a new entry), the split, method, target and
    the precision (bf16 on CUDA, float32 on the CPU).
    """
    key = attention_key(ctx, split, model=model, method=method, target=target)

    def compute(path: Path) -> None:
        net = model if model is not None else ctx.reference_model()[0]
        extract(net, ctx.benchmark.splits[split], ctx.device, target=target, method=method,
                show_progress=ctx.show_progress).save(path)

    return AttentionPass.load(ctx.cache.get_or_create("attention", key, "safetensors", compute))


# ---- attention accuracy ------------------------------------------------------------------------------
def split_aiou(attention: AttentionPass, masks: torch.Tensor, delta: float,
               chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
    """Per-image AIoU (N,) of a pass's maps, upsampled to the masks' size chunk by chunk."""
    from simulated_oracle import aiou_batch

    size = tuple(masks.shape[1:])
    scores = [aiou_batch(maps.numpy(), masks[ids].numpy(), delta)
              for ids, maps in iter_upsampled(attention.cams, size, chunk_size=chunk_size)]
    return np.concatenate(scores)


def attention_metrics(
    model: nn.Module, benchmark: Benchmark, device: torch.device | str, *, delta: float = 0.8,
    splits: list[str] | None = None, batch_size: int = 256, show_progress: bool = False,
) -> dict[str, dict[str, float]]:
    """Attention accuracy (paper Sec. 5.2, Table 5) of ``model``: {split: {aiou_worst, aiou_avg}}.

    Maps are GradCAM for the TRUE class (AIoU asks whether the model looks at the class's object, so
    a misclassified image is judged on its attention for its class, not for the wrong prediction),
    upsampled to image size and scored against the core-object masks (``simulated_oracle.aiou_batch``);
    ``aiou_worst`` is the lowest group mean. ``splits`` defaults to the evaluation splits that have masks.
    """
    from simulated_oracle import attention_accuracy

    require_network(model)
    provide = "provide masks (Split.masks) or boxes (simulated_oracle.box_mask) to measure AIoU"
    if splits is None:
        splits = [name for name in benchmark.eval_splits if benchmark.splits[name].masks is not None]
        if not splits:
            raise HarnessError(f"benchmark {benchmark.name!r} has no core-object masks in its evaluation "
                               f"splits ({', '.join(benchmark.eval_splits)}): {provide}")
    for name in splits:
        if name not in benchmark.splits:
            raise HarnessError(f"benchmark {benchmark.name!r} has no split {name!r}")
        if benchmark.splits[name].masks is None:
            raise HarnessError(f"split {name!r} of {benchmark.name!r} has no core-object masks: {provide}")
    results = {}
    for name in splits:
        split = benchmark.splits[name]
        attention = extract(model, split, device, target="label", batch_size=batch_size,
                            show_progress=show_progress)
        scores = split_aiou(attention, split.masks, delta)
        summary = attention_accuracy(scores, split.groups.numpy(), benchmark.group_names)
        results[name] = {"aiou_worst": summary["aiou_worst"], "aiou_avg": summary["aiou_avg"],
                         "group_aiou": summary["group_aiou"],
                         "group_attention_correct": correct_shares(scores, split.groups.numpy(),
                                                                   benchmark.group_names)}
    return results


def correct_shares(scores: np.ndarray, groups: np.ndarray, group_names: list[str],
                   threshold: float = ATTENTION_CORRECT) -> dict[str, float]:
    """Per non-empty group, the share of instances whose AIoU reaches ``threshold``: attention the
    simulated oracle calls correct (its default threshold)."""
    return {name: float((scores[groups == g] >= threshold).mean())
            for g, name in enumerate(group_names) if (groups == g).any()}
