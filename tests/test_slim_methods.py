"""SLIM_Tr and SLIM_Val end to end: through harness.experiments.runner on the toy benchmark, without group labels,
and on every synthetic preset at a tiny size."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import FAST_MODEL, make_toy_benchmark

import harness.engine.context
from baselines.dfr import C_GRID
from harness.core.cache import ArtifactCache
from harness.core.errors import HarnessError
from harness.engine.context import RunContext
from harness.engine.hparams_registry import run_hparams
from harness.engine.methods import get_method
from harness.experiments.runner import execute, make_config
from harness.models.network import create_model
from slim.methods import choose_c


def toy():
    return make_toy_benchmark(n_train=64)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache for the module, so the toy benchmark's reference model and attention are computed once;
    the reference model is trained for a single epoch."""
    erm_defaults = harness.engine.context.run_hparams
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(harness.engine.context, "run_hparams", lambda *a: dict(erm_defaults(*a), epochs=1))
        yield tmp_path_factory.mktemp("slim-cache")


def context(method: str, cache, benchmark, tmp_path, **settings) -> RunContext:
    """A fast context; ``settings`` are set on its hparams (SLIM settings the registry does not list too)."""
    hp = run_hparams(method, benchmark.name, "tiny", "resnet18", {"epochs": 2, **FAST_MODEL}) | settings
    return RunContext(benchmark=benchmark, arch="resnet18", seed=0, scale="tiny", device=torch.device("cpu"),
                      hparams=hp, method=method, cache=ArtifactCache(cache), run_dir=tmp_path / method,
                      show_progress=False)


