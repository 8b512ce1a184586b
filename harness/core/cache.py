"""Content-keyed artifact cache shared by runs, sweeps and workers.

An artifact (a reference model, a CAM pass, a JTT stage-1 model, ...) is stored under
``root/<kind>/<hash of its key>.<suffix>`` with its key written beside it as JSON and its content digest
as ``<file>.sha256`` (harness.core.digests). Creation happens under an exclusive file lock, so two workers that
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

from harness.core import digests
from harness.core.disk import writing
from harness.core.records import atomic_write_json, config_hash
from harness.core.tempfiles import file_mode, remove_stale_temps, temp_path


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

    def get_or_create_all(self, items: list[tuple[str, dict[str, Any], str, Callable[[Path], None]]]) -> list[Path]:
        """Paths of several artifacts (``(kind, key, suffix, create)`` each), created as ``get_or_create`` does,
        but sharing the work: an artifact another process is creating is skipped while one is free, so two
        workers needing the same list create different ones at the same time instead of queueing."""
        paths = [self.path(kind, key, suffix) for kind, key, suffix, _ in items]
        waiting = [i for i, path in enumerate(paths) if not (path.is_file() and digests.problem(path) is None)]
        while waiting:
            busy = []
            for i in waiting:
                with file_lock(paths[i].with_suffix(".lock"), wait=False) as held:
                    if not held:
                        busy.append(i)
                    elif not digests.sound(paths[i]):
                        remove_stale_temps(paths[i].parent)
                        items[i][3](paths[i])
                        digests.write_digest(paths[i])
                        atomic_write_json(paths[i].with_suffix(".key.json"), items[i][1])
            if busy:  # every free one is done: wait for the first another process holds, then look again
                self.get_or_create(*items[busy[0]])
            waiting = [i for i in busy if not digests.sound(paths[i])]
        return paths


@contextmanager
def file_lock(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """An exclusive lock on ``path`` for the block; yields whether it is held (``wait=False``: False at once
    when another process holds it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
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
