"""The reference model f_r that ERM, DFR and SLIM share: the settings an ERM run of the same sweep has."""
from dataclasses import replace

import pytest
import torch

from harness.core.cache import ArtifactCache
from harness.engine.context import TRAIN_KEYS, RunContext
from harness.engine.hparams_registry import run_hparams
from tests.conftest import make_toy_benchmark

PAPER_SIZE = {"epochs": 8, "augment": False, "finetune": "upper"}  # paper-size.toml's [overrides]


def context(method: str, scale: str, overrides: dict, tmp_path) -> RunContext:
    """A context of ``method`` on waterbirds-synth with the default backbone (nothing is trained)."""
    benchmark = replace(make_toy_benchmark(), name="waterbirds-synth")
    hp = run_hparams(method, benchmark.name, scale, "efficientnet_lite0", overrides)
    return RunContext(benchmark=benchmark, arch="efficientnet_lite0", seed=0, scale=scale, device=torch.device("cpu"),
                      hparams=hp, method=method, cache=ArtifactCache(tmp_path), run_dir=tmp_path / "run",
                      show_progress=False)


@pytest.mark.parametrize("scale,overrides", [("tiny", {}), ("paper", PAPER_SIZE)])
def test_an_erm_run_has_the_reference_settings_so_it_takes_the_cached_reference(scale, overrides, tmp_path):
    """The default reproduction (no overrides; the upper protocol turns augmentation off) and the paper-size
    grid (its overrides): ERM's training settings are the reference's, so the ERM run reads the reference
    the other methods share instead of training a second model (before, the reference kept ERM's registry
    augmentation, and at the paper scale its 20 epochs, and was trained apart)."""
    ctx = context("erm", scale, overrides, tmp_path)
    reference = ctx.reference_hparams()
    assert {k: reference[k] for k in TRAIN_KEYS} == {k: ctx.hparams[k] for k in TRAIN_KEYS}


@pytest.mark.parametrize("method", ["dfr", "slim-val", "slim-tr"])
def test_the_sweeps_training_overrides_reach_the_reference_of_the_methods_built_on_it(method, tmp_path):
    """A DFR or SLIM run of the paper-size grid starts from ERM's 8 epochs without augmentation, not from the
    registry's paper-scale 20 epochs with it; SLIM_Tr's own selection criterion (class-balanced, for its
    retraining) stays its own: the reference is still selected by val average accuracy."""
    reference = context(method, "paper", PAPER_SIZE, tmp_path).reference_hparams()
    assert run_hparams("erm", "waterbirds-synth", "paper", "efficientnet_lite0")["epochs"] == 20
    assert (reference["epochs"], reference["augment"], reference["finetune"]) == (8, False, "upper")
    assert reference["selection"] == "val_avg_acc"
    assert reference == context("erm", "paper", PAPER_SIZE, tmp_path).hparams
