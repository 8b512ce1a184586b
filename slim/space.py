"""Stage 1 (paper Sec. 4.1): the attention space, a 2-D UMAP projection of the F_A of every instance.

At CelebA scale (160k x 2048) a plain UMAP takes many minutes, so by default above 20,000 instances the
features are first reduced by PCA to 50 dimensions and UMAP is fitted on a random sample of 5,000 (the
authors' sample size) and the rest are placed with ``UMAP.transform``; below that the raw F_A is projected.
Both choices are parameters; ``mode_`` reports what ran.

Determinism: UMAP's spectral initialisation calls ARPACK (``scipy.sparse.linalg.eigsh``), whose restart
vectors scipy draws from fresh OS entropy unless it is given an ``rng``; umap-learn gives none, so the
same seed gave a different embedding in every call. ``seeded_arpack`` supplies one for the duration of
the fit.
"""
from __future__ import annotations

import contextlib
import functools
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from harness.core.errors import HarnessError
from slim.threads import single_threaded

AUTO = "auto"
AUTO_PCA_DIMS = 50
AUTO_SAMPLE_ABOVE = 20_000
AUTO_SAMPLE_SIZE = 5_000
MIN_INSTANCES = 4  # UMAP's spectral initialisation needs a few more points than dimensions


class AttentionSpace:
    """UMAP of F_A to ``n_components`` dimensions (authors' settings: n_neighbors=5, min_dist=0).

    ``pca_dims``: "auto" (50 where the fit is sampled and the features have more), an int, or None (no PCA).
    ``fit_sample``: "auto" (5,000 when there are more than 20,000 instances), an int (fit on that many
    when there are more), or None (fit on all). The sample is drawn with ``random_state``.
    """

    def __init__(self, n_neighbors: int = 5, min_dist: float = 0.0, n_components: int = 2,
                 pca_dims: int | str | None = AUTO, fit_sample: int | str | None = AUTO,
                 random_state: int = 0) -> None:
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.n_components = n_components
        self.pca_dims = pca_dims
        self.fit_sample = fit_sample
        self.random_state = random_state

    def params(self) -> dict[str, Any]:
        """Every setting (for cache keys and records)."""
        return dict(n_neighbors=self.n_neighbors, min_dist=self.min_dist, n_components=self.n_components,
                    pca_dims=self.pca_dims, fit_sample=self.fit_sample, random_state=self.random_state)

    def resolve(self, n: int, dims: int) -> tuple[int | None, int | None]:
        """(PCA dimensions or None, UMAP fit sample size or None) for n instances of ``dims`` features.

        "auto" PCA reduces only where UMAP is fitted on a sample (large splits): both are there for speed,
        and below that size the raw F_A is projected, as the paper says and the authors' code does."""
        if self.fit_sample == AUTO:
            sample = AUTO_SAMPLE_SIZE if n > AUTO_SAMPLE_ABOVE else None
        else:
            sample = self.fit_sample
            if sample is not None and (not isinstance(sample, int) or sample < MIN_INSTANCES):
                raise HarnessError(
                    f"fit_sample must be 'auto', None or an int >= {MIN_INSTANCES}, got {sample!r}")
            if sample is not None and sample >= n:
                sample = None
        pca = (AUTO_PCA_DIMS if sample is not None else None) if self.pca_dims == AUTO else self.pca_dims
        if pca is not None and (not isinstance(pca, int) or pca < self.n_components):
            raise HarnessError(f"pca_dims must be 'auto', None or an int >= {self.n_components}, got {pca!r}")
        if pca is not None and pca >= min(n, dims):
            pca = None
        return pca, sample

    def fit_transform(self, fa: np.ndarray) -> np.ndarray:
        """(N, n_components) float32 coordinates; sets ``mode_`` (what ran, and how long it took).

        Runs single-threaded (:func:`slim.threads.single_threaded`): the same features give the same
        coordinates whatever the thread count."""
        with single_threaded():
            return self._fit_transform(fa)

    def _fit_transform(self, fa: np.ndarray) -> np.ndarray:
        fa = np.asarray(fa, dtype=np.float32)
        if fa.ndim != 2 or len(fa) < MIN_INSTANCES:
            raise HarnessError(f"the attention space needs (N >= {MIN_INSTANCES}, D) features, got "
                               f"{fa.shape}")
        if not np.all(np.isfinite(fa)):
            raise HarnessError("attention-weighted features F_A contain NaN or infinite values")
        started = time.monotonic()
        n = len(fa)
        pca, sample = self.resolve(n, fa.shape[1])
        rng = np.random.default_rng(self.random_state)
        fit_rows = np.sort(rng.choice(n, size=sample, replace=False)) if sample else np.arange(n)
        if pca is not None:
            from sklearn.decomposition import PCA

            reducer = PCA(n_components=pca, svd_solver="randomized", random_state=self.random_state)
            reducer.fit(fa[fit_rows])
            fa = reducer.transform(fa).astype(np.float32)
        umap = _make_umap(n_neighbors=min(self.n_neighbors, len(fit_rows) - 1), min_dist=self.min_dist,
                          n_components=self.n_components, random_state=self.random_state)
        embedding = np.empty((n, self.n_components), dtype=np.float32)
        with warnings.catch_warnings(), seeded_arpack(self.random_state):
            warnings.filterwarnings("ignore", message=".*n_jobs value.*")  # a seed makes UMAP single-threaded
            embedding[fit_rows] = umap.fit_transform(fa[fit_rows])
            rest = np.setdiff1d(np.arange(n), fit_rows)
            if len(rest):
                embedding[rest] = umap.transform(fa[rest])
        self.mode_ = {
            "pca_dims": pca, "fit_size": int(len(fit_rows)), "transformed": int(n - len(fit_rows)),
            "n_neighbors": self.n_neighbors, "min_dist": self.min_dist, "n_components": self.n_components,
            "seconds": round(time.monotonic() - started, 2),
        }
        return embedding

    def describe(self) -> str:
        """One line saying what ran, e.g. 'PCA 50 -> UMAP fit on 5000, 155000 transformed'."""
        m = self.mode_
        pca = f"PCA {m['pca_dims']} -> " if m["pca_dims"] else ""
        rest = f", {m['transformed']} transformed" if m["transformed"] else ""
        return f"{pca}UMAP fit on {m['fit_size']}{rest}"


