"""Cache entries carry a content digest checked on every read: a truncated, emptied or corrupted entry (or
one without a digest) is reported in one line, removed and rebuilt, and the run's numbers do not move."""
from __future__ import annotations

import json
from pathlib import Path

import PIL.Image
import pytest
import torch
from conftest import images_folder

from harness.core import digests
from harness.core.cache import ArtifactCache, load_tensors, save_tensors
from harness.data.image_cache import cached_images
from harness.experiments.runner import execute, make_config

MODES = ("flip", "truncate", "empty")


def corrupt(path: Path, how: str) -> None:
    """Damage a file as a failing disk or a killed copy would: one byte flipped in its middle, its second
    half cut off, or nothing left."""
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0xFF
    elif how == "truncate":
        del data[len(data) // 2:]
    else:
        data.clear()
    path.write_bytes(bytes(data))


def warnings_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning: cache entry")]


@pytest.mark.parametrize("how", MODES)
def test_an_unsound_artifact_is_reported_removed_and_rebuilt(tmp_path, capsys, how):
    cache = ArtifactCache(tmp_path)
    made = []

    def create(path: Path) -> None:
        made.append(path)
        save_tensors(path, {"w": torch.arange(1000, dtype=torch.float32)}, meta={"n": 1})

    path = cache.get_or_create("reference", {"k": 1}, "safetensors", create)
    assert json.loads(digests.digest_path(path).read_text())["size"] == path.stat().st_size
    assert cache.get_or_create("reference", {"k": 1}, "safetensors", create) == path and len(made) == 1
    corrupt(path, how)
    assert cache.get_or_create("reference", {"k": 1}, "safetensors", create) == path
    assert len(made) == 2
    tensors, meta = load_tensors(path)
    assert torch.equal(tensors["w"], torch.arange(1000, dtype=torch.float32)) and meta == {"n": 1}
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"warning: cache entry {path} is unsound, ")
    assert line.endswith(": removed, building it again")
    expected = {"flip": "its content differs from its digest (1 of 1 slices",
                "truncate": f"it holds {path.stat().st_size // 2:,} bytes",
                "empty": "it holds 0 bytes"}[how]
    assert expected in line


def test_an_entry_without_a_digest_is_rebuilt(tmp_path, capsys):
    """Entries written before digests were kept cannot be checked: they are made again, once."""
    cache = ArtifactCache(tmp_path)
    made = []

    def create(path: Path) -> None:
        made.append(path)
        save_tensors(path, {"w": torch.ones(3)})

    path = cache.get_or_create("features", {"k": 2}, "safetensors", create)
    digests.digest_path(path).unlink()
    cache.get_or_create("features", {"k": 2}, "safetensors", create)
    cache.get_or_create("features", {"k": 2}, "safetensors", create)
    assert len(made) == 2
    assert warnings_of(capsys.readouterr().err) == [
        f"warning: cache entry {path} is unsound, it has no digest (written before digests were kept, or its "
        "writer was stopped): removed, building it again"]


def test_digests_of_a_file_cut_into_slices_find_the_slice_that_changed(tmp_path, monkeypatch):
    monkeypatch.setattr(digests, "CHUNK_BYTES", 1000)
    path = tmp_path / "a.bin"
    path.write_bytes(bytes(range(256)) * 20)  # 5120 bytes: 6 slices
    digests.write_digest(path)
    assert len(json.loads(digests.digest_path(path).read_text())["chunks"]) == 6
    assert digests.problem(path) is None
    data = bytearray(path.read_bytes())
    data[4321] ^= 1
    path.write_bytes(bytes(data))
    assert digests.problem(path) == "its content differs from its digest (1 of 6 slices of 1,000 bytes)"


@pytest.mark.parametrize("how", MODES)
def test_an_unsound_image_cache_array_is_decoded_again(tmp_path, capsys, monkeypatch, how):
    paths = images_folder(tmp_path / "imgs", 6)
    cache = tmp_path / "cache"
    first = cached_images(paths, image_size=8, cache_dir=cache, label="x", progress=False).clone()
    (array,) = cache.glob("*.npy")
    assert digests.problem(array) is None
    corrupt(array, how)
    opened = []
    original = PIL.Image.open
    monkeypatch.setattr(PIL.Image, "open", lambda p, *a, **k: opened.append(p) or original(p, *a, **k))
    again = cached_images(paths, image_size=8, cache_dir=cache, label="x", progress=False)
    assert torch.equal(again, first)  # not the flipped pixels
    assert len(opened) == len(paths)  # decoded again
    (line,) = warnings_of(capsys.readouterr().err)
    assert line.startswith(f"warning: cache entry {array} is unsound")
    opened.clear()
    cached_images(paths, image_size=8, cache_dir=cache, label="x", progress=False)
    assert opened == [] and warnings_of(capsys.readouterr().err) == []


# ---- a whole run: every kind of entry damaged, the same record -------------------------------------------
# SLIM_Val on the upper protocol reads all five kinds the issue names: the frozen stem (one per split), the
# reference model, its penultimate features, the attention pass and the attention space.
KINDS = ("reference", "features", "attention", "attention_space", "stem")
TIMING = ("created", "environment")


def comparable(record: dict) -> dict:
    """The record less its wall-clock times and machine facts."""
    record = {k: v for k, v in record.items() if k not in TIMING}
    record["cost"] = {k: v for k, v in record["cost"].items() if k != "seconds"}
    record["details"].get("attention_space", {}).pop("seconds", None)
    return record


def test_a_run_on_damaged_cache_entries_of_every_kind_gives_the_clean_runs_record(tmp_path, capsys, one_thread):
    config = make_config(dataset="waterbirds-synth", method="slim-val", arch="resnet18", device="cpu",
                         overrides={"pretrained": "none", "width": 0.25, "epochs": 1, "figures": False,
                                    "finetune": "upper"})
    out = tmp_path / "out"
    clean = comparable(json.loads(execute(config, out, show_progress=False).read_text()))
    entries = {kind: sorted((out / "cache" / kind).glob("*.safetensors")) for kind in KINDS}
    assert all(entries.values()) and len(entries["stem"]) == 3  # train, val, test
    capsys.readouterr()
    for shift in range(len(MODES)):  # every kind meets every kind of damage once
        damaged = []
        for number, path in enumerate(p for kind in KINDS for p in entries[kind]):
            corrupt(path, MODES[(number + shift) % len(MODES)])
            damaged.append(path)
        record = comparable(json.loads(execute(config, out, show_progress=False).read_text()))
        assert record == clean
        reported = warnings_of(capsys.readouterr().err)
        assert sorted(line.split(" is unsound")[0] for line in reported) == sorted(
            f"warning: cache entry {p}" for p in damaged)
        assert all(digests.problem(p) is None for p in damaged)
