"""Run records: one JSON file per run, named by the hash of its configuration.

A record (schema 1) holds::

    run_id, created, status ("ok" | "failed"), error (message or null)
    dataset, method, arch, seed, scale
    config            every setting of the run (hparams included); run_id hashes it
    metrics           {split: {worst_group_acc, avg_acc, group_acc {name: acc},
                               group_count {name: n}, [weighted_avg_acc], [aiou_worst, aiou_avg]}}
                      accuracies are fractions; splits are val, test and extra test variants
    labels_used       {train_group_labels: bool, val_group_labels: bool,
                       attention_queries: int, attention_split: "train" | "val" | null}
    cost              {annotation_fraction, annotation_seconds, extra_training_fraction, seconds}
    model_selection   {criterion, uses_val_group_labels, epoch}
    details           method-specific facts (SLIM's quotas and cluster counts, JTT's error set, ...)
    environment       versions, device, platform, git commit, and ``cpu``: the CPU model, the instruction-set
                      level its kernels are pinned to and what each library reports it runs (harness.core.cpu)
    code_version      {source_digest, files, git_commit}: the code that made it (harness.core.versions);
                      absent from records made before it existed (an unknown version)

Records are written atomically (temp file + rename, harness.core.tempfiles) so a half-written file is never
read; they get the user's umask like any file.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from harness.core import cpu
from harness.core.disk import writing
from harness.core.errors import HarnessError
from harness.core.tempfiles import temp_path

SCHEMA_VERSION = 1


def config_hash(config: dict[str, Any]) -> str:
    """Stable short hash of a JSON-serialisable configuration (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either nothing or the whole file (a full disk is a
    one-line :class:`harness.core.disk.DiskFull`)."""
    path = Path(path)
    tmp = temp_path(path)
    with writing(path, len(data)):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the user's umask applies
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n").encode())


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def environment(device: str) -> dict[str, Any]:
    """Versions and machine facts written into every record."""
    import numpy
    import sklearn
    import timm
    import torch

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
        "sklearn": sklearn.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "device": device,
        "git_commit": git_commit(),
        "cpu": cpu.report(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def record_path(out_dir: Path, run_id: str) -> Path:
    return Path(out_dir) / "runs" / f"{run_id}.json"


def read_record(path: Path) -> dict[str, Any] | None:
    """The record in ``path``; None when the file holds JSON that is not an object (not a run record)."""
    try:
        record = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise HarnessError(f"run record {path} is not valid JSON: {exc}") from None
    return record if isinstance(record, dict) else None


def load_records(runs: Path, run_ids: Iterable[str] | None = None, *,
                 on_skip: Callable[[Path, str], None] | None = None) -> list[dict[str, Any]]:
    """The records in the folder ``runs`` (a sweep's ``OUT/runs``): every one (sorted by file name; temp
    files are ignored) or those of ``run_ids`` that exist, in that order. A file that is not a JSON object
    is skipped (``on_skip`` is told the path and what it holds); invalid JSON is a HarnessError."""
    runs = Path(runs)
    if run_ids is None:
        paths = sorted(runs.glob("*.json")) if runs.is_dir() else []
    else:
        paths = [p for p in (runs / f"{rid}.json" for rid in run_ids) if p.is_file()]
    records = []
    for path in paths:
        record = read_record(path)
        if record is not None:
            records.append(record)
        elif on_skip is not None:
            value = json.loads(path.read_text())
            on_skip(path, "null" if value is None else "an array" if isinstance(value, list) else "a single value")
    return records
