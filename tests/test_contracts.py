"""Contract tests over the registries (DomainBed's one test over every algorithm): every registered method,
CAM extractor and dataset (the shipped presets and real datasets too) is checked, those of installed packages'
entry points included (harness.plugins), so a new one is picked up without editing this file.

Methods, each on the toy benchmark through the runner: the run writes a complete record; the same seed
twice gives the same numbers; and the record's ``labels_used`` is true to what the method read: the
group labels (and spurious attribute) of every split it says it does not read are scrambled within each
class, and the fitted model must be the same (the same test-split numbers, the test split left as is).
A test-local method that reads train group labels while declaring none fails that check.

CAM extractors: maps of the target layer's grid shape, non-negative and finite, and equal to the grad-cam
package's maps where the extractor names the package class computing the same (``package_class``).

Datasets (harness.data.dataset.Dataset): a benchmark with train, val and test, labels and groups in
range, the same bytes for the same seed, and an ``info`` (the cache key of shared stages) that changes
whenever the data does. A dataset read from disk is skipped (its data is not here).
"""
from __future__ import annotations

import json
import re
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST_MODEL, make_toy_benchmark
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import harness.engine.context
from harness.attention.cams import make_extractor
from harness.attention.maps import minmax_normalize
from harness.core.errors import HarnessError
from harness.core.registry import CAMS, DATASETS, METHODS
from harness.data.catalog import dataset_fingerprint
from harness.data.containers import Benchmark, Split
from harness.data.dataset import Dataset
from harness.engine.methods import Method, MethodResult
from harness.experiments.runner import execute, make_config
from harness.models.network import create_model

RECORD_KEYS = {"schema", "run_id", "created", "status", "error", "dataset", "method", "arch", "seed", "scale",
               "config", "metrics", "labels_used", "model", "cost", "model_selection", "details", "environment"}
METRIC_KEYS = {"worst_group_acc", "avg_acc", "group_acc", "group_count"}
LABEL_KEYS = {"train_group_labels", "val_group_labels", "attention_queries", "attention_split"}
COST_KEYS = {"annotation_fraction", "annotation_seconds", "extra_training_fraction", "seconds"}
SELECTION_KEYS = {"criterion", "uses_val_group_labels", "epoch"}
README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(autouse=True)
def one_epoch_reference(monkeypatch):
    """The shared reference ERM model trains one epoch (what every method here builds on)."""
    erm_defaults = harness.engine.context.run_hparams
    monkeypatch.setattr(harness.engine.context, "run_hparams", lambda *a: dict(erm_defaults(*a), epochs=1))


def scrambled(split: Split, rng: np.random.Generator) -> Split:
    """``split`` with its spurious attribute permuted within each class and the groups recomputed from it:
    the same group sizes per class, unrelated to the images."""
    labels, spurious, groups = split.labels.numpy(), split.spurious.numpy(), split.groups.numpy()
    group_of = {(y, s): g for y, s, g in zip(labels, spurious, groups, strict=True)}
    new = spurious.copy()
    for y in np.unique(labels):
        rows = np.flatnonzero(labels == y)
        new[rows] = spurious[rng.permutation(rows)]
    regrouped = np.array([group_of[(y, s)] for y, s in zip(labels, new, strict=True)], dtype=np.int64)
    return Split(images=split.images, labels=split.labels, spurious=torch.from_numpy(new),
                 groups=torch.from_numpy(regrouped), masks=split.masks, stem=split.stem)


def run(method: str, out: Path, monkeypatch, benchmark: Benchmark) -> dict:
    """One run of ``method`` on ``benchmark`` through the runner, in its own folder and cache."""
    monkeypatch.setattr("harness.experiments.runner.load_benchmark", lambda *a, **k: benchmark)
    config = make_config(dataset="toy", method=method, arch="resnet18", overrides={**FAST_MODEL, "epochs": 2},
                         device="cpu")
    return json.loads(execute(config, out, cache_dir=out / "cache", show_progress=False).read_text())


def numbers(record: dict) -> dict:
    """What a record measured, without wall-clock times."""
    return {"metrics": record["metrics"], "labels_used": record["labels_used"],
            "model_selection": record["model_selection"], "details": _untimed(record["details"]),
            "cost": {k: v for k, v in record["cost"].items() if k != "seconds"}}


