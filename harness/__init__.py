"""slim-harness: data, models, training, evaluation, sweeps, tables and the command line.

The Python API (:mod:`harness.api`): ``harness.run``, ``harness.evaluate``, ``harness.load_predictions``,
``harness.load_model``, loaded on first use, so importing the package imports no torch and no plug-in.

Importing the package pins the CPU kernels of torch, numpy, numba and faiss to one instruction-set level
(:mod:`harness.core.cpu`) before any of them loads, so every entry point (the CLI, sweep workers, cluster jobs,
a library user, the tests) computes the same bits on any machine of that level or better.
"""
import importlib

from harness.core.cpu import pin

pin()

__all__ = ["evaluate", "load_model", "load_predictions", "run"]


def __getattr__(name: str):
    """``harness.run`` and the rest of the API, imported when first asked for (PEP 562)."""
    if name in __all__:
        return getattr(importlib.import_module("harness.api"), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
