"""The stored attention pass: one pass of a model over a split, and its cache keyed on the run context.

One pass over a split (:func:`extract`) gives, per image, the map A at the target layer's latent
resolution (h x w) for the image's class, the target feature grid F (C x h x w) pooled three ways, and
the logits: SLIM pipeline step 2 (paper Sec. 4.1) and the input of AIoU (paper Sec. 5.2, Appx. A.7).
The maps come from an extractor of :mod:`harness.attention.cams` chosen by name (``method``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from harness.attention.cams import check_target, make_extractor, require_network
from harness.attention.maps import minmax_normalize, upsample
from harness.core.cache import load_tensors, save_tensors
from harness.core.errors import HarnessError
from harness.core.progress import progress
from harness.core.records import config_hash
from harness.core.registry import CAMS
from harness.data.catalog import dataset_fingerprint
from harness.data.containers import Split
from harness.engine.context import RunContext
from harness.models.precision import precision, to_float

CACHE_FORMAT = 1  # bump when what an attention pass holds, or how it is computed, changes


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
    for start in progress(starts, desc=f"attention ({method})", enabled=show_progress, steps=True):
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
    CAMS.get(method)  # an unknown method fails here, with the known ones
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
                precision=precision(ctx.device))


def attention_identity(key: dict[str, Any]) -> str:
    """A pass's identity: the hash of its cache key (the name of its cache file), recorded with human answers."""
    return config_hash(key)


def cached_attention(ctx: RunContext, split: str, *, model: nn.Module | None = None, method: str = "gradcam",
                     target: str = "label") -> AttentionPass:
    """:func:`extract` of the reference model f_r (default) or ``model`` on ``split``, cached in ctx.cache.

    Keyed by the model's identity (``ctx.reference_key()`` for f_r, else the dataset fingerprint and a
    hash of the model's weights, so a changed checkpoint is a new entry), the split, method, target and
    the precision (:func:`harness.models.precision.precision`: bf16 on CUDA, float32 on the CPU).
    """
    key = attention_key(ctx, split, model=model, method=method, target=target)

    def compute(path: Path) -> None:
        net = model if model is not None else ctx.reference_model()[0]
        extract(net, ctx.benchmark.splits[split], ctx.device, target=target, method=method,
                show_progress=ctx.show_progress).save(path)

    return AttentionPass.load(ctx.cache.get_or_create("attention", key, "safetensors", compute))
