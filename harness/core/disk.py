"""A full disk, said in one line: which file could not be written, the space it needed and what is free there.

The harness's writes (records, cache entries and their digests, image-cache arrays) run inside
:func:`writing`, which turns the operating system's "no space left" (ENOSPC) and "quota exceeded" (EDQUOT)
into :class:`DiskFull`. It is a HarnessError, so the command line prints it as one line; a sweep records it
as the run's failure where it still can and stops (harness.experiments.sweeps). The atomic writes leave no partial file.
"""
from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.core.errors import HarnessError

FULL = (errno.ENOSPC, errno.EDQUOT)
# safetensors' writer (Rust) reports the OS error in its message only, as "... (os error 28)"
_RUST_MESSAGES = tuple(f"(os error {code})" for code in FULL)


class DiskFull(HarnessError):
    """The disk (or quota) of a file the harness writes is full."""


def is_disk_full(exc: BaseException | None) -> bool:
    """True when ``exc``, or an exception it was raised from or while handling, says the disk is full."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, DiskFull) or (isinstance(exc, OSError) and exc.errno in FULL):
            return True
        if any(text in str(exc) for text in _RUST_MESSAGES):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def free_bytes(path: Path) -> int | None:
    """Free bytes on the filesystem that holds ``path`` (or its nearest existing folder); None if unknown."""
    for folder in (Path(path), *Path(path).parents):
        try:
            return shutil.disk_usage(folder).free
        except OSError:
            continue
    return None


def size_text(size: int) -> str:
    """Bytes as people read them: '16.4 kB', '2.9 MB', '12.0 GB'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if size >= scale:
            return f"{size / scale:,.1f} {unit}"
    return f"{size / 1e3:.1f} kB"


def disk_full(path: Path, needed: int | None = None) -> DiskFull:
    """The one-line error for a write of ``path`` (``needed`` bytes, if known) that found the disk full."""
    free = free_bytes(path)
    room = "unknown space" if free is None else size_text(free)
    want = "" if needed is None else f", {size_text(needed)} needed"
    return DiskFull(f"disk full: cannot write {path} ({room} free there{want}); "
                    "free some space and start the same command again")


def as_disk_full(exc: BaseException, fallback: Path) -> DiskFull | None:
    """The DiskFull that ``exc`` amounts to, or None when it is not about a full disk. An OSError raised by a
    write that went around :func:`writing` is named by its file, or else by ``fallback`` (the output folder)."""
    if not is_disk_full(exc):
        return None
    filename = None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, DiskFull):
            return current
        if isinstance(current, OSError) and current.filename and filename is None:
            filename = current.filename
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return disk_full(Path(filename or fallback))


@contextmanager
def writing(path: Path, needed: int | None = None) -> Iterator[None]:
    """Run a write of ``path``; a full disk becomes :class:`DiskFull` naming it, other errors pass."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        raise disk_full(path, needed) from exc