@pytest.mark.parametrize("method,split", [("slim-tr", "train"), ("slim-val", "val")])
def test_runs_end_to_end_through_the_runner(method, split, shared_cache, tmp_path, monkeypatch):
    bench = toy()
    monkeypatch.setattr("harness.experiments.runner.load_benchmark", lambda *a, **k: bench)
    # SLIM_Tr's floor of 50 epochs (tests/test_slim_settings.py) lowered to 3: the rule, not its size, is tested
    floor = {"slim_tr_min_epochs": 3} if method == "slim-tr" else {}
    config = make_config(dataset="toy", method=method, arch="resnet18",
                         overrides={**FAST_MODEL, "epochs": 2, **floor}, device="cpu")
    frac, share = config["hparams"]["subset_frac"], config["hparams"]["budget_share"]
    assert config["hparams"]["budget"] is None  # the toy split: the paper's share of it
    path = execute(config, tmp_path, cache_dir=shared_cache, show_progress=False)
    record = json.loads(path.read_text())
    size = len(bench.splits[split])
    subset = round(frac * size)
    budget = max(2 * bench.num_classes, round(share * size))
    assert record["status"] == "ok" and set(record["metrics"]) == {"val", "test"}
    assert record["labels_used"] == {"train_group_labels": False, "val_group_labels": False,
                                     "attention_queries": budget, "attention_split": split, "ground_truth": None}
    assert record["model_selection"]["uses_val_group_labels"] is False
    assert record["cost"]["annotation_fraction"] == pytest.approx(budget / size)
    assert record["cost"]["annotation_seconds"] > 0
    assert record["cost"]["extra_training_fraction"] == pytest.approx(subset / len(bench.splits["train"]))
    details = record["details"]
    assert details["queries"] == budget and details["query_fraction"] == pytest.approx(budget / size)
    assert details["subset_size"] == subset == sum(details["quotas"].values())
    assert details["subset_fraction"] == pytest.approx(subset / size)
    assert details["oracle"]["queries"] == budget and details["attention_space"]["fit_size"] == size
    assert all(set(v) == {"core", "env"} for v in details["clusters"].values()) and "repeats" in details
    if method == "slim-val":
        assert record["model_selection"]["C"] in C_GRID
    else:
        assert record["model_selection"]["criterion"] == "val_class_balanced_acc"
        erm_steps = 1 * -(-len(bench.splits["train"]) // 64)  # the reference trains 1 epoch here
        assert details["training_budget"]["epochs"] == max(3, erm_steps) == len(details["history"])
    run_dir = path.parent / record["run_id"]
    log = [json.loads(line) for line in (run_dir / "queries.jsonl").read_text().splitlines()]
    assert len(log) == budget and all(0 <= row["instance_id"] < size for row in log)
    assert (run_dir / "attention_space.png").stat().st_size > 0 and (run_dir / "elbow.png").exists()
    assert (run_dir / "cam_gallery.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("method", ["slim-tr", "slim-val"])
def test_the_authors_variant_runs_end_to_end_on_the_harness_features(method, shared_cache, tmp_path, monkeypatch):
    """``slim_variant=authors`` curates with slim.authors.curate on the run's own F_A / F_Abar and the
    oracle's answers: replaying the logged answers through curate gives the record's stages."""
    from simulated_oracle import load_log
    from slim.authors import curate

    bench = toy()
    monkeypatch.setattr("harness.experiments.runner.load_benchmark", lambda *a, **k: bench)
    floor = {"slim_tr_min_epochs": 3} if method == "slim-tr" else {}
    config = make_config(dataset="toy", method=method, arch="resnet18", device="cpu",
                         overrides={**FAST_MODEL, "epochs": 2, "slim_variant": "authors", **floor})
    path = execute(config, tmp_path, cache_dir=shared_cache, show_progress=False)
    record = json.loads(path.read_text())
    details = record["details"]
    assert record["status"] == "ok" and details["slim_variant"] == "authors"
    assert record["labels_used"]["ground_truth"] is None and not record["labels_used"]["val_group_labels"]
    assert details["authors"]["gamma"] == {"0": 10.0, "1": 5.0} and isinstance(details["authors"]["patches"], list)
    ctx = context(method, shared_cache, bench, tmp_path, slim_variant="authors", figures=False)
    inputs = get_method(method)(ctx.hparams).prepare(ctx)
    answers = {e.instance_id: e.answer for e in load_log(path.parent / record["run_id"] / "queries.jsonl")}
    codes = {"yes": 1, "no": 0, "not_sure": -1}
    budgets = {int(c): n for c, n in details["class_budgets"].items()}
    out = curate(inputs.fa, inputs.fabar, inputs.labels, lambda rows: [codes[answers[r].value] for r in rows],
                 budgets=budgets, subset_size=inputs.curator.subset_size, seed=0)
    assert out["kept"].size == details["kept"] and details["clusters"] == {"all": {"core": out["k_core"],
                                                                                    "env": out["k_env"]}}
    assert details["authors"]["sizes"] == out["sizes"].tolist() and details["subset_size"] == len(out["constructed"])
    classes, counts = np.unique(inputs.labels[out["constructed"]], return_counts=True)
    assert details["subset_classes"] == {str(c): int(n) for c, n in zip(classes, counts, strict=True)}


@pytest.mark.parametrize("variant", ["paper", "authors"])
def test_no_stage_reads_group_labels(variant, shared_cache, tmp_path):
    """The curated subsets are identical when the group and spurious labels are scrambled."""
    bench = toy()
    rng = np.random.default_rng(1)
    scrambled = {name: dataclasses.replace(split, groups=torch.from_numpy(rng.integers(0, 4, len(split))),
                                           spurious=torch.from_numpy(rng.integers(0, 2, len(split))))
                 for name, split in bench.splits.items()}
    for method in ("slim-tr", "slim-val"):
        subsets = []
        for benchmark in (bench, dataclasses.replace(bench, splits=scrambled)):
            ctx = context(method, shared_cache, benchmark, tmp_path, figures=False, slim_variant=variant)
            curation, oracle, _ = get_method(method)(ctx.hparams).curate(ctx)
            subsets.append(curation.indices)
        assert np.array_equal(subsets[0], subsets[1])


def test_without_masks_the_simulated_oracle_is_refused(shared_cache, tmp_path):
    bench = toy()
    val = dataclasses.replace(bench.splits["val"], masks=None)
    no_masks = dataclasses.replace(bench, splits=dict(bench.splits, val=val))
    ctx = context("slim-val", shared_cache, no_masks, tmp_path)
    with pytest.raises(HarnessError, match="simulated oracle needs object masks.*val split.*human oracle"):
        get_method("slim-val")(ctx.hparams).fit(ctx)


def test_group_label_selection_is_refused(shared_cache, tmp_path):
    ctx = context("slim-tr", shared_cache, toy(), tmp_path, selection="val_worst_group_acc")
    with pytest.raises(HarnessError, match="reads no group labels"):
        get_method("slim-tr")(ctx.hparams).fit(ctx)


def test_choose_c_holds_out_distinct_instances_and_is_deterministic():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 40)
    features = np.column_stack([labels * 3.0, np.zeros(80)]) + rng.normal(size=(80, 2))
    rows = np.concatenate([np.arange(0, 80, 2), np.arange(0, 80, 4)])  # repeats allowed
    c, scores = choose_c(features, labels, rows, 2, random_state=0)
    assert set(scores) == {str(g) for g in C_GRID} and scores[str(c)] == max(scores.values())
    assert c == min(g for g in C_GRID if scores[str(g)] == max(scores.values()))  # ties: smaller C
    assert (c, scores) == choose_c(features, labels, rows, 2, random_state=0)
    assert choose_c(features, labels, np.array([0, 0, 41]), 2) == (C_GRID[0], {})  # a half lacks a class


PRESETS = ("waterbirds-synth", "celeba-synth", "isic-synth", "nico-synth", "imagenet9-synth")


def small_preset(name: str, per_class: int):
    """A tiny-scale synthetic preset cut to ``per_class`` instances per class and split (class-stratified)."""
    from harness.data.synthetic import make_benchmark

    bench = make_benchmark(name, "tiny", 0)
    splits = {}
    for split_name, split in bench.splits.items():
        labels = split.labels.numpy()
        rows = np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)]))
        splits[split_name] = split.subset(rows)
    return dataclasses.replace(bench, splits=splits)


@pytest.fixture
def untrained_reference(monkeypatch):
    """A fixed untrained reference model per number of classes instead of training ERM on each preset (its
    attention and features still depend on the images; the toy runs above use a trained one)."""
    models = {}

    def reference_model(self):
        key = self.benchmark.num_classes
        if key not in models:
            torch.manual_seed(0)
            models[key] = create_model("resnet18", key, self.benchmark.image_size, width=0.25).eval()
        return models[key], {"criterion": "val_avg_acc", "uses_val_group_labels": False, "epoch": 1}

    monkeypatch.setattr(RunContext, "reference_model", reference_model)


@pytest.mark.parametrize("name", PRESETS)
def test_slim_val_runs_on_every_synthetic_preset(name, untrained_reference, tmp_path):
    bench = small_preset(name, per_class=8)
    budget = 3 * bench.num_classes
    ctx = context("slim-val", tmp_path / "cache", bench, tmp_path, figures=False, budget=budget,
                  subset_frac=0.5)  # the paper's 0.05 of 16 rows would be a single row
    result = get_method("slim-val")(ctx.hparams).fit(ctx)
    assert result.attention_queries == budget == result.details["queries"]
    assert result.details["subset_size"] == round(ctx.hparams["subset_frac"] * len(bench.splits["val"]))
    logits = result.model(bench.splits["test"].images[:4].float() / 255)
    assert logits.shape == (4, bench.num_classes)
