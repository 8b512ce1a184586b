"""Progress that reads well on a terminal and in a log file.

On a terminal this is tqdm. When stderr is not a terminal (a log file, a CI job, a sweep worker), tqdm's
carriage-return updates would pile up into one unreadable line, so :class:`LogProgress` writes whole lines:
one per item when the items are stages or epochs; for the steps of one stage (its batches), one when the
stage ends and at most one every :data:`STEP_LINE_SECONDS` while it runs. Each line says the time so far
and, from the pace so far, about how much is left.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

STEP_LINE_SECONDS = 60.0  # in a log, the most often a stage's steps write a line


def format_seconds(seconds: float) -> str:
    """``12.3s``, ``4m05s`` or ``2h07m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes = int(seconds // 60)
    return f"{minutes}m{int(seconds % 60):02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


class LogProgress:
    """A minimal tqdm stand-in for logs: lines ``desc i/n [elapsed, about t left] postfix``."""

    def __init__(self, iterable: Iterable[T], desc: str, total: int | None, steps: bool,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.iterable, self.desc, self.total, self.steps, self.clock = iterable, desc, total, steps, clock
        self.postfix = ""

    def __iter__(self) -> Iterator[T]:
        start = last_line = self.clock()
        done = written = 0
        for done, item in enumerate(self.iterable, 1):
            yield item
            now = self.clock()
            if not self.steps or done == self.total or now - last_line >= STEP_LINE_SECONDS:
                self._write(done, now - start)
                last_line, written = now, done
        if written != done:  # steps of unknown number: the stage's end
            self._write(done, self.clock() - start)

    def _write(self, done: int, elapsed: float) -> None:
        count = f"{done}/{self.total}" if self.total is not None else str(done)
        left = ""
        if self.total is not None and 0 < done < self.total:
            left = f", about {format_seconds(elapsed / done * (self.total - done))} left"
        print(f"{self.desc} {count} [{format_seconds(elapsed)}{left}] {self.postfix}".rstrip(),
              file=sys.stderr, flush=True)

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text


def progress(iterable: Iterable[T], desc: str, total: int | None = None, enabled: bool = True,
             steps: bool = False):
    """Iterate with a progress display; ``enabled=False`` iterates silently. ``steps``: the items are the
    steps of one stage (batches), not stages or epochs: in a log they write a line only now and then."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if not enabled:
        return tqdm(iterable, desc=desc, total=total, disable=True)
    if sys.stderr.isatty():
        return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)
    return LogProgress(iterable, desc, total, steps)
