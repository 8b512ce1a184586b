"""The code version a record was made with, so that runs of two versions are never averaged unseen.

Every record carries ``code_version`` (:func:`code_version`)::

    {"source_digest": sha256 over the source files of the harness's packages, "files": how many,
     "git_commit": the checkout's commit, or null}

The source digest is the version's identity: it hashes every ``.py`` and ``.toml`` file of the packages
(harness, slim, baselines, simulated_oracle) by relative path and content, so it works the same from a git
checkout, an sdist or a wheel, and it sees uncommitted edits, which a commit id does not. The git commit,
where the packages lie in a git checkout, is there for people. Records made before the field existed have
an unknown version (None). A sweep resumed on another version says so (harness.experiments.sweeps), and tables refuse
a cell whose runs come from more than one version unless told to mix them (harness.reporting.tables).
"""
from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.core.records import git_commit

PACKAGES = ("harness", "slim", "baselines", "simulated_oracle")
SOURCE_SUFFIXES = (".py", ".toml")
UNKNOWN = "unknown version"


def package_folders() -> list[Path]:
    """The folders the packages are imported from (found without importing them)."""
    folders = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            folders.extend(Path(location) for location in spec.submodule_search_locations)
    return folders


def source_files(folders: Iterable[Path]) -> list[tuple[str, Path]]:
    """(name relative to the folders' parent, path) of every source file under ``folders``, sorted by name;
    compiled files and caches are left out."""
    files = []
    for folder in folders:
        for path in folder.rglob("*"):
            if path.suffix in SOURCE_SUFFIXES and path.is_file() and "__pycache__" not in path.parts:
                files.append((path.relative_to(folder.parent).as_posix(), path))
    return sorted(files)


def source_digest(folders: Iterable[Path]) -> tuple[str, int]:
    """SHA-256 over the source files of ``folders`` (each as its relative name, size and bytes) and their
    count."""
    digest = hashlib.sha256()
    files = source_files(folders)
    for name, path in files:
        data = path.read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest(), len(files)


@lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """What a record says about the code that made it (computed once per process)."""
    digest, count = source_digest(package_folders())
    return {"source_digest": digest, "files": count, "git_commit": git_commit()}


def current_version() -> str:
    return code_version()["source_digest"]


def record_version(record: dict[str, Any]) -> str | None:
    """The source digest a record was made with; None for records made before versions were recorded."""
    version = record.get("code_version")
    return version.get("source_digest") if isinstance(version, dict) else None


def describe(version: str | None) -> str:
    """A version as people read it: the digest's first 12 characters, or 'unknown version'."""
    return UNKNOWN if version is None else f"source {version[:12]}"
