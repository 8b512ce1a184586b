"""JTT: the error set, the lambda + 1 repetition, stage-1 caching across lambdas, a full run."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import FAST_MODEL, make_toy_benchmark

import harness.context
from baselines.jtt import JTT, upweight_factor, upweighted_indices
from harness.errors import HarnessError
from harness.hparams_registry import default_hparams
from harness.runner import execute, make_config
from harness.training import FitResult

SMALL = make_toy_benchmark(n_train=48)


@pytest.fixture
def fake_fits(monkeypatch):
    """Replace the training loop: each call records its arguments and shifts the head's bias by a fixed
    amount instead of training, so a "trained" model differs from its starting weights in a known way."""
    calls = []

    def fake_fit(model, split, hp, **kwargs):
        calls.append({"epochs": hp.epochs, "selection": hp.selection, **kwargs})
        with torch.no_grad():
            model.head.bias += torch.tensor([0.05, -0.05])
        return FitResult(selection={"criterion": hp.selection, "uses_val_group_labels": False,
                                    "epoch": hp.epochs})

    monkeypatch.setattr(harness.context, "fit", fake_fit)
    return calls


def test_error_set_is_stage1_mistakes_repeated_lambda_plus_one_times(make_context, fake_fits) -> None:
    ctx = make_context("jtt", benchmark=SMALL, jtt_epochs=2, jtt_lambda=3)
    JTT(ctx.hparams).fit(ctx)
    stage1, stage2 = fake_fits
    assert (stage1["epochs"], stage1["selection"], stage1["indices"]) == (2, "last", None)

    # Independently: the starting weights, the same head shift, plain eval-mode predictions.
    model = ctx.new_model().eval()
    with torch.no_grad():
        model.head.bias += torch.tensor([0.05, -0.05])
        train = ctx.benchmark.splits["train"]
        preds = model(train.images.float() / 255).argmax(1)
    wrong = (preds != train.labels).numpy()
    assert 0 < wrong.sum() < len(train)  # the check below is not vacuous

    copies = np.bincount(stage2["indices"], minlength=len(train))
    assert np.array_equal(copies, np.where(wrong, 3 + 1, 1))


def test_stage1_cached_and_reused_across_lambdas(make_context, fake_fits) -> None:
    ctx = make_context("jtt", benchmark=SMALL, jtt_epochs=1, jtt_lambda=2)
    result = JTT(ctx.hparams).fit(ctx)
    assert len(fake_fits) == 2  # stage 1 and stage 2
    ctx = make_context("jtt", benchmark=SMALL, jtt_epochs=1, jtt_lambda=7)
    other = JTT(ctx.hparams).fit(ctx)
    assert len(fake_fits) == 3  # stage 2 only: stage 1 came from the cache
    assert other.details["error_set_size"] == result.details["error_set_size"]
    ctx = make_context("jtt", benchmark=SMALL, jtt_epochs=2, jtt_lambda=7)
    JTT(ctx.hparams).fit(ctx)
    assert len(fake_fits) == 5  # another T is another identification model


def test_repetition_and_cost_accounting() -> None:
    indices = upweighted_indices(5, np.array([1, 4]), 2)
    assert np.bincount(indices).tolist() == [1, 3, 1, 1, 3]
    assert np.array_equal(upweighted_indices(4, np.array([], dtype=np.int64), 9), np.arange(4))
    with pytest.raises(HarnessError, match="jtt_lambda"):
        upweight_factor(2.5)
    with pytest.raises(HarnessError, match="jtt_lambda"):
        upweight_factor(-1)


def test_registry_settings() -> None:
    wb = default_hparams("jtt", "waterbirds", "paper")
    settings = (wb["jtt_epochs"], wb["jtt_lambda"], wb["lr"], wb["weight_decay"], wb["epochs"])
    assert settings == (60, 100, 1e-5, 1.0, 300)
    celeba = default_hparams("jtt", "celeba", "paper")
    assert (celeba["jtt_epochs"], celeba["jtt_lambda"], celeba["weight_decay"]) == (1, 50, 0.1)
    assert default_hparams("jtt", "waterbirds-synth", "tiny")["selection"] == "val_worst_group_acc"


def test_runs_end_to_end(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("harness.runner.load_benchmark", lambda *a, **k: SMALL)
    overrides = {**FAST_MODEL, "epochs": 1, "jtt_epochs": 1, "jtt_lambda": 1}
    config = make_config(dataset="toy", method="jtt", arch="resnet18", overrides=overrides, device="cpu")
    record = json.loads(execute(config, tmp_path, show_progress=False).read_text())
    details = record["details"]
    labels = record["labels_used"]
    assert (labels["train_group_labels"], labels["val_group_labels"]) == (False, True)
    assert sum(details["error_set_groups"].values()) == details["error_set_size"]
    n, errors = 48, details["error_set_size"]
    assert record["cost"]["extra_training_fraction"] == pytest.approx((n + errors) / n)
    assert details["training_passes"] == {"stage1": 1.0, "stage2": pytest.approx((n + errors) / n)}
