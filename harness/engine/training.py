"""The one training loop every method uses.

``fit`` trains a model on (a resampled view of) a split: SGD or AdamW with a cosine schedule,
augmentation on tensors (random crop with reflect padding + horizontal flip), a pluggable per-batch
objective (cross-entropy by default; GroupDRO brings its own), per-epoch validation and explicit model
selection. On the GPU it uses bf16 autocast and channels-last, keeps the split on the GPU when it fits and
streams it from the host (a memory-mapped image cache, say) through pinned memory when it does not, and
never makes the host wait for the GPU inside an epoch; on the CPU it is exact and, for a given seed,
deterministic.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.core.errors import HarnessError
from harness.core.progress import progress
from harness.data.containers import Split
from harness.engine.evaluation import group_metrics, predict_logits
from harness.models.precision import autocast, device_layout, to_device, to_float

SELECTIONS = {
    # criterion -> does it read val group labels?
    "val_avg_acc": False,
    "val_class_balanced_acc": False,  # mean of the per-class accuracies: reads class labels only
    "val_worst_group_acc": True,
    "last": False,
}
SAMPLERS = ("shuffle", "group_balanced")
# A split's inputs are moved to the GPU whole when they take at most this share of its free memory (the rest
# is left for activations and the optimizer); larger ones are streamed from the host batch by batch.
RESIDENT_SHARE = 1 / 3


@dataclass(frozen=True)
class TrainHparams:
    epochs: int
    lr: float
    weight_decay: float
    batch_size: int
    optimizer: str = "sgd"
    momentum: float = 0.9
    augment: bool = True
    sampler: str = "shuffle"
    selection: str = "val_avg_acc"
    compile: bool = False  # torch.compile the training forward (pays on the GPU for long runs)

    @classmethod
    def from_dict(cls, hp: dict[str, Any]) -> TrainHparams:
        names = cls.__dataclass_fields__
        made = cls(**{k: v for k, v in hp.items() if k in names})
        if made.sampler not in SAMPLERS:
            raise HarnessError(f"unknown sampler {made.sampler!r}; choose from {', '.join(SAMPLERS)}")
        if made.selection not in SELECTIONS:
            raise HarnessError(f"unknown selection {made.selection!r}; choose from {', '.join(SELECTIONS)}")
        if made.optimizer not in ("sgd", "adamw"):
            raise HarnessError(f"unknown optimizer {made.optimizer!r}; choose sgd or adamw")
        return made


class Objective:
    """Per-batch training loss. Subclasses may keep state across batches and log it per epoch."""

    uses_group_labels = False

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels)

    def end_epoch(self) -> dict[str, Any]:
        return {}


@dataclass
class FitResult:
    selection: dict[str, Any]  # criterion, uses_val_group_labels, epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    samples_seen: int = 0  # training examples processed (for the additional-cost column)


def fit(
    model: nn.Module,
    train: Split,
    hp: TrainHparams,
    *,
    device: torch.device,
    seed: int,
    num_groups: int,
    indices: np.ndarray | None = None,
    objective: Objective | None = None,
    val: Split | None = None,
    parameters: list[nn.Parameter] | None = None,
    desc: str = "train",
    show_progress: bool = True,
    resident: bool | None = None,
    on_batch: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> FitResult:
    """Train ``model`` in place and leave it at the selected epoch's weights.

    ``indices`` (repeats allowed) is the multiset of training rows one epoch covers (default: all rows).
    With ``sampler='group_balanced'`` each epoch instead draws as many rows with replacement, each group
    equally likely (reads train group labels). Selection picks the epoch by val average accuracy, val
    class-balanced accuracy, val worst-group accuracy (reads val group labels) or takes the last one.
    ``resident`` says whether the split's inputs are moved to the device whole or streamed batch by batch
    (see :func:`place_inputs`); the numbers are the same either way.
    ``on_batch(epoch, rows, logits)``, if given, sees every training batch's forward pass before its step: the
    train rows (a tensor on the device) and their train-mode logits (of the augmented batch where augmentation
    is on), detached.
    """
    objective = objective or Objective()
    indices = np.arange(len(train)) if indices is None else np.asarray(indices, dtype=np.int64)
    if len(indices) == 0:
        raise HarnessError("cannot train on an empty set of instances")
    if hp.selection != "last" and val is None:
        raise HarnessError(f"selection {hp.selection!r} needs a validation split")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    params = parameters if parameters is not None else [p for p in model.parameters() if p.requires_grad]
    optimizer = _optimizer(params, hp)
    steps_per_epoch = math.ceil(len(indices) / hp.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, hp.epochs * steps_per_epoch))
    placed = place_inputs(train, device, resident)
    forward = torch.compile(model) if hp.compile else model  # shares parameters with ``model``

    best_score, best_state, best_epoch = -math.inf, None, hp.epochs
    result = FitResult(selection={})
    bar = progress(range(1, hp.epochs + 1), desc=desc, enabled=show_progress)
    for epoch in bar:
        model.train()
        order = _epoch_order(indices, train.groups, hp.sampler, num_groups, gen)
        # summed on the device (float64, the same sums as Python floats): reading it per batch would make the
        # host wait for the GPU at every step
        total_loss = torch.zeros((), dtype=torch.float64, device=device)
        for rows, batch in batches(placed, order, hp.batch_size, device):
            x = to_float(batch)
            if hp.augment and batch.dtype == torch.uint8:  # cached stem activations are not augmented
                x = device_layout(augment(x, gen))
            with autocast(device):
                logits = forward(x)
            if on_batch is not None:
                on_batch(epoch, rows, logits.detach())
            loss = objective(logits, placed.labels[rows], placed.groups[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.detach().double() * len(rows)
        result.samples_seen += len(order)
        entry: dict[str, Any] = {"epoch": epoch, "train_loss": float(total_loss) / len(order),
                                 **objective.end_epoch()}
        if val is not None and hp.selection != "last":
            entry.update(_validate(model, val, device, num_groups, hp.selection))
            score = entry[hp.selection]
            if score > best_score:
                best_score, best_epoch = score, epoch
                best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        result.history.append(entry)
        bar.set_postfix_str(f"loss {entry['train_loss']:.3f}" + (
            f" {hp.selection} {entry[hp.selection]:.3f}" if hp.selection in entry else ""))
    if best_state is not None:
        model.load_state_dict(best_state)
    result.selection = {
        "criterion": hp.selection,
        "uses_val_group_labels": SELECTIONS[hp.selection],
        "epoch": best_epoch,
    }
    return result


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop after reflect-padding by 1/8 of the size, and a random horizontal flip, per image."""
    b, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    oy = to_device(torch.randint(0, 2 * pad + 1, (b,), generator=gen), x.device)
    ox = to_device(torch.randint(0, 2 * pad + 1, (b,), generator=gen), x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    cropped = padded[batch, chans, rows, cols]
    flip = to_device(torch.rand(b, generator=gen) < 0.5, x.device)[:, None, None, None]
    return torch.where(flip, cropped.flip(3), cropped)


def _epoch_order(indices: np.ndarray, groups: torch.Tensor, sampler: str, num_groups: int,
                 gen: torch.Generator) -> np.ndarray:
    if sampler == "shuffle":
        return indices[torch.randperm(len(indices), generator=gen).numpy()]
    g = groups.numpy()[indices]
    counts = np.bincount(g, minlength=num_groups)
    weights = torch.from_numpy(1.0 / counts[g])
    draws = torch.multinomial(weights, len(indices), replacement=True, generator=gen).numpy()
    return indices[draws]


def _validate(model: nn.Module, val: Split, device: torch.device, num_groups: int, selection: str) -> dict:
    logits = predict_logits(model, val, device)
    m = group_metrics(logits.argmax(1).numpy(), val.labels.numpy(), val.groups.numpy(),
                      [str(i) for i in range(num_groups)])
    predictions, labels = logits.argmax(1).numpy(), val.labels.numpy()
    out = {"val_avg_acc": m["avg_acc"], "val_class_balanced_acc": class_balanced_accuracy(predictions, labels)}
    if SELECTIONS[selection]:  # read val group labels only when the criterion needs them
        out["val_worst_group_acc"] = m["worst_group_acc"]
    return out


def class_balanced_accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """The mean over the classes present of each class's accuracy (a majority class counts once)."""
    return float(np.mean([(predictions[labels == c] == c).mean() for c in np.unique(labels)]))


def _optimizer(params: list[nn.Parameter], hp: TrainHparams) -> torch.optim.Optimizer:
    if hp.optimizer == "sgd":
        return torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
    return torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)


