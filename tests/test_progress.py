"""Progress in a log (no terminal): whole lines, one per stage or epoch with the time left, never one per
step; the times here come from a fake clock, so every line is worked out by hand."""
from __future__ import annotations

import itertools

import pytest

from harness.core.progress import LogProgress, format_seconds, progress


def clock(step: float):
    """A clock that advances ``step`` seconds each time it is read (the first read is 0)."""
    ticks = itertools.count()
    return lambda: next(ticks) * step


def lines(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "\r" not in err
    return err.splitlines()


def test_one_line_per_epoch_with_the_time_left(capsys):
    """Four epochs of 10 s: after epoch 1, 10 s gone and 3 x 10 s left; the last line has nothing left."""
    bar = LogProgress(range(4), "train", 4, steps=False, clock=clock(10))
    for epoch in bar:
        bar.set_postfix_str(f"loss {1 / (epoch + 1):.3f}")
    assert lines(capsys) == ["train 1/4 [10.0s, about 30.0s left] loss 1.000",
                             "train 2/4 [20.0s, about 20.0s left] loss 0.500",
                             "train 3/4 [30.0s, about 10.0s left] loss 0.333",
                             "train 4/4 [40.0s] loss 0.250"]


def test_the_steps_of_a_stage_write_a_line_a_minute_and_at_the_end(capsys):
    """300 batches of 1 s: lines at 60, 120, 180 and 240 s (60 done, 240 left = 4 min at that pace) and at
    the stage's end, 5 lines for 300 steps."""
    list(LogProgress(range(300), "attention", 300, steps=True, clock=clock(1)))
    assert lines(capsys) == ["attention 60/300 [1m00s, about 4m00s left]",
                             "attention 120/300 [2m00s, about 3m00s left]",
                             "attention 180/300 [3m00s, about 2m00s left]",
                             "attention 240/300 [4m00s, about 1m00s left]",
                             "attention 300/300 [5m00s]"]


def test_steps_of_unknown_number_end_with_a_line(capsys):
    list(LogProgress(iter(range(5)), "decode", None, steps=True, clock=clock(1)))
    assert lines(capsys) == ["decode 5 [6.0s]"]  # the clock is read once more after the last step


def test_progress_writes_log_lines_when_stderr_is_no_terminal(capsys):
    assert isinstance(progress(range(3), "train"), LogProgress)
    assert list(progress(range(3), "train", enabled=False)) == [0, 1, 2]
    assert lines(capsys) == []


@pytest.mark.parametrize(("seconds", "text"), [(0.04, "0.0s"), (59.94, "59.9s"), (65, "1m05s"), (3599, "59m59s"),
                                               (7620, "2h07m")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text
