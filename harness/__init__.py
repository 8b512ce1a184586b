"""slim-harness: data, models, training, evaluation, sweeps, tables and the command line.

Importing the package pins the CPU kernels of torch, numpy, numba and faiss to one instruction-set level
(:mod:`harness.cpu`) before any of them loads, so every entry point (the CLI, sweep workers, cluster jobs,
a library user, the tests) computes the same bits on any machine of that level or better.
"""
from harness.cpu import pin

pin()
