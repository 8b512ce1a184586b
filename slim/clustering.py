"""k-means helpers shared by SLIM's stages, the elbow rule, and stage 6 (paper Sec. 4.3, "Disentangling").

:func:`nearest_to_centres` picks diverse, typical instances (annotation sampling, subgroup draws).
:class:`Disentangler` clusters the kept instances' attention-weighted features F_A (core clusters) and
inverse-attention-weighted features F_Abar (environment clusters), each with k chosen by :func:`elbow`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from threadpoolctl import threadpool_limits

from harness.core.errors import HarnessError


def kmeans(points: np.ndarray, k: int, *, n_init: int, random_state: int) -> KMeans:
    """scikit-learn k-means, on one OpenMP thread: its result then does not depend on the machine's thread
    count (and on small problems one thread is also the fastest)."""
    with threadpool_limits(1, user_api="openmp"):
        return KMeans(n_clusters=k, n_init=n_init, random_state=random_state).fit(points)


def nearest_to_centres(points: np.ndarray, k: int, *, n_init: int = 4, random_state: int = 0) -> np.ndarray:
    """Rows of ``points`` nearest each of k k-means centres: k distinct rows, in centre order.

    Each centre takes its own cluster's member nearest to it (ties: the lower row), so the rows are
    distinct; a centre left without members (duplicate points) takes the nearest row not yet taken.
    """
    n = len(points)
    if not 0 <= k <= n:
        raise HarnessError(f"cannot pick {k} instances out of {n}")
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    if k == n:
        return np.arange(n)
    fitted = kmeans(points, k, n_init=n_init, random_state=random_state)
    taken = np.zeros(n, dtype=bool)
    picked = np.empty(k, dtype=np.int64)
    for j, centre in enumerate(fitted.cluster_centers_):
        dist = np.linalg.norm(points - centre, axis=1)
        pool = (fitted.labels_ == j) & ~taken
        if not pool.any():
            pool = ~taken
        rows = np.flatnonzero(pool)
        row = int(rows[np.lexsort((rows, dist[rows]))[0]])
        picked[j], taken[row] = row, True
    return picked


def elbow(ks: Sequence[int], inertia: Sequence[float], candidates: Sequence[int] | None = None) -> int:
    """The elbow of a decreasing curve (the "kneedle" rule, maximum distance to the chord).

    Both axes are scaled to [0, 1]; the elbow is the candidate k whose point lies farthest below the
    chord joining the curve's first and last points (vertical distance, proportional to the perpendicular
    one). Ties go to the smaller k. A curve with no point below its chord (straight or bending the other
    way) has no elbow: the smallest candidate is returned. ``candidates`` defaults to every k.
    """
    ks_arr, y = np.asarray(ks, dtype=float), np.asarray(inertia, dtype=float)
    if len(ks_arr) != len(y) or len(ks_arr) == 0:
        raise HarnessError(f"elbow needs one inertia per k, got {len(ks_arr)} ks and {len(y)} values")
    if np.any(np.diff(ks_arr) <= 0):
        raise HarnessError(f"elbow needs increasing ks, got {list(ks)}")
    allowed = np.isin(ks_arr, list(ks if candidates is None else candidates))
    if not allowed.any():
        raise HarnessError(f"no candidate k among {list(ks)}")
    if len(ks_arr) < 3:
        return int(ks_arr[allowed][0])
    x = (ks_arr - ks_arr[0]) / (ks_arr[-1] - ks_arr[0])
    span = y.max() - y.min()
    yn = (y - y.min()) / span if span > 0 else np.zeros_like(y)
    below_chord = yn[0] + (yn[-1] - yn[0]) * x - yn
    below_chord = np.where(allowed, np.round(below_chord, 12), -np.inf)
    best = int(np.argmax(below_chord))
    return int(ks_arr[best]) if below_chord[best] > 0 else int(ks_arr[allowed][0])


@dataclass
class Clustering:
    """k-means partition chosen by the elbow rule: labels, distances to the own centre, the curve."""

    labels: np.ndarray  # (n,) cluster ids 0..k-1
    distances: np.ndarray  # (n,) Euclidean distance of each point to its cluster's centre
    k: int
    curve: dict[int, float]  # k -> inertia (sum of squared distances), from k = 1
    points: np.ndarray  # the (reduced) coordinates the clustering ran on


def reduce_dims(x: np.ndarray, dims: int | None, random_state: int) -> np.ndarray:
    """PCA to ``dims`` components when the data has more (None: no reduction)."""
    x = np.asarray(x, dtype=np.float32)
    if dims is None or x.shape[1] <= dims or len(x) <= dims:
        return x
    return PCA(n_components=dims, svd_solver="randomized", random_state=random_state).fit_transform(x)


def cluster_by_elbow(points: np.ndarray, k_range: tuple[int, int], *, n_init: int,
                     random_state: int) -> Clustering:
    """k-means for every k in ``k_range`` (inclusive, capped at the number of points), k by :func:`elbow`.

    The inertia curve starts at k = 1 (the total sum of squares), so the smallest candidate can be the
    elbow; the largest k of the curve is its chord's end and so is chosen only when it is the only one.
    """
    k_min, k_max = k_range
    if not 1 <= k_min <= k_max:
        raise HarnessError(f"cluster range must satisfy 1 <= min <= max, got {k_range}")
    n = len(points)
    candidates = [k for k in range(k_min, k_max + 1) if k <= n]
    if not candidates:  # fewer points than the smallest k: one cluster
        candidates = [1]
    fits = {k: kmeans(points, k, n_init=n_init, random_state=random_state) for k in candidates if k > 1}
    curve = {1: float(((points - points.mean(0)) ** 2).sum())}
    curve.update({k: float(f.inertia_) for k, f in fits.items()})
    ks = sorted(curve)
    k = elbow(ks, [curve[q] for q in ks], candidates)
    if k == 1:
        labels, centres = np.zeros(n, dtype=np.int64), points.mean(0, keepdims=True)
    else:
        labels, centres = fits[k].labels_.astype(np.int64), fits[k].cluster_centers_
    distances = np.linalg.norm(points - centres[labels], axis=1)
    return Clustering(labels=labels, distances=distances, k=k, curve=curve, points=points)


class Disentangler:
    """Stage 6: core clusters from F_A and environment clusters from F_Abar of the kept instances.

    Both clusterings run over the rows given: the whole kept set, or one class's kept rows (the pipeline's
    ``curation_scope``). Features are first
    reduced by PCA to ``pca_dims`` (None: raw features); distances in eqs. (3) and (5) are measured there.
    The number of clusters of each is the elbow of the k-means inertia over ``k_range`` (default 2..5).
    """

    def __init__(self, k_range: tuple[int, int] = (2, 5), pca_dims: int | None = 50, n_init: int = 4,
                 random_state: int = 0) -> None:
        self.k_range = tuple(k_range)
        self.pca_dims = pca_dims
        self.n_init = n_init
        self.random_state = random_state

    def fit(self, fa: np.ndarray, fabar: np.ndarray) -> Disentangler:
        """Sets ``core_`` and ``env_`` (:class:`Clustering`)."""
        if len(fa) != len(fabar):
            raise HarnessError(f"F_A has {len(fa)} rows but F_Abar has {len(fabar)}")
        if len(fa) == 0:
            raise HarnessError("no instance is left to cluster (screening kept none)")
        self.core_, self.env_ = (
            cluster_by_elbow(reduce_dims(x, self.pca_dims, self.random_state), self.k_range,
                             n_init=self.n_init, random_state=self.random_state)
            for x in (fa, fabar)
        )
        return self
