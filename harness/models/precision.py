"""How model inputs and outputs cross between the host and the device: precision, memory layout, transfers.

Precision: bf16 autocast on the GPU, float32 on the CPU (exact and deterministic). ``forced_precision``
overrides that for a block (float32 on the GPU with TF32 off, or bf16 autocast on the CPU): what
``python -m harness gpu-check`` compares. Inputs go to the GPU through pinned memory without blocking, so
the host does not wait for the GPU's queued work at every copy (outputs come back once per batch).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from harness.core.errors import HarnessError


def to_float(inputs: torch.Tensor) -> torch.Tensor:
    """Model inputs as float32: uint8 images (B, 3, H, W) -> [0, 1]; cached stem activations as they are.
    4-d inputs are channels-last on the GPU."""
    x = inputs.float()
    if inputs.dtype == torch.uint8:
        x = x.div_(255)
    return device_layout(x)


def device_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the layout the device's convolutions want: channels-last for 4-d tensors on the GPU."""
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda and x.ndim == 4 else x


# ---- precision ------------------------------------------------------------------------------------------
PRECISIONS = ("bf16", "fp32")
_forced: str | None = None


def precision(device: torch.device | str) -> str:
    """What float work on ``device`` runs in: "bf16" (autocast) on the GPU, "fp32" on the CPU, unless a
    :func:`forced_precision` block says otherwise. Caches of computed tensors carry it in their keys."""
    return _forced or ("bf16" if torch.device(device).type == "cuda" else "fp32")


def precision_key(device: torch.device | str) -> dict[str, str]:
    """The precision as cache-key entries: ``{"precision": "bf16"}`` where it is not float32, none where it
    is, so the caches written before the precision was recorded (all float32, on the CPU) stay valid."""
    name = precision(device)
    return {} if name == "fp32" else {"precision": name}


def autocast(device: torch.device | str):
    """bf16 autocast where :func:`precision` says bf16 (the GPU), nothing otherwise (CPU results stay exact
    and deterministic)."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision(device) == "bf16")


@contextlib.contextmanager
def forced_precision(name: str) -> Iterator[None]:
    """Within the block every device computes in ``name``: "fp32" (on the GPU with TF32 off, so float32
    matrix products and convolutions keep their 24-bit significands) or "bf16" (autocast, on the CPU too).

    For comparing precisions (``python -m harness gpu-check``); a run made inside the block uses cache keys
    that say which precision it ran in."""
    global _forced
    if name not in PRECISIONS:
        raise HarnessError(f"unknown precision {name!r}; choose from {', '.join(PRECISIONS)}")
    saved = _forced, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    _forced = name
    if name == "fp32":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        _forced, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# ---- transfers -----------------------------------------------------------------------------------------
def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A host tensor on ``device``. To the GPU it goes through pinned memory without blocking, so the host
    does not wait for the GPU's queued work (a copy from pageable memory would); on the CPU it is returned
    as it is."""
    device = torch.device(device)
    if device.type != "cuda" or tensor.is_cuda:
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)