def _untimed(value):
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def check_method_contract(method: str, tmp_path: Path, monkeypatch) -> None:
    bench = make_toy_benchmark(n_train=64)
    first = run(method, tmp_path / "first", monkeypatch, bench)
    assert RECORD_KEYS <= set(first) and first["status"] == "ok" and first["error"] is None
    for split in ("val", "test"):
        assert METRIC_KEYS <= set(first["metrics"][split])
        metrics = first["metrics"][split]
        assert 0 <= metrics["worst_group_acc"] <= metrics["avg_acc"] <= 1  # a minimum is below the mean
    assert LABEL_KEYS <= set(first["labels_used"]) and COST_KEYS <= set(first["cost"])
    assert SELECTION_KEYS <= set(first["model_selection"])

    second = run(method, tmp_path / "second", monkeypatch, bench)
    assert numbers(second) == numbers(first), "the same seed must give the same numbers"

    used = first["labels_used"]
    rng = np.random.default_rng(0)
    unread = [split for split, key in (("train", "train_group_labels"), ("val", "val_group_labels"))
              if not used[key]]
    blind = Benchmark(name=bench.name, class_names=bench.class_names, spurious_names=bench.spurious_names,
                      group_names=bench.group_names, info=bench.info,
                      splits={name: scrambled(split, rng) if name in unread else split
                              for name, split in bench.splits.items()})
    for name in unread:
        assert not torch.equal(blind.splits[name].groups, bench.splits[name].groups)  # not a vacuous check
    third = run(method, tmp_path / "scrambled", monkeypatch, blind)
    assert third["metrics"]["test"] == first["metrics"]["test"], (
        f"{method} says it reads no group labels of {', '.join(unread)}, but its model changes with them")


@pytest.mark.parametrize("method", METHODS.names())
def test_method_contract(method, tmp_path, monkeypatch):
    check_method_contract(method, tmp_path, monkeypatch)


class LyingERM(Method):
    """Trains with group-balanced batches (train group labels) but declares the labels of plain ERM."""

    name = "lying-erm"
    title = "Lying ERM"

    def fit(self, ctx):
        model = ctx.new_model()
        result = ctx.train(model, dict(self.hparams, sampler="group_balanced"))
        return MethodResult(model=model, selection=result.selection)


@pytest.fixture
def registered():
    """Register methods for one test only."""
    added = []

    def add(cls):
        METHODS.register()(cls)
        added.append(cls.name)
        return cls

    yield add
    for name in added:
        METHODS.unregister(name)


def test_a_method_that_hides_the_group_labels_it_reads_fails_the_contract(registered, tmp_path, monkeypatch):
    registered(LyingERM)
    with pytest.raises(AssertionError, match="says it reads no group labels of train"):
        check_method_contract("lying-erm", tmp_path, monkeypatch)


def readme_block(heading: str) -> str:
    """The first ```python block after ``heading`` in the README."""
    text = README.read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_method_example_registers_and_passes_the_contract(tmp_path, monkeypatch):
    module = types.ModuleType("readme_method")
    exec(readme_block("## Adding a method"), module.__dict__)  # noqa: S102  (the README's own example)
    names = [obj.name for obj in vars(module).values() if isinstance(obj, type) and issubclass(obj, Method)
             and obj is not Method and obj.name in METHODS]
    assert names, "the README example registers no method"
    try:
        for name in names:
            check_method_contract(name, tmp_path / name, monkeypatch)
    finally:
        for name in names:
            METHODS.unregister(name)


# ---- CAM extractors ------------------------------------------------------------------------------------
MODELS = {  # a GAP + linear ResNet (CAM exact) and a ViT (token grid, CAM not exact)
    "resnet18": dict(arch="resnet18", depth=None),
    "vit_tiny": dict(arch="vit_tiny", depth=2),
}


def tiny_model(arch: str, depth: int | None) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(arch, 3, 32, width=0.125, depth=depth).eval()


