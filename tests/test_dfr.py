"""DFR: balanced subsampling, the C grid and its tuning, coefficient averaging, the labels it reads, a run."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import FAST_MODEL, make_toy_benchmark
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import baselines.dfr
import harness.engine.context
from baselines.dfr import C_GRID, DFR, averaged_head, balanced_subsample, tune_c
from harness.engine.features import penultimate_features
from harness.experiments.runner import execute, make_config
from harness.models.network import create_model

# sklearn >= 1.8 warns about penalty="l1", which harness.engine.last_layer and l1_fit pass for older versions.
pytestmark = pytest.mark.filterwarnings("ignore:Inconsistent values:UserWarning")


def l1_fit(x: np.ndarray, y: np.ndarray, c: float) -> LogisticRegression:
    return LogisticRegression(penalty="l1", C=c, solver="liblinear", random_state=0).fit(x, y)


def toy_problem(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """60 points, 3 features; class from feature 0, a 'spurious' group attribute from feature 1."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 60)
    spurious = np.where(rng.random(60) < 0.8, labels, 1 - labels)
    x = np.c_[labels + 0.8 * rng.standard_normal(60), spurious + 0.3 * rng.standard_normal(60),
              rng.standard_normal(60)]
    return x, labels, labels * 2 + spurious


def test_balanced_subsample() -> None:
    groups = np.array([0] * 5 + [1] * 3 + [3] * 7)  # group 2 absent
    draw = balanced_subsample(groups, np.random.default_rng(0))
    assert np.bincount(groups[draw], minlength=4).tolist() == [3, 3, 0, 3]
    assert len(np.unique(draw)) == len(draw)  # without replacement
    assert np.array_equal(draw, balanced_subsample(groups, np.random.default_rng(0)))
    draws = {tuple(balanced_subsample(groups, np.random.default_rng(s))) for s in range(5)}
    assert len(draws) > 1  # random, not a fixed prefix


def test_tuning_follows_the_c_grid() -> None:
    assert C_GRID == (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)
    x, y, g = toy_problem()
    best, scores = tune_c(x, y, g, num_classes=2, rng=np.random.default_rng(3))
    assert list(scores) == list(C_GRID)
    assert best == next(c for c in C_GRID if scores[c] == max(scores.values()))  # first best, grid order
    # Independently: the same shuffle and subsample, sklearn on the standardised subsample.
    rng = np.random.default_rng(3)
    order = rng.permutation(60)
    held, fit_half = order[:30], order[30:]
    sub = fit_half[balanced_subsample(g[fit_half], rng)]
    scaler = StandardScaler().fit(x[sub])
    for c in C_GRID:
        preds = l1_fit(scaler.transform(x[sub]), y[sub], c).predict(scaler.transform(x[held]))
        worst = min((preds[g[held] == k] == y[held][g[held] == k]).mean() for k in np.unique(g[held]))
        assert scores[c] == pytest.approx(worst)


def test_coefficients_are_averaged_over_balanced_fits() -> None:
    x, y, g = toy_problem(1)
    scaler = StandardScaler().fit(x)
    head, subsets = averaged_head(x, y, g, C=0.3, num_classes=2, scaler=scaler, num_fits=3,
                                  rng=np.random.default_rng(0))
    assert len(subsets) == 3 and all(np.bincount(g[s]).min() == np.bincount(g[s]).max() for s in subsets)
    fits = [l1_fit(scaler.transform(x[s]), y[s], 0.3) for s in subsets]
    coef = np.mean([f.coef_[0] for f in fits], axis=0)
    intercept = np.mean([f.intercept_[0] for f in fits])
    margin = scaler.transform(x) @ coef + intercept  # class-1 logit minus class-0 logit
    logits = head.logits(x)
    assert logits[:, 1] - logits[:, 0] == pytest.approx(margin, rel=1e-6, abs=1e-9)
    assert not np.allclose(fits[0].coef_, fits[1].coef_)  # the subsamples differ, so averaging matters


@pytest.fixture
def fake_reference(monkeypatch):
    """A fixed untrained reference model instead of training ERM (its features are still image-dependent)."""
    model = create_model("resnet18", 2, 32, width=0.25)
    computed = {}  # per split name: the tests below change labels, never images

    def reference_features(ctx, split):
        if split not in computed:
            computed[split] = penultimate_features(model, ctx.benchmark.splits[split], ctx.device)
        return computed[split]

    monkeypatch.setattr(baselines.dfr, "reference_features", reference_features)
    monkeypatch.setattr(harness.engine.context.RunContext, "reference_model", lambda self: (model, {"epoch": 3}))
    return model


def test_reads_val_group_labels_and_never_train_ones(make_context, fake_reference) -> None:
    bench = make_toy_benchmark(n_train=48)
    heads = {}
    train, val = bench.splits["train"], bench.splits["val"]
    shuffled = {"train": dataclasses.replace(train, groups=train.groups.flip(0)),
                "val": dataclasses.replace(val, groups=val.groups.flip(0))}
    for changed in (None, "train", "val"):
        splits = dict(bench.splits, **({changed: shuffled[changed]} if changed else {}))
        ctx = make_context("dfr", benchmark=dataclasses.replace(bench, splits=splits))
        result = DFR(ctx.hparams).fit(ctx)
        heads[changed] = result.model.head.weight.detach().clone()
        assert DFR(ctx.hparams).labels_used(result)["train_group_labels"] is False
    assert torch.equal(heads[None], heads["train"])
    assert not torch.equal(heads[None], heads["val"])


def test_runs_end_to_end(tmp_path, monkeypatch) -> None:
    bench = make_toy_benchmark(n_train=48)
    monkeypatch.setattr("harness.experiments.runner.load_benchmark", lambda *a, **k: bench)
    erm_defaults = harness.engine.context.run_hparams
    monkeypatch.setattr(harness.engine.context, "run_hparams",  # a one-epoch reference model
                        lambda *a: dict(erm_defaults(*a), epochs=1))
    overrides = {**FAST_MODEL, "dfr_num_retrains": 5}
    config = make_config(dataset="toy", method="dfr", arch="resnet18", overrides=overrides, device="cpu")
    path = execute(config, tmp_path, show_progress=False)
    record = json.loads(path.read_text())
    details = record["details"]
    assert record["labels_used"]["val_group_labels"] and not record["labels_used"]["train_group_labels"]
    per_group = np.bincount(bench.splits["val"].groups.numpy()).min()
    assert details["subsample_size"] == 4 * per_group and details["num_retrains"] == 5
    assert record["cost"]["extra_training_fraction"] == pytest.approx(4 * per_group / 48)
    assert details["C"] in C_GRID and set(details["tuning_worst_group_acc"]) == {str(c) for c in C_GRID}
