"""Content-keyed artifact cache shared by runs, sweeps and workers.

An artifact (a reference model, a CAM pass, a JTT stage-1 model, ...) is stored under
``root/<kind>/<hash of its key>.<suffix>`` with its key written beside it as JSON and its content digest
as ``<file>.sha256`` (harness.digests). Creation happens under an exclusive file lock, so two workers that
need the same artifact compute it once, and every file is written atomically, so an interrupted run never
leaves a half-written artifact that looks finished. Every read checks the digest first: an entry that is
truncated, corrupted or has no digest is reported in one line, removed and made again.
"""
from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from harness import digests
from harness.disk import writing
from harness.records import atomic_write_json, config_hash
from harness.tempfiles import file_mode, remove_stale_temps, temp_path


def default_cache_root() -> Path:
    """Machine-wide cache (pretrained stand-in weights): $SLIM_HARNESS_CACHE or ~/.cache/slim-harness."""
    return Path(os.environ.get("SLIM_HARNESS_CACHE", Path.home() / ".cache" / "slim-harness"))


class ArtifactCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, kind: str, key: dict[str, Any], suffix: str) -> Path:
        return self.root / kind / f"{config_hash(key)}.{suffix}"

    def get_or_create(self, kind: str, key: dict[str, Any], suffix: str, create: Callable[[Path], None]) -> Path:
        """Path of the artifact for ``key``, its content checked against its digest; ``create(path)`` (which
        must write it) is called if it is absent or unsound."""
        path = self.path(kind, key, suffix)
        if path.is_file() and digests.problem(path) is None:
            return path
        with file_lock(path.with_suffix(".lock")):  # a writer may be between the file and its digest
            if not digests.sound(path):
                remove_stale_temps(path.parent)
                create(path)
                digests.write_digest(path)
                atomic_write_json(path.with_suffix(".key.json"), key)
        return path


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> None:
    """Atomically save tensors (and JSON metadata) as safetensors: loading never unpickles anything."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    try:
        with writing(path, sum(v.numel() * v.element_size() for v in contiguous.values())):
            save_file(contiguous, str(tmp), metadata={"meta": json.dumps(meta or {})})
        os.chmod(tmp, file_mode())  # safetensors writes 0600; a shared folder needs the user's umask
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("meta", "{}"))
    return load_file(str(path)), meta