@dataclass
class DeviceInputs:
    """A split placed for training: labels and groups on the device; the inputs on the device, or on the host
    to be streamed batch by batch (``streamed``)."""

    inputs: torch.Tensor
    labels: torch.Tensor
    groups: torch.Tensor
    streamed: bool


def place_inputs(split: Split, device: torch.device, resident: bool | None = None) -> DeviceInputs:
    """``split`` placed for training on ``device``.

    The inputs go to the GPU whole when ``resident`` is True, or when it is None and they take at most
    :data:`RESIDENT_SHARE` of the GPU's free memory; otherwise they stay on the host (a memory-mapped cache
    larger than that, say) and are streamed. On the CPU they are read where they are, or streamed when
    ``resident`` is False (the same batches, gathered by a helper thread).
    """
    inputs = split.inputs
    if device.type == "cuda" and resident is None:
        free, _ = torch.cuda.mem_get_info(device)
        resident = inputs.numel() * inputs.element_size() <= free * RESIDENT_SHARE
    if device.type == "cuda" and resident:
        inputs = inputs.to(device)  # once per fit, from pageable (possibly memory-mapped) memory
    return DeviceInputs(inputs=inputs, labels=to_device(split.labels, device), groups=to_device(split.groups, device),
                        streamed=resident is False)


def batches(placed: DeviceInputs, order: np.ndarray, batch_size: int,
            device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(rows, inputs) of each batch of ``order`` on ``device``, in order.

    Streamed inputs are gathered on the host by a helper thread one batch ahead (into pinned memory when the
    device is a GPU) while the device computes on the current batch, and copied without blocking."""
    rows = to_device(torch.from_numpy(order), device)  # one copy per epoch
    starts = range(0, len(order), batch_size)
    if not placed.streamed:
        for start in starts:
            batch_rows = rows[start:start + batch_size]
            yield batch_rows, placed.inputs[batch_rows]
        return

    def gather(start: int) -> torch.Tensor:
        batch = placed.inputs[torch.from_numpy(order[start:start + batch_size])]
        return batch.pin_memory() if device.type == "cuda" else batch

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(gather, 0)
        for start in starts:
            batch = pending.result()
            if start + batch_size < len(order):
                pending = pool.submit(gather, start + batch_size)
            yield rows[start:start + batch_size], batch.to(device, non_blocking=True)
