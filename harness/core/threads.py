"""One fixed CPU thread count for every run, so a run's numbers do not depend on the machine's cores.

On the CPU, float reductions in torch's convolutions and matmuls (oneDNN / MKL), in BLAS calls of numpy
and scikit-learn and in their OpenMP loops are split over the threads in use, and the order of the
partial sums changes with the count: one run gave different records with 1 and 2 threads. So every run
does its float work with :data:`RUN_THREADS` threads, whatever is available (parallelism comes from
running several runs at once, ``--jobs``); the count goes into the record's environment.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

RUN_THREADS = 1
# read by OpenMP / BLAS runtimes and numba when they load, so libraries first loaded inside a run obey too
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")  # numba: set_num_threads


@contextlib.contextmanager
def pinned_threads(threads: int = RUN_THREADS) -> Iterator[int]:
    """Within the block torch, BLAS, OpenMP (threadpoolctl) and numba use ``threads`` threads.

    The previous torch and numba counts and the environment are restored afterwards; yields the count.
    """
    import numba  # loaded first: numba reads NUMBA_NUM_THREADS once, and a later change of it breaks compiles
    import torch
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    saved_env = {name: os.environ.get(name) for name in THREAD_ENV}
    os.environ.update({name: str(threads) for name in THREAD_ENV})
    numba_previous = numba.get_num_threads()
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=threads):
            yield threads
    finally:
        torch.set_num_threads(previous)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        numba.set_num_threads(numba_previous)
