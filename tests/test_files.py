"""Files on disk: dead writers' temp files go on the next start, the image cache keeps one entry per
dataset copy under an LRU size cap, and everything is written with the user's umask."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import PIL.Image
import pytest
import torch
from conftest import images_folder

from harness.core.cache import save_tensors
from harness.core.errors import HarnessError
from harness.core.records import atomic_write_json, record_path
from harness.core.tempfiles import HOST, remove_stale_temps
from harness.data.image_cache import CAP_ENV, cached_images
from harness.data.real.waterbirds import Waterbirds
from harness.experiments.executors import LocalExecutor
from harness.experiments.runner import make_config, run_id
from harness.experiments.sweeps import run_sweep
from tests.fixtures_real import make_waterbirds_fixture

ROOT = Path(__file__).resolve().parents[1]


def dead_writers_temp(target: Path, size: int = 1000) -> Path:
    """What a writer killed with -9 leaves: it names a temp file beside ``target``, writes, and dies."""
    target.parent.mkdir(parents=True, exist_ok=True)
    code = ("import os, sys; from pathlib import Path; from harness.core.tempfiles import temp_path; "
            "p = temp_path(Path(sys.argv[1])); p.write_bytes(b'x' * int(sys.argv[2])); print(p, flush=True); "
            "os.kill(os.getpid(), 9)")
    done = subprocess.run([sys.executable, "-c", code, str(target), str(size)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == -9
    leftover = Path(done.stdout.strip())
    assert leftover.is_file() and leftover.parent == target.parent
    return leftover


def test_only_dead_writers_temp_files_are_removed(tmp_path, capsys):
    dead = dead_writers_temp(tmp_path / "a.json", 2_000_000)
    live = tmp_path / f".b.json.{HOST}-{os.getpid()}-00ff.tmp"  # this process: still writing
    other_host = tmp_path / ".c.json.elsewhere-1-00ff.tmp"  # cannot tell: left alone
    for path in (live, other_host):
        path.write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == [dead]
    assert live.exists() and other_host.exists() and not dead.exists()
    assert capsys.readouterr().err == f"removed 1 temp file(s) of dead writers (2.0 MB) in {tmp_path}\n"


def test_a_sweep_start_removes_what_killed_writers_left(tmp_path):
    out = tmp_path / "out"
    config = make_config(dataset="waterbirds-synth", method="erm", arch="resnet18",
                         overrides={"epochs": 1, "pretrained": "none", "width": 0.25}, device="cpu")
    leftovers = [dead_writers_temp(record_path(out, run_id(config))), dead_writers_temp(out / "sweep.json")]
    run_sweep([config], out, LocalExecutor(jobs=1, device="cpu", show_progress=False), log=lambda _: None,
              show_progress=False)
    assert not any(p.exists() for p in leftovers)
    assert not list(out.rglob("*.tmp"))


def test_image_cache_start_removes_a_killed_decoders_temp_file(tmp_path):
    root = tmp_path / "wb"
    make_waterbirds_fixture(root, cub=None)
    cache = tmp_path / "cache"
    cache.mkdir()
    leftover = dead_writers_temp(cache / "waterbirds-train-16px-0.images.npy")
    Waterbirds.read(root, image_size=16, cache_dir=cache, progress=False)
    assert not leftover.exists()


def test_two_copies_of_a_dataset_keep_their_own_cache(tmp_path, monkeypatch):
    first, second = tmp_path / "a" / "wb", tmp_path / "b" / "wb"
    make_waterbirds_fixture(first, cub=None)
    shutil.copytree(first.parent, second.parent, dirs_exist_ok=True)
    cache = tmp_path / "cache"
    expected = Waterbirds.read(first, image_size=16, cache_dir=cache, progress=False)
    Waterbirds.read(second, image_size=16, cache_dir=cache, progress=False)

    def no_decoding(*args, **kwargs):
        raise AssertionError("PIL.Image.open called: the first copy's cache was evicted")

    monkeypatch.setattr(PIL.Image, "open", no_decoding)
    again = Waterbirds.read(first, image_size=16, cache_dir=cache, progress=False)
    assert torch.equal(again.splits["train"].images, expected.splits["train"].images)
    assert len(list(cache.glob("*.npy"))) == 2 * 3  # (train, val, test) images for each copy


def test_image_cache_evicts_the_least_recently_used_beyond_its_cap(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    sets = {name: images_folder(tmp_path / name, 4) for name in "abc"}
    cached_images(sets["a"], image_size=8, cache_dir=cache, label="a", progress=False)
    (one,) = cache.glob("a-*.npy")
    size = one.stat().st_size  # 128-byte header + 4 x 3 x 8 x 8 bytes, the same for every set
    assert size == 128 + 4 * 3 * 8 * 8
    monkeypatch.setenv(CAP_ENV, str(2.5 * size / 1e9))  # room for two of the three
    cached_images(sets["b"], image_size=8, cache_dir=cache, label="b", progress=False)
    os.utime(one, ns=(0, 0))
    os.utime(next(cache.glob("b-*.npy")), ns=(0, 1))
    cached_images(sets["a"], image_size=8, cache_dir=cache, label="a", progress=False)  # a used: b is older
    assert capsys.readouterr().err == ""
    cached_images(sets["c"], image_size=8, cache_dir=cache, label="c", progress=False)
    assert sorted(p.name[0] for p in cache.glob("*.npy")) == ["a", "c"]
    err = capsys.readouterr().err
    assert err == (f"image cache {cache}: evicted 1 least recently used file(s) (0.0 MB) to stay under "
                   f"{2.5 * size / 1e9:g} GB (${CAP_ENV})\n")
    monkeypatch.setenv(CAP_ENV, "lots")
    with pytest.raises(HarnessError, match=f"{CAP_ENV}='lots': must be a number of gigabytes > 0"):
        cached_images(images_folder(tmp_path / "d", 1), image_size=8, cache_dir=cache, label="d", progress=False)


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_records_tensors_and_caches_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "runs" / "r.json", {"status": "ok"})
        save_tensors(tmp_path / "t.safetensors", {"w": torch.zeros(2)})
        cached_images(images_folder(tmp_path / "imgs", 1), image_size=8, cache_dir=tmp_path / "c", label="x",
                      progress=False)
    finally:
        os.umask(previous)
    written = [tmp_path / "runs" / "r.json", tmp_path / "t.safetensors", *(tmp_path / "c").glob("*.npy")]
    assert len(written) == 3
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
