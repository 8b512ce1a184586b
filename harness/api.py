"""The Python API: a run, its metrics, its predictions and its weights, from a script or a notebook.

    import harness
    record = harness.run("waterbirds-synth", "erm", settings={"epochs": 2}, device="cpu")
    predictions = harness.load_predictions(record)   # per-example rows (harness.experiments.predictions.Predictions)

Importing :mod:`harness` stays light: each function imports the runner, the models or torch when called.
A record here is what :func:`run` returns, or the path of a record's JSON file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.core.records import read_record


class RunRecord(dict):
    """A run's record (the dict its JSON file holds) that also knows that file: ``path``."""

    def __init__(self, record: dict[str, Any], path: Path) -> None:
        super().__init__(record)
        self.path = Path(path)


Record = RunRecord | str | Path


def run(dataset: str, method: str, *, arch: str | None = None, seed: int = 0, scale: str = "tiny",
        data_seed: int = 0, data_root: str | Path | None = None, data_options: dict[str, str] | None = None,
        image_size: int | None = None, settings: dict[str, Any] | None = None, device: str = "auto",
        out: str | Path = "out", save_model: bool = False, show_progress: bool = True) -> RunRecord:
    """Train and evaluate one configuration as ``python -m harness run`` does (``settings``: its ``--set``
    overrides) and return its record, written to ``OUT/runs/<run_id>.json`` with its predictions beside it.
    The machine-wide cache is $SLIM_HARNESS_CACHE's (the command line's ``--cache-dir``)."""
    from harness.experiments.runner import execute, make_config  # imports torch: only when a run is asked for

    config = make_config(dataset=dataset, method=method, arch=arch, seed=seed, scale=scale, data_seed=data_seed,
                         data_root=None if data_root is None else str(data_root), data_options=data_options,
                         image_size=image_size, overrides=settings, device=device)
    path = execute(config, Path(out), show_progress=show_progress, save_model=save_model)
    return RunRecord(read_record(path), path)


def evaluate(record: Record) -> dict[str, dict[str, Any]]:
    """Every metric of ``record`` computed again from its saved predictions (as ``python -m harness evaluate``);
    a HarnessError if any differs from the record's."""
    from harness.experiments.predictions import recompute

    metrics, differing = recompute(_path(record))
    if differing:
        raise HarnessError(f"recomputed metrics differ from the record: {'; '.join(differing)}")
    return metrics


def load_predictions(record: Record):
    """The per-example predictions a run saved (:class:`harness.experiments.predictions.Predictions`;
    checksum checked)."""
    from harness.experiments.predictions import Predictions, load_run_record, output_path

    path = _path(record)
    return Predictions.load(output_path(path, load_run_record(path), "predictions"))


def load_model(record: Record):
    """The final network of a run saved with ``save_model`` (``--save-model``), in eval mode on the CPU: float
    images in [0, 1] -> logits. Under ``finetune=upper`` the run fed the head float16-cached stem outputs, so
    this network's logits (from images, in float32) can differ from the saved predictions in the last digits."""
    from harness.core.cache import load_tensors
    from harness.experiments.predictions import load_run_record, output_path
    from harness.models.network import create_model

    path = _path(record)
    state, meta = load_tensors(output_path(path, load_run_record(path), "model"))
    network = meta["network"]
    model = create_model(network["arch"], network["num_classes"], network["image_size"], width=network["width"],
                         depth=network["depth"], input_size=network["input_size"])
    model.load_state_dict(state)
    return model.eval()


def _path(record: Record) -> Path:
    """A record's file: the path given, or the file of a record :func:`run` returned."""
    if isinstance(record, RunRecord):
        return record.path
    if isinstance(record, dict):
        raise HarnessError("give the record's file (OUT/runs/<run_id>.json) or what harness.run returned, "
                           "not a plain dict")
    return Path(record)
