"""slim-harness: data, models, training, evaluation, sweeps, tables and the command line.

The Python API (:mod:`harness.api`): ``harness.run``, ``harness.evaluate``, ``harness.load_predictions``,
``harness.load_model``; importing the package imports no torch.

Importing the package pins the CPU kernels of torch, numpy, numba and faiss to one instruction-set level
(:mod:`harness.cpu`) before any of them loads, so every entry point (the CLI, sweep workers, cluster jobs,
a library user, the tests) computes the same bits on any machine of that level or better.
"""
from harness.cpu import pin

pin()

from harness.api import evaluate, load_model, load_predictions, run  # noqa: E402  (after the pin)

__all__ = ["evaluate", "load_model", "load_predictions", "run"]
