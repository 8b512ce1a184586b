"""slim-harness: data, models, training, evaluation, sweeps, tables and the command line.

The Python API (:mod:`harness.api`): ``harness.run``, ``harness.evaluate``, ``harness.load_predictions``,
``harness.load_model``; importing the package imports no torch.
"""
from harness.api import evaluate, load_model, load_predictions, run

__all__ = ["evaluate", "load_model", "load_predictions", "run"]
