"""A run's per-example predictions: what its metrics are computed from, saved beside its record.

``runs/<run_id>.predictions.npz`` (numpy, compressed; loads without pickle) holds one row per example of
every evaluation split: ``split`` (its name), ``index`` (the row in the split), ``label``, ``group``,
``prediction`` (the argmax of the logits), ``logits`` (N, classes; float32) and ``aiou`` (the example's
attention accuracy, NaN where its split has no masks), with what the metrics need beside the rows:
``group_names`` and, for datasets whose "Avg" is weighted (Waterbirds), ``train_group_proportions``.

The runner computes a record's ``metrics`` with :meth:`Predictions.metrics`; ``python -m harness evaluate
RECORD`` (:func:`recompute`) computes them again from the saved file and compares them with the record's.
"""
from __future__ import annotations

import hashlib
import io
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.attention.accuracy import aiou_summary, attention_scores
from harness.core.errors import HarnessError
from harness.core.records import atomic_write_bytes, read_record
from harness.data.containers import Benchmark
from harness.engine.evaluation import group_metrics, predict_logits, train_weights

ROWS = ("split", "index", "label", "group", "prediction", "logits", "aiou")  # one entry per example each


@dataclass
class Predictions:
    """Per-example outputs of a model on the evaluation splits (row i of every array is one example)."""

    split: np.ndarray  # str (N,)
    index: np.ndarray  # int64 (N,)
    label: np.ndarray  # int64 (N,)
    group: np.ndarray  # int64 (N,)
    prediction: np.ndarray  # int64 (N,)
    logits: np.ndarray  # float32 (N, classes)
    aiou: np.ndarray  # float64 (N,), NaN without masks
    group_names: list[str]
    train_group_proportions: np.ndarray | None = None  # the weights of weighted_avg_acc, if the dataset has one

    def split_names(self) -> list[str]:
        """The splits in the order of their rows."""
        return list(dict.fromkeys(self.split.tolist()))

    def metrics(self) -> dict[str, dict[str, Any]]:
        """A record's ``metrics``: per split, worst-group, average and per-group accuracy (paper eq. 2),
        the weighted average where the dataset has one, and AIoU attention accuracy where it has masks."""
        out = {}
        for name in self.split_names():
            rows = self.split == name
            metrics = group_metrics(self.prediction[rows], self.label[rows], self.group[rows], self.group_names,
                                    self.train_group_proportions)
            if not np.isnan(self.aiou[rows]).all():
                metrics.update(aiou_summary(self.aiou[rows], self.group[rows], self.group_names))
            out[name] = metrics
        return out

    def save(self, path: Path) -> None:
        """Write the compressed npz file atomically (a reader never sees half of it)."""
        arrays = {name: getattr(self, name) for name in ROWS}
        arrays["group_names"] = np.array(self.group_names, dtype=str)
        if self.train_group_proportions is not None:
            arrays["train_group_proportions"] = self.train_group_proportions
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> Predictions:
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:  # missing, truncated or not an npz file
            raise HarnessError(f"cannot read predictions {path}: {exc}") from None
        missing = [name for name in (*ROWS, "group_names") if name not in arrays]
        if missing:
            raise HarnessError(f"predictions {path} lack {', '.join(missing)}")
        return cls(**{name: arrays[name] for name in ROWS}, group_names=arrays["group_names"].tolist(),
                   train_group_proportions=arrays.get("train_group_proportions"))


def collect_predictions(model: nn.Module, benchmark: Benchmark, device: torch.device, *,
                        show_progress: bool = False) -> Predictions:
    """``model``'s predictions on every evaluation split of ``benchmark``, with per-example AIoU on the
    splits that have masks (a progress line per attention pass with ``show_progress``)."""
    names = benchmark.eval_splits
    logits = {name: predict_logits(model, benchmark.splits[name], device) for name in names}
    masked = [name for name in names if benchmark.splits[name].masks is not None]
    scores = attention_scores(model, benchmark, device, splits=masked, show_progress=show_progress) if masked else {}
    splits = [benchmark.splits[name] for name in names]
    return Predictions(
        split=np.concatenate([np.full(len(s), name) for name, s in zip(names, splits, strict=True)]),
        index=np.concatenate([np.arange(len(s), dtype=np.int64) for s in splits]),
        label=torch.cat([s.labels for s in splits]).numpy(),
        group=torch.cat([s.groups for s in splits]).numpy(),
        prediction=torch.cat([logits[name].argmax(1) for name in names]).numpy(),
        logits=torch.cat([logits[name] for name in names]).numpy(),
        aiou=np.concatenate([scores.get(name, np.full(len(s), np.nan)) for name, s in zip(names, splits, strict=True)]),
        group_names=list(benchmark.group_names),
        train_group_proportions=train_weights(benchmark),
    )


def output_reference(path: Path) -> dict[str, str]:
    """How a record names a file it saved beside itself: the file's name and its sha256."""
    return {"file": Path(path).name, "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}


def output_path(record_path: Path, record: dict[str, Any], name: str) -> Path:
    """The file of output ``name`` ("predictions", "model") a record references, its checksum verified."""
    reference = (record.get("outputs") or {}).get(name)
    if reference is None:
        raise HarnessError(f"record {record_path} has no saved {name} (a run from before they were saved, "
                           f"a failed run{', or one without --save-model' if name == 'model' else ''})")
    path = Path(record_path).parent / reference["file"]
    if not path.is_file():
        raise HarnessError(f"{name} file {path} of record {record_path} not found")
    if output_reference(path)["sha256"] != reference["sha256"]:
        raise HarnessError(f"{name} file {path} is not the one record {record_path} saved (sha256 differs)")
    return path


def load_run_record(path: Path) -> dict[str, Any]:
    """The run record at ``path``, or a one-line HarnessError saying why there is none."""
    if not Path(path).is_file():
        raise HarnessError(f"run record {path} not found")
    record = read_record(path)
    if record is None or "metrics" not in record:
        raise HarnessError(f"{path} is not a run record")
    return record


def recompute(record_path: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Every metric of the record at ``record_path`` computed again from its saved predictions, and the
    fields where they differ from the record's (empty: all equal)."""
    record = load_run_record(record_path)
    metrics = Predictions.load(output_path(record_path, record, "predictions")).metrics()
    return metrics, differences(metrics, record["metrics"])


def differences(ours: Any, theirs: Any, where: str = "metrics") -> list[str]:
    """The paths of the fields where two metric trees differ (NaN equals NaN; a missing field differs)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return [found for key in dict.fromkeys([*ours, *theirs])
                for found in differences(ours.get(key), theirs.get(key), f"{where}.{key}")]
    both_nan = isinstance(ours, float) and isinstance(theirs, float) and math.isnan(ours) and math.isnan(theirs)
    return [] if ours == theirs or both_nan else [f"{where}: {ours!r} recomputed, {theirs!r} in the record"]
