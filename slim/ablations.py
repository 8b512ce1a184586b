"""SLIM's ablations: each replaces one stage, to tell a failing stage from a failing premise.

An ablation is a row of :data:`ABLATIONS`, the stage overrides it makes (:class:`Ablation`); the row applies
them itself, so a curator (either variant's) asks its run's row at each stage it may override: the oracle's
noise (:meth:`Ablation.flip_prob`), the screening (:meth:`Ablation.screened`), the pick inside a subgroup
(``pick``), or the curated subset itself (:meth:`Ablation.replaced_subset`). Those that read ground truth say
which (``reads``: the record's ``labels_used.ground_truth``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.core.errors import HarnessError


@dataclass
class Truth:
    """Ground truth an ablation may read (never the pipeline proper): per instance, whether the reference
    model's attention is correct (the noise-free oracle's answer) and its group."""

    correct: np.ndarray  # (N,) bool
    groups: np.ndarray  # (N,) int


@dataclass(frozen=True)
class Ablation:
    """The stages an ablation replaces, and their replacements; the defaults replace none."""

    reads: str | None = None  # the ground truth it reads (None: nothing)
    noise_free_oracle: bool = False  # the simulated oracle answers without noise
    true_screening: bool = False  # screening keeps exactly the instances with correct attention
    pick: str = "centres"  # inside a subgroup: SLIM's pick near k-means centres, or "uniform"
    subset: str | None = None  # the curated subset replaced: "uniform_kept", "random" or "group_balanced"

    @property
    def needs_truth(self) -> bool:
        """Whether its stage overrides read the split's :class:`Truth`."""
        return self.true_screening or self.subset == "group_balanced"

    def flip_prob(self, flip_prob: float) -> float:
        """The simulated oracle's answer-flip probability: none under ``noise_free_oracle``."""
        return 0.0 if self.noise_free_oracle else flip_prob

    def screened(self, keep: np.ndarray, truth: Truth | None) -> np.ndarray:
        """Screening's keep mask, or the true one under ``true_screening``."""
        return np.asarray(truth.correct, dtype=bool).copy() if self.true_screening else keep

    def replaced_subset(self, indices: np.ndarray, scopes: dict[str, tuple[np.ndarray, int]], n: int,
                        truth: Truth | None, random_state: int) -> np.ndarray | None:
        """The subset a ``subset`` ablation puts in place of SLIM's (None when it replaces nothing).

        "uniform_kept": each scope's share (``scopes`` maps a scope to its kept rows and its share) drawn
        uniformly, with replacement only where a scope holds fewer rows; "random": ``len(indices)`` of the
        ``n`` rows uniformly without replacement; "group_balanced": an equal share of ``len(indices)`` from
        every group present (remainder to the lower group ids; with replacement only where a group is
        smaller).
        """
        rng = np.random.default_rng(random_state)
        if self.subset is None:
            return None
        if self.subset == "uniform_kept":
            return np.concatenate([np.sort(rng.choice(rows, size=size, replace=size > len(rows)))
                                   for rows, size in scopes.values()])
        if self.subset == "random":
            return np.sort(rng.choice(n, size=min(len(indices), n), replace=False))
        groups = truth.groups
        present = np.unique(groups)
        share, extra = divmod(len(indices), len(present))
        parts = []
        for i, g in enumerate(present):
            members, want = np.flatnonzero(groups == g), share + (i < extra)
            parts.append(rng.choice(members, size=want, replace=want > len(members)))
        return np.concatenate(parts)


ABLATIONS: dict[str, Ablation] = {
    "none": Ablation(),
    "noise_free_oracle": Ablation(reads="attention masks (an oracle without answer noise)", noise_free_oracle=True),
    "true_screening": Ablation(reads="attention masks (screening keeps exactly the instances with correct "
                                     "attention)", true_screening=True),
    # a uniform draw of the subset's size from the whole split: reads nothing
    "random_subset": Ablation(subset="random"),
    # SLIM's subgroups and quotas, each quota drawn uniformly inside its subgroup: reads nothing
    "uniform_pick": Ablation(pick="uniform"),
    # each scope's share of the subset drawn uniformly from its kept instances (no subgroups): reads nothing
    "uniform_kept": Ablation(subset="uniform_kept"),
    "group_balanced_subset": Ablation(reads="group labels of the curated split (equal rows per group)",
                                      subset="group_balanced"),
}


def ablation(name: str) -> Ablation:
    if name not in ABLATIONS:
        raise HarnessError(f"slim_ablation must be one of {', '.join(ABLATIONS)}, got {name!r}")
    return ABLATIONS[name]

