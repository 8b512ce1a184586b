"""A full output disk: one line naming the file and the space, no partial record, and a sweep that records
the failure where it can and stops cleanly. On a real small filesystem (tmpfs, when the tests may mount
one) and with the write made to fail (everywhere)."""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
from collections import namedtuple
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from harness import cli
from harness.core import disk
from harness.core.disk import DiskFull, writing
from harness.core.errors import HarnessError
from harness.core.records import record_path
from harness.data.image_cache import cached_images
from harness.experiments import executors, runner
from harness.experiments.executors import LocalExecutor
from harness.experiments.sweep_file import expand, parse_sweep
from harness.experiments.sweeps import run_sweep
from tests.test_sweeps import FAST, grid, toml_text

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def small_disk(tmp_path):
    """Mount a tmpfs of the given size under tmp_path (root only; else the test is skipped)."""
    mounted = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True, text=True) if os.geteuid() == 0 else None
        if done is None or done.returncode != 0:
            pytest.skip("cannot mount a small tmpfs here (needs root)")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:  # lazily: a failing test may still hold a file open there
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def fill(folder: Path, leave: int) -> Path:
    """Take all but ``leave`` bytes of the filesystem of ``folder`` with one file."""
    filler = folder / "filler"
    with open(filler, "wb") as handle:
        os.posix_fallocate(handle.fileno(), 0, shutil.disk_usage(folder).free - leave)
    return filler


def leftovers(folder: Path) -> list[Path]:
    """Partial files: temp files of atomic writes, and records that are not whole JSON."""
    broken = []
    for path in (folder / "runs").glob("*.json") if (folder / "runs").is_dir() else []:
        try:
            json.loads(path.read_text())
        except ValueError:
            broken.append(path)
    return [*folder.rglob("*.tmp"), *broken]


def test_writing_turns_a_full_disk_into_one_line_naming_file_and_space(tmp_path, monkeypatch):
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda path: Usage(10**9, 10**9 - 2_500_000, 2_500_000))
    target = tmp_path / "runs" / "abc.json"
    with pytest.raises(DiskFull) as raised, writing(target, 12_000_000):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert str(raised.value) == (f"disk full: cannot write {target} (2.5 MB free there, 12.0 MB needed); free some "
                                 "space and start the same command again")
    assert isinstance(raised.value, HarnessError)
    with pytest.raises(PermissionError), writing(target):  # other errors pass unchanged
        raise PermissionError(errno.EACCES, "denied")


def test_a_run_on_a_full_disk_ends_in_one_line_and_leaves_no_record(small_disk, capsys):
    out = small_disk("1m")
    fill(out, leave=0)
    argv = ["run", "--dataset", "waterbirds-synth", "--method", "erm", "--arch", "resnet18", "--set", "epochs=1",
            "--set", "pretrained=none", "--set", "width=0.25", "--device", "cpu", "--quiet", "--out", str(out)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    # the first file an ERM run writes is the preset it draws or the reference model it shares (in the cache),
    # then its predictions and its record
    assert re.fullmatch(rf"error: disk full: cannot write {out}/(cache/(benchmark|reference)/\w{{16}}\.safetensors"
                        r"|runs/\w{16}\.(predictions\.npz|json)) \(0\.0 kB free there, \d+\.\d [kM]B needed\); "
                        r"free some space and start the same command again\n", err)
    assert not list(out.glob("runs/*.json")) and not leftovers(out)


def test_an_image_cache_on_a_full_disk_says_so_before_decoding(small_disk, tmp_path, monkeypatch):
    cache = small_disk("1m")
    sources = tmp_path / "imgs"
    sources.mkdir()
    paths = []
    for i in range(8):
        paths.append(sources / f"{i}.png")
        PIL.Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(paths[-1])
    monkeypatch.setattr(PIL.Image, "open", lambda *a, **k: pytest.fail("decoded into a full disk"))
    with pytest.raises(DiskFull, match=r"disk full: cannot write .*/x-256px-\w+-\w+\.images\.npy \(1\.0 MB free "
                                       r"there, 1\.6 MB needed\)"):
        cached_images(paths, image_size=256, cache_dir=cache, label="x", progress=False)  # 8 x 3 x 256 x 256
    assert not list(cache.iterdir())


def test_a_sweep_on_a_filling_disk_records_the_failure_and_stops_cleanly(small_disk, tmp_path, capsys):
    """ERM on the frozen-stem protocol stores each dataset as drawn and caches its stem: with the disk filled
    after the first dataset, the second one's data or stem does not fit, its failed record does."""
    out = small_disk("40m")  # room for both datasets once the filler is gone
    upper = {**FAST, "finetune": "upper"}
    sweep_file = tmp_path / "grid.toml"
    sweep_file.write_text(toml_text(grid(seeds=[0], overrides=upper)))
    argv = ["sweep", str(sweep_file), "--out", str(out), "--device", "cpu", "--quiet"]
    assert cli.main(argv) == 0
    both = grid(datasets=["waterbirds-synth", "isic-synth"], seeds=[0, 1], overrides=upper)
    sweep_file.write_text(toml_text(both))
    filler = fill(out, leave=64 * 1024)  # room for the sweep's small files, not for another stem
    capsys.readouterr()
    assert cli.main(argv) == 2
    printed = capsys.readouterr()
    configs = expand(parse_sweep(both), device="cpu")
    assert [(c["dataset"], c["seed"]) for c in configs] == [
        ("waterbirds-synth", 0), ("isic-synth", 0), ("waterbirds-synth", 1), ("isic-synth", 1)]
    records = [record_path(out, runner.run_id(c)) for c in configs]
    assert re.fullmatch(rf"error: t stopped, 2 run\(s\) not started: disk full: cannot write {out}/cache/"
                        r"(stem|benchmark)/\w{16}\.safetensors \(\d+\.\d kB free there, \d\.\d MB needed\); "
                        r"free some space and start the same command again\n", printed.err)
    assert "Traceback" not in printed.out + printed.err
    failed = json.loads(records[1].read_text())  # the failure fitted: recorded
    assert failed["status"] == "failed" and failed["error"].startswith("DiskFull: disk full: cannot write")
    assert not any(p.exists() for p in records[2:]) and not leftovers(out)
    filler.unlink()
    assert cli.main(argv) == 0  # room again: the sweep resumes and finishes
    assert "1 finished earlier (skipped), 1 failed earlier (retried), 2 new" in capsys.readouterr().out
    assert all(json.loads(p.read_text())["status"] == "ok" for p in records)


def test_a_sweep_whose_failed_record_cannot_be_written_stops_cleanly(tmp_path, monkeypatch):
    """Without a small filesystem: every record write finds the disk full, the failed record's too."""
    def disk_is_full(path: Path, record: dict) -> None:
        with writing(path, 10_000):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(runner, "atomic_write_json", disk_is_full)
    monkeypatch.setattr(executors, "atomic_write_json", disk_is_full)
    configs = expand(parse_sweep(grid(seeds=[0, 1])), device="cpu")
    out = tmp_path / "out"
    lines = []
    with pytest.raises(DiskFull) as raised:
        run_sweep(configs, out, LocalExecutor(jobs=1, device="cpu", show_progress=False), log=lines.append,
                  show_progress=False)
    first = record_path(out, runner.run_id(configs[0]))
    assert str(raised.value).startswith(f"sweep stopped, 1 run(s) not started: disk full: cannot write {first} (")
    assert any(line.startswith("  failed ") and "(its failed record: disk full: cannot write" in line
               for line in lines)
    assert not list((out / "runs").glob("*.json")) and not leftovers(out)
