"""The registries, the plug-in loader's layering and the merged hyperparameter table."""
from __future__ import annotations

import subprocess
import sys

import pytest

from harness.cli import main
from harness.core.errors import HarnessError
from harness.core.registry import CAMS, METHODS, Registry
from harness.engine.hparams_registry import default_hparams, hparam_table


def test_unknown_names_are_one_line_errors_listing_the_known_ones():
    with pytest.raises(HarnessError, match=r"unknown method 'nope'; choose from dfr, erm, gdro, jtt, slim-tr"):
        METHODS.get("nope")
    with pytest.raises(HarnessError, match="unknown attention method 'nope'; choose from .*gradcam"):
        CAMS.get("nope")
    empty = Registry("thing", " (see the docs)")
    with pytest.raises(HarnessError, match=r"unknown thing 'x'; choose from none registered \(see the docs\)"):
        empty.get("x")


def test_registering_and_unregistering():
    things = Registry("thing")

    @things.register()
    class A:
        name = "a"

    things.register("b")(len)
    assert things.names() == ("a", "b") and things.get("a") is A and "b" in things
    things.unregister("a")
    assert list(things) == ["b"]


def test_a_taken_name_is_refused_to_another_object():
    things = Registry("thing")
    things.register("b")(len)
    things.register("b")(len)  # the same object again: nothing changes
    with pytest.raises(HarnessError, match=r"thing 'b' is already registered by builtins.len; builtins.max cannot"):
        things.register("b")(max)
    assert things.get("b") is len


def test_importing_the_harness_loads_no_plug_in():
    """Only the loader's call imports baselines/ and slim/: importing the CLI, the runner, the tables or the
    hyperparameter registry does not (SLIM's settings used to come with hparams_registry)."""
    code = ("import sys; import harness.cli, harness.experiments.runner, harness.reporting.tables.index, "
            "harness.engine.hparams_registry, harness.engine.settings; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('slim', 'baselines')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_hparams_table_says_where_each_value_comes_from(capsys):
    """JTT on Waterbirds at the paper scale: the published values (Liu et al. 2021: 300 epochs, lr 1e-5,
    weight decay 1, T = 60, lambda = 100) from the method's module, the rest from the shared defaults."""
    rows = {key: (value, source) for key, value, source in hparam_table("jtt", "waterbirds", "paper")}
    for key, value in dict(epochs=300, lr=1e-5, weight_decay=1.0, jtt_epochs=60, jtt_lambda=100).items():
        assert rows[key] == (value, "method jtt (baselines.jtt.JTT)")
    assert rows["momentum"] == (0.9, "shared training defaults (harness.engine.hparams_registry)")
    assert rows["pretrained"][1].startswith("model choices for resnet50")
    # The authors train JTT without augmentation: the method's value, which outlasts the protocol's default.
    assert rows["augment"] == (False, "method jtt (baselines.jtt.JTT)")
    assert main(["hparams", "--method", "jtt", "--dataset", "waterbirds", "--scale", "paper"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[:2] == ["jtt_lambda", "100"] and "baselines.jtt.JTT" in line for line in lines)
    assert main(["hparams", "--method", "nope", "--dataset", "waterbirds"]) == 2


def test_a_method_owns_its_settings_and_the_shared_defaults_stay_underneath():
    erm, gdro = default_hparams("erm", "waterbirds-synth", "tiny"), default_hparams("gdro", "waterbirds-synth", "tiny")
    assert set(erm) < set(gdro) and {k: gdro[k] for k in ("epochs", "lr", "batch_size")} == \
        {k: erm[k] for k in ("epochs", "lr", "batch_size")}
    assert gdro["sampler"] == "group_balanced" and gdro["gdro_eta"] == 0.1  # GroupDRO's synthetic-scale step