def check_cam_contract(name: str, kind: str) -> None:
    model = tiny_model(**MODELS[kind])
    try:
        extractor = make_extractor(model, name)
    except HarnessError:
        pytest.skip(f"{name} refuses {kind} (it says why)")
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2])
    batch = extractor(images, labels)
    assert batch.cams.shape == (3, *batch.grid.shape[-2:])
    assert torch.isfinite(batch.cams).all() and (batch.cams >= 0).all()
    if extractor.package_class is None:
        return
    import pytorch_grad_cam

    height, width = batch.grid.shape[-2:]
    package = getattr(pytorch_grad_cam, extractor.package_class)(
        model=model, target_layers=[model.target_layer], reshape_transform=model.to_grid)
    package.get_target_width_height = lambda _input: (width, height)
    try:
        theirs = package(images, targets=[ClassifierOutputTarget(int(c)) for c in labels])
    finally:
        package.activations_and_grads.release()
    np.testing.assert_allclose(minmax_normalize(batch.cams).numpy(), theirs, atol=1e-5)


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("name", CAMS.names())
def test_cam_contract(name, kind):
    check_cam_contract(name, kind)


def test_the_readme_cam_example_registers_and_passes_the_contract():
    before = set(CAMS.names())
    exec(readme_block("## Adding a CAM variant"), types.ModuleType("readme_cam").__dict__)  # noqa: S102
    added = set(CAMS.names()) - before
    assert added, "the README example registers no CAM variant"
    try:
        for name in added:
            for kind in MODELS:
                check_cam_contract(name, kind)
    finally:
        for name in added:
            CAMS.unregister(name)


# ---- datasets ------------------------------------------------------------------------------------------
def load_tiny_dataset(name: str, data_seed: int) -> Benchmark:
    return DATASETS.get(name)().load(scale="tiny", data_seed=data_seed, data_root=None, image_size=None,
                                     options={}, show_progress=False)


def same_data(a: Benchmark, b: Benchmark) -> bool:
    fields = ("images", "labels", "spurious", "groups", "masks")
    return a.splits.keys() == b.splits.keys() and all(
        (getattr(a.splits[s], f) is None) == (getattr(b.splits[s], f) is None)
        and (getattr(a.splits[s], f) is None or torch.equal(getattr(a.splits[s], f), getattr(b.splits[s], f)))
        for s in a.splits for f in fields)


def check_dataset_contract(name: str) -> None:
    if DATASETS.get(name).needs_data_root:
        pytest.skip(f"{name} is read from disk")
    bench = load_tiny_dataset(name, 0)
    assert {"train", "val", "test"} <= set(bench.splits) and bench.name == name
    for split_name, split in bench.splits.items():
        assert len(split) > 0, f"split {split_name} is empty"
        assert 0 <= int(split.labels.min()) and int(split.labels.max()) < bench.num_classes
        assert 0 <= int(split.groups.min()) and int(split.groups.max()) < bench.num_groups
    assert same_data(load_tiny_dataset(name, 0), bench), "the same seed must give the same data"
    assert dataset_fingerprint(load_tiny_dataset(name, 0)) == dataset_fingerprint(bench)
    other = load_tiny_dataset(name, 1)
    if not same_data(other, bench):
        assert dataset_fingerprint(other) != dataset_fingerprint(bench), (
            f"{name}'s info does not change with its data: runs on other data would reuse cached stages")


@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_contract(name):
    check_dataset_contract(name)


class SeedBlindShapes(Dataset):
    """Its data follows the seed, its info (the cache key) does not."""

    name, description = "seed-blind", "a dataset whose info ignores its seed"

    def load(self, *, scale, data_seed, data_root, image_size, options, show_progress):
        bench = make_toy_benchmark(seed=data_seed, n_train=16)
        return Benchmark(name=self.name, class_names=bench.class_names, spurious_names=bench.spurious_names,
                         group_names=bench.group_names, splits=bench.splits, info={"version": 1})


def test_a_dataset_whose_cache_key_ignores_its_data_fails_the_contract():
    DATASETS.register()(SeedBlindShapes)
    try:
        with pytest.raises(AssertionError, match="info does not change with its data"):
            check_dataset_contract("seed-blind")
    finally:
        DATASETS.unregister("seed-blind")
