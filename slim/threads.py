"""One thread for SLIM's numeric stages, so the curation does not depend on the machine's thread count.

Floating-point sums over threads change with their number: OpenBLAS splits matrix products (PCA, k-means'
distances) by thread, numba's parallel loops (UMAP's nearest-neighbour descent) split work by thread, and
OpenMP reductions likewise. A tie broken differently then moves a k-means centre or a UMAP point, and the
curated subset changes. Inside :func:`single_threaded` every such pool runs one thread; the stages after
the attention pass are cheap next to training, so the cost is small.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from threadpoolctl import threadpool_limits


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """BLAS, OpenMP and numba limited to one thread within the block; the previous limits come back after."""
    import numba

    before = numba.get_num_threads()
    with threadpool_limits(1):
        numba.set_num_threads(1)
        try:
            yield
        finally:
            numba.set_num_threads(before)
