"""Containers every dataset (synthetic or real) is turned into.

A benchmark is a set of named splits. Each split holds decoded images as one uint8
tensor (possibly backed by a memory-mapped cache), labels, the spurious attribute,
group ids and, where the dataset has them, boolean masks of the core object.
Group ids index ``Benchmark.group_names``; a group may be empty in some split.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from harness.core.errors import HarnessError


@dataclass
class Split:
    """One split of a benchmark; row i of every field describes instance i."""

    images: torch.Tensor  # uint8 (N, 3, H, W)
    labels: torch.Tensor  # int64 (N,) class ids
    spurious: torch.Tensor  # int64 (N,) spurious attribute (place, patch, context, ...)
    groups: torch.Tensor  # int64 (N,) group ids
    masks: torch.Tensor | None = None  # bool (N, H, W) core-object masks, if known
    stem: torch.Tensor | None = None  # (N, ...) cached frozen-stem activations (``finetune='upper'``)

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise HarnessError(f"images must be uint8 (N, 3, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        for name in ("images", "spurious", "groups") + (("stem",) if self.stem is not None else ()):
            if len(getattr(self, name)) != n:
                raise HarnessError(f"split field {name!r} has {len(getattr(self, name))} rows, labels has {n}")
        if self.masks is not None:
            expected = (n, *self.images.shape[2:])
            if tuple(self.masks.shape) != expected or self.masks.dtype != torch.bool:
                raise HarnessError(
                    f"masks must be bool {expected}, got {self.masks.dtype} {tuple(self.masks.shape)}"
                )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def inputs(self) -> torch.Tensor:
        """What a model of this split is fed: the cached stem activations if there are any, else the images."""
        return self.images if self.stem is None else self.stem

    def subset(self, indices: np.ndarray | torch.Tensor) -> Split:
        """A new split with the rows at ``indices`` (repeats allowed)."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return Split(
            images=self.images[idx],
            labels=self.labels[idx],
            spurious=self.spurious[idx],
            groups=self.groups[idx],
            masks=None if self.masks is None else self.masks[idx],
            stem=None if self.stem is None else self.stem[idx],
        )

    def group_counts(self, n_groups: int) -> np.ndarray:
        return np.bincount(self.groups.numpy(), minlength=n_groups)


@dataclass
class Benchmark:
    """A dataset ready for the harness: named splits plus what the names mean.

    ``splits`` always has 'train', 'val' and 'test'; further evaluation splits
    (e.g. ImageNet-9's 'test_mixed_rand') are evaluated and reported too.
    """

    name: str
    class_names: list[str]
    spurious_names: list[str]
    group_names: list[str]
    splits: dict[str, Split]
    info: dict = field(default_factory=dict)  # scale, seed, image size, source path, ...

    def __post_init__(self) -> None:
        missing = {"train", "val", "test"} - set(self.splits)
        if missing:
            raise HarnessError(f"benchmark {self.name!r} lacks splits {sorted(missing)}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_groups(self) -> int:
        return len(self.group_names)

    @property
    def image_size(self) -> int:
        return self.splits["train"].image_size

    @property
    def has_masks(self) -> bool:
        return all(s.masks is not None for s in self.splits.values())

    @property
    def eval_splits(self) -> list[str]:
        """Splits reported in records: 'val', 'test', then any extra test variants."""
        return ["val", "test"] + sorted(k for k in self.splits if k not in ("train", "val", "test"))

    def train_group_proportions(self) -> np.ndarray:
        counts = self.splits["train"].group_counts(self.num_groups).astype(float)
        return counts / counts.sum()
