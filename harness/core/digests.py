"""Content digests of cache files, written beside them, so that a truncated or corrupted entry is found
before anything reads it.

A cache file ``F`` gets ``F.sha256``, a JSON object written atomically when ``F`` is made::

    {"algorithm": "sha256", "size": <bytes>, "chunk_bytes": <C>, "chunks": [<sha256 of each C-byte slice>]}

The file is hashed in slices so that a large memory-mapped array is checked by several threads at once
(hashlib releases the GIL while it hashes). :func:`problem` says what is wrong with a file, or None when it
matches its digest; :func:`warn_and_discard` reports an unsound entry in one line and removes it, so the
cache that found it builds it again.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness.core.records import atomic_write_json

ALGORITHM = "sha256"
SUFFIX = ".sha256"
CHUNK_BYTES = 16 * 2**20
MAX_THREADS = 4


def digest_path(path: Path) -> Path:
    """Where the digest of ``path`` lies: beside it, ``<name>.sha256``."""
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


def chunk_digests(path: Path, chunk_bytes: int) -> list[str]:
    """SHA-256 of each ``chunk_bytes`` slice of ``path`` (an empty file has one, of nothing), hashed by up to
    MAX_THREADS threads reading one open file (so every slice comes from the same file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        starts = range(0, max(size, 1), chunk_bytes)

        def one(start: int) -> str:
            return hashlib.sha256(os.pread(fd, chunk_bytes, start)).hexdigest()

        threads = max(1, min(MAX_THREADS, os.cpu_count() or 1, len(starts)))
        if threads == 1:
            return [one(start) for start in starts]
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(one, starts))
    finally:
        os.close(fd)


def write_digest(path: Path, *, contents: Path | None = None) -> None:
    """Write the digest of ``path``, hashing ``contents`` (default ``path``): a file still under its temporary
    name gets its digest before it is moved into place, so no reader finds it without one."""
    source = Path(contents or path)
    atomic_write_json(digest_path(path), {"algorithm": ALGORITHM, "size": source.stat().st_size,
                                          "chunk_bytes": CHUNK_BYTES, "chunks": chunk_digests(source, CHUNK_BYTES)})


def _read_digest(path: Path) -> dict[str, Any] | None:
    try:
        digest = json.loads(digest_path(path).read_text())
    except (OSError, ValueError):
        return None
    fields_ok = (isinstance(digest, dict) and digest.get("algorithm") == ALGORITHM
                 and isinstance(digest.get("size"), int) and isinstance(digest.get("chunk_bytes"), int)
                 and digest["chunk_bytes"] > 0 and isinstance(digest.get("chunks"), list))
    return digest if fields_ok else None


def problem(path: Path) -> str | None:
    """What is wrong with the cache file ``path`` (it exists), or None when it matches its digest."""
    if not digest_path(path).exists():
        return "it has no digest (written before digests were kept, or its writer was stopped)"
    digest = _read_digest(path)
    if digest is None:
        return f"its digest {digest_path(path).name} is unreadable"
    size = Path(path).stat().st_size
    if size != digest["size"]:
        return f"it holds {size:,} bytes, its digest says {digest['size']:,}"
    actual = chunk_digests(path, digest["chunk_bytes"])
    differ = sum(a != b for a, b in zip(actual, digest["chunks"], strict=False))
    if differ or len(actual) != len(digest["chunks"]):
        slices = f"{differ} of {len(actual)} slices of {digest['chunk_bytes']:,} bytes"
        return f"its content differs from its digest ({slices})"
    return None


def discard(path: Path) -> None:
    """Remove a cache file and its digest."""
    Path(path).unlink(missing_ok=True)
    digest_path(path).unlink(missing_ok=True)


def warn_and_discard(path: Path, reason: str) -> None:
    """One line on stderr naming the unsound entry and why, then remove it (its cache builds it again)."""
    print(f"warning: cache entry {path} is unsound, {reason}: removed, building it again", file=sys.stderr)
    discard(path)


def sound(path: Path) -> bool:
    """True when ``path`` exists and matches its digest; an unsound file is reported and removed."""
    if not Path(path).is_file():
        return False
    reason = problem(path)
    if reason is None:
        return True
    warn_and_discard(path, reason)
    return False
