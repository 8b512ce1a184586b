"""Stage 7 (paper Sec. 4.3, "Data sampling"): consistency-weighted quotas, eqs. (3)-(6), and the draw.

:func:`allocate` turns core clusters c_i and environment clusters e_j of the kept instances into integer
quotas n(c_i, e_j) that sum exactly to the sampling budget. :class:`SubgroupSampler` then draws each
subgroup's quota as diverse instances (one per k-means centre inside the subgroup).
"""
from __future__ import annotations

import numpy as np

from harness.core.errors import HarnessError
from slim.clustering import nearest_to_centres

TIE_DECIMALS = 12  # fractional parts equal to this many decimals count as ties (broken by lower index)


def largest_remainder(shares: np.ndarray, total: int) -> np.ndarray:
    """Integers summing to ``total``, each the floor of its share or one more (Hamilton's method).

    The units left after flooring go to the largest fractional parts; ties go to the lower index.
    ``shares`` must be non-negative and sum to ``total`` (up to rounding error).
    """
    shares = np.asarray(shares, dtype=float)
    if shares.size == 0:
        if total:
            raise HarnessError(f"cannot split {total} units over no shares")
        return np.zeros(0, dtype=np.int64)
    if np.any(shares < 0) or not np.all(np.isfinite(shares)):
        raise HarnessError(f"shares must be finite and non-negative, got {shares.tolist()}")
    if abs(shares.sum() - total) > 1e-6 * max(1, total):
        raise HarnessError(f"shares sum to {shares.sum()}, not to the total {total}")
    floors = np.floor(shares + 10.0 ** -TIE_DECIMALS).astype(np.int64)
    left = int(total - floors.sum())
    remainders = np.round(shares - floors, TIE_DECIMALS)
    order = np.lexsort((np.arange(len(shares)), -remainders))  # largest remainder first, then lower index
    floors[order[:left]] += 1
    return floors


def _proportional(weights: np.ndarray, total: int) -> np.ndarray:
    """``total`` split in proportion to ``weights`` (equally when every weight is 0), as integers."""
    weights = np.asarray(weights, dtype=float)
    if weights.sum() <= 0:
        weights = np.ones_like(weights)
    return largest_remainder(total * weights / weights.sum(), total)


def allocate(core_labels: np.ndarray, core_dist: np.ndarray, env_labels: np.ndarray, env_dist: np.ndarray,
             budget: int) -> dict[tuple[int, int], int]:
    """Quotas {(core, env): n} of consistency-weighted sampling, paper eqs. (3)-(6).

    ``core_dist[x]`` is instance x's distance to the centre of its core cluster (in core feature space),
    ``env_dist[x]`` its distance to the centre of its environment cluster (in environment space).

    - eq. (3): rho(c_i) = 1 / mean distance of c_i's members to c_i's centre; the weight is 1 / rho(c_i);
    - eq. (4): n(c_i) = budget * w(c_i) / sum_k w(c_k), rounded by largest remainder to sum to the budget;
    - eq. (5): rho(c_i, e_j) = 1 / mean distance of the members of g(c_i, e_j) to e_j's centre;
    - eq. (6): n(c_i, e_j) = n(c_i) * w(c_i, e_j) / sum over the non-empty subgroups of c_i, rounded by
      largest remainder to sum to n(c_i).

    (The authors' code uses median distances, to each subgroup's own centroid: :mod:`slim.authors`.) Every
    combination of a present core and a present environment cluster is returned; empty combinations get 0. Where every
    weight at a level is 0 (all members sit on their centres) that level is split equally. Ties in rounding
    go to the lower cluster id.
    """
    core_labels, env_labels = np.asarray(core_labels), np.asarray(env_labels)
    core_dist, env_dist = np.asarray(core_dist, dtype=float), np.asarray(env_dist, dtype=float)
    n = len(core_labels)
    if not (len(core_dist) == len(env_labels) == len(env_dist) == n):
        raise HarnessError(
            f"allocate needs one core label, core distance, env label and env distance per instance; got "
            f"{n}, {len(core_dist)}, {len(env_labels)}, {len(env_dist)}"
        )
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0:
        raise HarnessError(f"sampling budget must be a non-negative integer, got {budget!r}")
    if n == 0:
        if budget:
            raise HarnessError(f"cannot draw {budget} instances: no instance is left to sample from")
        return {}
    for name, dist in (("core", core_dist), ("env", env_dist)):
        if not np.all(np.isfinite(dist)) or np.any(dist < 0):
            raise HarnessError(f"{name} distances must be finite and non-negative")
    cores, envs = np.unique(core_labels), np.unique(env_labels)
    core_weight = np.array([np.mean(core_dist[core_labels == c]) for c in cores])  # 1 / rho(c_i), eq. (3)
    core_quota = _proportional(core_weight, int(budget))  # eq. (4)
    quotas = {(int(c), int(e)): 0 for c in cores for e in envs}
    for c, n_core in zip(cores, core_quota, strict=True):
        in_core = core_labels == c
        present = np.unique(env_labels[in_core])
        weight = np.array([np.mean(env_dist[in_core & (env_labels == e)]) for e in present])  # eq. (5)
        for e, n_sub in zip(present, _proportional(weight, int(n_core)), strict=True):  # eq. (6)
            quotas[(int(c), int(e))] = int(n_sub)
    return quotas


class SubgroupSampler:
    """Draws each subgroup g(c_i, e_j)'s quota of instances.

    Inside a subgroup larger than its quota: k-means with k = quota on ``points`` and the member nearest
    each centre (diverse and typical instances); ``pick="uniform"`` draws the quota uniformly without
    replacement instead (the ``uniform_pick`` ablation). A subgroup no larger than its quota is taken whole and the
    rest is drawn uniformly with replacement from it; ``repeats_`` counts those extra draws.
    """

    def __init__(self, n_init: int = 1, random_state: int = 0, pick: str = "centres") -> None:
        self.n_init = n_init
        self.random_state = random_state
        self.pick = pick

    def fit(self, points: np.ndarray, core_labels: np.ndarray, env_labels: np.ndarray,
            quotas: dict[tuple[int, int], int]) -> SubgroupSampler:
        """Sets ``indices_`` (rows of ``points``, repeats allowed, subgroup by subgroup) and ``repeats_``."""
        if self.pick not in ("centres", "uniform"):
            raise HarnessError(f"pick must be 'centres' or 'uniform', got {self.pick!r}")
        rng = np.random.default_rng(self.random_state)
        chosen: list[np.ndarray] = []
        self.repeats_ = 0
        for (c, e), quota in sorted(quotas.items()):
            members = np.flatnonzero((core_labels == c) & (env_labels == e))
            if quota == 0:
                continue
            if len(members) == 0:
                raise HarnessError(f"subgroup (core {c}, env {e}) has a quota of {quota} but no instance")
            if quota < len(members) and self.pick == "uniform":
                picked, repeats = np.sort(rng.choice(members, size=quota, replace=False)), 0
            elif quota < len(members):
                picked = members[nearest_to_centres(points[members], quota, n_init=self.n_init,
                                                    random_state=self.random_state)]
                repeats = 0
            else:
                repeats = quota - len(members)
                picked = np.concatenate([members, rng.choice(members, size=repeats, replace=True)])
            chosen.append(picked)
            self.repeats_ += repeats
        self.indices_ = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
        return self

    def fit_predict(self, points: np.ndarray, core_labels: np.ndarray, env_labels: np.ndarray,
                    quotas: dict[tuple[int, int], int]) -> np.ndarray:
        return self.fit(points, core_labels, env_labels, quotas).indices_
