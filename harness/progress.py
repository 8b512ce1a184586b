"""Progress bars that read well on a terminal and in a log file.

On a terminal this is tqdm. When stderr is not a terminal (a log file, a CI job, a sweep worker),
carriage-return updates would pile up into one unreadable line, so each step prints its own line instead.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


class LineProgress:
    """A minimal tqdm stand-in writing one line per update: ``desc i/n [elapsed] postfix``."""

    def __init__(self, iterable: Iterable[T], desc: str, total: int | None) -> None:
        self.iterable, self.desc, self.total = iterable, desc, total
        self.postfix = ""
        self.start = time.monotonic()

    def __iter__(self) -> Iterator[T]:
        for i, item in enumerate(self.iterable, 1):
            yield item
            total = f"/{self.total}" if self.total is not None else ""
            print(f"{self.desc} {i}{total} [{time.monotonic() - self.start:.1f}s] {self.postfix}",
                  file=sys.stderr, flush=True)

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text


def progress(iterable: Iterable[T], desc: str, total: int | None = None, enabled: bool = True):
    """Iterate with a progress display; ``enabled=False`` iterates silently."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if not enabled:
        return tqdm(iterable, desc=desc, total=total, disable=True)
    if sys.stderr.isatty():
        return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)
    return LineProgress(iterable, desc, total)
