"""JTT: the error set, the lambda + 1 repetition, stage-1 caching across lambdas, a full run."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import FAST_MODEL, make_toy_benchmark

import harness.engine.context
from baselines.jtt import JTT, stage1_hparams, stage1_predictions, upweight_factor, upweighted_indices
from harness.core.cache import save_tensors
from harness.core.errors import HarnessError
from harness.engine.evaluation import predict_logits
from harness.engine.hparams_registry import default_hparams, run_hparams
from harness.engine.training import FitResult
from harness.experiments.runner import execute, make_config

SMALL = make_toy_benchmark(n_train=48)


@pytest.fixture
def fake_fits(monkeypatch):
    """Replace the training loop: each call records its arguments and shifts the head's bias by a fixed
    amount instead of training, so a "trained" model differs from its starting weights in a known way. Its
    last epoch's pass hands ``on_batch`` the shifted model's logits in shuffled batches of 5 rows."""
    calls = []

    def fake_fit(model, split, hp, **kwargs):
        calls.append({"epochs": hp.epochs, "selection": hp.selection, **kwargs})
        with torch.no_grad():
            model.head.bias += torch.tensor([0.05, -0.05])
            if kwargs.get("on_batch") is not None:
                order = np.random.default_rng(0).permutation(len(split))
                for start in range(0, len(order), 5):
                    rows = torch.from_numpy(order[start:start + 5])  # as training.fit hands them
                    kwargs["on_batch"](hp.epochs, rows, model.eval()(split.images[rows].float() / 255))
        return FitResult(selection={"criterion": hp.selection, "uses_val_group_labels": False,
                                    "epoch": hp.epochs})

    monkeypatch.setattr(harness.engine.context, "fit", fake_fit)
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


def test_stage1_predictions_come_from_the_last_training_pass(make_context, monkeypatch) -> None:
    """As the authors' code logs them: each train row's prediction is the argmax of the train-mode logits of
    the epoch-T forward pass that saw it, before that batch's step. A hook on the model records every stage-1
    forward (all in train mode, T = 1 here); matched to train rows by their images, they give the expected
    predictions. An eval pass over the train set after the epoch predicts otherwise (13 of 48 rows here)."""
    ctx = make_context("jtt", benchmark=SMALL, seed=1, jtt_epochs=1, jtt_lambda=1, batch_size=8, augment=False)
    forwards, models = [], []
    new_model = ctx.new_model

    def watched_model():
        model = new_model()
        model.register_forward_hook(lambda module, args, out: forwards.append(
            (args[0].detach().clone(), out.detach().clone(), module.training)))
        models.append(model)
        return model

    monkeypatch.setattr(ctx, "new_model", watched_model)
    predictions, _ = stage1_predictions(ctx, ctx.hparams)

    train = ctx.benchmark.splits["train"]
    images = train.images.float() / 255
    assert len(forwards) == 6 and all(training for _, _, training in forwards)  # 1 epoch of 6 batches
    expected = torch.full((len(train),), -1)
    for x, logits, _ in forwards:
        same = (x[:, None] == images[None]).flatten(2).all(2)
        assert (same.sum(1) == 1).all()  # each input is one train row's image
        expected[same.float().argmax(1)] = logits.argmax(1)
    assert (expected >= 0).all()  # the last epoch saw every row once
    assert np.array_equal(predictions, expected.numpy())

    after = predict_logits(models[0], train, torch.device("cpu")).argmax(1).numpy()
    assert (predictions != after).sum() > 5


def test_a_stage1_cache_of_eval_pass_predictions_is_not_read(make_context, fake_fits) -> None:
    """Stage-1 caches from before the training-pass predictions (keyed without ``predictions``) are stale."""
    ctx = make_context("jtt", benchmark=SMALL, jtt_epochs=1, jtt_lambda=1)
    stale = dict(ctx.reference_key(), hparams=stage1_hparams(ctx.hparams), stage="jtt-stage1")
    wrong = 1 - ctx.benchmark.splits["train"].labels
    ctx.cache.get_or_create("jtt_stage1", stale, "safetensors",
                            lambda path: save_tensors(path, {"predictions": wrong}))
    result = JTT(ctx.hparams).fit(ctx)
    assert len(fake_fits) == 2  # stage 1 trained afresh
    assert result.details["error_set_size"] < len(wrong)


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
    # The authors' code: CelebA batches of 64, no augmentation (run_hparams: also with a weights file).
    assert (celeba["batch_size"], celeba["augment"], wb["batch_size"]) == (64, False, 64)
    for dataset in ("waterbirds", "celeba"):
        assert run_hparams("jtt", dataset, "paper", "resnet50", {"pretrained": "/w.safetensors"})["augment"] is False
    assert run_hparams("jtt", "celeba", "paper", "resnet50", {"augment": True})["augment"] is True
    assert default_hparams("jtt", "waterbirds-synth", "tiny")["selection"] == "val_worst_group_acc"


def test_runs_end_to_end(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("harness.experiments.runner.load_benchmark", lambda *a, **k: SMALL)
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