@contextlib.contextmanager
def seeded_arpack(seed: int) -> Iterator[None]:
    """Within the block, ARPACK calls that pass no ``rng`` (umap-learn's spectral layout, and the
    ``SpectralEmbedding`` it uses to place disconnected components) draw their random vectors from a
    generator seeded with ``seed`` instead of from OS entropy."""
    import scipy.sparse.linalg
    from sklearn.manifold import _spectral_embedding

    original = scipy.sparse.linalg.eigsh

    @functools.wraps(original)
    def eigsh(*args: Any, rng: Any = None, **kwargs: Any):
        return original(*args, rng=np.random.default_rng(seed) if rng is None else rng, **kwargs)

    owners = [m for m in (scipy.sparse.linalg, _spectral_embedding) if getattr(m, "eigsh", None) is original]
    for module in owners:
        module.eigsh = eigsh
    try:
        yield
    finally:
        for module in owners:
            module.eigsh = original


def _make_umap(**kwargs: Any):
    import umap

    enable_umap_kernel_cache()
    return umap.UMAP(**kwargs)


_CACHE_ENABLED = False


def enable_umap_kernel_cache() -> None:
    """Turn on numba's on-disk cache for umap-learn's kernels.

    umap-learn compiles most of its numba kernels without caching, which costs 30-70 s in every new
    process on a small machine; with the cache on, that cost is paid once per installation. The
    compiled code is numba's own and results are unchanged.
    """
    global _CACHE_ENABLED
    if _CACHE_ENABLED:
        return
    import importlib

    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher

    modules = ("umap.umap_", "umap.layouts", "umap.spectral", "umap.utils", "umap.distances", "umap.sparse")
    for name in modules:
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if isinstance(obj, CPUDispatcher) and isinstance(getattr(obj, "_cache", None), NullCache):
                obj.enable_caching()
    _CACHE_ENABLED = True
